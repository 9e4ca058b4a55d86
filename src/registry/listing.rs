//! Tag lists and the catalog, with the spec's `n` / `last` pagination.

use super::{Registry, Result};
use crate::oci::{ErrorCode, RegistryError, RepoName};

/// One page of a lexically ordered list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// Set when more items follow: the `last` to ask for next.
    pub next_last: Option<String>,
}

/// The most entries one page returns, however large `n` is.
pub const MAX_PAGE: usize = 10_000;
/// registry:2 returns 100 repositories per catalog page when `n` is not given.
pub const CATALOG_DEFAULT_PAGE: usize = 100;

/// Items strictly after `last`, at most `n` of them.
pub fn paginate(items: Vec<String>, last: Option<&str>, n: Option<usize>) -> Page {
    let start = match last {
        Some(l) => items.partition_point(|i| i.as_str() <= l),
        None => 0,
    };
    let n = n.unwrap_or(usize::MAX).min(MAX_PAGE);
    let rest = items.len().saturating_sub(start);
    let take = rest.min(n);
    let page: Vec<String> = items.into_iter().skip(start).take(take).collect();
    let next_last = (rest > take && take > 0).then(|| page[take - 1].clone());
    Page { items: page, next_last }
}

/// Turns up to `limit + 1` items read from the store into a page of at most `limit`: the extra
/// item only tells that more follow.
fn page_of(mut items: Vec<String>, limit: usize) -> Page {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_last = if more { items.last().cloned() } else { None };
    Page { items, next_last }
}

impl Registry {
    pub async fn tags_list(&self, repo: &RepoName, last: Option<&str>, n: Option<usize>) -> Result<Page> {
        let limit = n.unwrap_or(usize::MAX).min(MAX_PAGE);
        let tags = self
            .store
            .metadata
            .tags_page(repo, last, limit + 1)
            .await?
            .ok_or_else(|| RegistryError::new(ErrorCode::NameUnknown, format!("repository {repo} is not known to this registry")))?;
        Ok(page_of(tags, limit))
    }

    /// Repositories `visible` lets through, one page at a time.
    pub async fn catalog(&self, last: Option<&str>, n: Option<usize>, visible: impl Fn(&str) -> bool + Send + Sync) -> Result<Page> {
        let limit = n.unwrap_or(CATALOG_DEFAULT_PAGE).min(MAX_PAGE);
        let repos = self.store.metadata.repositories_page(last, limit + 1, &visible).await?;
        Ok(page_of(repos, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_page_read_with_one_extra_item_matches_paginate() {
        let all = v(&["a", "b", "c", "d"]);
        for n in 0..6 {
            for last in [None, Some("a"), Some("bb"), Some("d")] {
                let after: Vec<String> = all.iter().filter(|i| last.is_none_or(|l| i.as_str() > l)).cloned().collect();
                let read: Vec<String> = after.into_iter().take(n + 1).collect();
                assert_eq!(page_of(read, n), paginate(all.clone(), last, Some(n)), "n={n} last={last:?}");
            }
        }
    }

    #[test]
    fn pages_follow_last_and_n() {
        let all = v(&["a", "b", "c", "d"]);
        assert_eq!(
            paginate(all.clone(), None, Some(2)),
            Page {
                items: v(&["a", "b"]),
                next_last: Some("b".into())
            }
        );
        assert_eq!(
            paginate(all.clone(), Some("b"), Some(2)),
            Page {
                items: v(&["c", "d"]),
                next_last: None
            }
        );
        assert_eq!(
            paginate(all.clone(), Some("bb"), None),
            Page {
                items: v(&["c", "d"]),
                next_last: None
            }
        );
        assert_eq!(
            paginate(all.clone(), None, Some(0)),
            Page {
                items: vec![],
                next_last: None
            }
        );
        assert_eq!(
            paginate(all, Some("z"), Some(5)),
            Page {
                items: vec![],
                next_last: None
            }
        );
    }
}
