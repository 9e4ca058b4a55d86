//! `wharf serve`: load the configuration, open the store, and serve the API until stopped.

use crate::auth::bcrypt_pool::BcryptPool;
use crate::auth::htpasswd::OnError;
use crate::auth::ratelimit::Limits;
use crate::auth::token::TokenVerifier;
use crate::auth::{Htpasswd, LoginLimiter, Policy};
use crate::autosecure::{self, Provisioned};
use crate::config::{self, Config, FilesystemStorage};
use crate::http::auth::{AuthState, Login, Scheme, TokenAuth, TokenServer};
use crate::http::{self, AppState, Urls};
use crate::registry::{self, Registry};

mod certificate;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Set when the container image's entrypoint (or its `registry` name) runs the server: the
    /// drop-in for registry:2, where the web UI is off unless `ui.enabled` turns it on.
    #[arg(skip)]
    pub from_entrypoint: bool,
    /// registry:2 configuration file (default: $REGISTRY_CONFIGURATION_PATH, else built-in defaults).
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:5000 or :5000 (overrides http.addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Storage root directory (overrides storage.filesystem.rootdirectory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Serve plain HTTP without authentication even on a non-loopback address. Without this,
    /// wharf started its own way sets up TLS and an admin account by itself when none is
    /// configured.
    #[arg(long)]
    pub insecure: bool,
    /// wharf's automatic TLS and admin account also when a registry:2 configuration file or
    /// REGISTRY_* variables configure the server (which otherwise serve plain HTTP, as
    /// registry:2 does); `false` turns the automatic set-up off everywhere.
    #[arg(long = "auto-tls", env = AUTO_TLS_VAR, value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_tls: Option<bool>,
    /// Extra DNS name or IP address for the automatic server certificate (repeatable, or
    /// comma-separated in WHARF_TLS_NAMES: the names and addresses clients use, which a
    /// container cannot see by itself).
    #[arg(long = "tls-name", value_name = "NAME", env = TLS_NAMES_VAR, value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Answer for NAME.local on the LAN (mDNS) and publish the registry there (DNS-SD); the
    /// automatic certificate covers NAME.local.
    #[arg(long, value_name = "NAME")]
    pub mdns: Option<String>,
    /// Refuse to start when clients would refuse the configured certificate (no serverAuth,
    /// no subjectAltName for the served name, expired...). Without it wharf warns and serves
    /// it, as registry:2 does.
    #[arg(long = "refuse-bad-certificate", env = certificate::REFUSE_VAR, value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub refuse_bad_certificate: Option<bool>,
}

/// Turns wharf's automatic TLS and account on (`true`) or off (`false`) whatever configures
/// the server; the container image's switch.
pub const AUTO_TLS_VAR: &str = "WHARF_AUTO_TLS";
/// Comma-separated names and addresses for the automatic certificate, e.g. the host's.
pub const TLS_NAMES_VAR: &str = "WHARF_TLS_NAMES";

/// Where the configuration comes from, kept to read it again on SIGHUP.
struct Source {
    path: Option<PathBuf>,
    addr: Option<String>,
    root: Option<PathBuf>,
    mdns: Option<String>,
    /// `ui.enabled` when the configuration leaves it out.
    ui_default: bool,
}

impl Source {
    /// The configuration file and `REGISTRY_*` variables, then the command line's overrides.
    fn load(&self) -> anyhow::Result<Config> {
        Ok(self.load_with_origin()?.0)
    }

    /// The configuration, and whether registry:2's configuration (file or variables) made it.
    fn load_with_origin(&self) -> anyhow::Result<(Config, bool)> {
        let loaded = config::load(self.path.as_deref())?;
        for w in &loaded.warnings {
            eprintln!("wharf: warning: {w}");
        }
        let registry2 = loaded.registry2;
        let mut cfg = loaded.config;
        if let Some(addr) = &self.addr {
            cfg.http.addr = addr.clone();
        }
        if let Some(root) = &self.root {
            // The flag names a directory: the filesystem driver, whatever the file says.
            cfg.storage.s3 = None;
            cfg.storage.azure = None;
            cfg.storage.filesystem = Some(FilesystemStorage {
                rootdirectory: root.clone(),
            });
        }
        cfg.ui.enabled.get_or_insert(self.ui_default);
        Ok((cfg, registry2))
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let source = Source {
        path: args.config,
        addr: args.addr,
        root: args.root,
        mdns: args.mdns,
        ui_default: !args.from_entrypoint,
    };
    let (cfg, registry2) = source.load_with_origin()?;
    init_logging(&cfg);
    let security = Security {
        registry2,
        insecure: args.insecure,
        auto_tls: args.auto_tls,
        names: crate::mdns::with_tls_name(source.mdns.as_deref(), args.tls_names)?,
        refuse_bad_certificate: args.refuse_bad_certificate.unwrap_or(false),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(cfg, security, source));
    // Requests still running past the drain deadline are cut here, not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The log filter, replaced when SIGHUP brings a new `log.level`.
static LOG_FILTER: std::sync::OnceLock<reload::Handle<EnvFilter, tracing_subscriber::Registry>> = std::sync::OnceLock::new();

fn log_filter(cfg: &Config) -> EnvFilter {
    let level = match cfg.log.level.as_str() {
        "" => "info",
        "warning" => "warn",
        other => other,
    };
    EnvFilter::new(format!("wharf={level}"))
}

fn init_logging(cfg: &Config) {
    let from_env = EnvFilter::try_from_env("WHARF_LOG").ok();
    let (filter, handle) = reload::Layer::new(from_env.clone().unwrap_or_else(|| log_filter(cfg)));
    // WHARF_LOG is an explicit override for debugging; a reload does not take it away.
    if from_env.is_none() {
        let _ = LOG_FILTER.set(handle);
    }
    let json = cfg.log.formatter == "json";
    // Colour codes only on a terminal: in a file or a container log they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let text = (!json).then(|| tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr));
    let json = json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr));
    tracing_subscriber::registry().with(filter).with(text).with(json).init();
}

/// What decides whether wharf sets up TLS and an account by itself.
struct Security {
    /// A registry:2 file or `REGISTRY_*` variables configured the server.
    registry2: bool,
    insecure: bool,
    /// `--auto-tls` / `WHARF_AUTO_TLS`: `Some(true)` asks for the automatic set-up whatever
    /// configured the server, `Some(false)` refuses it.
    auto_tls: Option<bool>,
    names: Vec<String>,
    /// `--refuse-bad-certificate`: a configured certificate clients refuse fails the start.
    refuse_bad_certificate: bool,
}

/// Whether TLS or auth is configured explicitly (then the automatic set-up never applies).
fn explicitly_secured(cfg: &Config) -> bool {
    cfg.http.tls.as_ref().is_some_and(|t| !t.certificate.is_empty()) || cfg.auth.htpasswd.is_some() || cfg.auth.token.is_some()
}

/// Sets up TLS and an admin account when the registry would otherwise be open to the network
/// (see `autosecure`). Explicit configuration always wins; `--insecure` opts out; a registry:2
/// configuration gets registry:2's plain HTTP unless `WHARF_AUTO_TLS=true` asks for more.
fn auto_security(cfg: &mut Config, s: &Security, addr: &std::net::SocketAddr) -> anyhow::Result<Option<Provisioned>> {
    if explicitly_secured(cfg) {
        return Ok(None);
    }
    let asked = s.auto_tls == Some(true);
    if !asked && autosecure::is_loopback_only(addr) {
        return Ok(None);
    }
    if s.insecure || s.auto_tls == Some(false) {
        let why = if s.insecure { "--insecure" } else { "WHARF_AUTO_TLS=false" };
        eprintln!("wharf: warning: {why}: serving plain HTTP without authentication on {addr}; anyone who can reach it can push and pull");
        return Ok(None);
    }
    if s.registry2 && !asked {
        eprintln!(
            "wharf: warning: serving plain HTTP without authentication on {addr}, as registry:2 does with this configuration (no http.tls); \
             for wharf's automatic TLS and admin password set {AUTO_TLS_VAR}=true (and {TLS_NAMES_VAR}=host,ip,... with the names clients use)"
        );
        return Ok(None);
    }
    let p = autosecure::provision(&cfg.root_directory(), autosecure::Names::local(&s.names))?;
    apply_provisioned(cfg, &p);
    Ok(Some(p))
}

/// Points the configuration at the automatically made certificate and password file.
fn apply_provisioned(cfg: &mut Config, p: &Provisioned) {
    cfg.http.tls = Some(crate::config::Tls {
        certificate: p.cert_path.display().to_string(),
        key: p.key_path.display().to_string(),
        ..Default::default()
    });
    cfg.auth.htpasswd = Some(crate::config::Htpasswd {
        realm: "wharf".into(),
        path: p.htpasswd_path.clone(),
        ..Default::default()
    });
}

/// What an operator needs once, right after an automatic set-up: where things are, the
/// password, and the commands to run on each client.
fn print_auto_security(p: &Provisioned, local: &std::net::SocketAddr) {
    let host = autosecure::advertised_host(local, &p.names);
    println!(
        "wharf: TLS and authentication were set up automatically (files in {})",
        p.dir.display()
    );
    let reset = format!("wharf htpasswd set {} {}", p.htpasswd_path.display(), autosecure::ADMIN_USER);
    match &p.new_admin_password {
        Some(pw) => {
            println!("wharf: created user {} with password {pw}", autosecure::ADMIN_USER);
            println!("wharf:   (shown only now; change it with: {reset})");
        }
        None => println!(
            "wharf: user {} exists (its password was shown when it was created; set a new one with: {reset})",
            autosecure::ADMIN_USER
        ),
    }
    println!("wharf: CA fingerprint (SHA-256): {}", p.ca_fingerprint);
    println!("wharf: on each client, run:");
    println!("wharf:   wharf trust {host} --fingerprint {}", p.ca_fingerprint);
    println!("wharf:   docker login {host} -u {}", autosecure::ADMIN_USER);
    match std::fs::read_to_string(&p.cert_path)
        .map_err(anyhow::Error::from)
        .and_then(|pem| Ok(crate::tls::certs::public_key_pin(&pem)?))
    {
        Ok(pin) => print_one_liner(&host, &pin),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the server certificate's key for the curl one-liner"),
    }
}

/// The command for clients without wharf: curl fetches the trust script (CA inside) pinned to
/// the server's public key, so neither needs a CA the client does not have yet.
fn print_one_liner(host: &str, pin: &str) {
    println!("wharf: on a client without wharf (curl and sh are enough; as root, drop the sudo):");
    println!(
        "wharf:   curl -fsSk --pinnedpubkey '{pin}' https://{host}{} | sudo sh",
        autosecure::TRUST_SCRIPT_PATH
    );
    println!("wharf:   (-k only skips the CA check the client cannot do yet: --pinnedpubkey makes curl refuse any server");
    println!("wharf:    without this server's key; the pin stays valid across renewals, which keep the key)");
}

/// The configured storage, and the root lock that keeps a filesystem root to one writer
/// (held until serve returns). Object storage is shared by design: no lock, and the index
/// caches only what other replicas cannot change.
struct OpenedStorage {
    store: crate::store::Storage,
    _root_lock: Option<crate::store::root_lock::RootLock>,
    /// What the start-up line says it is.
    shown: String,
}

async fn open_storage(cfg: &Config) -> anyhow::Result<OpenedStorage> {
    if let Some(object) = cfg.storage.object() {
        if cfg.http.secret.is_empty() {
            tracing::warn!(
                driver = object.key(),
                "storage is shared but http.secret is not set: replicas must share one secret (registry:2 requires it too)"
            );
        }
        let store = crate::store::object_storage(object, cfg.storage.redirect_disabled())
            .await
            .with_context(|| format!("cannot use {} (storage.{})", object.shown(), object.key()))?;
        let root = format!("/{}", object.rootdirectory().trim_matches('/'));
        return Ok(OpenedStorage {
            store,
            _root_lock: None,
            shown: format!("{} at {root}", object.shown()),
        });
    }
    let root = cfg.root_directory();
    let root_shown = std::fs::canonicalize(&root).unwrap_or(root.clone());
    // One writer per root, refused before anything is read or served.
    let lock = crate::store::root_lock::RootLock::acquire(crate::store::paths::Layout::new(&root).v2())?;
    // The catalog, tag lists and tag lookups are served from an index of the layout, read
    // once here and kept current by every write.
    let store = crate::store::filesystem(&root)
        .await
        .with_context(|| format!("cannot use {} as the storage root", root_shown.display()))?;
    Ok(OpenedStorage {
        store,
        _root_lock: Some(lock),
        shown: format!("filesystem at {}", root_shown.display()),
    })
}

async fn serve(mut cfg: Config, security: Security, source: Source) -> anyhow::Result<()> {
    // Bind first: a start that cannot listen must fail before it creates an account whose
    // password it would then never show.
    let addr = cfg.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("cannot listen on {addr}: the port is already in use; pick another with --addr HOST:PORT (or http.addr / REGISTRY_HTTP_ADDR)")
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        }
    })?;
    let local = listener.local_addr()?;

    let options = super::control::registry_options(&cfg)?;
    let storage = open_storage(&cfg).await?;
    let reg = Arc::new(Registry::new(storage.store.clone(), options));
    // On shared storage every replica watches for collections, whichever runs them.
    reg.gc_watch_start();
    let auto = auto_security(&mut cfg, &security, &local)?;
    let tls = tls_config(&cfg)?;
    if auto.is_none() && tls.is_some() {
        check_configured_certificate(&cfg, local, security.refuse_bad_certificate)?;
    }
    let auth = auth_state(&cfg, tls.is_some(), None)?;
    let _mdns = crate::mdns::start_for_serve(source.mdns.as_deref(), local.port(), tls.is_some())?;
    let purging = &cfg.storage.maintenance.uploadpurging;
    if purging.enabled {
        registry::purge::spawn(reg.clone(), purging.age, purging.interval, purging.dryrun);
    }
    let gc = &cfg.storage.maintenance.gc;
    if gc.enabled {
        let opts = registry::GcOptions {
            dry_run: gc.dryrun,
            delete_untagged: gc.deleteuntagged,
            delay: gc.delay,
        };
        registry::gc::schedule::spawn(reg.clone(), opts, gc.interval);
    }
    let debug = start_debug_server(&cfg, &reg).await?;
    if let Some(metrics) = &debug {
        let r = reg.clone();
        metrics.watch_uploads(move || r.upload_sessions_open());
        metrics.observe_gc(reg.clone());
    }
    // With object storage the queue is still local (each replica queues its own events): it
    // goes under the filesystem root directory unless the endpoint names a queue.path.
    let notifier = start_notifications(&cfg, &cfg.root_directory(), &reg, debug.as_ref(), local.port())?;
    // The control socket lives in a filesystem root; replicas on object storage have none.
    let v2 = cfg
        .storage
        .object()
        .is_none()
        .then(|| crate::store::paths::Layout::new(&cfg.root_directory()).v2().to_path_buf());
    if let Some(v2) = &v2 {
        start_control_channel(&cfg, v2, reg.clone(), tls.is_some())?;
    }
    let state = Arc::new(app_state(&cfg, reg, auth.map(Arc::new), tls.is_some(), auto.as_ref())?);
    let current = Arc::new(std::sync::RwLock::new(http::router(state.clone())));
    let app = live_router(current.clone());
    if let Some(p) = &auto {
        print_auto_security(p, &local);
        autosecure::password_shown(p);
        autosecure::spawn_renewal(p);
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("wharf: listening on {scheme}://{local} (storage: {})", storage.shown);
    tracing::info!(addr = %local, storage = %storage.shown, tls = tls.is_some(), "serving");
    let drain_deadline = cfg.http.drain_timeout()?;
    spawn_reload_on_hangup(Reloader {
        source,
        auto,
        running: cfg.clone(),
        state,
        current,
    });
    let opts = http::server::ServeOptions {
        tls,
        drain_deadline,
        header_timeout: cfg.http.timeouts.header,
        body_timeout: cfg.http.timeouts.body,
        observe: http::Observe {
            access_log: cfg.access_log_enabled(),
            metrics: debug,
            prefix: http_prefix(&cfg),
        },
    };
    let served = http::server::serve(listener, app, opts, shutdown_signal()).await;
    if let Some(v2) = &v2 {
        super::control::remove(v2);
    }
    if let Some(notifier) = notifier {
        notifier.stop().await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `notifications.endpoints`: each endpoint's queue and delivery, fed by the event stream.
/// `source.addr` is the host name and the listening port, as registry:2 reports it.
fn start_notifications(
    cfg: &Config,
    root: &std::path::Path,
    reg: &Registry,
    metrics: Option<&Arc<http::metrics::Metrics>>,
    port: u16,
) -> anyhow::Result<Option<crate::notify::Notifier>> {
    let Some(n) = cfg.notifications.as_ref().filter(|n| !n.endpoints.is_empty()) else {
        return Ok(None);
    };
    let families = metrics.map(|m| m.notifications.clone()).unwrap_or_default();
    let host = crate::tls::certs::hostname().unwrap_or_else(|| "localhost".into());
    let notifier = crate::notify::start(n, root, reg, &families, &format!("{host}:{port}"))?;
    Ok(Some(notifier))
}

/// Serves the API on the root's control socket (`super::control`) for CLI commands run on this
/// machine: no authentication (the socket is the registry user's alone) and no `http.prefix`.
/// A root where the socket cannot be made (a read-only filesystem) is served without it.
fn start_control_channel(cfg: &Config, v2: &std::path::Path, registry: Arc<Registry>, tls: bool) -> anyhow::Result<()> {
    let listener = match super::control::listen(v2) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(socket = %super::control::socket_path(v2).display(), error = %e,
                "no control socket: commands such as `wharf garbage-collect` cannot reach this server");
            return Ok(());
        }
    };
    let mut state = app_state(cfg, registry, None, tls, None)?;
    state.urls.prefix = String::new();
    let app = http::router(Arc::new(state));
    tokio::spawn(http::server::serve_control(listener, app, std::future::pending()));
    Ok(())
}

