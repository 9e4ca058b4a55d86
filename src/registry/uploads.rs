//! Blob upload sessions: start, append chunks (hashing as the bytes stream to storage), report
//! progress, commit with a verified digest, cancel, and cross-repository mounts.

use super::events::{Action, Target};
use super::{Registry, RequestContext, Result};
use crate::oci::digest::Hasher;
use crate::oci::{Algorithm, Digest, ErrorCode, RegistryError, RepoName};
use crate::store::{ByteStream, Link, StoreError};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The last chunk a request finishing an upload carries.
pub struct LastChunk {
    pub range: Option<ChunkRange>,
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

/// An inclusive byte range from a `Content-Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub size: u64,
    pub started: std::time::SystemTime,
}

/// Per session, the lock every change to it takes (append, finish, cancel, purge) and the hash
/// progress, so each chunk is hashed once as it arrives. The progress is also saved in the store
/// after each chunk: a session this map forgot (a restart, another process) resumes from there,
/// and only without a saved state is the digest recomputed from the stored bytes.
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<HashState>>>>,
    /// Sessions this run opened and has not seen finished, cancelled or purged (a gauge for
    /// metrics; sessions left by an earlier run are not counted).
    open: std::sync::atomic::AtomicU64,
}

/// A blob at most this large that arrives whole in the request finishing an empty session is
/// read into memory, verified, and stored with one write (`blob_put`), without the session's
/// append and commit steps: on object storage those are a dozen round trips to the bucket.
const WHOLE_IN_ONE_WRITE: u64 = 1024 * 1024;

/// Sessions whose running hash is kept; past this, idle ones are forgotten.
const MAX_TRACKED_SESSIONS: usize = 1024;

#[derive(Default)]
pub(super) struct HashState {
    /// The hash of the session's first `hasher.hashed()` bytes.
    hasher: Option<Hasher>,
}

impl Sessions {
    fn opened(&self) {
        self.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// One session fewer, never below zero (a session from before the start may end).
    pub(super) fn closed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.open.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    pub(super) fn open_count(&self) -> u64 {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn key(repo: &RepoName, id: &str) -> String {
        format!("{repo}\0{id}")
    }

    pub(super) fn get(&self, repo: &RepoName, id: &str) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_SESSIONS {
            // Sessions clients abandoned stay on disk until the purge; their hash progress need
            // not stay in memory that long. Only entries no request holds are dropped; a session
            // that resumes later has its digest recomputed from the stored bytes.
            map.retain(|_, state| Arc::strong_count(state) > 1);
            map.shrink_to_fit();
        }
        map.entry(Self::key(repo, id)).or_default().clone()
    }

    pub(super) fn forget(&self, repo: &RepoName, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&Self::key(repo, id));
    }
}

/// Repositories a mount without `from` looks into at most. Each costs a link lookup, so the
/// bound keeps one request from walking a very large registry; past it the client uploads the
/// blob, which the spec allows whenever a registry cannot mount.
const MOUNT_SEARCH_LIMIT: usize = 10_000;

/// Session ids become path components, so only the characters a UUID uses are accepted.
pub fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadUnknown,
        format!("upload {id} is not in progress (finished, cancelled or purged)"),
    )
}

/// What went wrong with a body while it streamed, recorded so the error can be reported as the
/// client's fault rather than a storage failure.
#[derive(Default)]
struct Meter {
    seen: u64,
    violation: Option<String>,
}

/// Bodies at least this large (or of unknown length) are hashed on a thread of their own.
const HASH_ASIDE_AT_LEAST: u64 = 1024 * 1024;

/// Where a body's bytes are hashed.
enum Hashing {
    /// Not at all: the running hash was lost, so the digest is recomputed at the end.
    None,
    /// On the connection's thread, as each chunk arrives: cheapest for small bodies.
    Inline(Hasher),
    /// On a blocking thread fed through a bounded channel, so that sha256 (the costliest step
    /// of a push) runs beside the network reads and the disk writes instead of between them.
    Aside {
        chunks: tokio_util::sync::PollSender<Bytes>,
        done: tokio::task::JoinHandle<Hasher>,
    },
}

