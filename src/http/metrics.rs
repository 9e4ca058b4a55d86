//! registry:2's debug server (`http.debug.addr`): `/debug/health` with the storage driver check
//! of `health.storagedriver`, and, with `http.debug.prometheus.enabled`, Prometheus metrics at
//! `http.debug.prometheus.path` (default `/metrics`) under registry:2's names.
//!
//! The HTTP families are the ones distribution registers per route through docker/go-metrics:
//! `registry_http_requests_total{handler,code,method}`,
//! `registry_http_request_duration_seconds{handler,method}` (buckets 5 ms … 60 s),
//! `registry_http_in_flight_requests{handler}`, and the request and response size histograms
//! (1 KiB … 4 GiB). Handler names are distribution's route names (`base`, `blob`,
//! `blob_upload`, `blob_upload_chunk`, `manifest`, `tags`, `catalog`; `referrers` for the route
//! distribution 2.8 does not have). Methods are lower-case, as Go's promhttp writes them. The
//! process family (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...) is read
//! from `/proc` at each scrape.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub(crate) mod histogram;
pub mod notifications;
use histogram::AtomicHistogram;
use notifications::NotificationMetrics;

/// docker/go-metrics' default latency buckets, in seconds.
const DURATION_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handler {
    handler: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerMethod {
    handler: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerCodeMethod {
    handler: &'static str,
    code: u16,
    method: &'static str,
}

/// The HTTP request metrics, shared by every connection.
pub struct Metrics {
    registry: Registry,
    requests: Family<HandlerCodeMethod, Counter>,
    durations: Family<HandlerMethod, AtomicHistogram>,
    in_flight: Family<Handler, Gauge>,
    request_sizes: Family<Handler, AtomicHistogram>,
    response_sizes: Family<Handler, AtomicHistogram>,
    handles: Handles,
    /// Reads the registry's open upload sessions at each scrape, once `watch_uploads` set it.
    upload_sessions: Arc<OnceLock<UploadSessionsSource>>,
    /// The webhook endpoints' families, fed by `notify`.
    pub notifications: NotificationMetrics,
    /// The registry whose garbage collections are reported, once the server has one.
    gc: Arc<std::sync::OnceLock<Arc<crate::registry::Registry>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn size_histogram() -> AtomicHistogram {
    AtomicHistogram::new(exponential_buckets(1024.0, 2.0, 22))
}

/// Reads the number of repositories and the bytes their blobs hold (None: not known).
pub type StorageTotals = Arc<dyn Fn() -> Option<(usize, u64)> + Send + Sync>;

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Self::with_storage(None)
    }

    /// Also reports `wharf_repositories` and `wharf_stored_bytes`, read from `totals` at each scrape.
    pub fn with_storage(totals: Option<StorageTotals>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let requests = Family::<HandlerCodeMethod, Counter>::default();
        let durations = Family::<HandlerMethod, AtomicHistogram>::new_with_constructor(|| AtomicHistogram::new(DURATION_BUCKETS));
        let in_flight = Family::<Handler, Gauge>::default();
        let request_sizes = Family::<Handler, AtomicHistogram>::new_with_constructor(size_histogram);
        let response_sizes = Family::<Handler, AtomicHistogram>::new_with_constructor(size_histogram);
        {
            let http = registry.sub_registry_with_prefix("registry_http");
            http.register("requests", "Total number of HTTP requests made", requests.clone());
            http.register(
                "request_duration_seconds",
                "The HTTP request latencies in seconds",
                durations.clone(),
            );
            http.register("in_flight_requests", "The in-flight HTTP requests", in_flight.clone());
            http.register("request_size_bytes", "The HTTP request sizes in bytes", request_sizes.clone());
            http.register("response_size_bytes", "The HTTP response sizes in bytes", response_sizes.clone());
        }
        let notifications = NotificationMetrics::default();
        notifications.register(&mut registry);
        crate::store::metered::register(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        let upload_sessions = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(UploadSessions(upload_sessions.clone())));
        let gc = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(GcCollector(gc.clone())));
        if let Some(totals) = totals {
            registry.register_collector(Box::new(StorageCollector(totals)));
        }
        Arc::new(Metrics {
            handles: Handles::default(),
            upload_sessions,
            notifications,
            gc,
            registry,
            requests,
            durations,
            in_flight,
            request_sizes,
            response_sizes,
        })
    }

    /// Reports `registry`'s garbage collections from now on.
    pub fn observe_gc(&self, registry: Arc<crate::registry::Registry>) {
        let _ = self.gc.set(registry);
    }

    /// Counts a request in flight until the returned guard is finished or dropped.
    pub fn begin(self: &Arc<Self>, path: &str, method: &axum::http::Method, request_bytes: u64) -> Request {
        let handler = handler_index(path);
        let method = method_index(method);
        let h = &self.handles.handlers[handler];
        handle(&h.in_flight, &self.in_flight, handler).inc();
        handle(&h.request_sizes, &self.request_sizes, handler).observe(request_bytes as f64);
        Request {
            metrics: self.clone(),
            handler,
            method,
            started: Instant::now(),
        }
    }

    /// Reports `sessions()` as `wharf_upload_sessions_in_flight` from now on.
    pub fn watch_uploads(&self, sessions: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.upload_sessions.set(Arc::new(sessions));
    }

    /// The metrics in Prometheus' text format (what Go's promhttp serves by default). Help texts
    /// are written without their final full stop: the encoder adds one.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// One request being measured.
pub struct Request {
    metrics: Arc<Metrics>,
    handler: usize,
    method: usize,
    started: Instant,
}

impl Request {
    /// Records the answer once its body has been sent (or abandoned).
    pub fn finish(self, status: u16, response_bytes: u64) {
        let m = &self.metrics;
        let (handler, method) = (self.handler, self.method);
        let h = &m.handles.handlers[handler];
        handle(&h.in_flight, &m.in_flight, handler).dec();
        m.handles.requests(&m.requests, handler, method, status).inc();
        let label = || HandlerMethod {
            handler: HANDLERS[handler],
            method: METHODS[method],
        };
        h.durations[method]
            .get_or_init(|| m.durations.get_or_create(&label()).clone())
            .observe(self.started.elapsed().as_secs_f64());
        handle(&h.response_sizes, &m.response_sizes, handler).observe(response_bytes as f64);
    }
}

/// A per-handler series, looked up in its family once and kept: a request then costs a few
/// atomic operations, not a hash and a lock per family.
fn handle<'a, M: Clone>(slot: &'a OnceLock<M>, family: &Family<Handler, M>, handler: usize) -> &'a M {
    slot.get_or_init(|| {
        family
            .get_or_create(&Handler {
                handler: HANDLERS[handler],
            })
            .clone()
    })
}

