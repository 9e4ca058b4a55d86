//! Retention policies, protected tags and deleting whole repositories.
//!
//! A policy applies to the repositories its patterns match (the first matching policy wins, as
//! in zot). A tag is kept when any of the policy's `keeptags` rules keeps it: among the N most
//! recently pushed or pulled of the tags the rule's patterns select, or pushed or pulled within
//! a duration, or simply selected by a rule with no other criterion; a policy without rules
//! keeps every tag. Protected tags are always kept, and nothing moves or deletes them.
//! With `deleteuntagged`, manifests no remaining tag reaches (directly, as an index's child or
//! as a referrer of something reached) are deleted too, unless younger than `delay`.
//! Retention only deletes tags and manifests: freeing their blobs is garbage collection's job.

use super::events::{Action, Kind, Target};
use super::{Registry, RequestContext, Result};
use crate::auth::policy::Pattern;
use crate::config::{self, KeepTags};
use crate::oci::{Digest, ErrorCode, RegistryError, RepoName, Tag};
use crate::store::{Link, LinkSet};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

/// A glob over tags: `*` any run of characters, `?` one; everything else literal.
#[derive(Debug, Clone)]
pub struct TagGlob(String);

impl TagGlob {
    pub fn matches(&self, tag: &str) -> bool {
        fn go(p: &[u8], t: &[u8]) -> bool {
            match (p.first(), t.first()) {
                (None, None) => true,
                (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
                (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
                _ => false,
            }
        }
        go(self.0.as_bytes(), tag.as_bytes())
    }
}

fn globs(list: &[String]) -> Vec<TagGlob> {
    list.iter().map(|g| TagGlob(g.clone())).collect()
}

fn selects(globs: &[TagGlob], tag: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.matches(tag))
}

fn repo_patterns(list: &[String], key: &str) -> std::result::Result<Vec<Pattern>, String> {
    list.iter()
        .map(|p| Pattern::parse(p).map_err(|e| format!("{key}: {p:?}: {e}")))
        .collect()
}

fn duration(v: &Option<String>, key: &str) -> std::result::Result<Option<Duration>, String> {
    v.as_deref()
        .map(|s| config::duration_str::parse_go(s).map_err(|e| format!("{key}: {e}")))
        .transpose()
}

#[derive(Debug)]
struct Rule {
    patterns: Vec<TagGlob>,
    pushed_count: Option<usize>,
    pulled_count: Option<usize>,
    pushed_within: Option<Duration>,
    pulled_within: Option<Duration>,
}

#[derive(Debug)]
struct Policy {
    repositories: Vec<Pattern>,
    delete_untagged: bool,
    keep: Vec<Rule>,
}

#[derive(Debug)]
struct Protection {
    repositories: Vec<Pattern>,
    tags: Vec<TagGlob>,
}

/// `storage.maintenance.retention`, checked and compiled.
#[derive(Debug, Default)]
pub struct Rules {
    policies: Vec<Policy>,
    protected: Vec<Protection>,
    /// Untagged manifests younger than this are spared (a multi-arch push writes its children
    /// before the index that tags them).
    delay: Duration,
    pub dry_run: bool,
}

/// Untagged manifests younger than this are not deleted unless `delay` says otherwise.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(3600);

impl Rules {
    pub fn new(cfg: &config::Retention) -> std::result::Result<Rules, String> {
        let key = "storage.maintenance.retention";
        let mut policies = Vec::new();
        for (i, p) in cfg.policies.iter().enumerate() {
            let at = format!("{key}.policies.{i}");
            let mut keep = Vec::new();
            for (j, k) in p.keeptags.iter().enumerate() {
                keep.push(rule(k, &format!("{at}.keeptags.{j}"))?);
            }
            policies.push(Policy {
                repositories: repo_patterns(&p.repositories, &format!("{at}.repositories"))?,
                delete_untagged: p.deleteuntagged,
                keep,
            });
        }
        let mut protected = Vec::new();
        for (i, p) in cfg.protected.iter().enumerate() {
            protected.push(Protection {
                repositories: repo_patterns(&p.repositories, &format!("{key}.protected.{i}.repositories"))?,
                tags: globs(&p.tags),
            });
        }
        Ok(Rules {
            policies,
            protected,
            delay: duration(&cfg.delay, &format!("{key}.delay"))?.unwrap_or(DEFAULT_DELAY),
            dry_run: cfg.dryrun,
        })
    }

    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Whether `tag` of `repo` may never be moved nor deleted.
    pub fn is_protected(&self, repo: &str, tag: &str) -> bool {
        self.protected
            .iter()
            .any(|p| p.repositories.iter().any(|r| r.matches(repo)) && selects(&p.tags, tag))
    }