impl Hashing {
    fn start(hasher: Option<Hasher>, expected: Option<u64>) -> Hashing {
        let Some(mut hasher) = hasher else { return Hashing::None };
        if expected.is_some_and(|n| n < HASH_ASIDE_AT_LEAST) {
            return Hashing::Inline(hasher);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let large = crate::alloc::LargeBody::begin();
        let done = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            drop(large);
            hasher
        });
        Hashing::Aside {
            chunks: tokio_util::sync::PollSender::new(tx),
            done,
        }
    }

    /// Ready when a chunk can be taken: the hashing thread has room for it.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Hashing::Aside { chunks, .. } = self {
            if std::task::ready!(chunks.poll_reserve(cx)).is_err() {
                // The hashing thread is gone (it can only have panicked): carry on without a
                // running hash, and the digest is recomputed from the stored bytes.
                *self = Hashing::None;
            }
        }
        Poll::Ready(())
    }

    fn update(&mut self, chunk: &Bytes) {
        match self {
            Hashing::None => {}
            Hashing::Inline(h) => h.update(chunk),
            Hashing::Aside { chunks, .. } => {
                if chunks.send_item(chunk.clone()).is_err() {
                    *self = Hashing::None;
                }
            }
        }
    }

    /// The hash of everything passed to `update`, once the hashing thread has caught up.
    async fn finish(self) -> Option<Hasher> {
        match self {
            Hashing::None => None,
            Hashing::Inline(h) => Some(h),
            Hashing::Aside { chunks, done } => {
                drop(chunks);
                done.await.ok()
            }
        }
    }
}

/// Wraps a request body: hashes each chunk and enforces the declared length. Ending early or
/// running over yields an error, which makes the store roll the append back.
struct MeteredBody {
    inner: ByteStream,
    meter: Arc<Mutex<Meter>>,
    /// Shared with `append`, which takes it back when the store is done with the body.
    hashing: Arc<Mutex<Hashing>>,
    expected: Option<u64>,
    finished: bool,
}

impl Stream for MeteredBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let expected = this.expected;
        let mut hashing = this.hashing.lock().unwrap_or_else(|e| e.into_inner());
        std::task::ready!(hashing.poll_room(cx));
        let polled = this.inner.poll_next_unpin(cx);
        let mut meter = this.meter.lock().unwrap_or_else(|e| e.into_inner());
        let violation = match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                meter.seen += chunk.len() as u64;
                hashing.update(chunk);
                expected
                    .filter(|&e| meter.seen > e)
                    .map(|e| format!("body is longer than the declared {e} bytes"))
            }
            Poll::Ready(None) => expected
                .filter(|&e| meter.seen != e)
                .map(|e| format!("body has {} bytes but {e} were declared", meter.seen)),
            _ => None,
        };
        if let Some(v) = violation {
            meter.violation = Some(v.clone());
            this.finished = true;
            return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidInput, v))));
        }
        if matches!(polled, Poll::Ready(None)) {
            this.finished = true;
        }
        polled
    }
}

/// Whether `c` can be the whole blob (see [`WHOLE_IN_ONE_WRITE`]): a declared length within the
/// bound, and a range, if any, from 0 over exactly that length. Anything else takes the
/// ordinary path, which also answers the errors.
fn whole_blob(c: &LastChunk) -> bool {
    let Some(len) = c.content_length.filter(|n| (1..=WHOLE_IN_ONE_WRITE).contains(n)) else {
        return false;
    };
    c.range.is_none_or(|r| r.start == 0 && r.end + 1 == len)
}

