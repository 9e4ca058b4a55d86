//! Who may pull, push or delete in which repository: the `access` section of the configuration.
//!
//! This is a wharf extension; registry:2 has no access control beyond "authenticated users may
//! do everything". registry:2 ignores unknown top-level keys, so a configuration file with an
//! `access` section still works with registry:2.
//!
//! ```yaml
//! access:
//!   anonymous:                      # requests without credentials
//!     allow: [pull]
//!     repositories: ["public/**"]   # default: every repository
//!   groups:
//!     devs: [alice, bob]
//!   rules:                          # first matching rule wins
//!     - repositories: ["team/*", "shared/**"]
//!       users: [carol]
//!       groups: [devs]
//!       allow: [pull, push, delete]
//!     - repositories: ["secret/**"]
//!       users: ["*"]
//!       allow: []                   # an empty list denies
//!     - repositories: ["**"]
//!       users: ["*"]                # "*": every authenticated user
//!       allow: [pull]
//! ```
//!
//! Semantics:
//! - Rights are `pull`, `push` and `delete` (delete also needs `storage.delete.enabled`).
//! - Without an `access` section, every authenticated user may do everything and anonymous
//!   requests nothing: registry:2's behaviour with htpasswd.
//! - A rule applies to a request when the user is listed in `users` (or `users` has `"*"`) or
//!   belongs to one of its `groups`, and the repository matches one of its `repositories`.
//!   The first rule that applies decides, even when its `allow` is empty; when none applies,
//!   an authenticated user has no rights of their own.
//! - An authenticated user may always do what an anonymous request may do as well.
//! - When `rules` is left out, every authenticated user may do everything (as without an
//!   `access` section), so `access: {anonymous: {allow: [pull]}}` alone means "public pulls,
//!   authenticated pushes". `rules: []` gives authenticated users only the anonymous rights.
//! - Repository patterns: `*` matches any run of characters within one path component, `**`
//!   any run across components (`team/**` matches `team/a` and `team/a/b`, not `team` itself;
//!   `**` alone matches everything); any other character matches itself.
//!
//! The keys avoid `_` so that `REGISTRY_ACCESS_*` variables can address them the way registry:2
//! addresses its own keys: `REGISTRY_ACCESS_ANONYMOUS_ALLOW=[pull]`,
//! `REGISTRY_ACCESS_GROUPS_DEVS=[alice, bob]`, `REGISTRY_ACCESS_RULES_0_ALLOW=[pull, push]`.

use super::Action;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The `access` section as written in the configuration; [`Policy::new`] checks it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct AccessConfig {
    /// Rights of requests without credentials.
    #[serde(skip_serializing_if = "Anonymous::is_unset")]
    pub anonymous: Anonymous,
    /// Group name → member user names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Ordered rules, first match wins. `None` (key absent): authenticated users may do
    /// everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Anonymous {
    /// Rights (`pull`, `push`, `delete`); empty: none.
    pub allow: Vec<String>,
    /// Repository patterns the rights apply to; `None`: every repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
}

impl Anonymous {
    fn is_unset(&self) -> bool {
        self == &Anonymous::default()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Rule {
    /// Repository patterns; at least one.
    pub repositories: Vec<String>,
    /// User names; `"*"` is every authenticated user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Names of groups from `access.groups`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Rights granted; required, `[]` denies.
    pub allow: Option<Vec<String>>,
}

/// An `access` section that cannot be used. `key` is the dotted configuration key to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        key: key.into(),
        message: message.into(),
    }
}

/// The checked, compiled access policy.
#[derive(Debug, Clone)]
pub struct Policy {
    anonymous: Grant,
    rules: Vec<CompiledRule>,
}

/// Rights on the repositories matching some patterns.
#[derive(Debug, Clone)]
struct Grant {
    repositories: Vec<Pattern>,
    allow: Rights,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    grant: Grant,
    everyone: bool,
    /// Listed users plus the members of listed groups.
    users: HashSet<String>,
}