/// distribution's route names, the `handler` label.
const HANDLERS: [&str; 9] = [
    "base",
    "catalog",
    "tags",
    "blob_upload",
    "blob_upload_chunk",
    "blob",
    "manifest",
    "referrers",
    "other",
];
const METHODS: [&str; 8] = ["get", "head", "put", "post", "patch", "delete", "options", "other"];
/// Positions in `HANDLERS`.
mod route {
    pub const BASE: usize = 0;
    pub const CATALOG: usize = 1;
    pub const TAGS: usize = 2;
    pub const BLOB_UPLOAD: usize = 3;
    pub const BLOB_UPLOAD_CHUNK: usize = 4;
    pub const BLOB: usize = 5;
    pub const MANIFEST: usize = 6;
    pub const REFERRERS: usize = 7;
    pub const OTHER: usize = 8;
}

/// Status codes a registry answers; others go through the family each time.
const CODES: [u16; 22] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 413, 416, 429, 500, 502, 503,
];

/// Every series a request touches, resolved on first use and then reused.
#[derive(Default)]
struct Handles {
    handlers: [PerHandler; HANDLERS.len()],
}

#[derive(Default)]
struct PerHandler {
    in_flight: OnceLock<Gauge>,
    request_sizes: OnceLock<AtomicHistogram>,
    response_sizes: OnceLock<AtomicHistogram>,
    durations: [OnceLock<AtomicHistogram>; METHODS.len()],
    /// `registry_http_requests_total` per method and code of `CODES`.
    requests: [[OnceLock<Counter>; CODES.len()]; METHODS.len()],
}