impl Registry {
    /// Opens a session whose running hash uses `algorithm` (the client's `digest-algorithm`).
    /// It is only where hashing starts: a session finished with a digest of another algorithm
    /// is hashed again from the stored bytes.
    pub async fn upload_start(&self, repo: &RepoName, algorithm: Algorithm) -> Result<UploadStatus> {
        self.check_writable()?;
        let id = uuid::Uuid::new_v4().to_string();
        let started = std::time::SystemTime::now();
        self.store.uploads.upload_create(repo, &id).await?;
        self.uploads.opened();
        if algorithm != Algorithm::Sha256 {
            let session = self.uploads.get(repo, &id);
            session.lock().await.hasher = Some(algorithm.hasher());
        }
        // Just made, so nothing to read back: empty, started about now.
        Ok(UploadStatus { id, size: 0, started })
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        if !valid_upload_id(id) {
            return Err(upload_unknown(id));
        }
        let info = self.store.uploads.upload_info(repo, id).await?.ok_or_else(|| upload_unknown(id))?;
        Ok(UploadStatus {
            id: id.to_string(),
            size: info.size,
            started: info.started,
        })
    }

    /// Appends a chunk. With a `Content-Range` it must start exactly where the session ends.
    pub async fn upload_patch(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        self.check_writable()?;
        let (session, _) = self.sessions_lock(repo, id).await?;
        let mut state = session.lock().await;
        let size = self.append(repo, id, &mut state, range, content_length, body).await?;
        self.save_hash_state(repo, id, &state, size).await;
        drop(state);
        let started = self.upload_status(repo, id).await?.started;
        Ok(UploadStatus {
            id: id.to_string(),
            size,
            started,
        })
    }

