//! A repository's page: its tags with the digest each points at, the platforms of multi-arch
//! indexes, size and push time; the pull commands; delete buttons for viewers who may delete.

use super::html::{self, esc, url};
use super::{visible_repo, AppState, Ask, PageResult, Viewer};
use crate::http::request::param;
use crate::registry::summary::TagSummary;
use std::collections::HashMap;
use std::time::SystemTime;

const TAGS_PER_PAGE: usize = 100;

pub async fn page(state: &AppState, viewer: &Viewer, ask: &Ask) -> PageResult {
    let params = &ask.params;
    let repo = visible_repo(viewer, params)?;
    let last = param(params, "last").filter(|l| !l.is_empty());
    let (tags, next) = state.registry.tag_summaries(&repo, last, TAGS_PER_PAGE).await?;
    let deletable = viewer.may_delete(repo.as_str());
    let host = ask.host.clone();

    // Pull times and the repository's figures come from the usage index, when one is kept.
    let pulls: HashMap<String, Option<SystemTime>> = match state.registry.tag_times(&repo).await {
        Ok(times) => times.into_iter().map(|(tag, t)| (tag, t.pulled)).collect(),
        Err(_) => HashMap::new(),
    };
    let mut body = String::new();
    if let Ok(Some(u)) = state.registry.repo_usage(&repo).await {
        body.push_str(&format!(
            "<dl class=\"facts\" id=\"usage\"><dt>Tags</dt><dd>{}</dd><dt>Manifests</dt><dd>{}</dd>\
<dt>Only here</dt><dd>{}</dd><dt>Shared with other repositories</dt><dd>{}</dd><dt>Last push</dt><dd>{}</dd>\
<dt>Last pull</dt><dd>{}</dd></dl>",
            u.tags,
            u.manifests,
            html::bytes(u.unique_bytes),
            html::bytes(u.shared_bytes),
            html::time(u.last_push),
            html::time(u.last_pull)
        ));
    }
    if let Some(first) = tags.iter().find(|t| t.tag == "latest").or(tags.first()) {
        body.push_str("<h2>Pull</h2>");
        body.push_str(&pull_commands(&host, repo.as_str(), &format!(":{}", first.tag)));
    }
    body.push_str("<h2>Tags</h2>");
    if tags.is_empty() {
        body.push_str("<p class=\"muted\">No tags.</p>");
    } else {
        body.push_str(
            "<table id=\"tags\"><thead><tr><th>Tag</th><th>Digest</th><th>Platforms</th><th class=\"num\">Size</th>\
<th>Pushed</th><th>Pulled</th>",
        );
        if deletable {
            body.push_str("<th></th>");
        }
        body.push_str("</tr></thead><tbody>");
        for t in &tags {
            let pulled = pulls.get(&t.tag).copied().flatten();
            body.push_str(&tag_row(repo.as_str(), t, pulled, deletable));
        }
        body.push_str("</tbody></table>");
    }
    if let Some(next) = next {
        body.push_str(&format!(
            "<div class=\"pager\"><a id=\"next\" href=\"/ui/repo?name={}&amp;last={}\">More tags</a></div>",
            url(repo.as_str()),
            url(&next)
        ));
    }
    if deletable {
        body.push_str(&super::delete::repository_form(repo.as_str()));
    }
    Ok(viewer.page(repo.as_str(), &body))
}

/// `docker pull` and `podman pull` for `HOST/NAME` + `reference` (`:tag` or `@digest`).
pub fn pull_commands(host: &str, name: &str, reference: &str) -> String {
    let image = format!("{host}/{name}{reference}");
    html::command("pull-docker", &format!("docker pull {image}")) + &html::command("pull-podman", &format!("podman pull {image}"))
}

fn tag_row(repo: &str, t: &TagSummary, pulled: Option<SystemTime>, deletable: bool) -> String {
    let platforms = if t.platforms.is_empty() {
        "<span class=\"muted\">single image</span>".to_string()
    } else {
        t.platforms
            .iter()
            .map(|p| format!("<span class=\"tag\">{}</span>", esc(p)))
            .collect()
    };
    let mut row = format!(
        "<tr data-tag=\"{tag}\"><td><a href=\"/ui/manifest?name={r}&amp;ref={t}\">{tag}</a></td>\
<td class=\"digest\"><a href=\"/ui/manifest?name={r}&amp;ref={d}\">{digest}</a></td><td>{platforms}</td>\
<td class=\"num\">{size}</td><td>{pushed}</td><td>{pulled}</td>",
        tag = esc(&t.tag),
        r = url(repo),
        t = url(&t.tag),
        d = url(&t.digest.to_string()),
        digest = esc(&t.digest.to_string()),
        size = html::bytes(t.bytes),
        pushed = html::time(t.pushed),
        pulled = html::time(pulled),
    );
    if deletable {
        row.push_str(&format!("<td>{}</td>", super::delete::tag_form(repo, &t.tag)));
    }
    row.push_str("</tr>");
    row
}