/// The API router `wharf serve` runs for `cfg` over `registry`, without automatic security,
/// the debug server or reloads: for embedding the server (and for tests that drive it in-process).
pub fn api_router(cfg: &Config, registry: Arc<Registry>) -> anyhow::Result<axum::Router> {
    let tls = cfg.http.tls.is_some();
    let auth = auth_state(cfg, tls, None)?;
    let state = app_state(cfg, registry, auth.map(Arc::new), tls, None)?;
    Ok(http::router(Arc::new(state)))
}

/// Everything a request handler sees that comes from the configuration.
fn app_state(
    cfg: &Config,
    registry: Arc<Registry>,
    auth: Option<Arc<AuthState>>,
    tls: bool,
    auto: Option<&Provisioned>,
) -> anyhow::Result<AppState> {
    let urls = Urls {
        host: Some(cfg.http.host.clone()).filter(|h| !h.is_empty()),
        relative: cfg.http.relativeurls,
        tls,
        prefix: http_prefix(cfg),
    };
    let ca_pem = match auto {
        Some(p) => Some(p.ca_pem.clone()),
        None => published_ca(cfg)?,
    };
    let trust_script = match &ca_pem {
        Some(pem) => Some(trust_script(pem)?),
        None => None,
    };
    Ok(AppState {
        registry,
        urls,
        auth,
        ca_pem,
        trust_script,
        headers: configured_headers(cfg)?,
        upload_states: crate::registry::upload_state::UploadStateKey::from_secret(&cfg.http.secret).map(Arc::new),
        ui: cfg.ui.enabled.unwrap_or(true),
    })
}