impl CompiledRule {
    fn applies_to(&self, user: &str) -> bool {
        self.everyone || self.users.contains(user)
    }
}

impl Grant {
    fn covers(&self, repo: &str) -> bool {
        self.repositories.iter().any(|p| p.matches(repo))
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rights(u8);

impl Rights {
    const ALL: Rights = Rights(0b111);

    fn bit(a: Action) -> u8 {
        match a {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    fn has(self, a: Action) -> bool {
        self.0 & Self::bit(a) != 0
    }

    fn parse(names: &[String], key: &str) -> Result<Rights, PolicyError> {
        names.iter().enumerate().try_fold(Rights::default(), |acc, (i, name)| {
            let action: Action = name.parse().map_err(|e| invalid(format!("{key}.{i}"), format!("{e}")))?;
            Ok(Rights(acc.0 | Self::bit(action)))
        })
    }
}

impl Policy {
    /// Checks and compiles `cfg`; `None` (no `access` section) is registry:2's policy.
    pub fn new(cfg: Option<&AccessConfig>) -> Result<Self, PolicyError> {
        let Some(cfg) = cfg else {
            return Ok(Policy {
                anonymous: Grant {
                    repositories: Vec::new(),
                    allow: Rights::default(),
                },
                rules: vec![everything_for_everyone()],
            });
        };
        let anonymous = Grant {
            repositories: match &cfg.anonymous.repositories {
                None => vec![Pattern::everything()],
                Some(list) => patterns(list, "access.anonymous.repositories")?,
            },
            allow: Rights::parse(&cfg.anonymous.allow, "access.anonymous.allow")?,
        };
        check_groups(&cfg.groups)?;
        let rules = match &cfg.rules {
            None => vec![everything_for_everyone()],
            Some(rules) => rules
                .iter()
                .enumerate()
                .map(|(i, r)| compile_rule(r, &cfg.groups, &format!("access.rules.{i}")))
                .collect::<Result<_, _>>()?,
        };
        Ok(Policy { anonymous, rules })
    }

    /// Whether `user` (`None`: anonymous) may do `action` in repository `repo`.
    pub fn allows(&self, user: Option<&str>, repo: &str, action: Action) -> bool {
        if self.anonymous.allow.has(action) && self.anonymous.covers(repo) {
            return true;
        }
        let Some(user) = user else { return false };
        self.rules
            .iter()
            .find(|r| r.applies_to(user) && r.grant.covers(repo))
            .is_some_and(|r| r.grant.allow.has(action))
    }

    /// Whether `user` may pull from at least one repository, as far as the rules alone tell:
    /// when false, the catalog is empty for them without listing anything. A true answer still
    /// needs [`Policy::allows`] per repository.
    pub fn may_pull_anything(&self, user: Option<&str>) -> bool {
        if self.anonymous.allow.has(Action::Pull) && !self.anonymous.repositories.is_empty() {
            return true;
        }
        let Some(user) = user else { return false };
        self.rules.iter().any(|r| r.applies_to(user) && r.grant.allow.has(Action::Pull))
    }
}

impl Policy {
    /// Whether `user` may do `action` in every repository, present and future (registry-wide
    /// operations such as garbage collection need the delete right so): a rule for `**`
    /// grants it, and no rule before it that applies to the user withholds it.
    pub fn allows_everywhere(&self, user: Option<&str>, action: Action) -> bool {
        if self.anonymous.allow.has(action) && self.anonymous.repositories.iter().any(Pattern::is_everything) {
            return true;
        }
        let Some(user) = user else { return false };
        for rule in self.rules.iter().filter(|r| r.applies_to(user)) {
            if !rule.grant.allow.has(action) {
                return false;
            }
            if rule.grant.repositories.iter().any(Pattern::is_everything) {
                return true;
            }
        }
        false
    }
}

fn everything_for_everyone() -> CompiledRule {
    CompiledRule {
        grant: Grant {
            repositories: vec![Pattern::everything()],
            allow: Rights::ALL,
        },
        everyone: true,
        users: HashSet::new(),
    }
}

fn check_groups(groups: &BTreeMap<String, Vec<String>>) -> Result<(), PolicyError> {
    for (name, members) in groups {
        let key = format!("access.groups.{name}");
        if name.is_empty() {
            return Err(invalid("access.groups", "a group name is empty"));
        }
        for (i, member) in members.iter().enumerate() {
            check_user_name(member, &format!("{key}.{i}"))?;
            if member == "*" {
                return Err(invalid(
                    format!("{key}.{i}"),
                    "\"*\" cannot be a group member; write users: [\"*\"] in a rule instead",
                ));
            }
        }
    }
    Ok(())
}

fn check_user_name(name: &str, key: &str) -> Result<(), PolicyError> {
    if name.is_empty() {
        return Err(invalid(key, "a user name is empty"));
    }
    if name.contains(':') || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(key, format!("{name:?} is not a valid user name")));
    }
    Ok(())
}

fn compile_rule(rule: &Rule, groups: &BTreeMap<String, Vec<String>>, key: &str) -> Result<CompiledRule, PolicyError> {
    let repositories = patterns(&rule.repositories, &format!("{key}.repositories"))?;
    let Some(allow) = &rule.allow else {
        return Err(invalid(
            format!("{key}.allow"),
            "missing; list the rights (pull, push, delete), or [] for a rule that denies",
        ));
    };
    let allow = Rights::parse(allow, &format!("{key}.allow"))?;
    if rule.users.is_empty() && rule.groups.is_empty() {
        return Err(invalid(
            key,
            "the rule names no users and no groups; use users: [\"*\"] for every authenticated user",
        ));
    }
    let mut users = HashSet::new();
    let mut everyone = false;
    for (i, user) in rule.users.iter().enumerate() {
        check_user_name(user, &format!("{key}.users.{i}"))?;
        everyone |= user == "*";
        users.insert(user.clone());
    }
    for (i, group) in rule.groups.iter().enumerate() {
        let Some(members) = groups.get(group) else {
            let defined: Vec<&str> = groups.keys().map(String::as_str).collect();
            let defined = if defined.is_empty() {
                "none".to_string()
            } else {
                defined.join(", ")
            };
            return Err(invalid(
                format!("{key}.groups.{i}"),
                format!("unknown group {group:?} (defined in access.groups: {defined})"),
            ));
        };
        users.extend(members.iter().cloned());
    }
    Ok(CompiledRule {
        grant: Grant { repositories, allow },
        everyone,
        users,
    })
}

fn patterns(list: &[String], key: &str) -> Result<Vec<Pattern>, PolicyError> {
    if list.is_empty() {
        return Err(invalid(key, "must list at least one repository pattern"));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| Pattern::parse(p).map_err(|why| invalid(format!("{key}.{i}"), format!("{p:?}: {why}"))))
        .collect()
}

/// A repository name pattern with `*` (within a component) and `**` (across components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(Vec<Token>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// Any run of bytes other than `/`.
    Star,
    /// Any run of bytes.
    DoubleStar,
}

impl Pattern {
    fn everything() -> Pattern {
        Pattern(vec![Token::DoubleStar])
    }

