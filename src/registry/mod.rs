//! The registry domain, free of HTTP: push, pull, mount, delete, list, referrers, purging.
//! Each operation validates against what the store holds and returns a `RegistryError` whose
//! code the spec defines.

mod blobs;
pub mod context;
pub mod events;
pub mod gc;
pub mod listing;
mod manifests;
pub mod purge;
mod referrers;
pub mod retention;
pub mod summary;
pub mod upload_state;
mod uploads;
pub mod usage;

pub use blobs::BlobBody;
pub use context::RequestContext;
pub use gc::{GcOptions, GcReport, GcStatus};
pub use manifests::{ManifestPut, StoredManifest};
pub use uploads::{ChunkRange, LastChunk, UploadStatus};

use crate::oci::{ErrorCode, RegistryError};
use crate::store::Storage;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Settings that change registry behaviour (not transport).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// registry:2's `storage.delete.enabled`: without it DELETE is refused.
    pub delete_enabled: bool,
    /// registry:2's `storage.maintenance.readonly.enabled`: pushes and deletes are refused.
    pub read_only: bool,
    /// `storage.maintenance.retention`: policies and protected tags.
    pub retention: Option<std::sync::Arc<retention::Rules>>,
    /// `storage.maintenance.gc.delay` for collections asked for without one (None: 1 hour).
    pub gc_delay: Option<std::time::Duration>,
    /// Other processes (replicas on object storage) write the same store: garbage collection
    /// then publishes its candidates and waits for the replicas' rescues (`gc::shared`).
    pub shared_storage: bool,
    /// `storage.maintenance.gc.{window,poll,margin,maxrunage}` (shared storage only).
    pub gc_timing: gc::shared::Timing,
}

pub struct Registry {
    store: Storage,
    options: Options,
    uploads: uploads::Sessions,
    manifests: manifests::Cache,
    events: events::Events,
    gc: gc::Gc,
}

impl Registry {
    pub fn new(store: Storage, options: Options) -> Registry {
        Registry {
            store,
            options,
            uploads: uploads::Sessions::default(),
            manifests: manifests::Cache::default(),
            events: events::Events::default(),
            gc: gc::Gc::default(),
        }
    }

    pub fn store(&self) -> &Storage {
        &self.store
    }

    /// Upload sessions this run opened that are still open (not finished, cancelled or purged).
    pub fn upload_sessions_open(&self) -> u64 {
        self.uploads.open_count()
    }

    /// Every push, pull, mount and delete from now on (see `events`).
    pub fn subscribe(&self) -> events::Subscription {
        self.events.subscribe()
    }

    /// Events subscribers lost by falling behind.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    fn check_delete_enabled(&self) -> Result<()> {
        self.check_writable()?;
        if !self.options.delete_enabled {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "deletes are disabled; enable them with storage.delete.enabled: true (REGISTRY_STORAGE_DELETE_ENABLED=true)",
            ));
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        if self.options.read_only {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                "the registry is in read-only mode (storage.maintenance.readonly)",
            ));
        }
        Ok(())
    }
}