/// `wharf trust --script` for the published CA, as served at `autosecure::TRUST_SCRIPT_PATH`.
fn trust_script(ca_pem: &str) -> anyhow::Result<http::TrustScript> {
    let fingerprint = crate::tls::certs::fingerprint_sha256(ca_pem).context("the published CA")?;
    let pem = ca_pem.to_string();
    Ok(Arc::new(move |host: &str| super::trust::script_for(host, &pem, &fingerprint)))
}

/// `http.prefix` as a path prefix without its trailing slash (`/registry/` → `/registry`).
fn http_prefix(cfg: &Config) -> String {
    let p = cfg.http.prefix.trim().trim_end_matches('/');
    match p {
        "" => String::new(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    }
}

/// `http.headers`, checked once: a name or value HTTP cannot carry is an error naming it.
fn configured_headers(cfg: &Config) -> anyhow::Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>> {
    let mut out = Vec::new();
    for (name, values) in &cfg.http.headers {
        let header = axum::http::HeaderName::try_from(name.as_str()).with_context(|| format!("http.headers.{name}: not a header name"))?;
        for value in values {
            let v = axum::http::HeaderValue::try_from(value.as_str())
                .with_context(|| format!("http.headers.{name}: {value:?} is not a header value"))?;
            out.push((header.clone(), v));
        }
    }
    Ok(out)
}

/// `http.debug.addr`: registry:2's debug server with `/debug/health` (and the storage check of
/// `health.storagedriver`) and, with `http.debug.prometheus.enabled`, the metrics. Returns the
/// metrics the API server must feed.
/// What `/debug/health` checks: the bucket itself on s3 (a listing, as `serve` makes at start,
/// each within a few seconds), the root directory on a filesystem; with distribution's name.
fn storage_probe(cfg: &Config) -> anyhow::Result<(&'static str, http::metrics::StorageProbe)> {
    let Some(object) = cfg.storage.object() else {
        return Ok(("storagedriver_filesystem", http::metrics::filesystem_probe(cfg.root_directory())));
    };
    let bucket = Arc::new(crate::store::object::probe::BucketProbe::new(object, Duration::from_secs(5))?);
    let probe: http::metrics::StorageProbe = Arc::new(move || {
        let bucket = bucket.clone();
        Box::pin(async move { bucket.reachable().await.map_err(|e| e.to_string()) })
    });
    let name = match object.key() {
        "azure" => "storagedriver_azure",
        _ => "storagedriver_s3",
    };
    Ok((name, probe))
}

async fn start_debug_server(cfg: &Config, reg: &Arc<Registry>) -> anyhow::Result<Option<Arc<http::metrics::Metrics>>> {
    let Some(debug) = cfg.debug_server() else { return Ok(None) };
    let addr = config::resolve_listen_addr("http.debug.addr", &debug.addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (http.debug.addr)"))?;
    let local = listener.local_addr()?;
    let health = Arc::new(http::metrics::Health::default());
    let (enabled, interval, threshold) = cfg.storage_health();
    let check = http::metrics::StorageCheck {
        enabled,
        interval,
        threshold,
    };
    let (name, probe) = storage_probe(cfg)?;
    health.spawn_storage_check(name, probe, check);
    let totals: http::metrics::StorageTotals = {
        let reg = reg.clone();
        Arc::new(move || reg.stored_totals())
    };
    let metrics = debug
        .metrics_path
        .as_ref()
        .map(|_| http::metrics::Metrics::with_storage(Some(totals)));
    let router = http::metrics::debug_router(health, metrics.clone().zip(debug.metrics_path.clone()));
    println!(
        "wharf: debug server on http://{local} (/debug/health{})",
        debug.metrics_path.as_ref().map(|p| format!(", {p}")).unwrap_or_default()
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the debug server stopped");
        }
    });
    Ok(metrics)
}

