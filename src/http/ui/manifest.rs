//! A manifest's page: an index's children with their platforms, or an image's layers, platform
//! and config history; the pull commands for the reference shown.

use super::html::{self, esc, url};
use super::{visible_repo, AppState, Ask, PageResult, UiError, Viewer};
use crate::http::request::param;
use crate::oci::manifest::Descriptor;
use crate::oci::Reference;
use crate::registry::summary::platform_of;
use axum::http::StatusCode;
use serde_json::Value;

/// History entries shown at most (a config may carry thousands).
const HISTORY_MAX: usize = 500;

pub async fn page(state: &AppState, viewer: &Viewer, ask: &Ask) -> PageResult {
    let params = &ask.params;
    let repo = visible_repo(viewer, params)?;
    let raw = param(params, "ref").unwrap_or_default();
    let reference = Reference::parse(raw).map_err(|_| UiError::new(StatusCode::NOT_FOUND, "not a tag or digest"))?;
    let m = state.registry.manifest_inspect(&repo, &reference).await?;
    let shown = match &reference {
        Reference::Tag(t) => format!(":{t}"),
        Reference::Digest(d) => format!("@{d}"),
    };
    let mut body = format!(
        "<p><a href=\"/ui/repo?name={}\">← {}</a></p><dl class=\"facts\"><dt>Digest</dt><dd class=\"digest\" id=\"digest\">{}</dd>\
<dt>Media type</dt><dd><code>{}</code></dd><dt>Manifest size</dt><dd>{}</dd>",
        url(repo.as_str()),
        esc(repo.as_str()),
        esc(&m.digest.to_string()),
        esc(&m.media_type),
        html::bytes(m.bytes.len() as u64),
    );
    let config = match &m.manifest.config {
        Some(c) => state.registry.config_json(&c.digest).await?,
        None => None,
    };
    if let Some(p) = config.as_ref().and_then(platform_of) {
        body.push_str(&format!("<dt>Platform</dt><dd id=\"platform\">{}</dd>", esc(&p)));
    }
    if let Some(created) = config.as_ref().and_then(|c| c.get("created")).and_then(Value::as_str) {
        body.push_str(&format!("<dt>Created</dt><dd>{}</dd>", esc(created)));
    }
    body.push_str("</dl><h2>Pull</h2>");
    body.push_str(&super::repo::pull_commands(&ask.host, repo.as_str(), &shown));

    if !m.manifest.children.is_empty() {
        body.push_str(&children(repo.as_str(), &m.manifest.children));
    }
    let config_digest = m.manifest.config.as_ref().map(|c| &c.digest);
    let layers: Vec<&Descriptor> = m.manifest.blobs.iter().filter(|b| Some(&b.digest) != config_digest).collect();
    if m.manifest.config.is_some() || !layers.is_empty() {
        body.push_str(&layer_table(&layers));
    }
    if let Some(history) = config.as_ref().and_then(|c| c.get("history")).and_then(Value::as_array) {
        body.push_str(&history_table(history));
    }
    Ok(viewer.page(&format!("{repo}{shown}"), &body))
}

fn children(repo: &str, list: &[Descriptor]) -> String {
    let mut s = String::from(
        "<h2>Platforms</h2><table id=\"children\"><thead><tr><th>Platform</th><th>Digest</th><th>Media type</th>\
<th class=\"num\">Size</th></tr></thead><tbody>",
    );
    for c in list {
        let platform = c.platform.as_ref().and_then(platform_of).unwrap_or_else(|| "–".into());
        s.push_str(&format!(
            "<tr><td>{}</td><td class=\"digest\"><a href=\"/ui/manifest?name={}&amp;ref={}\">{}</a></td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
            esc(&platform),
            url(repo),
            url(&c.digest.to_string()),
            esc(&c.digest.to_string()),
            esc(&c.media_type),
            html::bytes(c.size)
        ));
    }
    s.push_str("</tbody></table>");
    s
}

fn layer_table(layers: &[&Descriptor]) -> String {
    let total: u64 = layers.iter().map(|l| l.size).sum();
    let mut s = format!(
        "<h2>Layers <span class=\"muted\">({}, {})</span></h2><table id=\"layers\"><thead><tr><th>Digest</th>\
<th>Media type</th><th class=\"num\">Size</th></tr></thead><tbody>",
        layers.len(),
        html::bytes(total)
    );
    for l in layers {
        s.push_str(&format!(
            "<tr><td class=\"digest\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
            esc(&l.digest.to_string()),
            esc(&l.media_type),
            html::bytes(l.size)
        ));
    }
    s.push_str("</tbody></table>");
    s
}

fn history_table(history: &[Value]) -> String {
    let text = |h: &Value, key: &str| h.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut s =
        String::from("<h2>History</h2><table id=\"history\"><thead><tr><th>Created</th><th>Created by</th><th></th></tr></thead><tbody>");
    for h in history.iter().take(HISTORY_MAX) {
        let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        let mut by = text(h, "created_by");
        let comment = text(h, "comment");
        if !comment.is_empty() {
            by = format!("{by} ({comment})");
        }
        s.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"muted\">{}</td></tr>",
            esc(&text(h, "created")),
            esc(&by),
            if empty { "no layer" } else { "" }
        ));
    }
    s.push_str("</tbody></table>");
    s
}
