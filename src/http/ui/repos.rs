//! The repository list: the repositories the viewer may pull, a page at a time in name order,
//! optionally only those whose name contains the filter text. Each row is computed from the
//! index and the tagged manifests of that repository alone, so a page costs the same on 10
//! repositories as on 10,000.

use super::html::{self, esc, url};
use super::{AppState, Ask, PageResult, Viewer};
use crate::auth::Action;
use crate::http::request::{page_size, param};
use crate::oci::RepoName;
use crate::registry::usage::RepoUsage;
use futures::StreamExt;
use std::time::SystemTime;

/// Rows per page unless `n` says otherwise, and the most `n` may ask for.
const DEFAULT_ROWS: usize = 50;
const MAX_ROWS: usize = 500;
/// Repositories summarised at once: their reads overlap, without flooding the store.
const CONCURRENT_SUMMARIES: usize = 8;

/// One row of the list, from the usage index or, without one, from the repository itself.
struct Row {
    name: String,
    tags: Option<usize>,
    /// Bytes only this repository holds, and bytes it shares with others (None: not known).
    unique: Option<u64>,
    shared: Option<u64>,
    /// False when the size is a lower bound (see `RepoSummary::complete`).
    complete: bool,
    last_push: Option<SystemTime>,
    last_pull: Option<SystemTime>,
}

impl From<RepoUsage> for Row {
    fn from(u: RepoUsage) -> Row {
        Row {
            name: u.name,
            tags: Some(u.tags),
            unique: Some(u.unique_bytes),
            shared: Some(u.shared_bytes),
            complete: true,
            last_push: u.last_push,
            last_pull: u.last_pull,
        }
    }
}

pub async fn page(state: &AppState, viewer: &Viewer, ask: &Ask) -> PageResult {
    let params = &ask.params;
    let filter = param(params, "q").unwrap_or_default().trim().to_ascii_lowercase();
    let last = param(params, "last").filter(|l| !l.is_empty());
    let n = page_size(params).ok().flatten().unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS);
    let visible = |name: &str| name.contains(filter.as_str()) && viewer.may(Action::Pull, name);
    // The usage index answers a page from memory; a store shared with other writers keeps
    // none, and then each row is read from its repository.
    let (rows, next_last) = match state.registry.usage_page(last, n + 1, visible).await {
        Ok(mut usage) => {
            let more = usage.len() > n;
            usage.truncate(n);
            let next = more.then(|| usage.last().map(|u| u.name.clone())).flatten();
            (usage.into_iter().map(Row::from).collect(), next)
        }
        Err(_) => {
            let page = state.registry.catalog(last, Some(n), visible).await?;
            (summaries(state, page.items).await, page.next_last)
        }
    };

    let mut body = format!(
        "<form class=\"filter\" method=\"get\" action=\"/ui/\"><input type=\"search\" name=\"q\" value=\"{}\" \
placeholder=\"Filter by name\" aria-label=\"Filter by name\"><button type=\"submit\">Filter</button></form>",
        esc(&filter)
    );
    if rows.is_empty() {
        body.push_str("<p class=\"muted\" id=\"empty\">No repositories");
        body.push_str(if filter.is_empty() { ".</p>" } else { " match the filter.</p>" });
    } else {
        body.push_str(
            "<table id=\"repositories\"><thead><tr><th>Repository</th><th class=\"num\">Tags</th>\
<th class=\"num\" title=\"Bytes only this repository holds\">Size</th><th class=\"num\" title=\"Bytes it shares with other repositories\">Shared</th>\
<th>Last push</th><th>Last pull</th></tr></thead><tbody>",
        );
        body.extend(rows.iter().map(row));
        body.push_str("</tbody></table>");
    }
    let keep = |extra: &str| {
        let mut q = String::new();
        if !filter.is_empty() {
            q.push_str(&format!("q={}&", url(&filter)));
        }
        if n != DEFAULT_ROWS {
            q.push_str(&format!("n={n}&"));
        }
        q.push_str(extra);
        format!("/ui/?{}", q.trim_end_matches('&'))
    };
    body.push_str("<div class=\"pager\">");
    if last.is_some() {
        body.push_str(&format!("<a id=\"first\" href=\"{}\">First page</a>", esc(&keep(""))));
    }
    if let Some(next) = &next_last {
        body.push_str(&format!(
            "<a id=\"next\" href=\"{}\">Next page</a>",
            esc(&keep(&format!("last={}", url(next))))
        ));
    }
    body.push_str("</div>");
    Ok(viewer.page("Repositories", &body))
}

/// Rows read from each repository (no usage index): tags, size and last push.
async fn summaries(state: &AppState, names: Vec<String>) -> Vec<Row> {
    // Owned values in the futures: borrowed ones make the handler's future not `Send`
    // (rust-lang/rust#102211).
    futures::stream::iter(names)
        .map(|name| {
            let registry = state.registry.clone();
            async move {
                let summary = match RepoName::parse(&name) {
                    Some(repo) => registry.repo_summary(&repo).await.ok(),
                    None => None,
                };
                Row {
                    tags: summary.as_ref().map(|s| s.tags),
                    unique: summary.as_ref().map(|s| s.bytes),
                    shared: None,
                    complete: summary.as_ref().is_none_or(|s| s.complete),
                    last_push: summary.and_then(|s| s.last_push),
                    last_pull: None,
                    name,
                }
            }
        })
        .buffered(CONCURRENT_SUMMARIES)
        .collect()
        .await
}

fn row(r: &Row) -> String {
    let dash = || "–".to_string();
    format!(
        "<tr data-name=\"{n}\"><td><a href=\"/ui/repo?name={u}\">{n}</a></td><td class=\"num\">{}</td>\
<td class=\"num\">{}{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        r.tags.map_or_else(dash, |t| t.to_string()),
        if r.complete { "" } else { "≥ " },
        r.unique.map_or_else(dash, html::bytes),
        r.shared.map_or_else(dash, html::bytes),
        html::time(r.last_push),
        html::time(r.last_pull),
        n = esc(&r.name),
        u = url(&r.name),
    )
}
