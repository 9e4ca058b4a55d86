//! The registry:2 on-disk layout, and nothing else: the only place that knows where things live
//! under `<root>/docker/registry/v2/`. Every input was validated (RepoName, Tag, Digest) before it
//! reaches here, so no component can contain `..` or a separator it should not.

use crate::oci::{Algorithm, Digest, RepoName, Tag};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    v2: PathBuf,
}

/// A link file: a small file holding a digest string, with no newline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Link {
    /// The blob is part of the repository (`_layers`).
    Layer(RepoName, Digest),
    /// A manifest revision stored in the repository.
    Revision(RepoName, Digest),
    /// What a tag points at now.
    TagCurrent(RepoName, Tag),
    /// Every digest a tag has ever pointed at.
    TagIndex(RepoName, Tag, Digest),
    /// wharf's referrers index: `referrer` has `subject` as its subject. Kept under a directory
    /// registry:2 ignores (it skips `_`-prefixed directories it does not know).
    Referrer { repo: RepoName, subject: Digest, referrer: Digest },
}

/// A directory of links, for listing.
#[derive(Debug, Clone)]
pub enum LinkSet {
    TagIndex(RepoName, Tag),
    Referrers(RepoName, Digest),
    /// Every blob the repository links as a layer.
    Layers(RepoName),
    /// Every manifest revision the repository holds.
    Revisions(RepoName),
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            v2: root.join("docker").join("registry").join("v2"),
        }
    }

    pub fn v2(&self) -> &Path {
        &self.v2
    }

    /// Scratch space for atomic writes: same filesystem, outside the trees registry:2 walks.
    pub fn tmp_dir(&self) -> PathBuf {
        self.v2.join("_wharf").join("tmp")
    }

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        let hex = d.hex().to_string();
        self.v2.join("blobs").join(d.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2.join("blobs")
    }

    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join("data")
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    pub fn repo(&self, repo: &RepoName) -> PathBuf {
        self.repositories().join(repo.as_str())
    }

    pub fn uploads(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_uploads")
    }

    pub fn upload_dir(&self, repo: &RepoName, id: &str) -> PathBuf {
        self.uploads(repo).join(id)
    }

    /// registry:2's `hashstates/<alg>/`, whose files are named by the offset they cover.
    pub fn upload_hash_states(&self, repo: &RepoName, id: &str, algorithm: Algorithm) -> PathBuf {
        self.upload_dir(repo, id).join("hashstates").join(algorithm.as_str())
    }

    /// wharf's per-repository bookkeeping (pull times), under `_wharf`, which registry:2 skips.
    pub fn activity(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_wharf").join("activity.json")
    }

    /// What makes up a repository of its own, in the order a deletion removes it: its manifests
    /// first (it leaves the catalog of a registry that reads its manifests), then its layers
    /// (then it is no repository at all), then sessions and wharf's bookkeeping. Names nested
    /// under it (`a/b` under `a`) live beside these and are not part of it.
    pub fn repo_parts(&self, repo: &RepoName) -> [PathBuf; 4] {
        let dir = self.repo(repo);
        ["_manifests", "_layers", "_uploads", "_wharf"].map(|p| dir.join(p))
    }

    pub fn tags_dir(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_manifests").join("tags")
    }

    pub fn tag_dir(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.tags_dir(repo).join(tag.as_str())
    }

    fn digest_dir(base: PathBuf, d: &Digest) -> PathBuf {
        base.join(d.algorithm().as_str()).join(d.hex())
    }

    fn referrers_dir(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        Self::digest_dir(self.repo(repo).join("_wharf").join("referrers"), subject)
    }

    pub fn link(&self, link: &Link) -> PathBuf {
        let dir = match link {
            Link::Layer(r, d) => Self::digest_dir(self.repo(r).join("_layers"), d),
            Link::Revision(r, d) => Self::digest_dir(self.repo(r).join("_manifests").join("revisions"), d),
            Link::TagCurrent(r, t) => self.tag_dir(r, t).join("current"),
            Link::TagIndex(r, t, d) => Self::digest_dir(self.tag_dir(r, t).join("index"), d),
            Link::Referrer { repo, subject, referrer } => Self::digest_dir(self.referrers_dir(repo, subject), referrer),
        };
        dir.join("link")
    }

    /// The directory whose `<alg>/<hex>/link` entries make up the set.
    pub fn link_set(&self, set: &LinkSet) -> PathBuf {
        match set {
            LinkSet::TagIndex(r, t) => self.tag_dir(r, t).join("index"),
            LinkSet::Referrers(r, s) => self.referrers_dir(r, s),
            LinkSet::Layers(r) => self.repo(r).join("_layers"),
            LinkSet::Revisions(r) => self.repo(r).join("_manifests").join("revisions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_registry2() {
        let l = Layout::new(Path::new("/r"));
        let d = Digest::sha256_of(b"");
        let repo = RepoName::parse("a/b").unwrap();
        let tag = Tag::parse("v1").unwrap();
        let hex = d.hex().to_string();
        assert_eq!(
            l.blob_data(&d),
            PathBuf::from(format!("/r/docker/registry/v2/blobs/sha256/e3/{hex}/data"))
        );
        assert_eq!(
            l.link(&Link::Layer(repo.clone(), d.clone())),
            PathBuf::from(format!("/r/docker/registry/v2/repositories/a/b/_layers/sha256/{hex}/link"))
        );
        assert_eq!(
            l.link(&Link::Revision(repo.clone(), d.clone())),
            PathBuf::from(format!(
                "/r/docker/registry/v2/repositories/a/b/_manifests/revisions/sha256/{hex}/link"
            ))
        );
        assert_eq!(
            l.link(&Link::TagCurrent(repo.clone(), tag.clone())),
            PathBuf::from("/r/docker/registry/v2/repositories/a/b/_manifests/tags/v1/current/link")
        );
        assert_eq!(
            l.link(&Link::TagIndex(repo, tag, d)),
            PathBuf::from(format!(
                "/r/docker/registry/v2/repositories/a/b/_manifests/tags/v1/index/sha256/{hex}/link"
            ))
        );
    }
}
