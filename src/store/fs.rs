//! The filesystem backend: where bytes reach the disk, in registry:2's layout.
//!
//! Blocking file work runs on tokio's blocking pool. Uploads stream through a bounded channel to
//! a writer thread, so the network side (which hashes) and the disk side run in parallel and a
//! blob is never held whole in memory.

use super::append::{append_from_channel, WriteMsg};
use super::paths::{Layout, Link, LinkSet};
use super::{durable, hashstates, streams};
use super::{
    BlobInfo, BlobOpen, BlobRead, BlobStore, ByteStream, LinkInfo, MetadataStore, StoreError, StoreErrorKind, StoreResult, UploadInfo,
    UploadStore,
};
use crate::oci::{Algorithm, Digest, RepoName, Tag};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Blobs smaller than this are read rather than memory-mapped: a map costs more than it saves.
const MAP_AT_LEAST: u64 = 256 * 1024;

/// distribution's name for this driver (the `driver` label of the storage metrics).
pub const DRIVER_NAME: &str = "filesystem";

#[derive(Clone)]
pub struct FsStore {
    layout: Arc<Layout>,
    /// Held across a tag compare-and-swap's read and write.
    tag_swaps: Arc<std::sync::Mutex<()>>,
}

impl FsStore {
    pub fn new(root: &Path) -> io::Result<FsStore> {
        let layout = Layout::new(root);
        durable::create_dir_all(layout.v2())?;
        Ok(FsStore {
            layout: Arc::new(layout),
            tag_swaps: Arc::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs blocking filesystem work off the async threads.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Layout) -> io::Result<T> + Send + 'static,
    {
        let layout = self.layout.clone();
        let done = tokio::task::spawn_blocking(move || f(&layout)).await.map_err(io::Error::other)?;
        Ok(done?)
    }
}

fn not_found_as_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_link(path: &Path) -> io::Result<Option<Digest>> {
    let Some(content) = not_found_as_none(fs::read_to_string(path))? else {
        return Ok(None);
    };
    content
        .trim()
        .parse()
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Lists `<dir>/<alg>/<hex>/link` entries as digests.
fn list_digest_links(dir: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    let Some(algs) = not_found_as_none(fs::read_dir(dir))? else {
        return Ok(out);
    };
    for alg in algs {
        let alg = alg?;
        for entry in fs::read_dir(alg.path())? {
            let entry = entry?;
            let name = format!("{}:{}", alg.file_name().to_string_lossy(), entry.file_name().to_string_lossy());
            if let Ok(d) = name.parse::<Digest>() {
                if entry.path().join("link").is_file() {
                    out.push(d);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Repository directories are those holding `_manifests`, `_layers` or `_uploads`; directories
/// starting with `_` are registry bookkeeping, never repository names.
/// A directory under `repositories/` is a repository only when it holds registry data of its own;
/// `a/` is just a path segment when only `a/b` was pushed, and asking it for tags is NAME_UNKNOWN.
fn is_repository(dir: &Path) -> bool {
    dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
}

fn walk_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let Some(entries) = not_found_as_none(fs::read_dir(dir))? else {
        return Ok(());
    };
    let mut is_repo = false;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "_manifests" || name == "_layers" {
            is_repo = true;
        } else if !name.starts_with('_') {
            let child = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            walk_repositories(&entry.path(), &child, out)?;
        }
    }
    if is_repo && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    Ok(())
}

/// Upload sessions anywhere under `dir`: a repository whose first push was interrupted has
/// `_uploads` and nothing else, and its sessions must still be found to be purged.
fn walk_uploads(dir: &Path, prefix: &str, out: &mut Vec<(RepoName, String)>) -> io::Result<()> {
    let Some(entries) = not_found_as_none(fs::read_dir(dir))? else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "_uploads" {
            let Some(repo) = RepoName::parse(prefix) else { continue };
            for session in not_found_as_none(fs::read_dir(entry.path()))?.into_iter().flatten() {
                out.push((repo.clone(), session?.file_name().to_string_lossy().into_owned()));
            }
        } else if !name.starts_with('_') {
            let child = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            walk_uploads(&entry.path(), &child, out)?;
        }
    }
    Ok(())
}

/// When a blob was stored. Committed data is never written again, so its modification time is
/// the moment its last bytes arrived; registry:2 records nothing else.
fn stored_at(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Names in `dir` in lexical order (none if it does not exist).
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in not_found_as_none(fs::read_dir(dir))?.into_iter().flatten() {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Up to `limit` of the `blobs/<alg>/<xx>/<hex>/data` strictly after `after`, in digest order.
/// Only the prefix directories from `after`'s on are read, so a sweep paging through the
/// store lists each directory about once instead of the whole tree for every page.
fn list_blobs_page(blobs: &Path, after: Option<&Digest>, limit: usize) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg_name in sorted_names(blobs)? {
        let Ok(alg) = Algorithm::from_name(&alg_name) else { continue };
        if after.is_some_and(|a| alg < a.algorithm()) {
            continue;
        }
        let from = after.filter(|a| a.algorithm() == alg).map(|a| &a.hex()[..2]);
        for prefix in sorted_names(&blobs.join(&alg_name))? {
            if from.is_some_and(|f| prefix.as_str() < f) {
                continue;
            }
            let dir = blobs.join(&alg_name).join(&prefix);
            let mut here: Vec<Digest> = sorted_names(&dir)?
                .into_iter()
                // A directory outside its prefix is not where the blob's path leads.
                .filter(|hex| hex.starts_with(prefix.as_str()))
                .filter_map(|hex| format!("{alg_name}:{hex}").parse::<Digest>().ok())
                .filter(|d| after.is_none_or(|a| d > a))
                .collect();
            here.retain(|d| dir.join(d.hex()).join("data").is_file());
            out.extend(here);
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }
    Ok(out)
}

fn write_started_at(path: &Path) -> io::Result<()> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(io::Error::other)?;
    fs::write(path, now)
}

fn read_started_at(path: &Path) -> SystemTime {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok())
        .map(SystemTime::from)
        // Without a readable timestamp, fall back to the directory's age.
        .or_else(|| path.parent().and_then(|p| p.metadata().ok()).and_then(|m| m.modified().ok()))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl BlobStore for FsStore {
    async fn blob_stat(&self, digest: &Digest) -> StoreResult<Option<BlobInfo>> {
        let d = digest.clone();
        self.blocking(move |l| {
            not_found_as_none(fs::metadata(l.blob_data(&d))).map(|m| {
                m.map(|m| BlobInfo {
                    size: m.len(),
                    created: stored_at(&m),
                })
            })
        })
        .await
    }

    async fn blob_open(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobOpen>> {
        let d = digest.clone();
        let opened = self
            .blocking(move |l| {
                let Some(f) = not_found_as_none(File::open(l.blob_data(&d)))? else {
                    return Ok(None);
                };
                let size = f.metadata()?.len();
                Ok(Some((f, size)))
            })
            .await?;
        Ok(opened.map(|(f, size)| {
            let (start, len) = match range {
                Some((a, b)) => (a, b.saturating_sub(a) + 1),
                None => (0, size),
            };
            // Never past the end: a map beyond it would fault instead of reading short.
            let len = len.min(size.saturating_sub(start));
            let body = if len >= MAP_AT_LEAST {
                streams::mapped_stream(f, start, len)
            } else {
                streams::read_stream(f, start, len)
            };
            BlobOpen::Stream(BlobRead { size, body })
        }))
    }

    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>> {
        let d = digest.clone();
        self.blocking(move |l| not_found_as_none(fs::read(l.blob_data(&d))).map(|o| o.map(Bytes::from)))
            .await
    }

    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<bool> {
        super::check_content_digest(digest, &content)?;
        let d = digest.clone();
        self.blocking(move |l| {
            let target = l.blob_data(&d);
            if target.is_file() {
                return Ok(false);
            }
            durable::write_file(&l.tmp_dir(), &target, &content).map(|()| true)
        })
        .await
    }

    async fn blob_delete_if_older_than(&self, digest: &Digest, cut: SystemTime) -> StoreResult<bool> {
        let d = digest.clone();
        self.blocking(move |l| {
            let Some(meta) = not_found_as_none(fs::metadata(l.blob_data(&d)))? else {
                return Ok(false);
            };
            if stored_at(&meta) >= cut {
                return Ok(false);
            }
            // The whole blob directory goes, as registry:2's collector removes it; open maps
            // of the data stay valid (unlinked, not truncated). No fsync of the parent: a removal
            // a crash undoes only brings back an unreferenced blob with the right bytes, which the
            // next collection takes again. What must not be undone is the removal of the links
            // that named it, and those are made durable (link deletes sync) before the sweep
            // deletes the blob. Half of a collection's syncs were these.
            match fs::remove_dir_all(l.blob_dir(&d)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn blobs_page(&self, after: Option<&Digest>, limit: usize) -> StoreResult<Vec<Digest>> {
        let after = after.cloned();
        self.blocking(move |l| list_blobs_page(&l.blobs(), after.as_ref(), limit)).await
    }
}

#[async_trait]
impl UploadStore for FsStore {
    async fn upload_create(&self, repo: &RepoName, id: &str) -> StoreResult<()> {
        let (repo, id) = (repo.clone(), id.to_string());
        self.blocking(move |l| {
            // Built aside and renamed into place, so a session directory that exists always
            // has its data file and start time, even after a crash. A new session needs no
            // fsync: one a power loss forgets is answered BLOB_UPLOAD_UNKNOWN and started again,
            // and nothing acknowledged depends on it. Parent directories are still made
            // durably, once, so later commits can rely on them.
            let target = l.upload_dir(&repo, &id);
            durable::create_dir_all(&l.tmp_dir())?;
            durable::create_dir_all(target.parent().unwrap_or(&target))?;
            let staging = l.tmp_dir().join(durable::temp_name());
            fs::create_dir(&staging)?;
            let built = write_started_at(&staging.join("startedat"))
                .and_then(|()| File::create(staging.join("data")).map(drop))
                .and_then(|()| fs::rename(&staging, &target));
            if built.is_err() {
                let _ = fs::remove_dir_all(&staging);
            }
            built
        })
        .await
    }

    async fn upload_info(&self, repo: &RepoName, id: &str) -> StoreResult<Option<UploadInfo>> {
        let (repo, id) = (repo.clone(), id.to_string());
        self.blocking(move |l| {
            let dir = l.upload_dir(&repo, &id);
            let Some(meta) = not_found_as_none(fs::metadata(dir.join("data")))? else {
                return Ok(None);
            };
            Ok(Some(UploadInfo {
                size: meta.len(),
                started: read_started_at(&dir.join("startedat")),
            }))
        })
        .await
    }

    async fn upload_append(&self, repo: &RepoName, id: &str, mut body: ByteStream) -> StoreResult<u64> {
        let path = self.layout.upload_dir(repo, id).join("data");
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let writer = tokio::task::spawn_blocking(move || append_from_channel(path, rx));
        let mut failure = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    if tx.send(WriteMsg::Chunk(chunk)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            let _ = tx.send(WriteMsg::Finish).await;
        }
        drop(tx);
        let written = writer.await.map_err(io::Error::other)?;
        match failure {
            // The body failed, not the disk: the client's stream broke or broke the rules.
            Some(e) => Err(StoreError::client_aborted(e)),
            None => Ok(written?),
        }
    }

    async fn upload_read(&self, repo: &RepoName, id: &str) -> StoreResult<ByteStream> {
        let path = self.layout.upload_dir(repo, id).join("data");
        let (f, len) = self
            .blocking(move |_| {
                let f = File::open(path)?;
                let len = f.metadata()?.len();
                Ok((f, len))
            })
            .await?;
        Ok(streams::read_stream(f, 0, len))
    }

    async fn upload_hash_save(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64, state: Bytes) -> StoreResult<()> {
        let (repo, id) = (repo.clone(), id.to_string());
        self.blocking(move |l| hashstates::save(l, &repo, &id, alg, offset, &state).map(drop))
            .await
    }

    async fn upload_hash_load(&self, repo: &RepoName, id: &str, alg: Algorithm, offset: u64) -> StoreResult<Option<Bytes>> {
        let (repo, id) = (repo.clone(), id.to_string());
        self.blocking(move |l| hashstates::load(l, &repo, &id, alg, offset).map(|s| s.map(Bytes::from)))
            .await
    }

    async fn upload_commit(&self, repo: &RepoName, id: &str, digest: &Digest) -> StoreResult<()> {
        let (repo, id, d) = (repo.clone(), id.to_string(), digest.clone());
        self.blocking(move |l| {
            let dir = l.upload_dir(&repo, &id);
            let target = l.blob_data(&d);
            // Content-addressed: if another push committed the same digest, ours is identical.
            let needed = !target.is_file();
            if needed {
                File::open(dir.join("data"))?.sync_all()?;
                // Directories first: they are what a full disk refuses, and the session is
                // still intact for a retry if that happens.
                durable::create_dir_all(target.parent().unwrap_or(&target))?;
            }
            // Take the session out of sight before its data moves, so a crash leaves a
            // temporary leftover (purged later). This rename needs no fsync of its own: should
            // a power loss keep the data's move below but not this one, what reappears is a
            // session without data, which reads as unknown and is purged as a remnant.
            durable::create_dir_all(&l.tmp_dir())?;
            let staging = l.tmp_dir().join(durable::temp_name());
            fs::rename(&dir, &staging)?;
            if needed {
                if let Err(e) = durable::rename_into(&staging.join("data"), &target) {
                    let _ = fs::rename(&staging, &dir);
                    return Err(e);
                }
            }
            // The staging leftovers need no fsync: if a crash brings them back, they are an
            // ordinary temporary leftover and purged as such.
            fs::remove_dir_all(&staging)?;
            Ok(())
        })
        .await
    }

    async fn upload_delete(&self, repo: &RepoName, id: &str) -> StoreResult<bool> {
        let (repo, id) = (repo.clone(), id.to_string());
        self.blocking(move |l| {
            // Moved out of sight in one step, then removed: a crash halfway through removing
            // files must not leave a session without its data (the purge could not age it).
            durable::create_dir_all(&l.tmp_dir())?;
            let staging = l.tmp_dir().join(durable::temp_name());
            match fs::rename(l.upload_dir(&repo, &id), &staging) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            if let Some(parent) = l.upload_dir(&repo, &id).parent() {
                durable::sync_dir(parent)?;
            }
            durable::remove_dir_all(&staging)?;
            Ok(true)
        })
        .await
    }

    async fn uploads_expired(&self, age: Duration, housekeeping: bool) -> StoreResult<Vec<(RepoName, String)>> {
        let sessions = self
            .blocking(|l| {
                let mut out = Vec::new();
                walk_uploads(&l.repositories(), "", &mut out)?;
                Ok(out)
            })
            .await?;
        let now = SystemTime::now();
        let mut expired = Vec::new();
        for (repo, id) in sessions {
            // Sessions are created whole, so one without its data is the remnant of a crash
            // (or of an older version's interrupted delete): nothing can resume it.
            let Some(info) = self.upload_info(&repo, &id).await? else {
                if housekeeping {
                    self.upload_delete(&repo, &id).await?;
                    tracing::info!(repository = %repo, upload = %id, "removed the remnant of an interrupted upload");
                }
                continue;
            };
            if now.duration_since(info.started).is_ok_and(|a| a > age) {
                expired.push((repo, id));
            }
        }
        if housekeeping {
            // Staging leftovers of interrupted writes age like sessions do.
            let leftovers = self.purge_temporary(age).await?;
            if leftovers > 0 {
                tracing::info!(count = leftovers, "removed leftovers of interrupted writes");
            }
        }
        Ok(expired)
    }
}

impl FsStore {
    /// Removes leftovers of writes a crash interrupted (staged files and sessions being
    /// committed) older than `older_than`; returns how many.
    async fn purge_temporary(&self, older_than: Duration) -> StoreResult<usize> {
        self.blocking(move |l| {
            let Some(entries) = not_found_as_none(fs::read_dir(l.tmp_dir()))? else {
                return Ok(0);
            };
            let now = SystemTime::now();
            let mut removed = 0;
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let created = durable::temp_name_created(&name).or_else(|| entry.metadata().and_then(|m| m.modified()).ok());
                let old = created.is_some_and(|c| now.duration_since(c).is_ok_and(|age| age > older_than));
                if !old {
                    continue;
                }
                let gone = if entry.file_type()?.is_dir() {
                    fs::remove_dir_all(entry.path())
                } else {
                    fs::remove_file(entry.path())
                };
                match gone {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(removed)
        })
        .await
    }
}

#[async_trait]
impl MetadataStore for FsStore {
    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>> {
        let link = link.clone();
        self.blocking(move |l| read_link(&l.link(&link))).await
    }

    async fn link_info(&self, link: &Link) -> StoreResult<Option<LinkInfo>> {
        let link = link.clone();
        self.blocking(move |l| {
            let path = l.link(&link);
            let Some(target) = read_link(&path)? else { return Ok(None) };
            let Some(meta) = not_found_as_none(fs::metadata(&path))? else {
                return Ok(None);
            };
            Ok(Some(LinkInfo {
                target,
                modified: meta.modified()?,
            }))
        })
        .await
    }

    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()> {
        let (link, target) = (link.clone(), target.to_string());
        self.blocking(move |l| {
            let path = l.link(&link);
            // Rewriting an identical link would cost three fsyncs for nothing.
            if fs::read(&path).ok().as_deref() == Some(target.as_bytes()) {
                return Ok(());
            }
            durable::write_file(&l.tmp_dir(), &path, target.as_bytes())
        })
        .await
    }

    async fn link_delete(&self, link: &Link) -> StoreResult<bool> {
        let link = link.clone();
        self.blocking(move |l| {
            let path = l.link(&link);
            match path.parent() {
                Some(dir) => durable::remove_dir_all(dir),
                None => Ok(false),
            }
        })
        .await
    }

    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
        let set = set.clone();
        self.blocking(move |l| list_digest_links(&l.link_set(&set))).await
    }

    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
        let link = Link::TagCurrent(repo.clone(), tag.clone());
        let (want, new) = (expected.cloned(), new.clone());
        let swaps = self.tag_swaps.clone();
        // Some(current) when the tag was not at `want`: nothing was written.
        let refused = self
            .blocking(move |l| {
                // Compare and write as one step for this process; a second process on the root
                // is what the single-writer mode excludes.
                let _one_at_a_time = swaps.lock().unwrap_or_else(|e| e.into_inner());
                let path = l.link(&link);
                let current = read_link(&path)?;
                if current != want {
                    return Ok(Some(current));
                }
                if current.as_ref() != Some(&new) {
                    durable::write_file(&l.tmp_dir(), &path, new.to_string().as_bytes())?;
                }
                Ok(None)
            })
            .await?;
        match refused {
            None => Ok(()),
            Some(current) => Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                format!("tag {tag} points at {current:?}, not {expected:?}"),
            )),
        }
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.blocking(move |l| durable::remove_dir_all(&l.tag_dir(&repo, &tag))).await
    }

    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>> {
        let repo = repo.clone();
        self.blocking(move |l| {
            if !is_repository(&l.repo(&repo)) {
                return Ok(None);
            }
            let mut tags = Vec::new();
            if let Some(entries) = not_found_as_none(fs::read_dir(l.tags_dir(&repo)))? {
                for e in entries {
                    let e = e?;
                    if e.path().join("current").join("link").is_file() {
                        tags.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            tags.sort();
            Ok(Some(tags))
        })
        .await
    }

    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        let repo = repo.clone();
        self.blocking(move |l| Ok(is_repository(&l.repo(&repo)))).await
    }

    async fn repo_delete(&self, repo: &RepoName) -> StoreResult<bool> {
        let repo = repo.clone();
        self.blocking(move |l| {
            if !is_repository(&l.repo(&repo)) {
                return Ok(false);
            }
            for part in l.repo_parts(&repo) {
                durable::remove_dir_all(&part)?;
            }
            // Parents left empty (`a/` of `a/b`) are removed too, up to `repositories/`.
            let top = l.repositories();
            let mut dir = l.repo(&repo);
            while dir != top && fs::remove_dir(&dir).is_ok() {
                match dir.parent() {
                    Some(p) => dir = p.to_path_buf(),
                    None => break,
                }
            }
            Ok(true)
        })
        .await
    }

    async fn activity_read(&self, repo: &RepoName) -> StoreResult<Option<Bytes>> {
        let repo = repo.clone();
        self.blocking(move |l| Ok(not_found_as_none(fs::read(l.activity(&repo)))?.map(Bytes::from)))
            .await
    }

    async fn activity_write(&self, repo: &RepoName, content: Bytes) -> StoreResult<()> {
        let repo = repo.clone();
        self.blocking(move |l| {
            // Not once the repository is gone: a late write would bring its directory back.
            if !is_repository(&l.repo(&repo)) {
                return Ok(());
            }
            durable::write_file(&l.tmp_dir(), &l.activity(&repo), &content)
        })
        .await
    }

    async fn repositories(&self) -> StoreResult<Vec<String>> {
        self.blocking(|l| {
            let mut out = Vec::new();
            walk_repositories(&l.repositories(), "", &mut out)?;
            out.sort();
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delete_if_older_than_spares_a_blob_stored_after_the_cut() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsStore::new(t.path()).unwrap();
        let (old, new) = (Bytes::from_static(b"old layer"), Bytes::from_static(b"new layer"));
        let (d_old, d_new) = (Digest::sha256_of(&old), Digest::sha256_of(&new));
        assert!(fs.blob_put(&d_old, old.clone()).await.unwrap(), "stored now");
        assert!(!fs.blob_put(&d_old, old).await.unwrap(), "already there");
        assert!(fs.blob_put(&d_new, new).await.unwrap());
        // The sweep started a minute ago; the old blob was stored an hour before that.
        let cut = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(fs.layout().blob_data(&d_old))
            .unwrap()
            .set_modified(cut - Duration::from_secs(3600))
            .unwrap();
        let mut both = vec![d_old.clone(), d_new.clone()];
        both.sort();
        assert_eq!(fs.blobs_page(None, 10).await.unwrap(), both);
        assert_eq!(fs.blobs_page(Some(&both[0]), 10).await.unwrap(), vec![both[1].clone()]);

        assert!(!fs.blob_delete_if_older_than(&d_new, cut).await.unwrap(), "newer than the cut");
        assert!(fs.blob_stat(&d_new).await.unwrap().is_some());
        assert!(fs.blob_delete_if_older_than(&d_old, cut).await.unwrap());
        assert!(fs.blob_stat(&d_old).await.unwrap().is_none());
        assert!(!fs.layout().blob_dir(&d_old).exists(), "its directory is gone too");
        assert!(!fs.blob_delete_if_older_than(&d_old, cut).await.unwrap(), "absent");
        assert_eq!(fs.blobs_page(None, 10).await.unwrap(), vec![d_new]);
    }

    #[tokio::test]
    async fn pages_of_blobs_walk_the_store_once_in_digest_order() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsStore::new(t.path()).unwrap();
        let mut all = Vec::new();
        for i in 0..300u32 {
            let content = Bytes::from(format!("blob {i}"));
            let d = Digest::sha256_of(&content);
            fs.blob_put(&d, content).await.unwrap();
            all.push(d);
        }
        let sha512 = Bytes::from_static(b"a sha512 blob");
        let d512 = Digest::of(Algorithm::Sha512, &sha512);
        fs.blob_put(&d512, sha512).await.unwrap();
        all.push(d512);
        // A directory that names no blob, and one outside its prefix, are not listed.
        std::fs::create_dir_all(fs.layout().blobs().join("sha256/00/not-a-digest")).unwrap();
        let misplaced = Digest::sha256_of(b"misplaced");
        let elsewhere = if misplaced.hex().starts_with("00") { "01" } else { "00" };
        let wrong = fs.layout().blobs().join("sha256").join(elsewhere).join(misplaced.hex());
        std::fs::create_dir_all(&wrong).unwrap();
        std::fs::write(wrong.join("data"), b"misplaced").unwrap();
        all.retain(|d| d != &misplaced);
        all.sort();
        let mut paged = Vec::new();
        let mut after: Option<Digest> = None;
        for _ in 0..100 {
            let page = fs.blobs_page(after.as_ref(), 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last().cloned() else { break };
            paged.extend(page);
            after = Some(last);
        }
        assert_eq!(paged, all, "every blob once, in order");
    }

    #[tokio::test]
    async fn blob_put_refuses_content_that_does_not_hash_to_its_digest() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsStore::new(t.path()).unwrap();
        let claimed = Digest::sha256_of(b"what the caller meant");
        let err = fs.blob_put(&claimed, Bytes::from_static(b"something else")).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::PreconditionFailed);
        assert!(fs.blob_stat(&claimed).await.unwrap().is_none(), "nothing stored");
    }

    #[tokio::test]
    async fn links_carry_their_write_time_and_a_repository_lists_its_references() {
        let t = tempfile::tempdir().unwrap();
        let fs = FsStore::new(t.path()).unwrap();
        let repo = RepoName::parse("gc/app").unwrap();
        let (layer, manifest) = (Digest::sha256_of(b"layer"), Digest::sha256_of(b"manifest"));
        let before = SystemTime::now() - Duration::from_secs(1);
        fs.link_write(&Link::Layer(repo.clone(), layer.clone()), &layer).await.unwrap();
        fs.link_write(&Link::Revision(repo.clone(), manifest.clone()), &manifest)
            .await
            .unwrap();
        let info = fs.link_info(&Link::Layer(repo.clone(), layer.clone())).await.unwrap().unwrap();
        assert_eq!(info.target, layer);
        assert!(info.modified >= before);
        assert_eq!(fs.link_set(&LinkSet::Layers(repo.clone())).await.unwrap(), vec![layer]);
        assert_eq!(fs.link_set(&LinkSet::Revisions(repo)).await.unwrap(), vec![manifest]);
    }
}
