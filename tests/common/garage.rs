//! Garage, a distributed S3-compatible store, as the object storage under test: one node on
//! loopback ports, or a cluster with one node per network namespace. An external binary the
//! test runs (never linked: AGPL), found through `WHARF_GARAGE`, on PATH, or in the cache
//! scripts/test.sh builds it into. Nodes are stopped by PID on drop.
#![allow(dead_code)]

use super::images::{describe, stop_child, wait_until};
use super::Wharf;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const GARAGE_VERSION: &str = "2.5.0";
/// The region Garage answers as: an AWS name, since distribution's S3 driver checks it.
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "registry";

/// The garage binary, or None (after printing SKIP) outside CI; panics in CI.
pub fn garage_bin() -> Option<PathBuf> {
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(format!(".cache/wharf-tests/garage-{GARAGE_VERSION}/bin/garage")));
    let candidates = [std::env::var_os("WHARF_GARAGE").map(PathBuf::from), cached];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    super::require_tool("garage").then(|| PathBuf::from("garage"))
}

pub struct Node {
    child: Option<Child>,
    pub config: PathBuf,
    log: PathBuf,
    /// Runs the node (and its CLI) where it lives: `ip netns exec NS`, or nothing.
    prefix: Vec<String>,
    /// `HOST:PORT` of its S3 API and of its RPC.
    pub s3_addr: String,
    pub rpc_addr: String,
}

impl Node {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Garage {
    bin: PathBuf,
    pub nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
    _dir: tempfile::TempDir,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn node_config(dir: &Path, host: &str, rpc: u16, s3: u16, secret: &str, replication: usize) -> String {
    format!(
        "metadata_dir = \"{meta}\"\n\
         data_dir = \"{data}\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = {replication}\n\
         rpc_bind_addr = \"{host}:{rpc}\"\n\
         rpc_public_addr = \"{host}:{rpc}\"\n\
         rpc_secret = \"{secret}\"\n\
         [s3_api]\n\
         s3_region = \"{REGION}\"\n\
         api_bind_addr = \"{host}:{s3}\"\n\
         root_domain = \".s3.garage.test\"\n",
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
    )
}

impl Garage {
    /// One node on 127.0.0.1, replication factor 1.
    pub fn single() -> Option<Garage> {
        Self::start(&[(Vec::new(), "127.0.0.1".to_string())])
    }

    /// One node per `(prefix, address)`: a cluster with replication factor 3 for three hosts.
    pub fn start(hosts: &[(Vec<String>, String)]) -> Option<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = hex(&super::images::random_bytes(32));
        let replication = hosts.len().min(3);
        let mut nodes = Vec::new();
        for (i, (prefix, host)) in hosts.iter().enumerate() {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            // On loopback the ports must be free here; in a namespace of its own any will do.
            let (rpc, s3) = if prefix.is_empty() {
                (super::free_port(), super::free_port())
            } else {
                (3901, 3900)
            };
            let config = node_dir.join("garage.toml");
            std::fs::write(&config, node_config(&node_dir, host, rpc, s3, &secret, replication)).unwrap();
            let log = node_dir.join("garage.log");
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Self::command(&bin, prefix, &config);
            cmd.arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", describe(&cmd)));
            nodes.push(Node {
                child: Some(child),
                config,
                log,
                prefix: prefix.clone(),
                s3_addr: format!("{host}:{s3}"),
                rpc_addr: format!("{host}:{rpc}"),
            });
        }
        let mut g = Garage {
            bin,
            nodes,
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        g.form_cluster();
        Some(g)
    }

    fn command(bin: &Path, prefix: &[String], config: &Path) -> Command {
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("-c").arg(config);
        cmd
    }

    /// Runs `garage ARGS` against node `i`; Err with its output on failure.
    pub fn try_cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let n = &self.nodes[i];
        let mut cmd = Self::command(&self.bin, &n.prefix, &n.config);
        cmd.args(args).stdin(Stdio::null());
        let out = cmd.output().unwrap_or_else(|e| panic!("{}: {e}", describe(&cmd)));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{}: {text}{}", describe(&cmd), String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        self.try_cli(i, args)
            .unwrap_or_else(|e| panic!("{e}\nnode log:\n{}", self.nodes[i].log()))
    }

