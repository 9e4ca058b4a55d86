//! Pushing, pulling and deleting manifests. Manifests are kept as the exact bytes received; they
//! are parsed to validate them and to learn what they reference, never re-serialized.

use super::events::{Action, Kind, Target};
use super::{Registry, RequestContext, Result};
use crate::oci::manifest::{Manifest, MAX_MANIFEST_SIZE};
use crate::oci::{Digest, ErrorCode, Reference, RegistryError, RepoName, Tag};
use crate::store::Link;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A manifest as served: its bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
    pub manifest: Manifest,
}

/// What a successful PUT tells the client.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// Parsed manifests by digest. Content-addressed, so entries never go stale; the budget only
/// bounds memory, counted as what an entry really holds, not just its raw bytes.
#[derive(Default)]
pub(super) struct Cache {
    inner: Mutex<(HashMap<Digest, Arc<StoredManifest>>, usize)>,
}

const CACHE_BUDGET: usize = 4 * 1024 * 1024;

/// Heap held per entry besides its strings: the map slot and key, the `Arc`ed entry, and the
/// allocator's bookkeeping on each of its allocations.
const ENTRY_OVERHEAD: usize = 256;

/// Estimated memory an entry keeps alive. The parsed form copies strings out of the document
/// (digests, media types, annotations), so they add at most the document's length again; each
/// descriptor adds its struct. A small manifest costs about three times its raw size, which a
/// budget on raw bytes alone did not see.
fn entry_cost(m: &StoredManifest) -> usize {
    let p = &m.manifest;
    let descriptors = p.blobs.len() + p.children.len() + usize::from(p.config.is_some()) + usize::from(p.subject.is_some());
    2 * m.bytes.len()
        + descriptors * std::mem::size_of::<crate::oci::manifest::Descriptor>()
        + std::mem::size_of::<StoredManifest>()
        + ENTRY_OVERHEAD
}

impl Cache {
    fn get(&self, d: &Digest) -> Option<Arc<StoredManifest>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.get(d).cloned()
    }

    /// Forgets content garbage collection deleted.
    pub(super) fn remove(&self, d: &Digest) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = inner.0.remove(d) {
            inner.1 = inner.1.saturating_sub(entry_cost(&m));
        }
    }

    fn put(&self, m: Arc<StoredManifest>) {
        let cost = entry_cost(&m);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0.contains_key(&m.digest) {
            return;
        }
        if inner.1 + cost > CACHE_BUDGET {
            // Dropped wholesale, then refilled by what is pulled next: cheap, and the hot
            // manifests come back on their next read.
            inner.0 = HashMap::new();
            inner.1 = 0;
        }
        inner.1 += cost;
        inner.0.insert(m.digest.clone(), m);
    }
}

pub(super) fn manifest_unknown(reference: &impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not in this repository"),
    )
}

