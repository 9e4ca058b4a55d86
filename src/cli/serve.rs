//! `wharf serve`: load the configuration, open the store, and serve the API until stopped.

use crate::config::{self, Config, FilesystemStorage};
use crate::http::{self, AppState, Urls};
use crate::registry::{self, Registry};
use crate::store::fs::FsStore;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// registry:2 configuration file (default: $REGISTRY_CONFIGURATION_PATH, else built-in defaults).
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:5000 or :5000 (overrides http.addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Storage root directory (overrides storage.filesystem.rootdirectory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = config::load(args.config.as_deref())?;
    for w in &loaded.warnings {
        eprintln!("wharf: warning: {w}");
    }
    let mut cfg = loaded.config;
    if let Some(addr) = args.addr {
        cfg.http.addr = addr;
    }
    if let Some(root) = args.root {
        cfg.storage.filesystem = Some(FilesystemStorage { rootdirectory: root });
    }
    init_logging(&cfg);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(cfg))
}

fn init_logging(cfg: &Config) {
    let level = match cfg.log.level.as_str() {
        "" => "info",
        "warning" => "warn",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("wharf={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log.formatter == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    if cfg.http.tls.as_ref().is_some_and(|t| !t.certificate.is_empty()) {
        bail!("http.tls is configured, but this wharf build serves plain HTTP only; remove http.tls (REGISTRY_HTTP_TLS_*) or terminate TLS in front of wharf");
    }
    if cfg.auth.htpasswd.is_some() || cfg.auth.token.is_some() {
        bail!("auth is configured, but this wharf build has no authentication yet; refusing to serve the registry without it");
    }
    let addr = cfg.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("cannot listen on {addr}: the port is already in use; pick another with --addr HOST:PORT (or http.addr / REGISTRY_HTTP_ADDR)")
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        }
    })?;
    let local = listener.local_addr()?;

    let root = cfg.root_directory();
    let store = FsStore::new(&root).with_context(|| format!("cannot use {} as the storage root", root.display()))?;
    let root_shown = std::fs::canonicalize(&root).unwrap_or(root);
    let options = registry::Options {
        delete_enabled: cfg.storage.delete.enabled,
        read_only: cfg.storage.maintenance.readonly.enabled,
    };
    let reg = Arc::new(Registry::new(Arc::new(store), options));
    let purging = &cfg.storage.maintenance.uploadpurging;
    if purging.enabled {
        registry::purge::spawn(reg.clone(), purging.age, purging.interval, purging.dryrun);
    }
    let urls = Urls {
        host: Some(cfg.http.host.clone()).filter(|h| !h.is_empty()),
        relative: cfg.http.relativeurls,
        tls: false,
    };
    let app = http::router(Arc::new(AppState { registry: reg, urls }));

    println!(
        "wharf: listening on http://{local} (storage: filesystem at {})",
        root_shown.display()
    );
    tracing::info!(addr = %local, root = %root_shown.display(), "serving");
    let opts = http::server::ServeOptions {
        tls: None,
        drain_deadline: Duration::from_secs(30),
    };
    http::server::serve(listener, app, opts, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C; in-flight requests then finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