    fn policy_for(&self, repo: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.repositories.iter().any(|r| r.matches(repo)))
    }
}

fn rule(k: &KeepTags, at: &str) -> std::result::Result<Rule, String> {
    Ok(Rule {
        patterns: globs(&k.patterns),
        pushed_count: k.mostrecentlypushedcount,
        pulled_count: k.mostrecentlypulledcount,
        pushed_within: duration(&k.pushedwithin, &format!("{at}.pushedwithin"))?,
        pulled_within: duration(&k.pulledwithin, &format!("{at}.pulledwithin"))?,
    })
}

/// A tag with when it was last pushed and pulled.
struct TagAt {
    name: String,
    pushed: Option<SystemTime>,
    pulled: Option<SystemTime>,
}

/// Why a tag is kept, or None: it goes.
fn kept_by(policy: &Policy, tags: &[TagAt], now: SystemTime) -> Vec<Option<&'static str>> {
    let mut why: Vec<Option<&'static str>> = vec![None; tags.len()];
    if policy.keep.is_empty() {
        return vec![Some("no keeptags rule"); tags.len()];
    }
    let within =
        |t: Option<SystemTime>, d: Option<Duration>| matches!((t, d), (Some(t), Some(d)) if now.duration_since(t).unwrap_or_default() <= d);
    for r in &policy.keep {
        let selected: Vec<usize> = (0..tags.len()).filter(|&i| selects(&r.patterns, &tags[i].name)).collect();
        let no_criteria = r.pushed_count.is_none() && r.pulled_count.is_none() && r.pushed_within.is_none() && r.pulled_within.is_none();
        let mut keep = |i: usize, reason: &'static str| {
            why[i].get_or_insert(reason);
        };
        if no_criteria {
            selected.iter().for_each(|&i| keep(i, "matches a kept pattern"));
            continue;
        }
        let most_recent = |n: usize, at: &dyn Fn(&TagAt) -> Option<SystemTime>| {
            let mut by_time: Vec<usize> = selected.iter().copied().filter(|&i| at(&tags[i]).is_some()).collect();
            // Newest first; equal times by name, so a run is reproducible.
            by_time.sort_by(|&a, &b| at(&tags[b]).cmp(&at(&tags[a])).then(tags[a].name.cmp(&tags[b].name)));
            by_time.truncate(n);
            by_time
        };
        if let Some(n) = r.pushed_count {
            most_recent(n, &|t| t.pushed)
                .into_iter()
                .for_each(|i| keep(i, "among the most recently pushed"));
        }
        if let Some(n) = r.pulled_count {
            most_recent(n, &|t| t.pulled)
                .into_iter()
                .for_each(|i| keep(i, "among the most recently pulled"));
        }
        for &i in &selected {
            if within(tags[i].pushed, r.pushed_within) {
                keep(i, "pushed recently");
            }
            if within(tags[i].pulled, r.pulled_within) {
                keep(i, "pulled recently");
            }
        }
    }
    why
}

/// What a retention run deleted, or would delete in a dry run, and why.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RetentionReport {
    pub dryrun: bool,
    pub tags: Vec<RetainedItem>,
    pub manifests: Vec<RetainedItem>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RetainedItem {
    pub repository: String,
    /// Empty for an untagged manifest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    pub digest: String,
    pub reason: String,
}

fn denied_protected(repo: &RepoName, tag: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Denied,
        format!("tag {tag} of {repo} is protected (storage.maintenance.retention.protected): it cannot be moved or deleted"),
    )
}