/// A router that hands each request to whichever router is current, so a reload applies to
/// the next request, including on connections already open.
fn live_router(current: Arc<std::sync::RwLock<axum::Router>>) -> axum::Router {
    use tower::ServiceExt;
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let router = current.read().unwrap_or_else(|e| e.into_inner()).clone();
        async move { router.oneshot(req).await.unwrap_or_else(|never| match never {}) }
    })
}

/// What SIGHUP needs: where the configuration came from and what is running now.
struct Reloader {
    source: Source,
    auto: Option<Provisioned>,
    running: Config,
    state: Arc<AppState>,
    current: Arc<std::sync::RwLock<axum::Router>>,
}

/// Settings read once at start: a change to them is reported and waits for a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    if old.http.addr != new.http.addr {
        out.push("http.addr");
    }
    if differs(&old.http.tls, &new.http.tls) {
        out.push("http.tls (the certificate and key files themselves are re-read whenever they change)");
    }
    if differs(&old.http.draintimeout, &new.http.draintimeout) || differs(&old.http.timeouts, &new.http.timeouts) {
        out.push("http.draintimeout / http.timeouts");
    }
    if differs(&old.storage, &new.storage) {
        out.push("storage");
    }
    if old.log.formatter != new.log.formatter {
        out.push("log.formatter");
    }
    if old.notifications != new.notifications {
        out.push("notifications (the endpoints run with their queues from the start)");
    }
    out
}

