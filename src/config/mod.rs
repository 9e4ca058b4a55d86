//! The registry configuration: registry:2-compatible YAML (`version: 0.1`), `REGISTRY_*`
//! environment overrides, and validation. Field names follow registry:2's config keys so an
//! existing `config.yml` works unchanged.
//!
//! Loading goes file → generic YAML tree → `REGISTRY_*` overrides (`env`) → checks (`validate`)
//! → `Config`. Working on the tree rather than on `Config` is what lets a variable such as
//! `REGISTRY_STORAGE=filesystem` replace a whole section, exactly as registry:2 does.

mod env;
pub mod notifications;
mod schema;
mod validate;

pub use env::PATH_VAR;
pub use validate::is_secret_key;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where data goes when nothing says otherwise (registry:2 uses /var/lib/registry in its image;
/// a binary run by hand keeps its data next to where it was started).
pub const DEFAULT_ROOT: &str = "./data";
/// wharf started its own way (no registry:2 file or variable) binds loopback, so a first run
/// exposes nothing.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
/// registry:2's default, used whenever a registry:2 file or `REGISTRY_*` variable configures
/// the server: every address, port 5000 (what a published container port must reach).
pub const REGISTRY2_DEFAULT_ADDR: &str = ":5000";
/// The only configuration version registry:2 (and so wharf) understands.
pub const VERSION: &str = "0.1";

/// Why a configuration cannot be used. Every variant names what to fix: the file, the key, or
/// the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("configuration is not valid YAML: {0}")]
    Yaml(String),
    #[error("version: {0}")]
    Version(String),
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: invalid value {value}: {reason}{}", origin_note(origin))]
    Invalid {
        key: String,
        value: String,
        reason: String,
        origin: Option<String>,
    },
}

fn origin_note(origin: &Option<String>) -> String {
    origin.as_ref().map(|var| format!(" (set by {var})")).unwrap_or_default()
}

/// A loaded configuration with what the loader noticed on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and unrecognized `REGISTRY_*` variables, which registry:2 also ignores.
    pub warnings: Vec<String>,
    /// The file read, if any.
    pub source: Option<PathBuf>,
    /// Whether registry:2's configuration (a file, or any `REGISTRY_*` variable) set the server
    /// up: then wharf behaves as registry:2 does with it (plain HTTP without `http.tls`, `:5000`,
    /// no generated account) unless wharf's automatic set-up is asked for.
    pub registry2: bool,
}

/// Loads the configuration: the file at `path`, else at `REGISTRY_CONFIGURATION_PATH`, else
/// built-in defaults; then the process's `REGISTRY_*` variables; then validation.
pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let from_env = env.iter().find(|(k, v)| k == PATH_VAR && !v.is_empty());
    let source = path.map(Path::to_path_buf).or_else(|| from_env.map(|(_, v)| PathBuf::from(v)));
    let text = match &source {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|error| ConfigError::Io { path: p.clone(), error })?),
        None => None,
    };
    let mut loaded = load_from(text.as_deref(), &env)?;
    loaded.source = source;
    Ok(loaded)
}

/// Loads from a configuration file's text (`None`: no file, start from defaults) and an
/// environment given as name/value pairs.
pub fn load_from(yaml: Option<&str>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let mut tree = match yaml {
        Some(text) => parse_file(text)?,
        None => Value::Mapping(Mapping::new()),
    };
    let applied = env::apply(&mut tree, env)?;
    let mut warnings = validate::check(&mut tree, &applied.origins)?;
    warnings.extend(applied.warnings);
    warnings.extend(validate::unimplemented(&tree));
    let registry2 = yaml.is_some() || env.iter().any(|(k, _)| k.starts_with(env::PREFIX));
    default_storage(&mut tree);
    default_addr(&mut tree, registry2);
    let mut config: Config = serde_yaml_ng::from_value(tree).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    if config.version.is_empty() {
        config.version = VERSION.into();
    }
    Ok(Loaded {
        config,
        warnings,
        source: None,
        registry2,
    })
}

/// registry:2 listens on `:5000` when `http.addr` is not set; wharf started without registry:2
/// configuration keeps to loopback (`DEFAULT_ADDR`, the serde default).
fn default_addr(tree: &mut Value, registry2: bool) {
    if !registry2 {
        return;
    }
    let Some(root) = tree.as_mapping_mut() else { return };
    let http = root.entry(Value::from("http")).or_insert(Value::Mapping(Mapping::new()));
    if let Some(http) = http.as_mapping_mut() {
        let addr = http.entry(Value::from("addr")).or_insert(Value::Null);
        if addr.as_str().is_none_or(str::is_empty) {
            *addr = Value::from(REGISTRY2_DEFAULT_ADDR);
        }
    }
}

/// Parses a configuration file and checks its version, before any variable applies.
fn parse_file(text: &str) -> Result<Value, ConfigError> {
    let mut tree: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    // Go's YAML decoder honours `<<` merge keys; serde_yaml_ng leaves them to the caller.
    tree.apply_merge().map_err(|e| ConfigError::Yaml(e.to_string()))?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    let Some(root) = tree.as_mapping_mut() else {
        return Err(ConfigError::Yaml("the document must be a mapping of keys".into()));
    };
    let version = match root.get("version") {
        None | Some(Value::Null) => return Err(ConfigError::Version(format!("missing; the file must declare `version: {VERSION}`"))),
        // `version: 0.1` is a YAML float; registry:2 reads its text.
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => validate::show(other),
    };
    if version != VERSION {
        return Err(ConfigError::Version(format!(
            "unsupported version {version:?} (expected {VERSION})"
        )));
    }
    root.insert(Value::from("version"), Value::from(VERSION));
    // `storage: filesystem` names a driver without parameters; variables walk into the map form.
    for key in ["storage", "auth"] {
        if let Some(v) = root.get_mut(key) {
            *v = env::driver_shorthand(v.clone());
        }
    }
    Ok(tree)
}