impl Handles {
    fn requests(&self, family: &Family<HandlerCodeMethod, Counter>, handler: usize, method: usize, code: u16) -> Counter {
        let label = || HandlerCodeMethod {
            handler: HANDLERS[handler],
            code,
            method: METHODS[method],
        };
        match CODES.iter().position(|c| *c == code) {
            Some(i) => self.handlers[handler].requests[method][i]
                .get_or_init(|| family.get_or_create(&label()).clone())
                .clone(),
            None => family.get_or_create(&label()).clone(),
        }
    }
}

/// distribution's route name for a request path (after any `http.prefix`).
pub fn handler_name(path: &str) -> &'static str {
    HANDLERS[handler_index(path)]
}

/// The position in `HANDLERS` of a request path's route.
fn handler_index(path: &str) -> usize {
    let Some(rest) = path.strip_prefix("/v2") else {
        return route::OTHER;
    };
    if rest.is_empty() || rest == "/" {
        return route::BASE;
    }
    if rest == "/_catalog" {
        return route::CATALOG;
    }
    if rest.ends_with("/tags/list") {
        return route::TAGS;
    }
    if let Some((_, id)) = rest.rsplit_once("/blobs/uploads") {
        return if id.trim_start_matches('/').is_empty() {
            route::BLOB_UPLOAD
        } else {
            route::BLOB_UPLOAD_CHUNK
        };
    }
    if rest.contains("/blobs/") {
        return route::BLOB;
    }
    if rest.contains("/manifests/") {
        return route::MANIFEST;
    }
    if rest.contains("/referrers/") {
        return route::REFERRERS;
    }
    route::OTHER
}

/// The position in `METHODS` of a method, lower-case as Go's promhttp writes it.
fn method_index(m: &axum::http::Method) -> usize {
    use axum::http::Method;
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

type UploadSessionsSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Upload sessions opened and not yet finished, cancelled or purged, read at each scrape.
struct UploadSessions(Arc<OnceLock<UploadSessionsSource>>);

impl std::fmt::Debug for UploadSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSessions")
    }
}

impl prometheus_client::collector::Collector for UploadSessions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sessions) = self.0.get() else { return Ok(()) };
        let g = ConstGauge::new(sessions() as i64);
        let help = "Blob upload sessions this run opened that are not finished, cancelled or purged yet";
        g.encode(encoder.encode_descriptor("wharf_upload_sessions_in_flight", help, None, g.metric_type())?)
    }
}

/// wharf's garbage collection families, read from the registry at each scrape.
#[derive(Debug)]
struct GcCollector(Arc<std::sync::OnceLock<Arc<crate::registry::Registry>>>);

impl std::fmt::Debug for crate::registry::Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl prometheus_client::collector::Collector for GcCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(registry) = self.0.get() else { return Ok(()) };
        let t = registry.gc_totals();
        let runs = ConstCounter::new(t.runs);
        runs.encode(encoder.encode_descriptor("wharf_gc_runs", "Garbage collections run", None, runs.metric_type())?)?;
        let freed = ConstCounter::new(t.bytes_freed);
        freed.encode(encoder.encode_descriptor(
            "wharf_gc_freed_bytes",
            "Bytes garbage collection deleted",
            None,
            freed.metric_type(),
        )?)?;
        let d = ConstGauge::new(t.last_duration_seconds);
        d.encode(encoder.encode_descriptor(
            "wharf_gc_last_duration_seconds",
            "How long the last garbage collection took",
            None,
            d.metric_type(),
        )?)?;
        let last = ConstGauge::new(t.last_run_unix);
        last.encode(encoder.encode_descriptor(
            "wharf_gc_last_run_timestamp_seconds",
            "When the last garbage collection ended (Unix time; 0: none yet)",
            None,
            last.metric_type(),
        )?)
    }
}