impl Reloader {
    /// Reads the configuration again and builds the request state from it; any error leaves
    /// the running configuration in place.
    fn reload(&mut self) -> anyhow::Result<()> {
        let mut cfg = self.source.load()?;
        if let Some(p) = &self.auto {
            if !explicitly_secured(&cfg) {
                apply_provisioned(&mut cfg, p);
            }
        }
        let pending = restart_only_changes(&self.running, &cfg);
        // What cannot change at runtime keeps its running value.
        cfg.http.addr = self.running.http.addr.clone();
        cfg.http.tls = self.running.http.tls.clone();
        cfg.http.draintimeout = self.running.http.draintimeout.clone();
        cfg.http.timeouts = self.running.http.timeouts.clone();
        cfg.storage = self.running.storage.clone();
        cfg.log.formatter = self.running.log.formatter.clone();
        let tls = self.state.urls.tls;
        tls_config(&cfg)?;
        // A running server switches to a new password file only when it reads: the start
        // waits for a broken one (as registry:2 does), a reload keeps the working one.
        let password_files = cfg
            .auth
            .htpasswd
            .iter()
            .map(|h| &h.path)
            .chain(cfg.auth.token.iter().map(|t| &t.htpasswd));
        for path in password_files.filter(|p| !p.as_os_str().is_empty()) {
            Htpasswd::open(path)?;
        }
        // The login limiter and bcrypt pool carry over: a reload must not wipe a lockout.
        let auth = auth_state(&cfg, tls, self.state.auth.as_deref())?.map(Arc::new);
        let state = Arc::new(app_state(&cfg, self.state.registry.clone(), auth, tls, self.auto.as_ref())?);
        let filter = log_filter(&cfg);
        if let Some(handle) = LOG_FILTER.get() {
            handle.reload(filter).context("changing the log level")?;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = http::router(state.clone());
        // Changed failedlogins limits apply to the kept counts only now, with nothing left to fail.
        if let Some(login) = state.auth.as_deref().and_then(AuthState::login) {
            login.limiter.set_limits(login.limits);
        }
        self.state = state;
        self.running = cfg;
        for setting in pending {
            tracing::warn!(setting, "changed in the configuration but only applied at the next restart");
        }
        Ok(())
    }
}

/// SIGHUP reloads the configuration: log level, htpasswd (path and contents), access rules,
/// token settings and signing key, `http.host`/`relativeurls`/`trustedproxies` and the
/// published CA take effect for the next request.
fn spawn_reload_on_hangup(mut reloader: Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; configuration reload is unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let outcome = tokio::task::block_in_place(|| reloader.reload());
            match outcome {
                Ok(()) => {
                    tracing::info!("configuration reloaded");
                    println!("wharf: configuration reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "configuration reload refused; the running configuration stays");
                    eprintln!("wharf: configuration reload refused, the running configuration stays: {e:#}");
                }
            }
        }
    });
}

