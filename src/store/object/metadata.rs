//! Tags, links and listings in registry:2's layout. Listings are S3 listings ("directories"
//! are key prefixes; an empty one does not exist), which the index caches only where another
//! replica cannot make them untrue, and for catalog pages for a stated few seconds
//! (`index::CATALOG_STALE_FOR`).

use super::keys::below;
use super::{store_error, ObjectBackend};
use crate::oci::{Digest, RepoName, Tag};
use crate::store::{Link, LinkInfo, LinkSet, MetadataStore, StoreError, StoreErrorKind, StoreResult};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as Key;
use std::collections::BTreeSet;
use std::time::SystemTime;

fn parse_link(key: &Key, content: &[u8]) -> StoreResult<Digest> {
    std::str::from_utf8(content)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| StoreError::new(StoreErrorKind::Backend, format!("{key}: not a digest")))
}

impl ObjectBackend {
    async fn read_link(&self, link: &Link) -> StoreResult<Option<(Digest, SystemTime)>> {
        let key = self.keys.link(link);
        let Some((content, meta)) = self.get_small(&key).await? else {
            return Ok(None);
        };
        Ok(Some((parse_link(&key, &content)?, SystemTime::from(meta.last_modified))))
    }
}

#[async_trait]
impl MetadataStore for ObjectBackend {
    async fn link_read(&self, link: &Link) -> StoreResult<Option<Digest>> {
        Ok(self.read_link(link).await?.map(|(d, _)| d))
    }

    async fn link_info(&self, link: &Link) -> StoreResult<Option<LinkInfo>> {
        Ok(self.read_link(link).await?.map(|(target, modified)| LinkInfo { target, modified }))
    }

    async fn link_write(&self, link: &Link, target: &Digest) -> StoreResult<()> {
        // Links are written after what they point at (the caller's rule), and a PUT is
        // durable and visible to every replica when it returns.
        self.put(&self.keys.link(link), Bytes::from(target.to_string())).await
    }

    async fn link_delete(&self, link: &Link) -> StoreResult<bool> {
        self.delete_all(&self.keys.link_dir(link)).await
    }

    async fn link_set(&self, set: &LinkSet) -> StoreResult<Vec<Digest>> {
        let prefix = self.keys.link_set(set);
        let mut out: Vec<Digest> = self
            .list_all(&prefix)
            .await?
            .iter()
            .filter_map(|m| match below(&m.location, &prefix)?.as_slice() {
                [alg, hex, "link"] => format!("{alg}:{hex}").parse().ok(),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Without a conditional PUT that every S3 store honours, this is a read, a compare and a
    /// write. Within one process the index's per-tag lock makes it atomic. Across replicas,
    /// two swaps from the same `expected` within one round trip both succeed and the later
    /// PUT wins, as with registry:2 (which has no swap at all); the tag then names one of the
    /// two pushed manifests, both complete, and every replica reads the same one at once
    /// (the index caches no tag links in shared mode, and S3 reads after writes are
    /// consistent).
    async fn tag_swap(&self, repo: &RepoName, tag: &Tag, expected: Option<&Digest>, new: &Digest) -> StoreResult<()> {
        let link = Link::TagCurrent(repo.clone(), tag.clone());
        let current = self.link_read(&link).await?;
        if current.as_ref() != expected {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                format!("tag {tag} points at {current:?}, not {expected:?}"),
            ));
        }
        if current.as_ref() != Some(new) {
            self.link_write(&link, new).await?;
        }
        Ok(())
    }

    async fn tag_delete(&self, repo: &RepoName, tag: &Tag) -> StoreResult<bool> {
        self.delete_all(&self.keys.tag_dir(repo, tag)).await
    }

    async fn tags(&self, repo: &RepoName) -> StoreResult<Option<Vec<String>>> {
        // A tag is its `current/link`, as on disk: a push killed between the tag's index entry
        // and its current link (or a delete killed half-way) leaves a prefix naming no manifest,
        // which a listing by prefix alone would show as a tag that answers 404.
        let prefix = self.keys.tags(repo);
        let listed = self.list_all(&prefix).await?;
        let mut tags: Vec<String> = listed
            .iter()
            .filter_map(|m| match below(&m.location, &prefix)?.as_slice() {
                [tag, "current", "link"] => Some(tag.to_string()),
                _ => None,
            })
            .collect();
        // A key under `_manifests/tags/` means the repository exists: only a repository without
        // any needs the second listing.
        if listed.is_empty() && !self.repo_exists(repo).await? {
            return Ok(None);
        }
        tags.sort();
        Ok(Some(tags))
    }

    /// One page without listing every tag: keys from just after `last` on, stopping once the
    /// page is certain (see [`page_is_complete`]): one LIST for a page of 100 tags, however many
    /// the repository has, where `tags` lists them all.
    async fn tags_page(&self, repo: &RepoName, last: Option<&str>, limit: usize) -> StoreResult<Option<Vec<String>>> {
        let prefix = self.keys.tags(repo);
        // Every key of a tag greater than `last` sorts after `<prefix>/<last>` (a longer tag
        // starting with it, or one greater at the first difference).
        let mut listing = match last {
            Some(l) => self.s3.list_with_offset(Some(&prefix), &prefix.child(l)),
            None => self.s3.list(Some(&prefix)),
        };
        let mut found = BTreeSet::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(store_error)?;
            let Some(parts) = below(&meta.location, &prefix) else { continue };
            let Some((tag, rest)) = parts.split_first() else { continue };
            if page_is_complete(&found, limit, last, tag) {
                break;
            }
            if rest == ["current", "link"] && last.is_none_or(|l| *tag > l) {
                found.insert(tag.to_string());
            }
        }
        if found.is_empty() && !self.repo_exists(repo).await? {
            return Ok(None);
        }
        Ok(Some(found.into_iter().take(limit).collect()))
    }