/// registry:2 refuses to start without a storage driver; wharf uses the filesystem at its
/// default root instead, and says so in the effective configuration.
fn default_storage(tree: &mut Value) {
    let Some(root) = tree.as_mapping_mut() else { return };
    let storage = root.entry(Value::from("storage")).or_insert(Value::Mapping(Mapping::new()));
    let Some(storage) = storage.as_mapping_mut() else { return };
    let sections = ["delete", "maintenance", "cache", "redirect"];
    if storage.keys().all(|k| k.as_str().is_some_and(|k| sections.contains(&k))) {
        storage.insert(Value::from("filesystem"), Value::Mapping(Mapping::new()));
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub version: String,
    pub log: Log,
    pub storage: Storage,
    pub http: Http,
    /// Keyed by auth scheme (`htpasswd`, `token`); registry:2 allows at most one.
    pub auth: Auth,
    // Sections registry:2 has and wharf accepts but does not act on (yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middleware: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<notifications::Notifications>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// wharf's access control (registry:2 ignores the key): see `auth::policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<crate::auth::policy::AccessConfig>,
    /// wharf's web UI at `/ui/` (registry:2 ignores the key).
    #[serde(default, skip_serializing_if = "Ui::is_default")]
    pub ui: Ui,
}

/// `ui`: the web UI. `enabled` left out: on for `wharf serve`, off in the container image's
/// entrypoint, which serves what registry:2 serves and nothing more unless asked.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Ui {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl Ui {
    fn is_default(&self) -> bool {
        *self == Ui::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Log {
    pub level: String,
    pub formatter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accesslog: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reportcaller: Option<Value>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            formatter: "text".into(),
            accesslog: None,
            fields: None,
            hooks: None,
            reportcaller: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Storage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemStorage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStorage>,
    pub delete: Delete,
    pub maintenance: Maintenance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Value>,
}

/// registry:2's `storage.s3` (see `store::object::settings` for what each key does).
/// Numbers stay YAML values: registry:2 takes them as numbers or strings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct S3Storage {
    pub accesskey: String,
    pub secretkey: String,
    pub sessiontoken: String,
    pub region: String,
    pub regionendpoint: String,
    pub forcepathstyle: Option<bool>,
    pub bucket: String,
    pub rootdirectory: String,
    pub secure: Option<bool>,
    pub skipverify: bool,
    pub v4auth: Option<bool>,
    pub chunksize: Option<Value>,
    pub encrypt: bool,
    pub keyid: String,
    pub storageclass: String,
    pub multipartcopychunksize: Option<Value>,
    pub multipartcopymaxconcurrency: Option<Value>,
    pub multipartcopythresholdsize: Option<Value>,
    pub useragent: String,
    pub usedualstack: Option<bool>,
    pub accelerate: Option<bool>,
    pub objectacl: String,
    pub loglevel: Option<Value>,
}

/// registry:2's `storage.azure` (distribution 2.8's keys and main's `serviceurl`,
/// `credentials`, `skipverify`, `max_retries`, `retry_delay`; see `store::object::azure`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AzureStorage {
    pub accountname: String,
    pub accountkey: String,
    pub container: String,
    pub realm: String,
    pub rootdirectory: String,
    pub serviceurl: String,
    pub credentials: AzureCredentials,
    pub skipverify: bool,
    pub max_retries: Option<Value>,
    pub retry_delay: Option<String>,
}

/// `storage.azure.credentials` (distribution main); only `shared_key` is served by wharf.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AzureCredentials {
    #[serde(rename = "type")]
    pub kind: String,
    pub clientid: String,
    pub tenantid: String,
    pub secret: String,
}

/// The object-storage driver configured, if any: every object-storage path below the config
/// goes through this, so that S3 and Azure share it.
#[derive(Debug, Clone, Copy)]
pub enum ObjectStorage<'a> {
    S3(&'a S3Storage),
    Azure(&'a AzureStorage),
}

impl ObjectStorage<'_> {
    /// The driver's key under `storage` (distribution's health check is `storagedriver_<key>`).
    pub fn key(&self) -> &'static str {
        match self {
            ObjectStorage::S3(_) => "s3",
            ObjectStorage::Azure(_) => "azure",
        }
    }

    pub fn rootdirectory(&self) -> &str {
        match self {
            ObjectStorage::S3(s) => &s.rootdirectory,
            ObjectStorage::Azure(a) => &a.rootdirectory,
        }
    }

    /// The bucket or container, as the start-up line and errors name it.
    pub fn shown(&self) -> String {
        match self {
            ObjectStorage::S3(s) => format!("s3 bucket {}", s.bucket),
            ObjectStorage::Azure(a) => format!("azure container {} of account {}", a.container, a.accountname),
        }
    }
}

