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
use std::sync::Arc;
use std::time::{Duration, Instant};

mod histogram;
use histogram::AtomicHistogram;

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
        registry.register_collector(Box::new(ProcessCollector));
        if let Some(totals) = totals {
            registry.register_collector(Box::new(StorageCollector(totals)));
        }
        Arc::new(Metrics {
            registry,
            requests,
            durations,
            in_flight,
            request_sizes,
            response_sizes,
        })
    }

    /// Counts a request in flight until the returned guard is finished or dropped.
    pub fn begin(self: &Arc<Self>, path: &str, method: &axum::http::Method, request_bytes: u64) -> Request {
        let handler = handler_name(path);
        self.in_flight.get_or_create(&Handler { handler }).inc();
        self.request_sizes.get_or_create(&Handler { handler }).observe(request_bytes as f64);
        Request {
            metrics: self.clone(),
            handler,
            method: method_name(method),
            started: Instant::now(),
        }
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
    handler: &'static str,
    method: &'static str,
    started: Instant,
}

impl Request {
    /// Records the answer once its body has been sent (or abandoned).
    pub fn finish(self, status: u16, response_bytes: u64) {
        let m = &self.metrics;
        let handler = self.handler;
        m.in_flight.get_or_create(&Handler { handler }).dec();
        m.requests
            .get_or_create(&HandlerCodeMethod {
                handler,
                code: status,
                method: self.method,
            })
            .inc();
        m.durations
            .get_or_create(&HandlerMethod {
                handler,
                method: self.method,
            })
            .observe(self.started.elapsed().as_secs_f64());
        m.response_sizes.get_or_create(&Handler { handler }).observe(response_bytes as f64);
    }
}

/// distribution's route name for a request path (after any `http.prefix`).
pub fn handler_name(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/v2") else { return "other" };
    if rest.is_empty() || rest == "/" {
        return "base";
    }
    if rest == "/_catalog" {
        return "catalog";
    }
    if rest.ends_with("/tags/list") {
        return "tags";
    }
    if let Some((_, id)) = rest.rsplit_once("/blobs/uploads") {
        return if id.trim_start_matches('/').is_empty() {
            "blob_upload"
        } else {
            "blob_upload_chunk"
        };
    }
    if rest.contains("/blobs/") {
        return "blob";
    }
    if rest.contains("/manifests/") {
        return "manifest";
    }
    if rest.contains("/referrers/") {
        return "referrers";
    }
    "other"
}

fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::PUT => "put",
        Method::POST => "post",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "other",
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
    /// The storage driver's last error once the threshold is reached.
    storage_error: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Runs the storage check on `root` in the background.
    pub fn spawn_storage_check(self: &Arc<Self>, root: std::path::PathBuf, check: StorageCheck) {
        if !check.enabled {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let root = root.clone();
                let outcome = tokio::task::spawn_blocking(move || storage_ok(&root)).await;
                let outcome = outcome.unwrap_or_else(|e| Err(e.to_string()));
                match outcome {
                    Ok(()) => {
                        failures = 0;
                        health.set_storage_error(None);
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= check.threshold.max(1) {
                            health.set_storage_error(Some(e));
                        }
                    }
                }
                tokio::time::sleep(check.interval.max(Duration::from_millis(100))).await;
            }
        });
    }

    fn set_storage_error(&self, e: Option<String>) {
        *self.storage_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    fn report(&self) -> (axum::http::StatusCode, String) {
        match &*self.storage_error.lock().unwrap_or_else(|e| e.into_inner()) {
            None => (axum::http::StatusCode::OK, "{}".into()),
            Some(e) => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "storagedriver_filesystem": e }).to_string(),
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
    fn renders_registry2_names_and_process_metrics() {
        let m = Metrics::new();
        m.begin("/v2/a/manifests/latest", &axum::http::Method::GET, 0).finish(200, 512);
        let _open = m.begin("/v2/a/blobs/sha256:00", &axum::http::Method::HEAD, 0);
        let text = m.render();
        for want in [
            "registry_http_requests_total{handler=\"manifest\",code=\"200\",method=\"get\"} 1",
            "registry_http_request_duration_seconds_bucket{handler=\"manifest\",method=\"get\",le=\"0.005\"} 1",
            "registry_http_in_flight_requests{handler=\"blob\"} 1",
            "registry_http_in_flight_requests{handler=\"manifest\"} 0",
            "registry_http_response_size_bytes_sum{handler=\"manifest\"} 512",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
