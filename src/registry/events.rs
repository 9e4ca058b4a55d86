//! The registry's event stream: push, pull, mount and delete, emitted by the domain once an
//! operation has succeeded, for webhooks, metrics and audit to consume. Events have the fields
//! (and serialise to the JSON) of registry:2's notification events
//! (`application/vnd.docker.distribution.events.v2+json`), so a webhook sink only has to wrap
//! them in `{"events": [...]}`.
//!
//! A bounded broadcast channel carries them: a receiver that falls behind loses the oldest
//! events rather than slowing pushes and pulls down, and what it lost is counted. With no
//! receiver nothing is built at all.

use super::context::RequestContext;
use crate::oci::{Digest, RepoName};
use serde::{Serialize, Serializer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::broadcast;

/// Events a receiver may fall behind by before it loses the oldest.
pub const BUFFER: usize = 4096;

/// registry:2's media type for a blob: it does not know what a blob holds.
const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
}

/// One event, in registry:2's shape (`notifications.Event`).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: OffsetDateTime,
    pub action: Action,
    pub target: Target,
    pub request: RequestRecord,
    pub actor: ActorRecord,
    pub source: SourceRecord,
}

/// What the event is about. `mediaType`, `digest` and `size` are always written, as Go writes
/// its descriptor; the rest only when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// The same as `size`, which registry:2 keeps for older receivers.
    #[serde(skip_serializing_if = "is_zero")]
    pub length: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub method: String,
    pub useragent: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActorRecord {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry process that generated the event; `instanceID` changes on every start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceRecord {
    #[serde(rename = "instanceID", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn rfc3339<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// Which API path a target's URL goes under.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Manifest,
    Blob,
    /// A tag deleted: it has no content URL.
    Tag,
}

impl Target {
    pub(super) fn manifest(repo: &RepoName, digest: &Digest, media_type: &str, size: u64) -> (Kind, Target) {
        let target = Target {
            media_type: media_type.to_string(),
            ..Target::of(repo, digest, size)
        };
        (Kind::Manifest, target)
    }

    pub(super) fn blob(repo: &RepoName, digest: &Digest, size: u64) -> (Kind, Target) {
        let target = Target {
            media_type: BLOB_MEDIA_TYPE.to_string(),
            ..Target::of(repo, digest, size)
        };
        (Kind::Blob, target)
    }

    /// What registry:2 reports of a delete by digest: the repository and the digest.
    pub(super) fn deleted(kind: Kind, repo: &RepoName, digest: &Digest) -> (Kind, Target) {
        (kind, Target::of(repo, digest, 0))
    }

    /// A whole repository deleted: only its name.
    pub(super) fn repository(repo: &RepoName) -> (Kind, Target) {
        Self::tag(repo, "")
    }

    pub(super) fn tag(repo: &RepoName, tag: &str) -> (Kind, Target) {
        let target = Target {
            repository: repo.to_string(),
            tag: tag.to_string(),
            ..Target::default()
        };
        (Kind::Tag, target)
    }

    fn of(repo: &RepoName, digest: &Digest, size: u64) -> Target {
        Target {
            digest: digest.to_string(),
            size,
            length: size,
            repository: repo.to_string(),
            ..Target::default()
        }
    }
}

/// The sending side, owned by the registry.
pub struct Events {
    sender: broadcast::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
    instance_id: String,
}

impl Default for Events {
    fn default() -> Events {
        Events::with_buffer(BUFFER)
    }
}

impl Events {
    pub fn with_buffer(buffer: usize) -> Events {
        Events {
            sender: broadcast::channel(buffer).0,
            dropped: Arc::new(AtomicU64::new(0)),
            instance_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Whether anyone listens: without receivers an operation builds no event.
    pub(super) fn wanted(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Sends an event for `ctx`'s request; `target` is only built when someone listens.
    pub(super) fn emit(&self, ctx: &RequestContext, action: Action, target: impl FnOnce() -> (Kind, Target)) {
        if !self.wanted() {
            return;
        }
        let (kind, mut target) = target();
        if !ctx.api_base.is_empty() {
            target.url = match kind {
                Kind::Manifest => format!("{}{}/manifests/{}", ctx.api_base, target.repository, target.digest),
                Kind::Blob => format!("{}{}/blobs/{}", ctx.api_base, target.repository, target.digest),
                Kind::Tag => String::new(),
            };
        }
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: OffsetDateTime::now_utc(),
            action,
            target,
            request: RequestRecord {
                id: ctx.request_id.clone(),
                addr: ctx.addr.clone(),
                host: ctx.host.clone(),
                method: ctx.method.clone(),
                useragent: ctx.user_agent.clone(),
            },
            actor: ActorRecord {
                name: ctx.actor.clone().unwrap_or_default(),
            },
            source: SourceRecord {
                instance_id: self.instance_id.clone(),
            },
        };
        // An error only means the last receiver went away meanwhile.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            dropped: self.dropped.clone(),
        }
    }

    /// Events receivers lost by falling behind, over all receivers since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A receiver of every event emitted after it subscribed.
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Event>>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event; `None` once the registry is gone. Events lost by falling behind are
    /// counted and skipped.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.count_lost(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.count_lost(n),
                Err(_) => return None,
            }
        }
    }

    fn count_lost(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(lost = n, "an event receiver fell behind and lost the oldest events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RequestContext {
        RequestContext {
            actor: Some("alice".into()),
            addr: "192.0.2.7:40000".into(),
            request_id: "req-1".into(),
            user_agent: "docker/27".into(),
            host: "registry.example:5000".into(),
            method: "PUT".into(),
            api_base: "https://registry.example:5000/v2/".into(),
        }
    }

    #[test]
    fn nothing_is_built_without_receivers() {
        let events = Events::default();
        let mut built = false;
        events.emit(&ctx(), Action::Push, || {
            built = true;
            Target::tag(&RepoName::parse("app").unwrap(), "v1")
        });
        assert!(!built);
    }

    #[test]
    fn events_serialise_with_registry2_field_names() {
        let events = Events::default();
        let mut sub = events.subscribe();
        let repo = RepoName::parse("team/app").unwrap();
        let digest = Digest::sha256_of(b"m");
        events.emit(&ctx(), Action::Push, || {
            let (kind, mut t) = Target::manifest(&repo, &digest, "application/vnd.oci.image.manifest.v1+json", 321);
            t.tag = "v1".into();
            (kind, t)
        });
        let event = sub.try_recv().expect("an event");
        let json = serde_json::to_value(&*event).unwrap();
        assert_eq!(json["action"], "push");
        assert_eq!(json["target"]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(json["target"]["digest"], digest.to_string());
        assert_eq!(json["target"]["size"], 321);
        assert_eq!(json["target"]["length"], 321);
        assert_eq!(json["target"]["repository"], "team/app");
        assert_eq!(json["target"]["tag"], "v1");
        assert_eq!(
            json["target"]["url"],
            format!("https://registry.example:5000/v2/team/app/manifests/{digest}")
        );
        assert_eq!(json["request"]["id"], "req-1");
        assert_eq!(json["request"]["addr"], "192.0.2.7:40000");
        assert_eq!(json["request"]["host"], "registry.example:5000");
        assert_eq!(json["request"]["method"], "PUT");
        assert_eq!(json["request"]["useragent"], "docker/27");
        assert_eq!(json["actor"]["name"], "alice");
        assert!(json["source"]["instanceID"].as_str().is_some_and(|s| !s.is_empty()));
        let stamp = json["timestamp"].as_str().unwrap();
        OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).expect("RFC 3339 timestamp");
        assert!(
            json["target"].get("fromRepository").is_none(),
            "empty fields are left out as Go's omitempty does"
        );
    }

    #[test]
    fn a_slow_receiver_loses_the_oldest_and_the_loss_is_counted() {
        let events = Events::with_buffer(2);
        let mut sub = events.subscribe();
        let repo = RepoName::parse("app").unwrap();
        for i in 0..5 {
            events.emit(&ctx(), Action::Delete, || Target::tag(&repo, &format!("t{i}")));
        }
        let tags: Vec<String> = std::iter::from_fn(|| sub.try_recv()).map(|e| e.target.tag.clone()).collect();
        assert_eq!(tags, ["t3", "t4"]);
        assert_eq!(events.dropped(), 3);
    }
}
