//! registry:2's notification families (distribution's notifications/metrics.go, through
//! docker/go-metrics): `registry_notifications_events_total{type,endpoint}` with `type` one of
//! `Events` (queued), `Successes`, `Failures` (answered, not accepted) and `Errors` (no answer);
//! `registry_notifications_pending_total{endpoint}` (events in the queue); and
//! `registry_notifications_status_total{code,endpoint}` with Go's `"200 OK"` code text. wharf
//! adds `wharf_notifications_dropped_total{endpoint}`: events refused by a full queue.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeEndpoint {
    r#type: &'static str,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeEndpoint {
    code: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// The families, shared by every endpoint; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct NotificationMetrics {
    events: Family<TypeEndpoint, Counter>,
    pending: Family<EndpointLabel, Gauge>,
    status: Family<CodeEndpoint, Counter>,
    dropped: Family<EndpointLabel, Counter>,
}

/// One endpoint's handles, resolved once.
#[derive(Clone, Debug)]
pub struct EndpointMetrics {
    family: NotificationMetrics,
    name: String,
    events: Counter,
    successes: Counter,
    failures: Counter,
    errors: Counter,
    pending: Gauge,
    dropped: Counter,
}

impl NotificationMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        let n = registry.sub_registry_with_prefix("registry_notifications");
        n.register("events", "The number of total events", self.events.clone());
        n.register("pending_total", "The gauge of pending events in queue", self.pending.clone());
        n.register("status", "The number of status code", self.status.clone());
        registry.register(
            "wharf_notifications_dropped",
            "Events not queued because the endpoint's queue was full",
            self.dropped.clone(),
        );
    }

    pub fn endpoint(&self, name: &str) -> EndpointMetrics {
        let typed = |t: &'static str| {
            self.events
                .get_or_create(&TypeEndpoint {
                    r#type: t,
                    endpoint: name.to_string(),
                })
                .clone()
        };
        let label = EndpointLabel {
            endpoint: name.to_string(),
        };
        EndpointMetrics {
            family: self.clone(),
            name: name.to_string(),
            events: typed("Events"),
            successes: typed("Successes"),
            failures: typed("Failures"),
            errors: typed("Errors"),
            pending: self.pending.get_or_create(&label).clone(),
            dropped: self.dropped.get_or_create(&label).clone(),
        }
    }
}

impl EndpointMetrics {
    pub fn queued(&self, n: u64) {
        self.events.inc_by(n);
        self.pending.inc_by(n as i64);
    }

    /// Events found queued by an earlier run.
    pub fn recovered(&self, n: u64) {
        self.pending.inc_by(n as i64);
    }

    pub fn dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }

    /// An answer: 2xx is a success (the event leaves the queue), anything else a failure.
    pub fn answered(&self, status: u16) {
        let reason = axum::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let code = format!("{status} {reason}").trim_end().to_string();
        self.family
            .status
            .get_or_create(&CodeEndpoint {
                code,
                endpoint: self.name.clone(),
            })
            .inc();
        if (200..300).contains(&status) {
            self.successes.inc();
            self.pending.dec();
        } else {
            self.failures.inc();
        }
    }

    /// No answer at all (refused connection, timeout, TLS failure).
    pub fn errored(&self) {
        self.errors.inc();
    }
}