/// What the storage holds, from the usage index (no walk of the storage per scrape).
struct StorageCollector(StorageTotals);

impl std::fmt::Debug for StorageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageCollector")
    }
}

impl prometheus_client::collector::Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((repositories, bytes)) = (self.0)() else { return Ok(()) };
        for (name, help, v) in [
            ("wharf_repositories", "Repositories in the storage", repositories as f64),
            (
                "wharf_stored_bytes",
                "Bytes of the blobs repositories link, each blob counted once",
                bytes as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Go's standard process collector, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessStats::read() else { return Ok(()) };
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        counter(
            &mut encoder,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            p.cpu_seconds,
        )?;
        gauge(&mut encoder, "process_open_fds", "Number of open file descriptors", p.open_fds)?;
        if let Some(max) = p.max_fds {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors", max)?;
        }
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            p.start_time_seconds,
        )?;
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    virtual_bytes: f64,
    resident_bytes: f64,
    start_time_seconds: f64,
}

impl ProcessStats {
    fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| after.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0) as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            open_fds,
            max_fds,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page as f64,
            start_time_seconds: boot + field(22)? / ticks,
        })
    }
}

/// registry:2's `health.storagedriver`: the storage is checked every `interval`, and reported
/// unhealthy once `threshold` checks in a row have failed.
#[derive(Debug, Clone)]
pub struct StorageCheck {
    pub enabled: bool,
    pub interval: Duration,
    pub threshold: u32,
}

/// What `/debug/health` reports, updated by the storage check.
#[derive(Default)]
pub struct Health {
    /// The storage driver's last error once the threshold is reached, under distribution's
    /// check name (`storagedriver_<storage type>`).
    storage_error: std::sync::Mutex<Option<(&'static str, String)>>,
}

/// One check of the storage, as the storage is configured: Err with the error to report.
pub type StorageProbe = Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// distribution's check of a filesystem root, as a probe.
pub fn filesystem_probe(root: std::path::PathBuf) -> StorageProbe {
    Arc::new(move || {
        let root = root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || storage_ok(&root))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        })
    })
}

impl Health {
    /// Runs `probe` in the background every interval; its failures are reported under `name`,
    /// distribution's `storagedriver_<storage type>` (`storagedriver_filesystem`, `storagedriver_s3`).
    pub fn spawn_storage_check(self: &Arc<Self>, name: &'static str, probe: StorageProbe, check: StorageCheck) {
        if !check.enabled {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match probe().await {
                    Ok(()) => {
                        failures = 0;
                        health.set_storage_error(None);
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= check.threshold.max(1) {
                            health.set_storage_error(Some((name, e)));
                        }
                    }
                }
                tokio::time::sleep(check.interval.max(Duration::from_millis(100))).await;
            }
        });
    }

    fn set_storage_error(&self, e: Option<(&'static str, String)>) {
        *self.storage_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    fn report(&self) -> (axum::http::StatusCode, String) {
        match &*self.storage_error.lock().unwrap_or_else(|e| e.into_inner()) {
            None => (axum::http::StatusCode::OK, "{}".into()),
            Some((name, e)) => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ *name: e }).to_string(),
            ),
        }
    }
}

