//! Azurite, Microsoft's Azure Storage emulator (the npm package `azurite`), as the Azure Blob
//! Storage under test: `azurite-blob` on a free loopback port with its data in a temporary
//! directory, its telemetry off, the well-known development account; stopped by PID on drop.
//! scripts/test.sh installs it with npm into target/test-node (`WHARF_NODE_MODULES` overrides),
//! with `@azure/storage-blob`, Microsoft's own client, which makes the tests' containers.
#![allow(dead_code)]

use super::images::{describe, run, stop_child, wait_until};
use super::Wharf;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Azurite's development account and its key (published with the emulator).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const CONTAINER: &str = "registry";

/// Where scripts/test.sh installs the node packages.
pub fn node_modules() -> PathBuf {
    std::env::var_os("WHARF_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-node/node_modules"))
}

/// `azurite-blob` and the client library, or None (after printing SKIP) outside CI; panics in CI.
fn installed() -> Option<PathBuf> {
    if !super::require_tool("node") {
        return None;
    }
    let bin = node_modules().join(".bin/azurite-blob");
    let client = node_modules().join("@azure/storage-blob/package.json");
    if bin.exists() && client.exists() {
        return Some(bin);
    }
    assert!(
        !super::in_ci(),
        "azurite and @azure/storage-blob are required in CI: scripts/test.sh installs them into {}",
        node_modules().display()
    );
    eprintln!("SKIP: azurite not in {} (run scripts/test.sh)", node_modules().display());
    None
}

pub struct Azurite {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Azurite on a free loopback port, with container [`CONTAINER`] made.
    pub fn start() -> Option<Azurite> {
        let bin = installed()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::free_port();
        let log = dir.path().join("azurite.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--disableTelemetry",
            "--location",
        ])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", describe(&cmd)));
        let mut azurite = Azurite {
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            azurite.stop();
            panic!("azurite did not listen on {port}:\n{}", azurite.log());
        }
        azurite.create_container(CONTAINER);
        Some(azurite)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The account's blob service, as `storage.azure.serviceurl` names it.
    pub fn service_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Makes container `name` with Microsoft's client.
    pub fn create_container(&self, name: &str) {
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={};",
            self.service_url()
        );
        let script = "const { BlobServiceClient } = require('@azure/storage-blob');\
             BlobServiceClient.fromConnectionString(process.argv[1]).getContainerClient(process.argv[2]).create()\
             .then(() => process.exit(0), e => { console.error(e.message); process.exit(1); });";
        run(Command::new("node")
            .env("NODE_PATH", node_modules())
            .args(["-e", script, &connection, name])
            .stdin(Stdio::null()));
    }

    /// `storage.azure` on `container` under `root`, as registry:2's variables.
    pub fn wharf_env(&self, container: &str, root: &str) -> Vec<(String, String)> {
        [
            ("REGISTRY_STORAGE", "azure".to_string()),
            ("REGISTRY_STORAGE_AZURE_ACCOUNTNAME", ACCOUNT.to_string()),
            ("REGISTRY_STORAGE_AZURE_ACCOUNTKEY", ACCOUNT_KEY.to_string()),
            ("REGISTRY_STORAGE_AZURE_CONTAINER", container.to_string()),
            ("REGISTRY_STORAGE_AZURE_SERVICEURL", self.service_url()),
            ("REGISTRY_STORAGE_AZURE_ROOTDIRECTORY", root.to_string()),
            ("REGISTRY_HTTP_SECRET", "azurite-test-shared-secret".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `wharf serve` on [`CONTAINER`] under `root`, with `extra` settings, on a free loopback port.
    pub fn serve(&self, root: &str, extra: &[(&str, &str)]) -> Wharf {
        let mut env = self.wharf_env(CONTAINER, root);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let w = Wharf::launch_args(&[], &["--addr", "127.0.0.1:0"], &env);
        assert!(
            w.output()
                .contains(&format!("storage: azure container {CONTAINER} of account {ACCOUNT}")),
            "the start-up line names the container:\n{}",
            w.output()
        );
        w
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}