impl Storage {
    /// The object storage configured (`storage.s3` or `storage.azure`), None on a filesystem.
    pub fn object(&self) -> Option<ObjectStorage<'_>> {
        match (&self.s3, &self.azure) {
            (Some(s3), _) => Some(ObjectStorage::S3(s3)),
            (None, Some(azure)) => Some(ObjectStorage::Azure(azure)),
            (None, None) => None,
        }
    }

    /// `storage.redirect.disable`: blob GETs are then streamed by the registry rather than
    /// redirected to the object store (registry:2's default for S3 is to redirect).
    pub fn redirect_disabled(&self) -> bool {
        let disable = self.redirect.as_ref().and_then(|r| r.get("disable"));
        match disable {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FilesystemStorage {
    pub rootdirectory: PathBuf,
}

impl Default for FilesystemStorage {
    fn default() -> Self {
        FilesystemStorage {
            rootdirectory: PathBuf::from(DEFAULT_ROOT),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Delete {
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Maintenance {
    pub uploadpurging: UploadPurging,
    pub readonly: ReadOnly,
    /// wharf's retention policies and protected tags (registry:2 ignores the key).
    pub retention: Retention,
    /// wharf's online garbage collection (registry:2 ignores unknown keys here).
    pub gc: GarbageCollection,
}

/// `storage.maintenance.retention`, modelled on zot's `storage.retention`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Retention {
    /// Runs only report what they would delete.
    pub dryrun: bool,
    /// Untagged manifests younger than this are spared (a Go duration; default 1h).
    pub delay: Option<String>,
    pub policies: Vec<RetentionPolicy>,
    /// Tags that are never moved nor deleted.
    pub protected: Vec<ProtectedTags>,
}

/// One policy: the first whose `repositories` match a repository applies to it.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct RetentionPolicy {
    /// Repository patterns, as in `access.rules` (`*` one component, `**` any depth).
    pub repositories: Vec<String>,
    /// Also delete manifests no tag (and no tagged index) reaches.
    pub deleteuntagged: bool,
    /// A tag is kept when any rule keeps it; with no rules every tag is kept.
    pub keeptags: Vec<KeepTags>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct KeepTags {
    /// Tag globs the rule is about (`v1.*`, `*-prod`); none: every tag.
    pub patterns: Vec<String>,
    pub mostrecentlypushedcount: Option<usize>,
    pub mostrecentlypulledcount: Option<usize>,
    /// A Go duration (`720h`).
    pub pushedwithin: Option<String>,
    pub pulledwithin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct ProtectedTags {
    pub repositories: Vec<String>,
    /// Tag globs; none: every tag of those repositories.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GarbageCollection {
    /// Collect on a schedule inside the server.
    pub enabled: bool,
    /// Unreferenced content younger than this is kept (default 1h).
    #[serde(with = "duration_str")]
    pub delay: Duration,
    /// How often the scheduled collection runs (default 24h).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    /// Scheduled collections also delete untagged manifests.
    pub deleteuntagged: bool,
    /// Scheduled collections only report.
    pub dryrun: bool,
    /// Shared storage (replicas): how long a collection's candidates are published before it
    /// deletes any (default 2m; `registry::gc::shared`).
    #[serde(with = "duration_str")]
    pub window: Duration,
    /// Shared storage: how often every replica lists the running collections (default 5s).
    #[serde(with = "duration_str")]
    pub poll: Duration,
    /// Shared storage: what the window's end is kept clear of, for a store write's time and
    /// the drift of clocks (default 30s).
    #[serde(with = "duration_str")]
    pub margin: Duration,
    /// Shared storage: a collection still running after this is abandoned by its collector and
    /// ignored by the replicas (default 6h).
    #[serde(with = "duration_str")]
    pub maxrunage: Duration,
}

impl Default for GarbageCollection {
    fn default() -> Self {
        GarbageCollection {
            enabled: false,
            delay: crate::registry::gc::DEFAULT_DELAY,
            interval: Duration::from_secs(24 * 3600),
            deleteuntagged: false,
            dryrun: false,
            window: crate::registry::gc::shared::Timing::DEFAULT.window,
            poll: crate::registry::gc::shared::Timing::DEFAULT.poll,
            margin: crate::registry::gc::shared::Timing::DEFAULT.margin,
            maxrunage: crate::registry::gc::shared::Timing::DEFAULT.max_run_age,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ReadOnly {
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadPurging {
    pub enabled: bool,
    /// Uploads older than this are removed (registry:2 default 168h).
    #[serde(with = "duration_str")]
    pub age: Duration,
    /// How often the purge runs (registry:2 default 24h).
    #[serde(with = "duration_str")]
    pub interval: Duration,
    pub dryrun: bool,
}

impl Default for UploadPurging {
    fn default() -> Self {
        UploadPurging {
            enabled: true,
            age: Duration::from_secs(168 * 3600),
            interval: Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Http {
    pub addr: String,
    pub prefix: String,
    pub host: String,
    /// Signs the `_state` of upload Locations, as registry:2 does (`registry::upload_state`).
    pub secret: String,
    pub relativeurls: bool,
    /// wharf's extension: reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For`
    /// names the client, for the failed-login limits. Empty: the TCP peer is the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trustedproxies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draintimeout: Option<Value>,
    /// wharf's extension: how long a client may take to send its request, so slow clients
    /// cannot hold connections (registry:2 sets no such limits).
    pub timeouts: Timeouts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2: Option<Value>,
}

/// registry:2 drains for `http.draintimeout` only when it is set; wharf always drains, for
/// this long unless configured.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl Http {
    /// `http.draintimeout`: how long in-flight requests get to finish after SIGTERM.
    pub fn drain_timeout(&self) -> Result<Duration, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: "http.draintimeout".into(),
            value: format!("{:?}", self.draintimeout),
            reason,
            origin: None,
        };
        match &self.draintimeout {
            None | Some(Value::Null) => Ok(DEFAULT_DRAIN_TIMEOUT),
            Some(Value::String(s)) => duration_str::parse_go(s).map_err(invalid),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Duration::from_nanos)
                .ok_or_else(|| invalid(format!("{n} is not a duration"))),
            Some(_) => Err(invalid("not a duration like 30s".into())),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            addr: DEFAULT_ADDR.into(),
            prefix: String::new(),
            host: String::new(),
            secret: String::new(),
            relativeurls: false,
            trustedproxies: Vec::new(),
            tls: None,
            headers: BTreeMap::new(),
            net: None,
            draintimeout: None,
            timeouts: Timeouts::default(),
            debug: None,
            http2: None,
        }
    }
}

/// `http.timeouts`: limits on slow clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// The request line and headers must arrive within this; a connection idle this long
    /// between requests is closed.
    #[serde(with = "duration_str")]
    pub header: Duration,
    /// A request body that sends nothing for this long is abandoned and its connection closed;
    /// so is a connection whose client reads nothing of a response for this long.
    #[serde(with = "duration_str")]
    pub body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Tls {
    pub certificate: String,
    pub key: String,
    pub clientcas: Vec<String>,
    pub minimumtls: String,
    /// wharf's extension: a CA certificate (PEM) to publish at `/.well-known/wharf/ca.crt`, so
    /// `wharf trust` can install it on clients (automatic security publishes its own CA).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cafile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphersuites: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub letsencrypt: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Auth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<Htpasswd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenAuth>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Htpasswd {
    pub realm: String,
    pub path: PathBuf,
    /// wharf's extension: when the file goes missing or becomes invalid, keep the users loaded
    /// before instead of refusing every login.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keeponerror: bool,
    /// wharf's extension: the failed-login limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failedlogins: Option<FailedLogins>,
}

/// `failedlogins` (under `auth.htpasswd` or `auth.token`): how many failed logins are allowed
/// before attempts are refused for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedLogins {
    /// Per client address and user name (0: no limit).
    pub peraddress: u32,
    /// Per user name, from all addresses together (0: no limit).
    pub peruser: u32,
    /// The counting window, and how long a lockout lasts.
    #[serde(with = "duration_str")]
    pub window: Duration,
}

impl Default for FailedLogins {
    /// Five tries a minute per client and user stops guessing without bothering someone who
    /// mistyped; fifty a minute per user, from everywhere, bounds guessing from many addresses.
    fn default() -> Self {
        FailedLogins {
            peraddress: 5,
            peruser: 50,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
    /// wharf extension (registry:2 ignores unknown token parameters): an htpasswd file makes
    /// wharf its own token server at `/auth/token`, logging users in against it.
    pub htpasswd: PathBuf,
    /// wharf extension: as `auth.htpasswd.keeponerror`, for the token server's htpasswd file.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keeponerror: bool,
    /// wharf extension: as `auth.htpasswd.failedlogins`, for the token server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failedlogins: Option<FailedLogins>,
    /// wharf extension: where the token server keeps its signing key (PKCS#8 PEM); default
    /// `<storage root>/wharf/token-signing.key`, created on first start.
    #[serde(skip_serializing_if = "crate::config::path_is_empty")]
    pub signingkey: PathBuf,
}

pub(crate) fn path_is_empty(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

impl Config {
    /// The filesystem storage root, whichever way it was configured.
    pub fn root_directory(&self) -> PathBuf {
        self.storage
            .filesystem
            .as_ref()
            .map(|f| f.rootdirectory.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// The socket address `http.addr` names. As in registry:2, `:5000` means every interface;
    /// a host name is resolved, preferring IPv4 (`localhost:5000` is 127.0.0.1:5000).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let addr = if self.http.addr.is_empty() { DEFAULT_ADDR } else { &self.http.addr };
        resolve_listen_addr("http.addr", addr)
    }

    /// `http.debug`: registry:2's debug server, when `addr` is set.
    pub fn debug_server(&self) -> Option<DebugServer> {
        let debug = self.http.debug.as_ref()?;
        let addr = debug.get("addr").and_then(Value::as_str).filter(|a| !a.is_empty())?;
        let prometheus = debug.get("prometheus");
        let enabled = prometheus.and_then(|p| p.get("enabled")).is_some_and(truthy);
        let path = prometheus
            .and_then(|p| p.get("path"))
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/metrics");
        Some(DebugServer {
            addr: addr.to_string(),
            metrics_path: enabled.then(|| path.to_string()),
        })
    }

    /// `health.storagedriver`: (enabled, interval, threshold) with registry:2's defaults (off;
    /// every 10 s; unhealthy at the first failure).
    pub fn storage_health(&self) -> (bool, Duration, u32) {
        let check = self.health.as_ref().and_then(|h| h.get("storagedriver"));
        let enabled = check.and_then(|c| c.get("enabled")).is_some_and(truthy);
        let interval = match check.and_then(|c| c.get("interval")) {
            Some(Value::String(s)) => duration_str::parse_go(s).ok(),
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_nanos),
            _ => None,
        }
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(10));
        let threshold = check
            .and_then(|c| c.get("threshold"))
            .and_then(Value::as_u64)
            .map_or(1, |t| t.clamp(1, u32::MAX as u64) as u32);
        (enabled, interval, threshold)
    }

    /// Whether requests are logged (`log.accesslog.disabled` turns it off).
    pub fn access_log_enabled(&self) -> bool {
        !self.log.accesslog.as_ref().and_then(|a| a.get("disabled")).is_some_and(truthy)
    }

    /// The configuration as YAML with every secret (`http.secret`, passwords, keys of
    /// services) replaced by `<redacted>`: safe to print or log.
    pub fn redacted_yaml(&self) -> String {
        let mut tree = serde_yaml_ng::to_value(self).unwrap_or(Value::Null);
        redact(&mut tree);
        redact_endpoint_headers(&mut tree);
        serde_yaml_ng::to_string(&tree).unwrap_or_default()
    }
}

/// The socket address a listen address such as `:5000`, `0.0.0.0:5000` or `localhost:5000`
/// names (`key` is the configuration key, for errors).
pub fn resolve_listen_addr(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: key.into(),
        value: format!("{addr:?}"),
        reason,
        origin: None,
    };
    let (host, port) = validate::split_host_port(addr).ok_or_else(|| invalid("expected host:port or :port".into()))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {host}: {e}")))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| invalid(format!("{host} resolves to no address")))
}

/// `http.debug` as wharf serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugServer {
    pub addr: String,
    /// Where the metrics are served, when `http.debug.prometheus.enabled`.
    pub metrics_path: Option<String>,
}

/// A YAML boolean as Go reads it (YAML 1.1 `yes`/`on` included).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(
            s.as_str(),
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y"
        ),
        _ => false,
    }
}

/// Webhook headers carry tokens whatever their names (`X-Api-Token`, `Private-Token`...), and a
/// signing key is a secret: every value goes.
fn redact_endpoint_headers(tree: &mut Value) {
    let Some(endpoints) = tree
        .get_mut("notifications")
        .and_then(|n| n.get_mut("endpoints"))
        .and_then(Value::as_sequence_mut)
    else {
        return;
    };
    for endpoint in endpoints {
        if let Some(headers) = endpoint.get_mut("headers").and_then(Value::as_mapping_mut) {
            for (_, values) in headers.iter_mut() {
                *values = Value::from("<redacted>");
            }
        }
        if let Some(key) = endpoint.get_mut("signing").and_then(|s| s.get_mut("key")) {
            if key.as_str().is_some_and(|k| !k.is_empty()) {
                *key = Value::from("<redacted>");
            }
        }
    }
}

/// Replaces the non-empty values of secret-looking keys, at any depth.
fn redact(v: &mut Value) {
    match v {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let secret = key.as_str().is_some_and(is_secret_key);
                let empty = matches!(child, Value::Null) || child.as_str() == Some("");
                if secret && !empty && !child.is_mapping() {
                    *child = Value::from("<redacted>");
                } else {
                    redact(child);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Go-style durations as registry:2 writes them: `168h`, `5m30s`, `500ms`, or a bare number of
/// nanoseconds.
pub mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = serde_yaml_ng::Value::deserialize(d)?;
        match v {
            serde_yaml_ng::Value::Number(n) => n
                .as_u64()
                .map(Duration::from_nanos)
                .ok_or_else(|| serde::de::Error::custom("duration must be a non-negative number")),
            serde_yaml_ng::Value::String(s) => parse_go(&s).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("duration must be a string like 168h or 5m")),
        }
    }

    /// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers with units
    /// (`1h30m`, `1.5s`, `250ms`). Negative durations mean nothing for wharf and are refused.
    pub fn parse_go(s: &str) -> Result<Duration, String> {
        let bad = || format!("invalid duration {s:?}");
        let rest = s.trim();
        let mut rest = rest.strip_prefix('+').unwrap_or(rest);
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut nanos: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let (number, after) = rest.split_at(num_len);
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            rest = after;
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(format!("invalid duration {s:?}: missing unit")),
                _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
            };
            let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
            if whole.is_empty() && frac.is_empty() {
                return Err(bad());
            }
            let digits = |t: &str| -> Result<u128, String> {
                if t.is_empty() {
                    Ok(0)
                } else {
                    t.parse::<u128>().map_err(|_| bad())
                }
            };
            let frac = &frac[..frac.len().min(18)];
            let frac_nanos = digits(frac)? * scale / 10u128.pow(frac.len() as u32);
            nanos = digits(whole)?
                .checked_mul(scale)
                .and_then(|n| n.checked_add(frac_nanos))
                .and_then(|n| n.checked_add(nanos))
                .ok_or_else(bad)?;
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
        Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }

    /// Formats the way registry:2 configurations are written: whole hours, minutes or seconds
    /// when exact, else milliseconds or nanoseconds.
    pub fn format_go(d: Duration) -> String {
        let secs = d.as_secs();
        let sub = d.subsec_nanos();
        if sub != 0 {
            return match sub % 1_000_000 {
                0 => format!("{}ms", d.as_millis()),
                _ => format!("{}ns", d.as_nanos()),
            };
        }
        if secs > 0 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs > 0 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn go_durations() {
            for (text, want) in [
                ("168h", Duration::from_secs(168 * 3600)),
                ("1h30m", Duration::from_secs(5400)),
                ("1.5s", Duration::from_millis(1500)),
                ("100ms", Duration::from_millis(100)),
                ("2us", Duration::from_micros(2)),
                ("0", Duration::ZERO),
                ("+5m", Duration::from_secs(300)),
            ] {
                assert_eq!(parse_go(text), Ok(want), "{text}");
                assert_eq!(parse_go(&format_go(want)), Ok(want), "round trip of {text}");
            }
            for bad in ["", "5", "5x", "-5s", "h", ".s", "1..2s"] {
                assert!(parse_go(bad).is_err(), "{bad:?} accepted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_ok(yaml: Option<&str>, vars: &[(&str, &str)]) -> Loaded {
        load_from(yaml, &env(vars)).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    fn load_err(yaml: Option<&str>, vars: &[(&str, &str)]) -> String {
        match load_from(yaml, &env(vars)) {
            Ok(l) => panic!("expected an error, got {:?}", l.config),
            Err(e) => e.to_string(),
        }
    }

    const FILE: &str = "
version: 0.1
log:
  level: debug
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  secret: s3cr3t
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/registry/htpasswd
";

    #[test]
    fn file_only() {
        let l = load_ok(Some(FILE), &[]);
        let c = &l.config;
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(c.version, "0.1");
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.root_directory(), PathBuf::from("/var/lib/registry"));
        assert!(c.storage.delete.enabled);
        assert!(c.storage.cache.is_some());
        assert_eq!(c.http.addr, ":5000");
        assert_eq!(c.http.headers["X-Content-Type-Options"], vec!["nosniff"]);
        let h = c.auth.htpasswd.as_ref().expect("htpasswd");
        assert_eq!(
            (h.realm.as_str(), h.path.as_path()),
            ("basic-realm", Path::new("/etc/registry/htpasswd"))
        );
        // Defaults fill what the file leaves out.
        assert!(c.storage.maintenance.uploadpurging.enabled);
        assert_eq!(c.storage.maintenance.uploadpurging.age, Duration::from_secs(168 * 3600));
    }

    #[test]
    fn registry2_configuration_listens_on_5000_everywhere_by_default() {
        let from_env = load_ok(None, &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
        assert!(from_env.registry2);
        assert_eq!(from_env.config.listen_addr().unwrap(), "0.0.0.0:5000".parse().unwrap());
        let from_file = load_ok(Some("version: 0.1\n"), &[]);
        assert!(from_file.registry2);
        assert_eq!(from_file.config.http.addr, REGISTRY2_DEFAULT_ADDR);
        let set = load_ok(Some("version: 0.1\nhttp: {addr: '127.0.0.1:6000'}\n"), &[]);
        assert_eq!(set.config.http.addr, "127.0.0.1:6000", "an address given is kept");
        let own = load_ok(None, &[("PATH", "/bin")]);
        assert!(!own.registry2);
        assert_eq!(own.config.http.addr, DEFAULT_ADDR, "wharf's own start keeps to loopback");
    }

    #[test]
    fn defaults_without_file_or_env() {
        let l = load_ok(None, &[]);
        assert_eq!(l.config.version, "0.1");
        assert_eq!(l.config.http.addr, DEFAULT_ADDR);
        assert_eq!(l.config.root_directory(), PathBuf::from(DEFAULT_ROOT));
        assert!(l.config.storage.filesystem.is_some(), "filesystem is the default driver");
        assert!(!l.config.storage.delete.enabled, "DELETE is off by default, as in registry:2");
        assert!(l.config.auth.htpasswd.is_none() && l.config.auth.token.is_none());
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn env_only() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_ADDR", "0.0.0.0:443"),
                ("REGISTRY_LOG_LEVEL", "warn"),
                ("PATH", "/bin"),
            ],
        );
        assert_eq!(l.config.http.addr, "0.0.0.0:443");
        assert_eq!(l.config.log.level, "warn");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn env_overrides_file() {
        let l = load_ok(
            Some(FILE),
            &[
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
                ("REGISTRY_LOG_LEVEL", "INFO"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
            ],
        );
        let c = &l.config;
        assert_eq!(c.root_directory(), PathBuf::from("/data"));
        assert!(!c.storage.delete.enabled);
        assert_eq!(c.log.level, "info", "levels are case-insensitive and stored lower-case");
        let h = c.auth.htpasswd.as_ref().unwrap();
        assert_eq!(h.realm, "Registry Realm");
        assert_eq!(h.path, PathBuf::from("/etc/registry/htpasswd"), "untouched keys stay");
        assert!(c.storage.cache.is_some(), "a nested override keeps the sibling sections");
    }

    #[test]
    fn htpasswd_from_env_as_in_the_docker_docs() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
            ],
        );
        let h = l.config.auth.htpasswd.expect("REGISTRY_AUTH=htpasswd selects htpasswd");
        assert_eq!(h.realm, "Registry Realm");
        assert_eq!(h.path, PathBuf::from("/auth/htpasswd"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn bare_auth_scheme_has_empty_parameters() {
        let l = load_ok(None, &[("REGISTRY_AUTH", "htpasswd")]);
        assert_eq!(l.config.auth.htpasswd.unwrap().realm, "");
    }

    #[test]
    fn rootdirectory_from_env() {
        let l = load_ok(None, &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data")]);
        assert_eq!(l.config.root_directory(), PathBuf::from("/data"));
    }

    #[test]
    fn http_addr_port_only_listens_everywhere() {
        let l = load_ok(None, &[("REGISTRY_HTTP_ADDR", ":5001")]);
        assert_eq!(l.config.http.addr, ":5001");
        assert_eq!(l.config.listen_addr().unwrap(), "0.0.0.0:5001".parse().unwrap());
    }

    #[test]
    fn listen_addr_forms() {
        let mut c = Config::default();
        for (addr, want) in [
            ("localhost:5000", "127.0.0.1:5000"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::1]:5000", "[::1]:5000"),
            ("", DEFAULT_ADDR),
        ] {
            c.http.addr = addr.into();
            assert_eq!(c.listen_addr().unwrap(), want.parse::<SocketAddr>().unwrap(), "{addr}");
        }
        c.http.addr = "5000".into();
        assert!(c.listen_addr().unwrap_err().to_string().contains("http.addr"));
    }

    #[test]
    fn tls_from_env() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/domain.crt"),
                ("REGISTRY_HTTP_TLS_KEY", "/certs/domain.key"),
                ("REGISTRY_HTTP_ADDR", "0.0.0.0:443"),
            ],
        );
        let tls = l.config.http.tls.expect("tls");
        assert_eq!(
            (tls.certificate.as_str(), tls.key.as_str()),
            ("/certs/domain.crt", "/certs/domain.key")
        );
    }

    #[test]
    fn certificate_without_key_is_an_error() {
        let e = load_err(None, &[("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/domain.crt")]);
        assert!(e.starts_with("http.tls.key:"), "{e}");
    }

    #[test]
    fn delete_enabled_from_env() {
        let l = load_ok(None, &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")]);
        assert!(l.config.storage.delete.enabled);
        assert!(l.config.storage.filesystem.is_some(), "still the filesystem driver");
    }

    #[test]
    fn upload_purging_from_env() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "2h"),
                ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "false"),
                ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "90m"),
            ],
        );
        let p = &l.config.storage.maintenance.uploadpurging;
        assert!(!p.enabled);
        assert_eq!(p.age, Duration::from_secs(2 * 3600));
        assert_eq!(p.interval, Duration::from_secs(90 * 60));
        assert!(!p.dryrun);
    }

    #[test]
    fn variables_apply_in_lexical_order() {
        // Listed out of order on purpose: REGISTRY_STORAGE must still apply first, replacing
        // the file's whole storage map, and the root directory must land under it.
        let l = load_ok(
            Some(FILE),
            &[
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
                ("REGISTRY_STORAGE", "filesystem"),
            ],
        );
        let s = &l.config.storage;
        assert_eq!(l.config.root_directory(), PathBuf::from("/data"));
        assert!(!s.delete.enabled, "REGISTRY_STORAGE replaced storage.delete from the file");
        assert!(s.cache.is_none(), "REGISTRY_STORAGE replaced storage.cache from the file");
    }

    #[test]
    fn a_later_whole_section_replaces_earlier_keys() {
        // REGISTRY_HTTP sorts before REGISTRY_HTTP_ADDR, so the map applies first.
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_ADDR", ":6000"),
                ("REGISTRY_HTTP", "{addr: ':7000', relativeurls: true}"),
            ],
        );
        assert_eq!(l.config.http.addr, ":6000");
        assert!(l.config.http.relativeurls);
    }

    #[test]
    fn values_are_yaml() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS", "[nosniff]"),
                ("REGISTRY_HTTP_HEADERS", "{Access-Control-Allow-Origin: ['*']}"),
                (
                    "REGISTRY_HTTP_TLS",
                    "{certificate: /c.pem, key: /k.pem, clientcas: [/ca1.pem, /ca2.pem]}",
                ),
                ("REGISTRY_HTTP_RELATIVEURLS", "true"),
                ("REGISTRY_HTTP_SECRET", "0123"),
                ("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: yes}"),
            ],
        );
        let http = &l.config.http;
        assert_eq!(http.headers["x-content-type-options"], vec!["nosniff"], "new keys are lower-cased");
        assert_eq!(http.headers["Access-Control-Allow-Origin"], vec!["*"]);
        assert_eq!(http.tls.as_ref().unwrap().clientcas, vec!["/ca1.pem", "/ca2.pem"]);
        assert!(http.relativeurls);
        assert_eq!(http.secret, "0123", "a string field keeps the text as written");
        assert!(l.config.storage.maintenance.readonly.enabled, "YAML 1.1 `yes` is true, as in Go");
    }

    #[test]
    fn existing_map_keys_match_by_upper_case() {
        let yaml = "version: 0.1\nhttp:\n  headers:\n    X-Frame-Options: [DENY]\n";
        let l = load_ok(Some(yaml), &[("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS_0", "SAMEORIGIN")]);
        assert_eq!(l.config.http.headers["X-Frame-Options"], vec!["SAMEORIGIN"]);
        assert_eq!(l.config.http.headers.len(), 1);
    }

    #[test]
    fn list_elements_by_index() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c"),
                ("REGISTRY_HTTP_TLS_CLIENTCAS_0", "/ca0"),
                ("REGISTRY_HTTP_TLS_CLIENTCAS_1", "/ca1"),
                ("REGISTRY_HTTP_TLS_KEY", "/k"),
            ],
        );
        assert_eq!(l.config.http.tls.unwrap().clientcas, vec!["/ca0", "/ca1"]);
        let e = load_err(None, &[("REGISTRY_HTTP_TLS_CLIENTCAS_3", "/ca")]);
        assert!(e.contains("REGISTRY_HTTP_TLS_CLIENTCAS_3") && e.contains("index"), "{e}");
    }

    #[test]
    fn unknown_variables_warn() {
        let l = load_ok(
            None,
            &[
                ("REGISTRY_HTTP_ADDRESS", ":1"),
                ("REGISTRY_NOSUCH", "x"),
                ("REGISTRY_http_addr", ":2"),
                ("REGISTRY_CONFIGURATION_PATH", "/etc/docker/registry/config.yml"),
            ],
        );
        assert_eq!(
            l.config.http.addr, REGISTRY2_DEFAULT_ADDR,
            "registry:2 variables: registry:2's default"
        );
        assert!(l.registry2);
        let w = l.warnings.join("\n");
        for var in ["REGISTRY_HTTP_ADDRESS", "REGISTRY_NOSUCH", "REGISTRY_http_addr"] {
            assert!(w.contains(var), "no warning for {var}: {w}");
        }
        assert!(!w.contains("CONFIGURATION_PATH"), "{w}");
    }

    #[test]
    fn unknown_file_keys_warn_with_dotted_key() {
        let yaml = "version: 0.1\nhttp:\n  addr: :5000\n  tlss: {}\nfoo: 1\nstorage:\n  delete:\n    enable: true\n";
        let l = load_ok(Some(yaml), &[]);
        let w = l.warnings.join("\n");
        for key in ["http.tlss", "foo", "storage.delete.enable"] {
            assert!(w.contains(key), "no warning for {key}: {w}");
        }
    }

    #[test]
    fn registry2_sections_wharf_ignores_are_accepted() {
        let yaml = "
version: 0.1
loglevel: debug
log:
  accesslog: {disabled: true}
  formatter: json
storage:
  filesystem: {rootdirectory: /r, maxthreads: 100}
  redirect: {disable: true}
  maintenance:
    uploadpurging: {enabled: true, age: 168h, interval: 24h, dryrun: false}
    readonly: {enabled: false}
http:
  addr: 127.0.0.1:5000
  net: tcp
  draintimeout: 60s
  debug: {addr: ':5001', prometheus: {enabled: true, path: /metrics}}
  http2: {disabled: false}
  tls: {certificate: /c, key: /k, minimumtls: tls1.2, ciphersuites: [a], letsencrypt: {cachefile: /x}}
notifications:
  events: {includereferences: true}
  endpoints: [{name: alistener, url: 'https://x/event', headers: {Authorization: [Bearer t]}}]
redis: {addr: 'localhost:6379', password: pw, db: 0}
health: {storagedriver: {enabled: true, interval: 10s, threshold: 3}}
proxy: {remoteurl: 'https://registry-1.docker.io', username: u, password: p}
validation: {manifests: {urls: {allow: ['^https?://']}}}
compatibility: {schema1: {enabled: false}}
middleware: {registry: [{name: x, options: {}}]}
reporting: {bugsnag: {apikey: k}}
catalog: {maxentries: 100}
policy: {repository: {classes: [image]}}
";
        let l = load_ok(Some(yaml), &[("REGISTRY_REDIS_POOL_MAXIDLE", "16")]);
        // Accepted without error; what wharf ignores is named in one warning each.
        let w = l.warnings.join("\n");
        for key in [
            "proxy",
            "middleware",
            "redis",
            "reporting",
            "validation",
            "policy",
            "catalog",
            "http.http2",
            "http.tls.letsencrypt",
            "http.tls.ciphersuites",
        ] {
            assert!(
                w.contains(&format!("setting {key} is not implemented")),
                "no warning for {key}:\n{w}"
            );
        }
        assert!(!w.contains("setting health") && !w.contains("setting storage"), "{w}");
        let c = &l.config;
        assert_eq!(c.log.level, "debug", "deprecated top-level loglevel still applies");
        assert_eq!(c.log.formatter, "json");
        assert_eq!(c.root_directory(), PathBuf::from("/r"));
        assert_eq!(c.redis.as_ref().unwrap()["pool"]["maxidle"], Value::from(16));
        assert!(c.proxy.is_some() && c.notifications.is_some() && c.http.debug.is_some());
    }

    #[test]
    fn notification_endpoints_read_as_registry2_reads_them() {
        let yaml = "
version: 0.1
notifications:
  events: {includereferences: true}
  endpoints:
    - name: alistener
      url: https://hooks.example/event
      headers: {Authorization: [Bearer t0ken], X-Api-Token: [abc]}
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore: {mediatypes: [application/vnd.oci.image.index.v1+json], actions: [pull]}
      signing: {key: hmac-key}
";
        let l = load_ok(
            Some(yaml),
            &[
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_THRESHOLD", "7"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_NAME", "second"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_URL", "http://127.0.0.1:9/hook"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_DISABLED", "true"),
            ],
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let n = l.config.notifications.as_ref().expect("notifications");
        assert!(n.events.includereferences);
        let e = &n.endpoints[0];
        assert_eq!((e.name.as_str(), e.url.as_str()), ("alistener", "https://hooks.example/event"));
        assert_eq!(e.headers["Authorization"], ["Bearer t0ken"]);
        assert_eq!(e.timeout_or_default(), Duration::from_millis(500));
        assert_eq!(e.threshold_or_default(), 7, "the variable wins over the file");
        assert_eq!(e.backoff_or_default(), Duration::from_secs(1));
        let ignored: Vec<&str> = e.ignored_media_types().collect();
        assert_eq!(ignored, ["application/vnd.oci.image.index.v1+json", "application/octet-stream"]);
        assert_eq!(e.ignore.actions, ["pull"]);
        let second = &n.endpoints[1];
        assert_eq!((second.name.as_str(), second.disabled), ("second", true));
        assert_eq!(second.timeout_or_default(), Duration::from_secs(1), "registry:2's default");
        assert_eq!(second.threshold_or_default(), 10);
        let shown = l.config.redacted_yaml();
        for secret in ["t0ken", "abc", "hmac-key"] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
    }

    #[test]
    fn log_level_beats_deprecated_loglevel() {
        let l = load_ok(Some("version: 0.1\nloglevel: debug\nlog: {level: error}\n"), &[]);
        assert_eq!(l.config.log.level, "error");
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let file = |body: &str| format!("version: 0.1\n{body}\n");
        for (yaml, key, value) in [
            (
                file("storage:\n  maintenance:\n    uploadpurging: {age: 5x}"),
                "storage.maintenance.uploadpurging.age",
                "\"5x\"",
            ),
            (file("log: {level: verbose}"), "log.level", "\"verbose\""),
            (file("log: {formatter: xml}"), "log.formatter", "\"xml\""),
            (file("http: {addr: localhost}"), "http.addr", "\"localhost\""),
            (file("http: {relativeurls: maybe}"), "http.relativeurls", "\"maybe\""),
            (file("http: {headers: {X-A: nosniff}}"), "http.headers.X-A", "\"nosniff\""),
            (file("http: [a]"), "http", "[\"a\"]"),
            (file("storage: {delete: {enabled: [true]}}"), "storage.delete.enabled", "[true]"),
            (file("storage: {gcs: {bucket: b}}"), "storage", "\"gcs\""),
            (
                file("storage: {filesystem: {}, inmemory: {}}"),
                "storage",
                "\"filesystem, inmemory\"",
            ),
            (file("auth: {htpasswd: {}, token: {}}"), "auth", "\"htpasswd, token\""),
            (file("auth: silly"), "auth", "\"silly\""),
            (file("auth: {htpasswd: {path: [a]}}"), "auth.htpasswd.path", "[\"a\"]"),
        ] {
            let e = load_err(Some(&yaml), &[]);
            assert!(e.starts_with(&format!("{key}: invalid value {value}: ")), "{yaml}\n=> {e}");
        }
    }

    #[test]
    fn s3_settings_load_from_registry2_variables_and_unknown_keys_warn() {
        let l = load_ok(
            Some("version: 0.1\nstorage:\n  s3:\n    bucket: b\n    chunksise: 5\n  redirect: {disable: true}\n"),
            &[
                ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "http://127.0.0.1:3900"),
                ("REGISTRY_STORAGE_S3_SECURE", "false"),
                ("REGISTRY_STORAGE_S3_CHUNKSIZE", "6291456"),
                ("REGISTRY_STORAGE_S3_SECRETKEY", "s3cr3tkey"),
            ],
        );
        let s3 = l.config.storage.s3.as_ref().expect("the s3 driver");
        assert_eq!((s3.bucket.as_str(), s3.regionendpoint.as_str()), ("b", "http://127.0.0.1:3900"));
        assert_eq!(s3.secure, Some(false), "a variable's text becomes the key's type");
        assert!(l.config.storage.filesystem.is_none());
        assert!(l.config.storage.redirect_disabled());
        assert!(
            l.warnings.iter().any(|w| w.contains("storage.s3.chunksise")),
            "a misspelt key warns: {:?}",
            l.warnings
        );
        assert!(!l.config.redacted_yaml().contains("s3cr3tkey"));
    }

    #[test]
    fn azure_settings_load_from_registry2_variables_and_keys_stay_hidden() {
        let l = load_ok(
            Some("version: 0.1\nstorage:\n  azure:\n    accountname: acct\n    containr: c\n    credentials: {type: shared_key}\n"),
            &[
                ("REGISTRY_STORAGE_AZURE_CONTAINER", "registry"),
                ("REGISTRY_STORAGE_AZURE_ACCOUNTKEY", "c2VjcmV0a2V5"),
                ("REGISTRY_STORAGE_AZURE_REALM", "core.chinacloudapi.cn"),
            ],
        );
        let Some(ObjectStorage::Azure(a)) = l.config.storage.object() else {
            panic!("not azure: {:?}", l.config.storage)
        };
        assert_eq!((a.accountname.as_str(), a.container.as_str()), ("acct", "registry"));
        assert_eq!(
            (a.realm.as_str(), a.credentials.kind.as_str()),
            ("core.chinacloudapi.cn", "shared_key")
        );
        assert!(l.warnings.iter().any(|w| w.contains("storage.azure.containr")), "{:?}", l.warnings);
        assert!(!l.config.redacted_yaml().contains("c2VjcmV0a2V5"));
        let e = load_err(Some("version: 0.1\nstorage:\n  azure: {}\n  s3: {}\n"), &[]);
        assert!(e.contains("more than one storage driver"), "{e}");
    }

    #[test]
    fn bad_values_from_env_name_the_variable() {
        let e = load_err(None, &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "5x")]);
        assert!(e.contains("storage.maintenance.uploadpurging.age"), "{e}");
        assert!(
            e.contains("\"5x\"") && e.contains("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE"),
            "{e}"
        );
        let e = load_err(None, &[("REGISTRY_STORAGE", "gcs"), ("REGISTRY_STORAGE_GCS_BUCKET", "b")]);
        assert!(e.contains("gcs") && e.contains("REGISTRY_STORAGE"), "{e}");
        let e = load_err(None, &[("REGISTRY_AUTH_TOKEN_REALM", "r"), ("REGISTRY_AUTH_HTPASSWD_PATH", "/p")]);
        assert!(e.starts_with("auth: ") && e.contains("more than one auth scheme"), "{e}");
        let e = load_err(None, &[("REGISTRY_HTTP_HEADERS", "{unclosed")]);
        assert!(e.starts_with("environment variable REGISTRY_HTTP_HEADERS:"), "{e}");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = load_err(None, &[("REGISTRY_HTTP_SECRET", "[hunter2]")]);
        assert!(e.starts_with("http.secret: invalid value <redacted>"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn version_is_required_in_a_file() {
        let e = load_err(Some("http: {addr: ':5000'}\n"), &[]);
        assert!(e.starts_with("version: missing"), "{e}");
        let e = load_err(Some(""), &[]);
        assert!(e.starts_with("version: missing"), "{e}");
        let e = load_err(Some("version: 0.2\n"), &[]);
        assert!(e.starts_with("version: unsupported version \"0.2\""), "{e}");
        let e = load_err(Some("version: abc\n"), &[]);
        assert!(e.contains("version"), "{e}");
        assert_eq!(load_ok(Some("version: '0.1'\n"), &[]).config.version, "0.1");
    }

    #[test]
    fn broken_yaml_is_an_error() {
        let e = load_err(Some("version: 0.1\nhttp: {addr\n"), &[]);
        assert!(e.starts_with("configuration is not valid YAML"), "{e}");
        let e = load_err(Some("- a\n- b\n"), &[]);
        assert!(e.contains("mapping"), "{e}");
    }

    #[test]
    fn merge_keys_are_honoured() {
        let yaml = "version: 0.1\nx-common: &c {enabled: true}\nstorage:\n  delete:\n    <<: *c\n";
        let l = load_ok(Some(yaml), &[]);
        assert!(l.config.storage.delete.enabled);
    }

    #[test]
    fn load_reads_the_given_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, "version: 0.1\nhttp:\n  addr: 127.0.0.1:5999\n").unwrap();
        let l = load(Some(&path)).unwrap();
        assert_eq!(l.source.as_deref(), Some(path.as_path()));
        let missing = dir.path().join("nope.yml");
        let e = load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("nope.yml"), "{e}");
    }

    #[test]
    fn redacted_yaml_hides_secrets() {
        let l = load_ok(
            Some(FILE),
            &[("REGISTRY_REDIS_PASSWORD", "redispw"), ("REGISTRY_PROXY_PASSWORD", "proxypw")],
        );
        let out = l.config.redacted_yaml();
        for secret in ["s3cr3t", "redispw", "proxypw"] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(out.contains("<redacted>"), "{out}");
        assert!(out.contains("/var/lib/registry") && out.contains("htpasswd"), "{out}");
        // What is printed loads back to the same configuration (secrets aside).
        let again = load_ok(Some(&out), &[]).config;
        assert_eq!(again.root_directory(), l.config.root_directory());
        assert_eq!(
            again.storage.maintenance.uploadpurging.age,
            l.config.storage.maintenance.uploadpurging.age
        );
    }
}
