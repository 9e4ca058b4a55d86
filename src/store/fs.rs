//! The filesystem backend: where bytes reach the disk, in registry:2's layout.
//!
//! Blocking file work runs on tokio's blocking pool. Uploads stream through a bounded channel to
//! a writer thread, so the network side (which hashes) and the disk side run in parallel and a
//! blob is never held whole in memory.

use super::append::{append_from_channel, WriteMsg};
use super::paths::{Layout, Link, LinkSet};
use super::{durable, streams};
use super::{BlobRead, ByteStream, Store, StoreError, StoreResult, UploadInfo};
use crate::oci::{Digest, RepoName, Tag};
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

#[derive(Clone)]
pub struct FsStore {
    layout: Arc<Layout>,
}

impl FsStore {
    pub fn new(root: &Path) -> io::Result<FsStore> {
        let layout = Layout::new(root);
        durable::create_dir_all(layout.v2())?;
        Ok(FsStore { layout: Arc::new(layout) })
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
impl Store for FsStore {
    async fn blob_size(&self, digest: &Digest) -> StoreResult<Option<u64>> {
        let d = digest.clone();
        self.blocking(move |l| not_found_as_none(fs::metadata(l.blob_data(&d)).map(|m| m.len())))
            .await
    }

    async fn blob_read(&self, digest: &Digest, range: Option<(u64, u64)>) -> StoreResult<Option<BlobRead>> {
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
            BlobRead { size, body }
        }))
    }

    async fn blob_bytes(&self, digest: &Digest) -> StoreResult<Option<Bytes>> {
        let d = digest.clone();
        self.blocking(move |l| not_found_as_none(fs::read(l.blob_data(&d))).map(|o| o.map(Bytes::from)))
            .await
    }

    async fn blob_put(&self, digest: &Digest, content: Bytes) -> StoreResult<()> {
        let d = digest.clone();
        self.blocking(move |l| {
            let target = l.blob_data(&d);
            if target.is_file() {
                return Ok(());
            }
            durable::write_file(&l.tmp_dir(), &target, &content)
        })
        .await
    }

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

    async fn uploads_all(&self) -> StoreResult<Vec<(RepoName, String)>> {
        self.blocking(|l| {
            let mut out = Vec::new();
            walk_uploads(&l.repositories(), "", &mut out)?;
            Ok(out)
        })
        .await
    }

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

    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>> {
        let link = link.clone();
        self.blocking(move |l| read_link(&l.link(&link))).await
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