impl Registry {
    /// Refuses to move or delete a protected tag.
    pub(super) fn check_unprotected(&self, repo: &RepoName, tag: &str) -> Result<()> {
        match &self.options.retention {
            Some(rules) if rules.is_protected(repo.as_str(), tag) => Err(denied_protected(repo, tag)),
            _ => Ok(()),
        }
    }

    pub(super) fn is_protected(&self, repo: &RepoName, tag: &str) -> bool {
        self.check_unprotected(repo, tag).is_err()
    }

    /// Deletes a whole repository: its tags, manifests, layer links, referrers and upload
    /// sessions; it leaves the catalog. Refused while it holds a protected tag.
    pub async fn repository_delete(&self, ctx: &RequestContext, repo: &RepoName) -> Result<()> {
        self.check_delete_enabled()?;
        for tag in self.store.metadata.tags(repo).await?.unwrap_or_default() {
            self.check_unprotected(repo, &tag)?;
        }
        if !self.store.metadata.repo_delete(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known to this registry"),
            ));
        }
        self.events.emit(ctx, Action::Delete, || Target::repository(repo));
        Ok(())
    }

    /// Applies the configured retention policies to every repository (with `dry_run`, or the
    /// configuration's `dryrun`, only reports). Without policies nothing is deleted.
    pub async fn apply_retention(&self, dry_run: bool) -> Result<RetentionReport> {
        let Some(rules) = self.options.retention.clone() else {
            return Ok(RetentionReport {
                dryrun: dry_run,
                ..RetentionReport::default()
            });
        };
        let dry_run = dry_run || rules.dry_run;
        if !dry_run {
            self.check_writable()?;
        }
        let mut report = RetentionReport {
            dryrun: dry_run,
            ..RetentionReport::default()
        };
        let ctx = RequestContext::internal();
        let now = SystemTime::now();
        for name in self.store.metadata.repositories().await? {
            let (Some(policy), Some(repo)) = (rules.policy_for(&name), RepoName::parse(&name)) else {
                continue;
            };
            self.retain_repo(&ctx, &rules, policy, &repo, now, dry_run, &mut report).await?;
        }
        Ok(report)
    }

    async fn tags_with_times(&self, repo: &RepoName) -> Result<Vec<TagAt>> {
        if let Ok(times) = self.tag_times(repo).await {
            return Ok(times
                .into_iter()
                .map(|(name, t)| TagAt {
                    name,
                    pushed: t.pushed,
                    pulled: t.pulled,
                })
                .collect());
        }
        // Without the usage index: push times from the tag links, no pull times.
        let mut out = Vec::new();
        for name in self.store.metadata.tags(repo).await?.unwrap_or_default() {
            let Some(tag) = Tag::parse(&name) else { continue };
            let pushed = self
                .store
                .metadata
                .link_info(&Link::TagCurrent(repo.clone(), tag))
                .await?
                .map(|i| i.modified);
            out.push(TagAt {
                name,
                pushed,
                pulled: None,
            });
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn retain_repo(
        &self,
        ctx: &RequestContext,
        rules: &Rules,
        policy: &Policy,
        repo: &RepoName,
        now: SystemTime,
        dry_run: bool,
        report: &mut RetentionReport,
    ) -> Result<()> {
        let mut tags = self.tags_with_times(repo).await?;
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        let why = kept_by(policy, &tags, now);
        let mut remaining: Vec<Digest> = Vec::new();
        for (t, kept) in tags.iter().zip(why) {
            let Some(tag) = Tag::parse(&t.name) else { continue };
            let Some(digest) = self.store.metadata.link_read(&Link::TagCurrent(repo.clone(), tag.clone())).await? else {
                continue;
            };
            if kept.is_some() || rules.is_protected(repo.as_str(), &t.name) {
                remaining.push(digest);
                continue;
            }
            report.tags.push(RetainedItem {
                repository: repo.to_string(),
                tag: t.name.clone(),
                digest: digest.to_string(),
                reason: "no keeptags rule keeps it".into(),
            });
            if !dry_run && self.store.metadata.tag_delete(repo, &tag).await? {
                self.events.emit(ctx, Action::Delete, || Target::tag(repo, tag.as_str()));
            }
        }
        if policy.delete_untagged {
            self.drop_untagged(ctx, rules.delay, repo, remaining, now, dry_run, report).await?;
        }
        Ok(())
    }

    /// Deletes the repository's manifests that no remaining tag reaches.
    #[allow(clippy::too_many_arguments)]
    async fn drop_untagged(
        &self,
        ctx: &RequestContext,
        delay: Duration,
        repo: &RepoName,
        tagged: Vec<Digest>,
        now: SystemTime,
        dry_run: bool,
        report: &mut RetentionReport,
    ) -> Result<()> {
        let revisions: BTreeSet<Digest> = self
            .store
            .metadata
            .link_set(&LinkSet::Revisions(repo.clone()))
            .await?
            .into_iter()
            .collect();
        let mut reached: HashSet<Digest> = HashSet::new();
        let mut todo = tagged;
        while let Some(d) = todo.pop() {
            if !reached.insert(d.clone()) {
                continue;
            }
            if let Some(m) = self.manifest_load(&d).await? {
                todo.extend(m.manifest.children.iter().map(|c| c.digest.clone()));
            }
            // Referrers live while their subject lives.
            todo.extend(self.store.metadata.link_set(&LinkSet::Referrers(repo.clone(), d.clone())).await?);
        }
        for d in revisions.iter().filter(|d| !reached.contains(*d)) {
            let link = Link::Revision(repo.clone(), d.clone());
            let young = self
                .store
                .metadata
                .link_info(&link)
                .await?
                .is_some_and(|i| now.duration_since(i.modified).unwrap_or_default() < delay);
            if young {
                continue;
            }
            report.manifests.push(RetainedItem {
                repository: repo.to_string(),
                tag: String::new(),
                digest: d.to_string(),
                reason: "untagged".into(),
            });
            if !dry_run {
                self.revision_delete(repo, d).await?;
                self.events.emit(ctx, Action::Delete, || Target::deleted(Kind::Manifest, repo, d));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, pushed_secs_ago: Option<u64>, now: SystemTime) -> TagAt {
        TagAt {
            name: name.into(),
            pushed: pushed_secs_ago.map(|s| now - Duration::from_secs(s)),
            pulled: None,
        }
    }

    #[test]
    fn tag_globs_match_whole_tags() {
        let g = TagGlob("v1.*".into());
        assert!(g.matches("v1.2") && g.matches("v1.") && !g.matches("v10") && !g.matches("xv1.2"));
        assert!(TagGlob("*-prod".into()).matches("api-prod"));
        assert!(TagGlob("v?".into()).matches("v2") && !TagGlob("v?".into()).matches("v22"));
    }

    #[test]
    fn the_newest_n_and_recent_pushes_are_kept_and_patterns_select() {
        let now = SystemTime::now();
        let tags = vec![
            at("a", Some(500), now),
            at("b", Some(100), now),
            at("c", Some(300), now),
            at("stable", Some(9000), now),
        ];
        let policy = Policy {
            repositories: vec![],
            delete_untagged: false,
            keep: vec![
                Rule {
                    patterns: vec![],
                    pushed_count: Some(2),
                    pulled_count: None,
                    pushed_within: None,
                    pulled_within: None,
                },
                Rule {
                    patterns: vec![TagGlob("stable".into())],
                    pushed_count: None,
                    pulled_count: None,
                    pushed_within: None,
                    pulled_within: None,
                },
            ],
        };
        let kept: Vec<bool> = kept_by(&policy, &tags, now).iter().map(Option::is_some).collect();
        assert_eq!(kept, [false, true, true, true]);
        let within = Policy {
            keep: vec![Rule {
                patterns: vec![],
                pushed_count: None,
                pulled_count: None,
                pushed_within: Some(Duration::from_secs(400)),
                pulled_within: None,
            }],
            ..policy
        };
        let kept: Vec<bool> = kept_by(&within, &tags, now).iter().map(Option::is_some).collect();
        assert_eq!(kept, [false, true, true, false]);
    }
}