    /// Finishes an upload: appends the last chunk if any, verifies the digest over everything
    /// received, and only then makes the blob visible.
    pub async fn upload_finish(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        last: Option<LastChunk>,
    ) -> Result<()> {
        self.check_writable()?;
        let (session, status) = self.sessions_lock(repo, id).await?;
        let mut state = session.lock().await;
        let last = match last {
            Some(c) if status.size == 0 && whole_blob(&c) => return self.finish_whole(ctx, repo, id, &mut state, digest, c).await,
            other => other,
        };
        let size = match last {
            Some(c) => self.append(repo, id, &mut state, c.range, c.content_length, c.body).await?,
            None => self.upload_status(repo, id).await?.size,
        };
        let actual = self.session_digest(repo, id, &state, digest.algorithm(), size).await?;
        if &actual != digest {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("uploaded content has digest {actual}, not {digest}; nothing was committed"),
            )
            .with_detail(serde_json::json!({ "expected": digest.to_string(), "actual": actual.to_string(), "size": size })));
        }
        // The blob may exist already, unreferenced and old: touched, the collection keeps it
        // or deletes it before the commit, which then stores it again (`gc::fence`).
        let entered = self.gc_enter([digest], true).await?;
        self.store.uploads.upload_commit(repo, id, digest).await?;
        entered.check_window()?;
        self.store
            .metadata
            .link_write(&Link::Layer(repo.clone(), digest.clone()), digest)
            .await
            .map_err(|e| RegistryError::storage_when(e, "the blob was stored but not linked to the repository; push it again"))?;
        entered.check_window()?;
        drop(entered);
        self.uploads.forget(repo, id);
        self.uploads.closed();
        self.events.emit(ctx, Action::Push, || Target::blob(repo, digest, size));
        Ok(())
    }

    /// Single-request upload (`POST ?digest=` with the whole blob as body).
    pub async fn upload_monolithic(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        digest: &Digest,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let status = self.upload_start(repo, digest.algorithm()).await?;
        let result = self
            .upload_finish(
                ctx,
                repo,
                &status.id,
                digest,
                Some(LastChunk {
                    range: None,
                    content_length,
                    body,
                }),
            )
            .await;
        if result.is_err() {
            // The client never saw this session, so nobody can resume it.
            let _ = self.store.uploads.upload_delete(repo, &status.id).await;
            self.uploads.forget(repo, &status.id);
            self.uploads.closed();
        }
        result
    }

    /// Cancels a session. It waits for a chunk being appended, so a PATCH never answers 202 for
    /// a session already removed.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        if !valid_upload_id(id) {
            return Err(upload_unknown(id));
        }
        let session = self.uploads.get(repo, id);
        let _held = session.lock().await;
        let removed = self.store.uploads.upload_delete(repo, id).await;
        self.uploads.forget(repo, id);
        if !removed? {
            return Err(upload_unknown(id));
        }
        self.uploads.closed();
        Ok(())
    }

    /// Links a blob another repository already has. Returns false when it cannot (the caller
    /// then starts an ordinary upload session, as the spec asks).
    pub async fn blob_mount(&self, ctx: &RequestContext, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        self.check_writable()?;
        let entered = self.gc_enter([digest], true).await?;
        if !self.blob_linked(from, digest).await? {
            return Ok(false);
        }
        let Some(info) = self.store.blobs.blob_stat(digest).await? else {
            return Ok(false);
        };
        entered.check_window()?;
        self.store
            .metadata
            .link_write(&Link::Layer(repo.clone(), digest.clone()), digest)
            .await?;
        entered.check_window()?;
        drop(entered);
        self.events.emit(ctx, Action::Mount, || {
            let (kind, mut target) = Target::blob(repo, digest, info.size);
            target.from_repository = from.to_string();
            (kind, target)
        });
        Ok(true)
    }

    /// A mount without `from`, which the spec lets a registry honour: the blob is mounted from
    /// the first repository holding it among those `readable` lets through (the caller's pull
    /// rights), so it is never found through a repository the caller could not read. Bytes no
    /// repository links any more (deleted, awaiting garbage collection) are not mounted.
    pub async fn blob_mount_from_any(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        digest: &Digest,
        readable: impl Fn(&str) -> bool,
    ) -> Result<bool> {
        self.check_writable()?;
        // Most mounts name layers the registry does not have at all: one lookup answers them.
        if self.store.blobs.blob_stat(digest).await?.is_none() {
            return Ok(false);
        }
        let mut examined = 0;
        for name in self.store.metadata.repositories().await? {
            let Some(source) = RepoName::parse(&name).filter(|_| readable(&name)) else {
                continue;
            };
            if examined == MOUNT_SEARCH_LIMIT {
                break;
            }
            examined += 1;
            if self.blob_linked(&source, digest).await? {
                return self.blob_mount(ctx, repo, digest, &source).await;
            }
        }
        Ok(false)
    }

    /// The session's lock (not taken yet), and its status as read before taking it.
    async fn sessions_lock(&self, repo: &RepoName, id: &str) -> Result<(Arc<tokio::sync::Mutex<HashState>>, UploadStatus)> {
        let status = self.upload_status(repo, id).await?;
        Ok((self.uploads.get(repo, id), status))
    }

    /// Finishes an empty session whose whole blob is `chunk` (see [`WHOLE_IN_ONE_WRITE`]): the
    /// bytes are verified in memory and stored in one write, then linked while the session is
    /// removed. The empty session was read before its lock was taken; a chunk appended by another
    /// request meanwhile (a client breaking the one-request-at-a-time rule) is discarded with the
    /// session, and what is stored is exactly the verified body.
    async fn finish_whole(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        id: &str,
        state: &mut HashState,
        digest: &Digest,
        chunk: LastChunk,
    ) -> Result<()> {
        let declared = chunk.content_length.unwrap_or(0);
        let mut bytes = bytes::BytesMut::with_capacity(declared as usize);
        let mut body = chunk.body;
        while let Some(part) = body.next().await {
            let part = part.map_err(|e| RegistryError::storage(StoreError::client_aborted(e)))?;
            if (bytes.len() + part.len()) as u64 > declared {
                return Err(RegistryError::new(
                    ErrorCode::SizeInvalid,
                    format!("body has more than the {declared} bytes declared; the chunk was discarded"),
                ));
            }
            bytes.extend_from_slice(&part);
        }
        if bytes.len() as u64 != declared {
            return Err(RegistryError::new(
                ErrorCode::SizeInvalid,
                format!(
                    "body has {} bytes but {declared} were declared; the chunk was discarded",
                    bytes.len()
                ),
            ));
        }
        let bytes = bytes.freeze();
        let mut hasher = digest.algorithm().hasher();
        hasher.update(&bytes);
        let actual = hasher.finish();
        if &actual != digest {
            return Err(RegistryError::new(
                ErrorCode::DigestInvalid,
                format!("uploaded content has digest {actual}, not {digest}; nothing was committed"),
            )
            .with_detail(serde_json::json!({ "expected": digest.to_string(), "actual": actual.to_string(), "size": declared })));
        }
        let entered = self.gc_enter([digest], true).await?;
        let stored = self.store.blobs.blob_put(digest, bytes.clone()).await;
        if let Err(e) = stored.map_err(RegistryError::from).and_then(|_| entered.check_window()) {
            self.keep_in_session(repo, id, state, bytes).await;
            return Err(e);
        }
        // The blob is stored: its link and the session's removal do not depend on each other.
        let layer = Link::Layer(repo.clone(), digest.clone());
        let (linked, removed) = tokio::join!(
            self.store.metadata.link_write(&layer, digest),
            self.store.uploads.upload_delete(repo, id)
        );
        linked.map_err(|e| RegistryError::storage_when(e, "the blob was stored but not linked to the repository; push it again"))?;
        entered.check_window()?;
        drop(entered);
        if let Err(e) = removed {
            tracing::warn!(repository = %repo, upload = %id, error = %e, "the blob is committed but its session was not removed; the upload purge removes it");
        }
        self.uploads.forget(repo, id);
        self.uploads.closed();
        self.events.emit(ctx, Action::Push, || Target::blob(repo, digest, declared));
        Ok(())
    }

    /// After a failed one-write store of a verified whole blob: its bytes go into the session,
    /// as the ordinary path keeps a chunk whose commit failed, so nothing the client sent is lost
    /// and a `PUT ?digest=` without a body finishes it once the storage recovers.
    async fn keep_in_session(&self, repo: &RepoName, id: &str, state: &mut HashState, bytes: bytes::Bytes) {
        let len = bytes.len() as u64;
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        match self.append(repo, id, state, None, Some(len), body).await {
            Ok(size) => self.save_hash_state(repo, id, state, size).await,
            Err(e) => {
                tracing::warn!(repository = %repo, upload = %id, error = %e, "a blob whose store failed could not be kept in its session either; the client must send it again")
            }
        }
    }

    async fn append(
        &self,
        repo: &RepoName,
        id: &str,
        state: &mut HashState,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let size = self.upload_status(repo, id).await?.size;
        let expected = match range {
            Some(r) => {
                if r.start != size || r.end < r.start {
                    return Err(RegistryError::new(
                        ErrorCode::RangeInvalid,
                        format!(
                            "chunk {}-{} does not continue the upload, which holds {size} bytes (next chunk starts at {size})",
                            r.start, r.end
                        ),
                    ));
                }
                let len = r.end - r.start + 1;
                if content_length.is_some_and(|cl| cl != len) {
                    return Err(RegistryError::new(
                        ErrorCode::SizeInvalid,
                        format!("Content-Length does not match Content-Range {}-{}", r.start, r.end),
                    ));
                }
                Some(len)
            }
            None => content_length,
        };
        let hasher = match state.hasher.take() {
            Some(h) if h.hashed() == size => Some(h),
            _ if size == 0 => Some(Algorithm::Sha256.hasher()),
            _ => self.saved_hasher(repo, id, None, size).await,
        };
        let meter = Arc::new(Mutex::new(Meter::default()));
        let hashing = Arc::new(Mutex::new(Hashing::start(hasher, expected)));
        let metered = MeteredBody {
            inner: body,
            meter: meter.clone(),
            hashing: hashing.clone(),
            expected,
            finished: false,
        };
        let result = self.store.uploads.upload_append(repo, id, metered.boxed()).await;
        // The store has dropped the body by now, so this is the only holder left.
        let hashing = std::mem::replace(&mut *hashing.lock().unwrap_or_else(|e| e.into_inner()), Hashing::None);
        let hasher = hashing.finish().await;
        let mut meter = meter.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(new_size) => {
                state.hasher = hasher.filter(|h| h.hashed() == new_size);
                Ok(new_size)
            }
            Err(e) => {
                // The store rolled back to `size`; the hash state is still for `size` bytes only
                // if nothing was hashed, so drop it and let the digest be recomputed if needed.
                state.hasher = None;
                match meter.violation.take() {
                    Some(v) => Err(RegistryError::new(ErrorCode::SizeInvalid, format!("{v}; the chunk was discarded"))),
                    None => Err(RegistryError::storage(e)),
                }
            }
        }
    }

    /// The digest of everything the session holds: from the running hash when it covers all of
    /// it, else from the state saved in the store, and only without either recomputed from the
    /// stored bytes.
    async fn session_digest(&self, repo: &RepoName, id: &str, state: &HashState, alg: Algorithm, size: u64) -> Result<Digest> {
        if let Some(h) = state.hasher.as_ref().filter(|h| h.hashed() == size && h.algorithm() == alg) {
            return Ok(h.clone().finish());
        }
        if let Some(h) = self.saved_hasher(repo, id, Some(alg), size).await {
            return Ok(h.finish());
        }
        tracing::debug!(repository = %repo, upload = %id, "no hash state for the session's length; reading it back");
        let mut hasher = alg.hasher();
        let mut stream = self.store.uploads.upload_read(repo, id).await?;
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(StoreError::from)?);
        }
        Ok(hasher.finish())
    }
}