/// `http.tls`: certificate and key files (reloaded when they change), optional client CAs.
fn tls_config(cfg: &Config) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let Some(t) = cfg.http.tls.as_ref().filter(|t| !t.certificate.is_empty() || !t.key.is_empty()) else {
        return Ok(None);
    };
    if t.certificate.is_empty() || t.key.is_empty() {
        bail!("http.tls needs both certificate and key (REGISTRY_HTTP_TLS_CERTIFICATE and REGISTRY_HTTP_TLS_KEY)");
    }
    let client_cas: Vec<PathBuf> = t.clientcas.iter().map(PathBuf::from).collect();
    let minimum = crate::tls::server::MinimumTls::parse(&t.minimumtls)?.0;
    let config = crate::tls::server::server_config_with(t.certificate.as_ref(), t.key.as_ref(), &client_cas, minimum)?;
    Ok(Some(config))
}

/// Says at start what clients will make of the certificate the configuration names, the way
/// `wharf cert inspect` does; only `refuse` makes a refused certificate an error.
fn check_configured_certificate(cfg: &Config, local: std::net::SocketAddr, refuse: bool) -> anyhow::Result<()> {
    let Some(path) = cfg.http.tls.as_ref().map(|t| t.certificate.as_str()) else {
        return Ok(());
    };
    let host = certificate::served_host(cfg, local);
    let Some(report) = certificate::check(path, host.as_deref()) else {
        return Ok(());
    };
    eprint!("{}", certificate::describe(path, &report));
    if refuse && report.has_errors() {
        bail!("{path}: clients will refuse this certificate (see above); not starting, as --refuse-bad-certificate asks");
    }
    Ok(())
}