impl Registry {
    /// Resolves a tag or digest to a manifest digest present in the repository.
    pub async fn manifest_resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        let digest = match reference {
            Reference::Tag(t) => self.store.metadata.link_read(&Link::TagCurrent(repo.clone(), t.clone())).await?,
            Reference::Digest(d) => self
                .store
                .metadata
                .link_read(&Link::Revision(repo.clone(), d.clone()))
                .await?
                .map(|_| d.clone()),
        };
        digest.ok_or_else(|| manifest_unknown(reference))
    }

    /// Serves a manifest: a pull, whether its body is sent (GET) or not (HEAD), as registry:2
    /// reports both.
    pub async fn manifest_get(&self, ctx: &RequestContext, repo: &RepoName, reference: &Reference) -> Result<Arc<StoredManifest>> {
        let digest = self.manifest_resolve(repo, reference).await?;
        let m = self.manifest_load(&digest).await?.ok_or_else(|| manifest_unknown(reference))?;
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        self.record_pull(repo, tag);
        self.events.emit(ctx, Action::Pull, || {
            let (kind, mut target) = Target::manifest(repo, &m.digest, &m.manifest, m.bytes.len() as u64);
            if let Reference::Tag(tag) = reference {
                target.tag = tag.to_string();
            }
            (kind, target)
        });
        Ok(m)
    }

    /// Loads manifest content by digest, whatever repository links it.
    pub(super) async fn manifest_load(&self, digest: &Digest) -> Result<Option<Arc<StoredManifest>>> {
        if let Some(m) = self.manifests.get(digest) {
            return Ok(Some(m));
        }
        let Some(bytes) = self.store.blobs.blob_bytes(digest).await? else {
            return Ok(None);
        };
        let manifest = Manifest::parse_stored(&bytes)
            .map_err(|e| RegistryError::new(ErrorCode::Internal, format!("stored manifest {digest}: {e}")))?;
        let stored = Arc::new(StoredManifest {
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            bytes,
            manifest,
        });
        self.manifests.put(stored.clone());
        Ok(Some(stored))
    }

    /// Stores a manifest and points `tags` at it. With `expected` the content must have that
    /// digest (a push by digest, or a push by tag that names one), which also chooses the
    /// algorithm; without it the digest is sha256, the canonical algorithm.
    pub async fn manifest_put(
        &self,
        ctx: &RequestContext,
        repo: &RepoName,
        expected: Option<&Digest>,
        tags: &[Tag],
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<ManifestPut> {
        self.check_writable()?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::new(
                ErrorCode::TooLarge,
                format!("manifest is {} bytes; the limit is {MAX_MANIFEST_SIZE}", bytes.len()),
            ));
        }
        let manifest = Manifest::parse_upload(&bytes, content_type).map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.0))?;
        let digest = match expected {
            Some(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(RegistryError::new(
                        ErrorCode::DigestInvalid,
                        format!("manifest content has digest {actual}, not {d}"),
                    ));
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        // Touched before its references are checked, held until its links are written: a
        // collection either spares all of it or the check finds what it deleted (`gc::fence`).
        let touched = std::iter::once(&digest)
            .chain(manifest.blobs.iter().map(|b| &b.digest))
            .chain(manifest.children.iter().map(|c| &c.digest));
        let entered = self.gc_enter(touched, true).await?;
        self.check_references(repo, &manifest).await?;
        for tag in tags {
            // Refused before anything is stored; the swap below closes the race.
            let current = self.store.metadata.link_read(&Link::TagCurrent(repo.clone(), tag.clone())).await?;
            if current.is_some_and(|c| c != digest) {
                self.check_unprotected(repo, tag.as_str())?;
            }
        }

        // Content first, then the links that make it reachable: a crash in between leaves at
        // most an unreferenced blob, never a link to missing content.
        self.store.blobs.blob_put(&digest, bytes.clone()).await?;
        entered.check_window()?;
        self.store
            .metadata
            .link_write(&Link::Revision(repo.clone(), digest.clone()), &digest)
            .await?;
        // The revision is what a collection's second mark reads (`gc::shared`, rule c).
        entered.check_window()?;
        if let Some(subject) = &manifest.subject {
            let link = Link::Referrer {
                repo: repo.clone(),
                subject: subject.digest.clone(),
                referrer: digest.clone(),
            };
            self.store.metadata.link_write(&link, &digest).await?;
        }
        for tag in tags {
            self.store
                .metadata
                .link_write(&Link::TagIndex(repo.clone(), tag.clone(), digest.clone()), &digest)
                .await?;
            if self.is_protected(repo, tag.as_str()) {
                self.set_protected_tag(repo, tag, &digest).await?;
                continue;
            }
            self.store
                .metadata
                .link_write(&Link::TagCurrent(repo.clone(), tag.clone()), &digest)
                .await?;
        }
        self.emit_pushed(ctx, repo, &digest, &manifest, bytes.len() as u64, tags);
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let stored = StoredManifest {
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            bytes,
            manifest,
        };
        self.manifests.put(Arc::new(stored));
        Ok(ManifestPut { digest, subject })
    }

    /// One push event per tag set (registry:2 knows one tag a push; the spec's `tag` parameters
    /// set more), or one without a tag for a push by digest alone.
    fn emit_pushed(&self, ctx: &RequestContext, repo: &RepoName, digest: &Digest, manifest: &Manifest, size: u64, tags: &[Tag]) {
        if !self.events.wanted() {
            return;
        }
        let tags: Vec<&str> = match tags {
            [] => vec![""],
            tags => tags.iter().map(Tag::as_str).collect(),
        };
        for tag in tags {
            self.events.emit(ctx, Action::Push, || {
                let (kind, mut target) = Target::manifest(repo, digest, manifest, size);
                target.tag = tag.to_string();
                (kind, target)
            });
        }
    }

    /// Every blob an image references and every manifest an index references must already be in
    /// the repository, so a pull of what was just pushed cannot fail half-way.
    async fn check_references(&self, repo: &RepoName, manifest: &Manifest) -> Result<()> {
        for blob in manifest.blobs.iter().filter(|b| !b.is_external()) {
            let present = self
                .store
                .metadata
                .link_read(&Link::Layer(repo.clone(), blob.digest.clone()))
                .await?
                .is_some()
                && self.store.blobs.blob_stat(&blob.digest).await?.is_some();
            if !present {
                return Err(RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("blob {} referenced by the manifest is not in {repo}; push it first", blob.digest),
                )
                .with_detail(serde_json::json!({ "digest": blob.digest.to_string() })));
            }
        }
        for child in &manifest.children {
            if self
                .store
                .metadata
                .link_read(&Link::Revision(repo.clone(), child.digest.clone()))
                .await?
                .is_none()
            {
                return Err(RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest {} referenced by the index is not in {repo}; push it first", child.digest),
                )
                .with_detail(serde_json::json!({ "digest": child.digest.to_string() })));
            }
        }
        Ok(())
    }

    /// Deletes a tag (the manifest stays), or a manifest by digest together with every tag that
    /// points at it, as registry:2 does.
    pub async fn manifest_delete(&self, ctx: &RequestContext, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.check_delete_enabled()?;
        match reference {
            Reference::Tag(tag) => {
                self.check_unprotected(repo, tag.as_str())?;
                if !self.store.metadata.tag_delete(repo, tag).await? {
                    return Err(manifest_unknown(reference));
                }
                self.events.emit(ctx, Action::Delete, || Target::tag(repo, tag.as_str()));
            }
            Reference::Digest(digest) => {
                let revision = Link::Revision(repo.clone(), digest.clone());
                if self.store.metadata.link_read(&revision).await?.is_none() {
                    return Err(manifest_unknown(reference));
                }
                let mut pointing = Vec::new();
                for tag in self.store.metadata.tags(repo).await?.unwrap_or_default() {
                    let Some(tag) = Tag::parse(&tag) else { continue };
                    if self
                        .store
                        .metadata
                        .link_read(&Link::TagCurrent(repo.clone(), tag.clone()))
                        .await?
                        .as_ref()
                        == Some(digest)
                    {
                        self.check_unprotected(repo, tag.as_str())?;
                        pointing.push(tag);
                    }
                }
                // registry:2 reports the manifest's deletion alone, not its tags'.
                for tag in pointing {
                    self.store.metadata.tag_delete(repo, &tag).await?;
                }
                self.revision_delete(repo, digest).await?;
                self.events
                    .emit(ctx, Action::Delete, || Target::deleted(Kind::Manifest, repo, digest));
            }
        }
        Ok(())
    }

    /// Points a protected tag at `digest` only if it is new (or already there): the swap makes
    /// two racing first pushes of it end with one refused instead of the second winning.
    async fn set_protected_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        let current = Link::TagCurrent(repo.clone(), tag.clone());
        if self.store.metadata.link_read(&current).await?.as_ref() == Some(digest) {
            return Ok(());
        }
        match self.store.metadata.tag_swap(repo, tag, None, digest).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == crate::store::StoreErrorKind::PreconditionFailed => self.check_unprotected(repo, tag.as_str()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a manifest revision and its referrer link; tags are the caller's business.
    pub(super) async fn revision_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let revision = Link::Revision(repo.clone(), digest.clone());
        if let Some(subject) = self.manifest_load(digest).await?.and_then(|m| m.manifest.subject.clone()) {
            self.store
                .metadata
                .link_delete(&Link::Referrer {
                    repo: repo.clone(),
                    subject: subject.digest,
                    referrer: digest.clone(),
                })
                .await?;
        }
        self.store.metadata.link_delete(&revision).await?;
        Ok(())
    }
}