    async fn repo_exists(&self, repo: &RepoName) -> StoreResult<bool> {
        let children = self.children(&self.keys.repo(repo)).await?;
        Ok(children.iter().any(|c| c == "_manifests" || c == "_layers"))
    }

    /// One flat listing of every key under `repositories/` (1,000 keys a request), as
    /// registry:2's S3 driver walks: a repository is the path before the first `_`-prefixed
    /// part of a key when that part is `_manifests` or `_layers` (`_`-prefixed names are
    /// bookkeeping, never repository names). A walk by delimiter would cost one request per
    /// repository directory instead.
    async fn repositories(&self) -> StoreResult<Vec<String>> {
        let prefix = self.keys.repositories();
        let mut found = BTreeSet::new();
        let mut listing = self.s3.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(store_error)?;
            let Some(parts) = below(&meta.location, &prefix) else { continue };
            if let Some(i) = parts.iter().position(|p| p.starts_with('_')) {
                if i > 0 && matches!(parts[i], "_manifests" | "_layers") {
                    let name = parts[..i].join("/");
                    if !found.contains(&name) {
                        found.insert(name);
                    }
                }
            }
        }
        Ok(found.into_iter().collect())
    }
}

/// Whether the `limit` smallest tags of `found` are the page, now that the listing (in key
/// order, by `<tag>/`) has reached `next`. Key order is tag order except that a tag sorts after
/// its own extensions by `-` or `.` (`v1-rc/` < `v1.0/` < `v1/`, as `-` and `.` sort before `/`),
/// so a tag still to come can be smaller than the page's largest, `m`, only if it is such a
/// prefix of `m`. The shortest of those prefixes (after `last`) comes last; once the listing is
/// past it, nothing smaller than `m` can follow.
fn page_is_complete(found: &BTreeSet<String>, limit: usize, last: Option<&str>, next: &str) -> bool {
    let Some(m) = (limit > 0).then(|| found.iter().nth(limit - 1)).flatten() else {
        return limit == 0;
    };
    let horizon = m
        .char_indices()
        .filter(|&(i, c)| matches!(c, '-' | '.') && last.is_none_or(|l| &m[..i] > l))
        .map(|(i, _)| &m[..i])
        .next()
        .unwrap_or(m);
    format!("{next}/") > format!("{horizon}/")
}

#[cfg(test)]
mod tests {
    use super::page_is_complete;
    use std::collections::BTreeSet;

    /// The page the listing loop of `tags_page` yields over `tags`' keys in S3 order.
    fn listed_page(tags: &[&str], last: Option<&str>, limit: usize) -> Vec<String> {
        let mut keys: Vec<(String, &str, bool)> = tags
            .iter()
            .flat_map(|t| {
                [
                    (format!("{t}/current/link"), *t, true),
                    (format!("{t}/index/sha256/ab/link"), *t, false),
                ]
            })
            .collect();
        keys.sort();
        let mut found = BTreeSet::new();
        for (key, tag, current) in keys {
            if last.is_some_and(|l| key.as_str() <= l) {
                continue;
            }
            if page_is_complete(&found, limit, last, tag) {
                break;
            }
            if current && last.is_none_or(|l| tag > l) {
                found.insert(tag.to_string());
            }
        }
        found.into_iter().take(limit).collect()
    }

    #[test]
    fn a_bounded_listing_pages_tags_in_tag_order_although_keys_sort_otherwise() {
        let tags = [
            "a", "v", "v1", "v1-rc", "v1-rc-1", "v1-rc.2", "v1.0", "v10", "v1_x", "v1-", "w.", "w", "w-1", "x.y.z", "x",
        ];
        let mut sorted: Vec<&str> = tags.to_vec();
        sorted.sort();
        for limit in 1..=tags.len() + 1 {
            for last in std::iter::once(None)
                .chain(sorted.iter().map(|t| Some(*t)))
                .chain([Some("v1-r"), Some("0")])
            {
                let want: Vec<String> = sorted
                    .iter()
                    .filter(|t| last.is_none_or(|l| **t > l))
                    .take(limit)
                    .map(|t| t.to_string())
                    .collect();
                assert_eq!(listed_page(&tags, last, limit), want, "last {last:?}, limit {limit}");
            }
        }
    }
}
