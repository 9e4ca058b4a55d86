//! `wharf du [CONFIG] [REPO...]`: what each repository holds, the bytes only it links and the
//! bytes it shares with others, its tags and its last push and pull. A server running on the
//! storage answers through its control socket (its index is current; the store must not be read
//! beside it); without one the store is opened here, under the root lock, so no server can start
//! on it meanwhile.

use super::control::{self, Holder};
use crate::config;
use crate::registry::usage::{usage_from_json, usage_json, RepoUsage};
use crate::registry::{Options, Registry};
use crate::store::paths::Layout;
use anyhow::Context;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(clap::Args, Debug)]
pub struct DuArgs {
    /// The configuration file (as for `wharf serve`); the environment overrides it as usual.
    config: Option<PathBuf>,
    /// Only these repositories (all when none is given).
    repos: Vec<String>,
    /// Sizes in bytes instead of KiB, MiB, GiB.
    #[arg(long)]
    bytes: bool,
    /// JSON (as `GET /v2/_wharf/usage` answers) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Repositories read from the usage index at a time.
const PAGE: usize = crate::registry::listing::MAX_PAGE;

pub fn run(args: DuArgs) -> anyhow::Result<()> {
    // A file name ending in .yml/.yaml is the configuration; anything else is a repository.
    let (config_file, repos) = split_args(args.config, args.repos);
    let cfg = config::load(config_file.as_deref())?.config;
    let root = cfg.root_directory();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let usage = rt.block_on(async {
        match control::holder(Layout::new(&root).v2())? {
            Holder::Server(server) => server_usage(&server, &repos).await,
            Holder::Local(_lock) => local_usage(root, &repos).await,
        }
    })?;
    let out = if args.json {
        serde_json::json!({ "repositories": usage.iter().map(usage_json).collect::<Vec<_>>() }).to_string() + "\n"
    } else {
        table(&usage, args.bytes, SystemTime::now())
    };
    print!("{out}");
    Ok(())
}

fn split_args(config: Option<PathBuf>, repos: Vec<String>) -> (Option<PathBuf>, Vec<String>) {
    let is_config = |p: &PathBuf| p.extension().is_some_and(|e| e == "yml" || e == "yaml") || p.is_file();
    match config {
        Some(c) if is_config(&c) => (Some(c), repos),
        Some(c) => (None, std::iter::once(c.to_string_lossy().into_owned()).chain(repos).collect()),
        None => (None, repos),
    }
}

/// Pages through the server's `GET /v2/_wharf/usage`, or asks for each named repository.
async fn server_usage(server: &control::Client, only: &[String]) -> anyhow::Result<Vec<RepoUsage>> {
    let parse = |v: &serde_json::Value| usage_from_json(v).context("the server's usage answer is not what was expected");
    if !only.is_empty() {
        let mut out = Vec::new();
        for name in only {
            let one: serde_json::Value = server
                .json(axum::http::Method::GET, &format!("/v2/{name}/_wharf/usage"))
                .await
                .with_context(|| format!("repository {name}"))?;
            out.push(parse(&one)?);
        }
        return Ok(out);
    }
    let mut all = Vec::new();
    let mut last = String::new();
    loop {
        let target = match last.is_empty() {
            true => format!("/v2/_wharf/usage?n={PAGE}"),
            false => format!("/v2/_wharf/usage?n={PAGE}&last={last}"),
        };
        let page: serde_json::Value = server.json(axum::http::Method::GET, &target).await?;
        let repos = page["repositories"]
            .as_array()
            .context("the server's usage answer has no repositories")?;
        for r in repos {
            all.push(parse(r)?);
        }
        match all.last() {
            Some(u) if repos.len() == PAGE => last = u.name.clone(),
            _ => return Ok(all),
        }
    }
}

/// Reads the usage index of the store this process holds the lock of.
async fn local_usage(root: PathBuf, only: &[String]) -> anyhow::Result<Vec<RepoUsage>> {
    let store = crate::store::filesystem(&root)
        .await
        .with_context(|| format!("cannot read {}", root.display()))?;
    let registry = Registry::new(store, Options::default());
    let mut all = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = registry
            .usage_page(last.as_deref(), PAGE, |r| only.is_empty() || only.iter().any(|o| o == r))
            .await?;
        let Some(tail) = page.last().map(|u| u.name.clone()) else { break };
        all.extend(page);
        last = Some(tail);
    }
    for name in only {
        if !all.iter().any(|u| &u.name == name) {
            anyhow::bail!("repository {name} is not in {}", root.display());
        }
    }
    Ok(all)
}

/// `1.5 MiB`, or the exact count with `--bytes`.
pub fn size(n: u64, exact: bool) -> String {
    if exact {
        return n.to_string();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// How long ago, in the largest whole unit: `3d ago`, or `never`.
fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    let Some(t) = t else { return "never".into() };
    let s = now.duration_since(t).unwrap_or_default().as_secs();
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn table(usage: &[RepoUsage], exact: bool, now: SystemTime) -> String {
    let head = ["REPOSITORY", "TAGS", "MANIFESTS", "UNIQUE", "SHARED", "LAST PUSH", "LAST PULL"].map(String::from);
    let mut rows = vec![head];
    for u in usage {
        rows.push([
            u.name.clone(),
            u.tags.to_string(),
            u.manifests.to_string(),
            size(u.unique_bytes, exact),
            size(u.shared_bytes, exact),
            ago(u.last_push, now),
            ago(u.last_pull, now),
        ]);
    }
    let total_unique: u64 = usage.iter().map(|u| u.unique_bytes).sum();
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "{} repositories, {} held by one repository alone\n",
        usage.len(),
        size(total_unique, exact)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0, false), "0 B");
        assert_eq!(size(1023, false), "1023 B");
        assert_eq!(size(1536, false), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024, false), "5.0 GiB");
        assert_eq!(size(1536, true), "1536");
    }
}
