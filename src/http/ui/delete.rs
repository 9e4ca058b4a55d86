//! Deleting from the UI: a form per tag and one for the repository, posted to `/ui/delete` after the browser's
//! confirmation. The handler decides again, as the API does: the delete right on the
//! repository and `storage.delete.enabled`, whatever the page showed. It goes through the
//! registry's own delete, so the delete event is emitted with this request's context.

use super::html::esc;
use super::{redirect, AppState, PageResult, UiError, Viewer};
use crate::auth::Action;
use crate::http::request::{self, param};
use crate::oci::{Reference, RepoName, Tag};
use axum::extract::Request;
use axum::http::StatusCode;

/// A delete form's body is a few names: anything longer is not one of ours.
const FORM_MAX: usize = 4096;

pub fn tag_form(repo: &str, tag: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/ui/delete\" data-confirm=\"Delete the tag {tag} of {repo}? \
Other tags of the same image stay.\"><input type=\"hidden\" name=\"name\" value=\"{repo}\"><input type=\"hidden\" \
name=\"tag\" value=\"{tag}\"><button type=\"submit\" class=\"danger\">Delete</button></form>",
        repo = esc(repo),
        tag = esc(tag)
    )
}

/// The whole repository: every tag and manifest; it leaves the list (repositories nested
/// under its name stay).
pub fn repository_form(repo: &str) -> String {
    format!(
        "<h2>Delete the repository</h2><form method=\"post\" action=\"/ui/delete\" id=\"delete-repository\" \
data-confirm=\"Delete the repository {repo} with all its tags and manifests? This cannot be undone.\">\
<input type=\"hidden\" name=\"name\" value=\"{repo}\"><input type=\"hidden\" name=\"what\" value=\"repository\">\
<button type=\"submit\" class=\"danger\">Delete {repo}</button></form>",
        repo = esc(repo)
    )
}

pub async fn post(state: &AppState, viewer: &Viewer, req: Request) -> PageResult {
    same_origin(&req, state.urls.host.as_deref())?;
    let ctx = crate::http::context::of(state, &req, viewer.user.clone());
    let body = request::read_bounded_body(req.into_body(), FORM_MAX)
        .await
        .map_err(|_| UiError::new(StatusCode::BAD_REQUEST, "the form is too large or was cut off"))?;
    let form = request::query(Some(&String::from_utf8_lossy(&body)));
    let name = param(&form, "name").unwrap_or_default();
    let repo = RepoName::parse(name).ok_or_else(|| UiError::new(StatusCode::BAD_REQUEST, "no repository named"))?;
    if !viewer.may(Action::Pull, repo.as_str()) {
        return Err(UiError::new(
            StatusCode::NOT_FOUND,
            format!("repository {repo} is not known to this registry"),
        ));
    }
    if !viewer.may(Action::Delete, repo.as_str()) {
        let who = viewer.user.as_deref().unwrap_or("anonymous");
        return Err(UiError::new(StatusCode::FORBIDDEN, format!("user {who} may not delete in {repo}")));
    }
    if param(&form, "what") == Some("repository") {
        state.registry.repository_delete(&ctx, &repo).await?;
        return Ok(redirect("/ui/"));
    }
    let tag = param(&form, "tag")
        .and_then(Tag::parse)
        .ok_or_else(|| UiError::new(StatusCode::BAD_REQUEST, "no tag named"))?;
    state.registry.manifest_delete(&ctx, &repo, &Reference::Tag(tag)).await?;
    Ok(redirect(&format!("/ui/repo?name={}", super::html::url(repo.as_str()))))
}

/// Refuses a form posted from another site: the browser sends the viewer's password with any
/// request to this origin, so without this a page elsewhere could delete in their name.
/// Browsers send `Origin` on every POST; it must name the host the request was sent to, or the
/// external URL `http.host` configures (behind a proxy that rewrites `Host`, the browser's
/// origin is that URL, not the address the proxy forwards to).
fn same_origin(req: &Request, external: Option<&str>) -> Result<(), UiError> {
    let refused = || UiError::new(StatusCode::FORBIDDEN, "the form was not sent from this registry's pages");
    let origin = request::header_str(req.headers(), "origin").ok_or_else(refused)?;
    if external.is_some_and(|e| e.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    let origin_host = origin.split_once("://").map(|(_, h)| h).ok_or_else(refused)?;
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| request::header_str(req.headers(), "host"))
        .ok_or_else(refused)?;
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_from(origin: &str, host: &str) -> Request {
        axum::http::Request::post("/ui/delete")
            .header("origin", origin)
            .header("host", host)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    /// Same host, or the configured external URL behind a proxy; never another site.
    #[test]
    fn a_form_is_taken_only_from_this_registrys_own_origin() {
        assert!(same_origin(&post_from("http://reg:5000", "reg:5000"), None).is_ok());
        assert!(same_origin(&post_from("https://evil.example", "reg:5000"), None).is_err());
        let behind = post_from("https://registry.example.com", "10.0.0.5:5000");
        assert!(same_origin(&behind, None).is_err());
        assert!(same_origin(&behind, Some("https://registry.example.com/")).is_ok());
        assert!(same_origin(
            &post_from("https://evil.example", "10.0.0.5:5000"),
            Some("https://registry.example.com")
        )
        .is_err());
    }
}