/// `http.tls.cafile`: the CA clients install with `wharf trust`, published at `autosecure::CA_PATH`.
fn published_ca(cfg: &Config) -> anyhow::Result<Option<String>> {
    let Some(path) = cfg.http.tls.as_ref().map(|t| t.cafile.as_str()).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    // Only the certificates are served, and a file with a key in it is refused (see ca_file).
    let pem =
        crate::tls::ca_file::published_certificates(std::path::Path::new(path)).map_err(|e| anyhow::anyhow!("http.tls.cafile: {e}"))?;
    crate::tls::certs::fingerprint_sha256(&pem).with_context(|| format!("http.tls.cafile: {path} holds no certificate"))?;
    Ok(Some(pem))
}

/// `auth.htpasswd`: Basic authentication against an Apache htpasswd file (bcrypt);
/// `auth.token`: bearer tokens (see `token_auth`). `previous` is the running state on a
/// reload, whose login limiter and bcrypt pool are kept.
fn auth_state(cfg: &Config, tls: bool, previous: Option<&AuthState>) -> anyhow::Result<Option<AuthState>> {
    let proxies =
        http::forwarded::TrustedProxies::parse(&cfg.http.trustedproxies).map_err(|e| anyhow::anyhow!("http.trustedproxies: {e}"))?;
    let kept = previous.and_then(AuthState::login);
    if let Some(t) = &cfg.auth.token {
        let scheme = Scheme::Token(Box::new(token_auth(t, cfg, tls, kept)?));
        return Ok(Some(AuthState {
            policy: Policy::new(cfg.access.as_ref())?,
            scheme,
            proxies,
        }));
    }
    let Some(h) = &cfg.auth.htpasswd else {
        if cfg.access.is_some() {
            eprintln!("wharf: warning: an access section is configured but no auth: every request is anonymous and allowed");
        }
        return Ok(None);
    };
    if h.path.as_os_str().is_empty() {
        bail!("auth.htpasswd.path is required (REGISTRY_AUTH_HTPASSWD_PATH)");
    }
    let realm = if h.realm.is_empty() {
        "Registry Realm".to_string()
    } else {
        h.realm.clone()
    };
    let options = LoginOptions {
        keep_on_error: h.keeponerror,
        limits: h.failedlogins.unwrap_or_default(),
    };
    Ok(Some(AuthState {
        policy: Policy::new(cfg.access.as_ref())?,
        scheme: Scheme::Basic(login(realm, &h.path, options, kept)?),
        proxies,
    }))
}

