//! Upload sessions as multipart uploads, with all state in the bucket so that any replica can
//! continue a session another one began:
//!
//! - `_uploads/<id>/startedat`: registry:2's start time (its purge reads it);
//! - `_uploads/<id>/wharf-session`: [`Session`], the multipart upload id, the ETags of the
//!   parts uploaded so far and how many bytes are buffered in the tail. It is written last in
//!   every request, so it is the commit point: a request that fails before it leaves the
//!   session as it was (parts uploaded past the recorded ones are overwritten by the retry,
//!   which uses the same part numbers);
//! - `_uploads/<id>/wharf-tail`: the bytes after the last full part (fewer than `chunksize`),
//!   which S3 cannot take as a part yet;
//! - `_uploads/<id>/hashstates/<alg>/<offset>`: the running digest, as on the filesystem.
//!
//! The multipart upload is made at registry:2's `_uploads/<id>/data`, created with the first
//! full part (a blob smaller than `chunksize` never needs one). Commit completes it there and
//! copies the object to the blob's key, as registry:2's `Move` does (S3 cannot rename; see
//! [`copy`](super::copy) for the copy in parts of large blobs).
//!
//! A request buffers at most `chunksize` plus one network chunk, and has at most
//! [`PARTS_IN_FLIGHT`](super::parts::PARTS_IN_FLIGHT) full parts being sent meanwhile. Two replicas appending to one
//! session at the same time (a client breaking the spec's one-request-at-a-time rule) can lose
//! one of the chunks: the last session write wins and the digest check at commit refuses the
//! result, so nothing wrong is ever committed.

use super::parts::PartPipeline;
use super::{store_error, ObjectBackend};
use crate::oci::{Algorithm, Digest, RepoName};
use crate::store::{ByteStream, StoreError, StoreErrorKind, StoreResult, UploadInfo, UploadStore};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path as Key;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Session {
    /// Unix seconds when the session began.
    started: i64,
    /// The multipart upload at `_uploads/<id>/data`, once the first part was uploaded.
    multipart: Option<String>,
    /// ETags of the uploaded parts, in order (part numbers 1..).
    parts: Vec<String>,
    /// Bytes in the uploaded parts.
    parts_size: u64,
    /// Bytes in `wharf-tail`.
    tail: u64,
    /// The multipart upload at the blob's key that a commit's copy in parts is filling,
    /// recorded before its first part: a commit that failed part-way leaves it, and the
    /// retry (or the session's deletion) aborts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copy: Option<PendingCopy>,
}

/// A copy in parts begun at a blob's key and not known to be completed or aborted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingCopy {
    blob: String,
    upload: String,
}

impl PendingCopy {
    fn key(&self) -> Key {
        Key::from(self.blob.as_str())
    }
}

impl Session {
    fn size(&self) -> u64 {
        self.parts_size + self.tail
    }

    fn started(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.started.max(0) as u64)
    }
}

/// Parts the store acknowledged, in order, added to the session in memory.
fn record_parts(s: &mut Session, done: Vec<(PartId, u64)>) {
    for (PartId { content_id }, len) in done {
        s.parts.push(content_id);
        s.parts_size += len;
    }
}

fn unknown(id: &str) -> StoreError {
    StoreError::new(StoreErrorKind::NotFound, format!("upload session {id} does not exist"))
}

impl ObjectBackend {
    async fn session(&self, repo: &RepoName, id: &str) -> StoreResult<Option<Session>> {
        let Some((bytes, _)) = self.get_small(&self.keys.upload_state(repo, id)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::new(StoreErrorKind::Backend, format!("upload session {id}: unreadable state: {e}")))
    }

    async fn save_session(&self, repo: &RepoName, id: &str, s: &Session) -> StoreResult<()> {
        let json = serde_json::to_vec(s).map_err(|e| StoreError::new(StoreErrorKind::Backend, e.to_string()))?;
        self.put(&self.keys.upload_state(repo, id), Bytes::from(json)).await
    }