impl Registry {
    /// Saves the running hash after a chunk, so the session resumes anywhere without reading its
    /// data back. Only an optimisation: when saving fails the chunk still counts, and a resume
    /// recomputes the digest.
    async fn save_hash_state(&self, repo: &RepoName, id: &str, state: &HashState, size: u64) {
        let Some(h) = state.hasher.as_ref().filter(|h| h.hashed() == size) else {
            return;
        };
        let saved = self
            .store
            .uploads
            .upload_hash_save(repo, id, h.algorithm(), size, Bytes::from(h.save()))
            .await;
        if let Err(e) = saved {
            tracing::warn!(repository = %repo, upload = %id, error = %e, "could not save the upload's hash state; a resume will read the data back");
        }
    }

    /// A hasher resumed from the state saved for exactly `size` bytes, of `alg` or (when the
    /// session's algorithm is not known here) of any algorithm wharf hashes with.
    async fn saved_hasher(&self, repo: &RepoName, id: &str, alg: Option<Algorithm>, size: u64) -> Option<Hasher> {
        let candidates = match alg {
            Some(a) => vec![a],
            None => vec![Algorithm::Sha256, Algorithm::Sha512],
        };
        for alg in candidates {
            match self.store.uploads.upload_hash_load(repo, id, alg, size).await {
                Ok(Some(saved)) => {
                    if let Some(h) = Hasher::restore(alg, &saved).filter(|h| h.hashed() == size) {
                        return Some(h);
                    }
                    tracing::warn!(repository = %repo, upload = %id, "ignoring an unreadable hash state");
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(repository = %repo, upload = %id, error = %e, "could not read the upload's hash state"),
            }
        }
        None
    }
}