/// The wharf extensions of `auth.htpasswd` and `auth.token` that shape password checks.
struct LoginOptions {
    keep_on_error: bool,
    limits: crate::config::FailedLogins,
}

/// Password checks against `htpasswd`; `kept` is the running login on a reload: its limiter
/// (with its counts and lockouts, whatever the new limits) and its bcrypt pool go on.
fn login(realm: String, htpasswd: &std::path::Path, options: LoginOptions, kept: Option<&Login>) -> anyhow::Result<Login> {
    let f = options.limits;
    let limits = Limits {
        per_client: f.peraddress,
        per_user: f.peruser,
        window: f.window,
    };
    // The running limiter goes on, whatever the new limits: a reload must not wipe a lockout.
    let limiter = kept.map_or_else(|| Arc::new(LoginLimiter::new(limits)), |k| k.limiter.clone());
    let bcrypt = kept.map_or_else(|| Arc::new(BcryptPool::for_this_machine()), |k| k.bcrypt.clone());
    let on_error = if options.keep_on_error {
        OnError::KeepUsers
    } else {
        OnError::RefuseAll
    };
    Ok(Login {
        realm,
        htpasswd: Arc::new(Htpasswd::open_or_wait(htpasswd, on_error)),
        limiter,
        limits,
        bcrypt,
    })
}

/// `auth.token`: tokens from an external token server whose certificates are in
/// `rootcertbundle` (registry:2's setup), and/or from wharf itself when `htpasswd` is set (then
/// `realm` may be left empty: challenges point at this server's `/auth/token`).
fn token_auth(t: &crate::config::TokenAuth, cfg: &Config, tls: bool, kept: Option<&Login>) -> anyhow::Result<TokenAuth> {
    let own = !t.htpasswd.as_os_str().is_empty();
    let bundle = !t.rootcertbundle.as_os_str().is_empty();
    if !own && !bundle {
        bail!("auth.token needs rootcertbundle (REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE) to trust an external token server, or htpasswd (REGISTRY_AUTH_TOKEN_HTPASSWD) to let wharf issue tokens itself");
    }
    if !own {
        for (key, value) in [("realm", &t.realm), ("service", &t.service), ("issuer", &t.issuer)] {
            if value.is_empty() {
                bail!(
                    "auth.token.{key} is required with an external token server (REGISTRY_AUTH_TOKEN_{})",
                    key.to_uppercase()
                );
            }
        }
    }
    let or_wharf = |v: &str| if v.is_empty() { "wharf".to_string() } else { v.to_string() };
    let (service, issuer) = (or_wharf(&t.service), or_wharf(&t.issuer));
    let mut verifier = TokenVerifier::new(&issuer, &service);
    if bundle {
        let n = verifier.trust_bundle_file(&t.rootcertbundle).context("auth.token.rootcertbundle")?;
        tracing::info!(keys = n, bundle = %t.rootcertbundle.display(), "trusting token signing keys");
    }
    let server = if own {
        // Kept in a file, so a restart does not void the tokens issued (`wharf token rotate-key`
        // replaces it).
        let key_path = super::token::signing_key_path(cfg);
        let signer = super::token::load_or_create(&key_path).context("the token signing key (auth.token.signingkey)")?;
        tracing::info!(key = %key_path.display(), kid = signer.key_id(), "token signing key");
        verifier.trust_issuer(&signer);
        let options = LoginOptions {
            keep_on_error: t.keeponerror,
            limits: t.failedlogins.unwrap_or_default(),
        };
        // The token endpoint's own Basic challenge names the service it issues tokens for.
        Some(TokenServer {
            signer,
            login: login(service.clone(), &t.htpasswd, options, kept)?,
            ttl: crate::auth::token::DEFAULT_TTL,
        })
    } else {
        None
    };
    let urls = Urls {
        host: Some(cfg.http.host.clone()).filter(|h| !h.is_empty()),
        relative: false,
        tls,
        prefix: http_prefix(cfg),
    };
    Ok(TokenAuth {
        realm: t.realm.clone(),
        service,
        issuer,
        verifier,
        server,
        urls,
    })
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