/// distribution's check: stat the storage root (a root that does not exist yet is fine).
fn storage_ok(root: &std::path::Path) -> Result<(), String> {
    let v2 = root.join("docker/registry/v2");
    match std::fs::metadata(&v2) {
        Ok(m) if m.is_dir() => std::fs::read_dir(&v2).map(|_| ()).map_err(|e| e.to_string()),
        Ok(_) => Err(format!("{} is not a directory", v2.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::metadata(root) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// The debug server's routes: `/debug/health`, and the metrics at `metrics_path` when on.
pub fn debug_router(health: Arc<Health>, metrics: Option<(Arc<Metrics>, String)>) -> axum::Router {
    use axum::response::IntoResponse;
    let router = axum::Router::new().route(
        "/debug/health",
        axum::routing::get(move || {
            let health = health.clone();
            async move {
                let (status, body) = health.report();
                (
                    status,
                    [
                        (axum::http::header::CONTENT_TYPE, "application/json; charset=utf-8"),
                        (axum::http::header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    );
    match metrics {
        None => router,
        Some((metrics, path)) => router.route(
            &path,
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
                    ([(axum::http::header::CONTENT_TYPE, content_type)], metrics.render()).into_response()
                }
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names_follow_distribution_routes() {
        for (path, want) in [
            ("/v2/", "base"),
            ("/v2", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/tags/list", "tags"),
            ("/v2/a/blobs/uploads/", "blob_upload"),
            ("/v2/a/blobs/uploads/3f2a", "blob_upload_chunk"),
            ("/v2/a/blobs/sha256:00", "blob"),
            ("/v2/a/manifests/latest", "manifest"),
            ("/v2/a/referrers/sha256:00", "referrers"),
            ("/other", "other"),
        ] {
            assert_eq!(handler_name(path), want, "{path}");
        }
    }

    #[test]
    fn resolved_handles_keep_counting_in_the_same_series() {
        let m = Metrics::new();
        for status in [200, 200, 418, 418] {
            m.begin("/v2/a/tags/list", &axum::http::Method::GET, 10).finish(status, 20);
        }
        let text = m.render();
        for want in [
            "registry_http_requests_total{handler=\"tags\",code=\"200\",method=\"get\"} 2",
            "registry_http_requests_total{handler=\"tags\",code=\"418\",method=\"get\"} 2",
            "registry_http_request_duration_seconds_count{handler=\"tags\",method=\"get\"} 4",
            "registry_http_request_size_bytes_sum{handler=\"tags\"} 40",
            "registry_http_response_size_bytes_sum{handler=\"tags\"} 80",
            "registry_http_in_flight_requests{handler=\"tags\"} 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("handler=\"manifest\""), "series appear only once used");
    }

    #[test]
    fn renders_registry2_names_and_process_metrics() {
        let m = Metrics::new();
        m.begin("/v2/a/manifests/latest", &axum::http::Method::GET, 0).finish(200, 512);
        let _open = m.begin("/v2/a/blobs/sha256:00", &axum::http::Method::HEAD, 0);
        m.watch_uploads(|| 2);
        let hook = m.notifications.endpoint("hook");
        hook.queued(3);
        hook.answered(503);
        hook.answered(200);
        let text = m.render();
        for want in [
            "registry_http_requests_total{handler=\"manifest\",code=\"200\",method=\"get\"} 1",
            "registry_http_request_duration_seconds_bucket{handler=\"manifest\",method=\"get\",le=\"0.005\"} 1",
            "registry_http_in_flight_requests{handler=\"blob\"} 1",
            "registry_http_in_flight_requests{handler=\"manifest\"} 0",
            "registry_http_response_size_bytes_sum{handler=\"manifest\"} 512",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "wharf_upload_sessions_in_flight 2",
            "registry_notifications_events_total{type=\"Events\",endpoint=\"hook\"} 3",
            "registry_notifications_pending_total{endpoint=\"hook\"} 2",
            "registry_notifications_status_total{code=\"503 Service Unavailable\",endpoint=\"hook\"} 1",
            "registry_notifications_events_total{type=\"Successes\",endpoint=\"hook\"} 1",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