    async fn tail(&self, repo: &RepoName, id: &str, s: &Session) -> StoreResult<Bytes> {
        if s.tail == 0 {
            return Ok(Bytes::new());
        }
        let (bytes, _) = self.get_small(&self.keys.upload_tail(repo, id)).await?.ok_or_else(|| unknown(id))?;
        if bytes.len() as u64 != s.tail {
            return Err(StoreError::new(
                StoreErrorKind::Backend,
                format!("upload session {id}: its tail holds {} bytes, not {}", bytes.len(), s.tail),
            ));
        }
        Ok(bytes)
    }

    /// Uploads `part` as the next part of the session's multipart upload (made now if needed).
    async fn put_part(&self, repo: &RepoName, id: &str, s: &mut Session, part: Bytes) -> StoreResult<()> {
        let pipeline = self.part_pipeline(repo, id, s).await?;
        record_parts(s, pipeline.send_one(part).await?);
        Ok(())
    }

    /// Appends `body` to the session in memory `s`, uploading full parts as they fill, while
    /// the body is read on (see [`PartPipeline`]).
    async fn append_parts(&self, repo: &RepoName, id: &str, s: &mut Session, mut body: ByteStream) -> StoreResult<()> {
        let chunk_size = self.tuning.chunk_size as usize;
        let mut buffer = BytesMut::with_capacity(chunk_size);
        buffer.extend_from_slice(&self.tail(repo, id, s).await?);
        s.tail = 0;
        let mut parts: Option<PartPipeline> = None;
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(StoreError::client_aborted)?;
            while !chunk.is_empty() {
                // Parts are exactly `chunksize`, each in a buffer of its own made at that size:
                // a growing buffer would double past it, and a part split off a shared one
                // would keep the whole allocation alive while it is sent.
                let room = chunk_size.saturating_sub(buffer.len());
                buffer.extend_from_slice(&chunk.split_to(room.min(chunk.len())));
                if buffer.len() < chunk_size {
                    continue;
                }
                let part = std::mem::replace(&mut buffer, BytesMut::with_capacity(chunk_size));
                let pipeline = match &mut parts {
                    Some(p) => p,
                    None => parts.insert(self.part_pipeline(repo, id, s).await?),
                };
                let done = pipeline.send(part.freeze()).await?;
                record_parts(s, done);
            }
        }
        if let Some(p) = parts {
            record_parts(s, p.finish().await?);
        }
        if !buffer.is_empty() {
            s.tail = buffer.len() as u64;
            self.put(&self.keys.upload_tail(repo, id), buffer.freeze()).await?;
        }
        Ok(())
    }

    /// Parts numbered on from those the session has, in its multipart upload (made now if needed).
    async fn part_pipeline(&self, repo: &RepoName, id: &str, s: &mut Session) -> StoreResult<PartPipeline> {
        let key = self.keys.upload_data(repo, id);
        let upload = match &s.multipart {
            Some(u) => u.clone(),
            None => {
                let u = self.s3.create_multipart(&key).await.map_err(store_error)?;
                s.multipart = Some(u.clone());
                u
            }
        };
        Ok(PartPipeline::new(self.s3.clone(), key, upload, s.parts.len()))
    }

    /// Copies the session's assembled `_uploads/<id>/data` to `blob` (see [`super::copy`]),
    /// and checks what landed there. A copy in parts is recorded in the session before its
    /// first part, so that a failure which also defeats the abort (the store gone) leaves
    /// nothing unknown: the next attempt, or the session's deletion, aborts it.
    async fn copy_to_blob(&self, repo: &RepoName, id: &str, s: &mut Session, blob: &Key) -> StoreResult<()> {
        let data = self.keys.upload_data(repo, id);
        if let Some(old) = s.copy.take() {
            self.copy_abort(&old.key(), &old.upload).await?;
        }
        let size = s.size();
        if self.copies_in_parts(size) {
            let upload = self.copy_begin(blob).await?;
            s.copy = Some(PendingCopy {
                blob: blob.to_string(),
                upload: upload.clone(),
            });
            let copied = match self.save_session(repo, id, s).await {
                Ok(()) => self.copy_parts(&data, blob, &upload, size).await,
                Err(e) => Err(e),
            };
            if let Err(e) = copied {
                // Best effort: if the abort fails too, the session's record is still there.
                let _ = self.copy_abort(blob, &upload).await;
                return Err(e);
            }
            s.copy = None;
        } else {
            self.copy_whole(&data, blob).await?;
        }
        match self.head(blob).await? {
            Some(m) if m.size == size => Ok(()),
            found => {
                // Never seen on a store that does what it answers; a blob key holds the
                // blob's bytes or nothing.
                if found.is_some() {
                    self.delete(blob).await?;
                }
                Err(StoreError::new(
                    StoreErrorKind::Backend,
                    format!("the copy of upload {id} to {blob} did not leave {size} bytes there"),
                ))
            }
        }
    }

    /// Makes the session's bytes one object at `_uploads/<id>/data`; None when they fit in the
    /// tail alone (then they are returned to be written directly).
    async fn assemble(&self, repo: &RepoName, id: &str, s: &mut Session) -> StoreResult<Option<Bytes>> {
        let tail = self.tail(repo, id, s).await?;
        let Some(upload) = s.multipart.clone() else { return Ok(Some(tail)) };
        let key = self.keys.upload_data(repo, id);
        // A commit retried after its copy failed: the upload was completed already (and the
        // tail sent as its last part, which the saved session does not record).
        if let Some(m) = self.head(&key).await? {
            if m.size == s.size() {
                return Ok(None);
            }
        }
        if !tail.is_empty() {
            // The last part may be smaller than S3's minimum.
            s.tail = 0;
            self.put_part(repo, id, s, tail).await?;
        }
        let parts = s.parts.iter().map(|e| PartId { content_id: e.clone() }).collect();
        if let Err(e) = self.s3.complete_multipart(&key, &upload, parts).await {
            // A commit retried after its completion succeeded finds the upload gone and the
            // object in place.
            match self.head(&key).await? {
                Some(m) if m.size == s.size() => {}
                _ => return Err(store_error(e)),
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl UploadStore for ObjectBackend {
    async fn upload_create(&self, repo: &RepoName, id: &str) -> StoreResult<()> {
        let now = OffsetDateTime::now_utc();
        let started = now
            .format(&Rfc3339)
            .map_err(|e| StoreError::new(StoreErrorKind::Backend, e.to_string()))?;
        let session = Session {
            started: now.unix_timestamp(),
            ..Default::default()
        };
        // Both at once: expiry finds a session by either object, so a crash between the two
        // writes leaves nothing it cannot see.
        let started_key = self.keys.upload_started(repo, id);
        let (started, state) = tokio::join!(self.put(&started_key, Bytes::from(started)), self.save_session(repo, id, &session));
        started.and(state)
    }

    async fn upload_info(&self, repo: &RepoName, id: &str) -> StoreResult<Option<UploadInfo>> {
        Ok(self.session(repo, id).await?.map(|s| UploadInfo {
            size: s.size(),
            started: s.started(),
        }))
    }

    async fn upload_append(&self, repo: &RepoName, id: &str, body: ByteStream) -> StoreResult<u64> {
        let mut s = self.session(repo, id).await?.ok_or_else(|| unknown(id))?;
        let before = s.multipart.is_some();
        // Nothing is recorded until the session state is written: on failure the stored
        // session is unchanged, and the retry resends the chunk into the same part numbers.
        let appended = self.append_parts(repo, id, &mut s, body).await;
        if let Err(e) = appended {
            if let (false, Some(upload)) = (before, &s.multipart) {
                // Made by this request and recorded nowhere: abort it (best effort, since
                // the bucket's lifecycle rules or the purge of the session clean up too).
                let _ = self.s3.abort_multipart(&self.keys.upload_data(repo, id), upload).await;
            }
            return Err(e);
        }
        self.save_session(repo, id, &s).await?;
        Ok(s.size())
    }

    async fn upload_read(&self, repo: &RepoName, id: &str) -> StoreResult<ByteStream> {
        let s = self.session(repo, id).await?.ok_or_else(|| unknown(id))?;
        if s.multipart.is_some() {
            // Parts of an incomplete multipart upload cannot be read back; the hash state
            // saved after every request is what resumes such a session.
            return Err(StoreError::new(
                StoreErrorKind::Backend,
                format!("upload session {id}: its uploaded parts cannot be read back and no hash state covers them"),
            ));
        }
        let tail = self.tail(repo, id, &s).await?;
        Ok(futures::stream::once(async move { Ok(tail) }).boxed())
    }

    async fn upload_hash_save(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64, state: Bytes) -> StoreResult<()> {
        // A PUT is durable when it returns, so the bytes the state covers already are.
        match self.session(repo, id).await? {
            Some(s) if s.size() == offset => {}
            _ => return Ok(()),
        }
        let dir = self.keys.hash_states(repo, id, alg);
        let current = self.keys.hash_state(repo, id, alg, offset);
        self.put(&current, state).await?;
        for old in self.list_all(&dir).await? {
            // Only the newest offset can be resumed from.
            if old.location != current {
                self.delete(&old.location).await?;
            }
        }
        Ok(())
    }

    async fn upload_hash_load(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64) -> StoreResult<Option<Bytes>> {
        Ok(self.get_small(&self.keys.hash_state(repo, id, alg, offset)).await?.map(|(b, _)| b))
    }

    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> StoreResult<()> {
        let mut s = self.session(repo, id).await?.ok_or_else(|| unknown(id))?;
        let blob = self.keys.blob(digest);
        // Content-addressed: if the blob is there, it holds these very bytes.
        if self.head(&blob).await?.is_none() {
            match self.assemble(repo, id, &mut s).await? {
                Some(small) => self.put(&blob, small).await?,
                None => self.copy_to_blob(repo, id, &mut s, &blob).await?,
            }
        } else if let Some(upload) = &s.multipart {
            let _ = self.s3.abort_multipart(&self.keys.upload_data(repo, id), upload).await;
        }
        if let Some(copy) = &s.copy {
            // Left by an earlier attempt whose copy failed, the blob made meanwhile.
            let _ = self.copy_abort(&copy.key(), &copy.upload).await;
        }
        self.delete_all(&self.keys.upload_dir(repo, id)).await.map(drop)
    }

    async fn upload_delete(&self, repo: &RepoName, id: &str) -> StoreResult<bool> {
        let session = self.session(repo, id).await?;
        if let Some(copy) = session.as_ref().and_then(|s| s.copy.as_ref()) {
            self.copy_abort(&copy.key(), &copy.upload).await?;
        }
        if let Some(upload) = session.as_ref().and_then(|s| s.multipart.as_ref()) {
            match self.s3.abort_multipart(&self.keys.upload_data(repo, id), upload).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        let removed = self.delete_all(&self.keys.upload_dir(repo, id)).await?;
        Ok(removed || session.is_some())
    }

    async fn uploads_expired(&self, age: Duration, housekeeping: bool) -> StoreResult<Vec<(RepoName, String)>> {
        let prefix = self.keys.repositories();
        let mut sessions: BTreeMap<(RepoName, String), SystemTime> = BTreeMap::new();
        for meta in self.list_all(&prefix).await? {
            let Some(parts) = super::keys::below(&meta.location, &prefix) else {
                continue;
            };
            // <repo...>/_uploads/<id>/startedat or wharf-session (written at once: either may
            // be there alone after a crash), the older one's time kept.
            if let [repo @ .., "_uploads", id, "startedat" | "wharf-session"] = parts.as_slice() {
                if let Some(repo) = RepoName::parse(&repo.join("/")) {
                    let created = SystemTime::from(meta.last_modified);
                    let seen = sessions.entry((repo, id.to_string())).or_insert(created);
                    *seen = (*seen).min(created);
                }
            }
        }
        let now = SystemTime::now();
        let mut expired = Vec::new();
        for ((repo, id), created) in sessions {
            let old = |t: SystemTime| now.duration_since(t).is_ok_and(|a| a > age);
            match self.session(&repo, &id).await? {
                Some(s) if old(s.started()) => expired.push((repo, id)),
                Some(_) => {}
                // registry:2's own sessions have no wharf state; a crash between the two
                // first writes leaves the same. Either way only its age can tell.
                None if housekeeping && old(created) => {
                    self.upload_delete(&repo, &id).await?;
                    tracing::info!(repository = %repo, upload = %id, "removed an upload session wharf cannot resume");
                }
                None => {}
            }
        }
        Ok(expired)
    }
}
