//! The repository list: the repositories the viewer may pull, a page at a time in name order,
//! optionally only those whose name contains the filter text. Each row is computed from the
//! index and the tagged manifests of that repository alone, so a page costs the same on 10
//! repositories as on 10,000.

use super::html::{self, esc, url};
use super::{AppState, Ask, PageResult, Viewer};
use crate::auth::Action;
use crate::http::request::{page_size, param};
use crate::oci::RepoName;
use futures::StreamExt;

/// Rows per page unless `n` says otherwise, and the most `n` may ask for.
const DEFAULT_ROWS: usize = 50;
const MAX_ROWS: usize = 500;
/// Repositories summarised at once: their reads overlap, without flooding the store.
const CONCURRENT_SUMMARIES: usize = 8;

pub async fn page(state: &AppState, viewer: &Viewer, ask: &Ask) -> PageResult {
    let params = &ask.params;
    let filter = param(params, "q").unwrap_or_default().trim().to_ascii_lowercase();
    let last = param(params, "last").filter(|l| !l.is_empty());
    let n = page_size(params).ok().flatten().unwrap_or(DEFAULT_ROWS).clamp(1, MAX_ROWS);
    let page = state
        .registry
        .catalog(last, Some(n), |name| {
            name.contains(filter.as_str()) && viewer.may(Action::Pull, name)
        })
        .await?;
    // Owned values in the futures: borrowed ones make the handler's future not `Send`
    // (rust-lang/rust#102211).
    let rows: Vec<String> = futures::stream::iter(page.items.clone())
        .map(|name| {
            let registry = state.registry.clone();
            async move {
                let summary = match RepoName::parse(&name) {
                    Some(repo) => registry.repo_summary(&repo).await.ok(),
                    None => None,
                };
                row(&name, summary)
            }
        })
        .buffered(CONCURRENT_SUMMARIES)
        .collect()
        .await;

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
<th class=\"num\">Size</th><th>Last push</th></tr></thead><tbody>",
        );
        body.extend(rows);
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
    if let Some(next) = &page.next_last {
        body.push_str(&format!(
            "<a id=\"next\" href=\"{}\">Next page</a>",
            esc(&keep(&format!("last={}", url(next))))
        ));
    }
    body.push_str("</div>");
    Ok(viewer.page("Repositories", &body))
}

fn row(name: &str, summary: Option<crate::registry::summary::RepoSummary>) -> String {
    let link = format!("<a href=\"/ui/repo?name={}\">{}</a>", url(name), esc(name));
    match summary {
        Some(s) => format!(
            "<tr data-name=\"{}\"><td>{link}</td><td class=\"num\">{}</td><td class=\"num\">{}{}</td><td>{}</td></tr>",
            esc(name),
            s.tags,
            if s.complete { "" } else { "≥ " },
            html::bytes(s.bytes),
            html::time(s.last_push)
        ),
        None => format!(
            "<tr data-name=\"{}\"><td>{link}</td><td class=\"num\">–</td><td class=\"num\">–</td><td>–</td></tr>",
            esc(name)
        ),
    }
}
