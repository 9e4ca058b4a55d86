//! One Garage node on 127.0.0.1 (free ports, data under the bench's work directory) with one
//! bucket and a key allowed on it: the object storage both registries use. Garage is an
//! external program (AGPL, never linked), the binary scripts/test.sh builds into the cache.
//! The node is stopped by PID on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const VERSION: &str = "2.5.0";
/// An AWS region name: distribution's S3 driver refuses others.
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "registry";

pub struct Garage {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Child,
    /// `127.0.0.1:PORT` of the S3 API.
    pub s3_addr: String,
    pub key_id: String,
    pub secret: String,
}

/// `WHARF_GARAGE`, else the cached build, else `garage` on PATH.
pub fn binary() -> Option<PathBuf> {
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(format!(".cache/wharf-tests/garage-{VERSION}/bin/garage")));
    if let Some(found) = [std::env::var_os("WHARF_GARAGE").map(PathBuf::from), cached]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
    {
        return Some(found);
    }
    crate::which("garage").then(|| PathBuf::from("garage"))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Garage {
    /// Starts the node in `dir` (made here), lays it out, makes the bucket and the key.
    pub fn start(bin: &Path, dir: &Path) -> Result<Garage, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (rpc, s3) = (crate::servers::free_port(), crate::servers::free_port());
        let config = dir.join("garage.toml");
        // Garage's defaults otherwise: LMDB metadata, 1 MiB blocks, no fsync of data or metadata.
        let toml = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"lmdb\"\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.bench\"\n",
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
            secret = random_hex(32),
        );
        std::fs::write(&config, toml).map_err(|e| e.to_string())?;
        let log = dir.join("garage.log");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut g = Garage {
            bin: bin.to_path_buf(),
            config,
            log,
            child,
            s3_addr: format!("127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
        };
        g.set_up()?;
        Ok(g)
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "garage {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `cli` again every 200 ms for up to a minute: the node is still starting.
    fn cli_retrying(&self, args: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.cli(args) {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "{e}\nnode log:\n{}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn set_up(&mut self) -> Result<(), String> {
        let id = self.cli_retrying(&["node", "id", "-q"])?;
        let short = id.trim().split('@').next().unwrap_or("").to_string();
        self.cli_retrying(&["layout", "assign", "-z", "dc1", "-c", "1G", &short])?;
        self.cli(&["layout", "apply", "--version", "1"])?;
        self.cli_retrying(&["bucket", "create", BUCKET])?;
        let created = self.cli_retrying(&["key", "create", "wharf-bench"])?;
        let field = |name: &str| {
            created
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_string()))
                .ok_or_else(|| format!("no {name} in `garage key create` output:\n{created}"))
        };
        self.key_id = field("Key ID")?;
        self.secret = field("Secret key")?;
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "wharf-bench"])?;
        Ok(())
    }

    pub fn credentials(&self) -> crate::s3::Credentials {
        crate::s3::Credentials {
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
            region: REGION.to_string(),
        }
    }

    /// The lines of `storage:` that name registry:2's s3 driver on this bucket under `root`:
    /// the same for wharf and distribution. `redirect.disable`: blobs stream through the
    /// registry, so a pull measures the registry and not the client fetching from Garage.
    pub fn s3_driver(&self, root: &str) -> String {
        format!(
            "  s3:\n    region: {REGION}\n    regionendpoint: http://{}\n    bucket: {BUCKET}\n    \
             accesskey: {}\n    secretkey: {}\n    rootdirectory: {root}\n    secure: false\n    \
             v4auth: true\n  redirect:\n    disable: true\n",
            self.s3_addr, self.key_id, self.secret
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