    /// Retries `garage ARGS` for up to `limit` (a node still starting, a layout spreading).
    fn cli_retrying(&self, i: usize, args: &[&str], limit: Duration) -> String {
        let mut last = String::new();
        let mut done = None;
        wait_until(limit, || match self.try_cli(i, args) {
            Ok(out) => {
                done = Some(out);
                true
            }
            Err(e) => {
                last = e;
                std::thread::sleep(Duration::from_millis(200));
                false
            }
        });
        done.unwrap_or_else(|| panic!("{last}\nnode log:\n{}", self.nodes[i].log()))
    }

    /// Connects the nodes, gives each 1 GB in one zone, applies the layout, makes the bucket
    /// and a key allowed on it.
    fn form_cluster(&mut self) {
        let limit = Duration::from_secs(60);
        let mut ids = Vec::new();
        for i in 0..self.nodes.len() {
            let id = self.cli_retrying(i, &["node", "id", "-q"], limit);
            ids.push(id.trim().to_string());
        }
        for id in &ids[1..] {
            self.cli_retrying(0, &["node", "connect", id], limit);
        }
        for id in &ids {
            let short = id.split('@').next().unwrap_or(id);
            self.cli_retrying(0, &["layout", "assign", "-z", "dc1", "-c", "1G", short], limit);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
        self.cli_retrying(0, &["bucket", "create", BUCKET], limit);
        let created = self.cli_retrying(0, &["key", "create", "wharf-test"], limit);
        let field = |name: &str| {
            created
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
                .unwrap_or_else(|| panic!("no {name} in `garage key create` output:\n{created}"))
        };
        self.key_id = field("Key ID");
        self.secret = field("Secret key");
        self.cli(
            0,
            &["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "wharf-test"],
        );
    }

    /// Starts node `i` again after `stop`, on its data and ports.
    pub fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.stop();
        let out = std::fs::OpenOptions::new().append(true).open(&n.log).unwrap();
        let mut cmd = Self::command(&self.bin, &n.prefix, &n.config);
        cmd.arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        n.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", describe(&cmd))));
    }

    /// `wharf serve`'s environment for the bucket through node `i`, under `root`.
    pub fn wharf_env(&self, i: usize, root: &str) -> Vec<(String, String)> {
        [
            ("REGISTRY_STORAGE", "s3".to_string()),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", self.nodes[i].endpoint()),
            ("REGISTRY_STORAGE_S3_REGION", REGION.to_string()),
            ("REGISTRY_STORAGE_S3_BUCKET", BUCKET.to_string()),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", self.key_id.clone()),
            ("REGISTRY_STORAGE_S3_SECRETKEY", self.secret.clone()),
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", root.to_string()),
            ("REGISTRY_STORAGE_S3_SECURE", "false".to_string()),
            ("REGISTRY_HTTP_SECRET", "garage-test-shared-secret".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `wharf serve` on the bucket through node `node`, under `root`, with `extra` settings, on
    /// a free loopback port.
    pub fn serve(&self, node: usize, root: &str, extra: &[(&str, &str)]) -> Wharf {
        let mut env = self.wharf_env(node, root);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let w = Wharf::launch_args(&[], &["--addr", "127.0.0.1:0"], &env);
        assert!(
            w.output().contains(&format!("storage: s3 bucket {BUCKET}")),
            "the start-up line names the bucket:\n{}",
            w.output()
        );
        w
    }

    /// distribution's `storage:` section for the same bucket, through node `i`, under `root`.
    pub fn distribution_storage(&self, i: usize, root: &str) -> String {
        format!(
            "storage:\n  s3:\n    region: {REGION}\n    regionendpoint: {}\n    bucket: {BUCKET}\n    \
             accesskey: {}\n    secretkey: {}\n    rootdirectory: {root}\n    secure: false\n    \
             v4auth: true\n  delete:\n    enabled: true\n  redirect:\n    disable: true\n",
            self.nodes[i].endpoint(),
            self.key_id,
            self.secret
        )
    }
}

/// The runtime the Garage tests drive their HTTP clients on (two workers, as CI has two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