    fn is_everything(&self) -> bool {
        self.0 == [Token::DoubleStar]
    }

    /// Accepts what can match a repository name: lower-case letters, digits, `.`, `_`, `-`,
    /// and non-empty `/`-separated components, plus the wildcards.
    pub(crate) fn parse(text: &str) -> Result<Pattern, &'static str> {
        if text.is_empty() {
            return Err("a pattern is empty");
        }
        if text.split('/').any(str::is_empty) {
            return Err("empty path component (leading, trailing or doubled '/')");
        }
        if text.contains("***") {
            return Err("use * (one component) or ** (any depth), not ***");
        }
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("repository names are lower case, so this pattern would never match");
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/*".contains(&b);
        if !text.bytes().all(allowed) {
            return Err("only a-z, 0-9, '.', '_', '-', '/', '*' and '**' can appear");
        }
        let bytes = text.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"**") {
                tokens.push(Token::DoubleStar);
                i += 2;
            } else {
                tokens.push(if bytes[i] == b'*' { Token::Star } else { Token::Byte(bytes[i]) });
                i += 1;
            }
        }
        Ok(Pattern(tokens))
    }

    /// Dynamic programming over (pattern prefix, name prefix): linear in the name for each
    /// token, so no pattern can make matching slow.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = name.as_bytes();
        // matched[j]: the tokens seen so far match name[..j].
        let mut matched = vec![false; name.len() + 1];
        matched[0] = true;
        for token in &self.0 {
            let mut next = vec![false; name.len() + 1];
            for j in 0..=name.len() {
                next[j] = match token {
                    Token::Byte(b) => j > 0 && matched[j - 1] && name[j - 1] == *b,
                    Token::Star => matched[j] || (j > 0 && next[j - 1] && name[j - 1] != b'/'),
                    Token::DoubleStar => matched[j] || (j > 0 && next[j - 1]),
                };
            }
            matched = next;
        }
        matched[name.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> AccessConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn policy(yaml: &str) -> Policy {
        Policy::new(Some(&cfg(yaml))).unwrap()
    }

    fn error(yaml: &str) -> String {
        Policy::new(Some(&cfg(yaml))).unwrap_err().to_string()
    }

    /// Which of pull, push, delete `user` may do in `repo`, as "pull,push".
    fn rights(p: &Policy, user: Option<&str>, repo: &str) -> String {
        Action::ALL
            .into_iter()
            .filter(|&a| p.allows(user, repo, a))
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    const EXAMPLE: &str = r#"
anonymous:
  allow: [pull]
  repositories: ["public/**"]
groups:
  devs: [alice, bob]
  ops: [olga]
rules:
  - repositories: ["team/*", "shared/**"]
    users: [carol]
    groups: [devs]
    allow: [pull, push, delete]
  - repositories: ["secret/**"]
    users: ["*"]
    allow: []
  - repositories: ["ops/**"]
    groups: [ops]
    allow: [push]
  - repositories: ["**"]
    users: ["*"]
    allow: [pull]
"#;

    #[test]
    fn without_access_section_authenticated_users_do_everything() {
        let p = Policy::new(None).unwrap();
        for repo in ["a", "library/ubuntu", "x/y/z"] {
            assert_eq!(rights(&p, Some("anyone"), repo), "pull,push,delete");
            assert_eq!(rights(&p, None, repo), "");
        }
        assert!(p.may_pull_anything(Some("anyone")));
        assert!(!p.may_pull_anything(None));
    }

    #[test]
    fn every_right_allowed_and_denied() {
        let p = policy(EXAMPLE);
        // Full rights through a listed user and through group membership.
        for user in ["carol", "alice", "bob"] {
            assert_eq!(rights(&p, Some(user), "team/app"), "pull,push,delete", "{user}");
            assert_eq!(rights(&p, Some(user), "shared/a/b/c"), "pull,push,delete", "{user}");
        }
        // A rule granting only push.
        assert_eq!(rights(&p, Some("olga"), "ops/tools"), "push");
        // Only pull through the catch-all rule.
        assert_eq!(rights(&p, Some("dave"), "team/app"), "pull");
        assert_eq!(rights(&p, Some("olga"), "team/app"), "pull");
        // Nothing: the deny rule.
        assert_eq!(rights(&p, Some("alice"), "secret/x"), "");
        // Anonymous: pull in public only.
        assert_eq!(rights(&p, None, "public/base"), "pull");
        assert_eq!(rights(&p, None, "public/a/b"), "pull");
        assert_eq!(rights(&p, None, "team/app"), "");
        assert_eq!(rights(&p, None, "public"), "");
    }

    #[test]
    fn first_match_wins() {
        let p = policy(EXAMPLE);
        // carol matches rule 0 only for team/* and shared/**; elsewhere the catch-all applies.
        assert_eq!(rights(&p, Some("carol"), "team/app/deep"), "pull", "team/* is one component deep");
        assert_eq!(rights(&p, Some("carol"), "other"), "pull");
        // The deny rule comes before the catch-all, so it wins even for pull.
        assert_eq!(rights(&p, Some("dave"), "secret/keys"), "");
        // Order matters: the same rules reversed give the catch-all to everyone first.
        let reversed = policy(
            r#"
rules:
  - {repositories: ["**"], users: ["*"], allow: [pull]}
  - {repositories: ["team/*"], users: [carol], allow: [pull, push]}
"#,
        );
        assert_eq!(rights(&reversed, Some("carol"), "team/app"), "pull");
    }

    #[test]
    fn a_rule_that_applies_decides_even_with_fewer_rights() {
        let p = policy(
            r#"
rules:
  - {repositories: ["app"], users: [alice], allow: [pull]}
  - {repositories: ["app"], users: [alice], allow: [push]}
"#,
        );
        assert_eq!(rights(&p, Some("alice"), "app"), "pull");
    }

    #[test]
    fn authenticated_users_keep_anonymous_rights() {
        let p = policy(EXAMPLE);
        // The deny rule for secret/** does not take away anonymous rights elsewhere, and a user
        // with no rule for public/** may still pull there.
        let p2 = policy(
            r#"
anonymous: {allow: [pull], repositories: ["public/**"]}
rules:
  - {repositories: ["**"], users: ["*"], allow: []}
"#,
        );
        assert_eq!(rights(&p2, Some("dave"), "public/x"), "pull");
        assert_eq!(rights(&p2, Some("dave"), "private/x"), "");
        assert_eq!(rights(&p, Some("alice"), "public/x"), "pull");
    }

    #[test]
    fn rules_left_out_mean_authenticated_users_do_everything() {
        let p = policy("anonymous: {allow: [pull]}");
        assert_eq!(rights(&p, None, "any/repo"), "pull", "default anonymous repositories: all");
        assert_eq!(rights(&p, Some("u"), "any/repo"), "pull,push,delete");
        let none = policy("anonymous: {allow: [pull]}\nrules: []");
        assert_eq!(rights(&none, Some("u"), "any/repo"), "pull");
        let empty = policy("{}");
        assert_eq!(rights(&empty, None, "r"), "");
        assert_eq!(rights(&empty, Some("u"), "r"), "pull,push,delete");
    }

    #[test]
    fn anonymous_push_and_delete() {
        let p = policy(r#"anonymous: {allow: [pull, push, delete], repositories: ["scratch/*"]}"#);
        assert_eq!(rights(&p, None, "scratch/x"), "pull,push,delete");
        assert_eq!(rights(&p, None, "scratch/x/y"), "");
    }

    #[test]
    fn star_user_means_any_authenticated_user_never_anonymous() {
        let p = policy(r#"rules: [{repositories: ["**"], users: ["*"], allow: [pull, push]}]"#);
        assert_eq!(rights(&p, Some("zed"), "r"), "pull,push");
        assert_eq!(rights(&p, None, "r"), "");
        // A user literally named like a group member is not a group.
        let g = policy("groups: {devs: [alice]}\nrules: [{repositories: ['**'], groups: [devs], allow: [pull]}]");
        assert_eq!(rights(&g, Some("devs"), "r"), "");
        assert_eq!(rights(&g, Some("alice"), "r"), "pull");
    }

    #[test]
    fn may_pull_anything() {
        let p = policy(EXAMPLE);
        assert!(p.may_pull_anything(None), "anonymous pulls public/**");
        assert!(p.may_pull_anything(Some("dave")));
        let strict = policy(
            r#"
groups: {devs: [alice]}
rules:
  - {repositories: ["team/*"], groups: [devs], allow: [pull]}
  - {repositories: ["drop/*"], users: [bob], allow: [push]}
"#,
        );
        assert!(strict.may_pull_anything(Some("alice")));
        assert!(!strict.may_pull_anything(Some("bob")), "push only");
        assert!(!strict.may_pull_anything(Some("carol")));
        assert!(!strict.may_pull_anything(None));
    }

    #[test]
    fn patterns() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("app", &["app"], &["ap", "app2", "x/app", "app/x"]),
            ("*", &["a", "ubuntu"], &["a/b", "/"]),
            ("team/*", &["team/a", "team/"], &["team", "team/a/b", "teams/a"]),
            ("team/**", &["team/a", "team/a/b/c"], &["team", "teamx/a"]),
            ("**", &["a", "a/b/c"], &[]),
            ("**/cache", &["a/cache", "a/b/cache"], &["cache", "a/cachex"]),
            ("team-*/app", &["team-x/app", "team-/app"], &["team-x/y/app", "team/app"]),
            ("*-dev", &["web-dev", "-dev"], &["web-dev/x", "a/web-dev"]),
            ("a/**/z", &["a/b/z", "a/b/c/z"], &["a/z", "b/a/b/z"]),
            ("a*b*c", &["abc", "axbyc", "abbbc"], &["ab", "a/bc"]),
        ];
        for (pattern, yes, no) in cases {
            let p = Pattern::parse(pattern).unwrap();
            for name in *yes {
                assert!(p.matches(name), "{pattern} should match {name}");
            }
            for name in *no {
                assert!(!p.matches(name), "{pattern} should not match {name}");
            }
        }
    }

    #[test]
    fn matching_is_fast_on_adversarial_input() {
        let p = Pattern::parse(&"*a".repeat(40)).unwrap();
        let name = "a".repeat(255) + "b";
        let start = std::time::Instant::now();
        assert!(!p.matches(&name));
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn invalid_configurations_name_the_key() {
        for (yaml, want) in [
            ("anonymous: {allow: [pul]}", "access.anonymous.allow.0: unknown right \"pul\""),
            (
                "anonymous: {allow: [pull], repositories: []}",
                "access.anonymous.repositories: must list",
            ),
            (
                "anonymous: {allow: [pull], repositories: ['']}",
                "access.anonymous.repositories.0: \"\": a pattern is empty",
            ),
            (
                "rules: [{repositories: [a], users: [u], allow: [pull, Push]}]",
                "access.rules.0.allow.1: unknown right \"Push\"",
            ),
            ("rules: [{repositories: [a], users: [u]}]", "access.rules.0.allow: missing"),
            ("rules: [{users: [u], allow: [pull]}]", "access.rules.0.repositories: must list"),
            (
                "rules: [{repositories: [a], allow: [pull]}]",
                "access.rules.0: the rule names no users",
            ),
            (
                "rules: [{repositories: ['a//b'], users: [u], allow: []}]",
                "access.rules.0.repositories.0: \"a//b\": empty path",
            ),
            (
                "rules: [{repositories: ['/a'], users: [u], allow: []}]",
                "access.rules.0.repositories.0",
            ),
            (
                "rules: [{repositories: ['a/'], users: [u], allow: []}]",
                "access.rules.0.repositories.0",
            ),
            ("rules: [{repositories: ['Team/*'], users: [u], allow: []}]", "lower case"),
            ("rules: [{repositories: ['a***'], users: [u], allow: []}]", "not ***"),
            ("rules: [{repositories: ['a b'], users: [u], allow: []}]", "only a-z"),
            ("rules: [{repositories: ['a?'], users: [u], allow: []}]", "only a-z"),
            (
                "rules: [{repositories: [a], users: [''], allow: []}]",
                "access.rules.0.users.0: a user name is empty",
            ),
            ("rules: [{repositories: [a], users: ['a:b'], allow: []}]", "access.rules.0.users.0"),
            (
                "rules:\n- {repositories: [a], users: [u], allow: []}\n- {repositories: [a], groups: [ops], allow: []}",
                "access.rules.1.groups.0: unknown group \"ops\" (defined in access.groups: none)",
            ),
            (
                "groups: {devs: [a]}\nrules: [{repositories: [a], groups: [ops], allow: []}]",
                "(defined in access.groups: devs)",
            ),
            ("groups: {devs: ['*']}", "access.groups.devs.0: \"*\" cannot be a group member"),
            ("groups: {devs: ['']}", "access.groups.devs.0: a user name is empty"),
        ] {
            let e = error(yaml);
            assert!(e.contains(want), "{yaml}\n=> {e}\nwanted {want}");
        }
    }

    fn load(yaml: Option<&str>, env: &[(&str, &str)]) -> crate::config::Loaded {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        crate::config::load_from(yaml, &env).unwrap()
    }

    #[test]
    fn access_section_in_the_configuration_file() {
        let yaml = format!(
            "version: 0.1\naccess:\n{}",
            EXAMPLE.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let l = load(Some(&yaml), &[]);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.access.as_ref(), Some(&cfg(EXAMPLE)));
        let p = Policy::new(l.config.access.as_ref()).unwrap();
        assert_eq!(rights(&p, Some("bob"), "team/app"), "pull,push,delete");
        // What `wharf config check` prints loads back to the same section.
        let again = load(Some(&l.config.redacted_yaml()), &[]);
        assert_eq!(again.config.access, l.config.access);
        // No section: None, which is registry:2's behaviour.
        assert!(load(Some("version: 0.1\n"), &[]).config.access.is_none());
    }

    #[test]
    fn access_section_from_environment_variables() {
        let l = load(
            None,
            &[
                ("REGISTRY_ACCESS_ANONYMOUS_ALLOW", "[pull]"),
                ("REGISTRY_ACCESS_ANONYMOUS_REPOSITORIES", "['public/**']"),
                ("REGISTRY_ACCESS_GROUPS_DEVS", "[alice, bob]"),
                ("REGISTRY_ACCESS_RULES_0_REPOSITORIES_0", "team/*"),
                ("REGISTRY_ACCESS_RULES_0_GROUPS", "[devs]"),
                ("REGISTRY_ACCESS_RULES_0_ALLOW", "[pull, push]"),
                ("REGISTRY_ACCESS_RULES_1", "{repositories: ['**'], users: ['*'], allow: [pull]}"),
            ],
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let p = Policy::new(l.config.access.as_ref()).unwrap();
        assert_eq!(rights(&p, None, "public/x"), "pull");
        assert_eq!(rights(&p, Some("alice"), "team/x"), "pull,push");
        assert_eq!(rights(&p, Some("zed"), "team/x"), "pull");
        // A variable overrides one key of the file's section.
        let file = "version: 0.1\naccess:\n  anonymous: {allow: [pull]}\n";
        let l = load(Some(file), &[("REGISTRY_ACCESS_ANONYMOUS_ALLOW", "[]")]);
        let p = Policy::new(l.config.access.as_ref()).unwrap();
        assert_eq!(rights(&p, None, "x"), "");
    }

    #[test]
    fn access_section_type_errors_and_unknown_keys() {
        let env: Vec<(String, String)> = Vec::new();
        let e = crate::config::load_from(
            Some("version: 0.1\naccess:\n  rules:\n    - {repositories: a, users: [u], allow: []}\n"),
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("access.rules.0.repositories: "), "{e}");
        let e = crate::config::load_from(Some("version: 0.1\naccess: [pull]\n"), &env)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("access: "), "{e}");
        let l = load(
            Some("version: 0.1\naccess:\n  anonymous: {allow: [pull], repos: [x]}\n  rulez: []\n"),
            &[],
        );
        let w = l.warnings.join("\n");
        assert!(w.contains("access.anonymous.repos") && w.contains("access.rulez"), "{w}");
    }

    #[test]
    fn serializes_back_to_the_same_config() {
        let c = cfg(EXAMPLE);
        let again: AccessConfig = serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let minimal = serde_yaml_ng::to_string(&AccessConfig::default()).unwrap();
        assert_eq!(minimal.trim(), "{}");
    }
}
