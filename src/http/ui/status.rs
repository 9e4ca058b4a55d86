//! The status page: what the registry can do (deletes, read-only), garbage collection and
//! usage, and the commands a new client runs to trust and log in to this registry.

use super::html;
use super::{AppState, Ask, PageResult, Viewer};

pub async fn page(state: &AppState, viewer: &Viewer, ask: &Ask) -> PageResult {
    let host = ask.host.clone();
    let registry = &state.registry;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut body = format!(
        "<h2>Registry</h2><dl class=\"facts\" id=\"registry-facts\"><dt>Deletes enabled</dt><dd>{}</dd>\
<dt>Authentication</dt><dd>{}</dd>",
        yes_no(registry.deletes_enabled()),
        if state.auth.is_some() {
            "required (same accounts as the API)"
        } else {
            "none configured"
        },
    );
    if let Some((repositories, bytes)) = registry.stored_totals() {
        body.push_str(&format!(
            "<dt>Repositories</dt><dd id=\"repository-count\">{repositories}</dd><dt>Stored</dt><dd>{} \
<span class=\"muted\">(every blob once)</span></dd>",
            html::bytes(bytes)
        ));
    }
    body.push_str("</dl>");
    body.push_str(&gc_section(&registry.gc_status()));
    body.push_str("<h2>Set up a client</h2>");
    if let Some(pem) = &state.ca_pem {
        if let Ok(fp) = crate::tls::certs::fingerprint_sha256(pem) {
            body.push_str(
                "<p>Trust this registry's certificate authority on the client (Docker, containerd, podman and the \
system store), checking its fingerprint:</p>",
            );
            body.push_str(&html::command("trust", &format!("sudo wharf trust {host} --fingerprint {fp}")));
        }
    }
    if state.auth.is_some() {
        body.push_str("<p>Log in with your registry user name and password:</p>");
        body.push_str(&html::command("login", &format!("docker login {host}")));
    }
    body.push_str("<p>Then push and pull by the registry's name:</p>");
    body.push_str(&html::command("push", &format!("docker push {host}/IMAGE:TAG")));
    Ok(viewer.page("Status", &body))
}

/// The running and the last garbage collection (`Registry::gc_status`, as `GET /v2/_wharf/gc`).
fn gc_section(gc: &crate::registry::gc::GcStatus) -> String {
    let mut s = String::from("<h2>Garbage collection</h2><dl class=\"facts\" id=\"gc\">");
    let running = match &gc.running_since {
        Some(since) if gc.running => format!("running since {}", html::esc(since)),
        _ => "not running".to_string(),
    };
    s.push_str(&format!(
        "<dt>Now</dt><dd>{running}</dd><dt>Runs since start</dt><dd>{}</dd>",
        gc.runs
    ));
    match &gc.last {
        Some(last) => s.push_str(&format!(
            "<dt>Last run</dt><dd>{}{}, {:.1} s</dd><dt>Freed</dt><dd>{} ({} blobs, {} manifests)</dd><dt>Kept as too young</dt><dd>{}</dd>",
            html::esc(&last.started),
            if last.dryrun { " (dry run)" } else { "" },
            last.duration_seconds,
            html::bytes(last.bytes_freed),
            last.blobs_deleted.len(),
            last.manifests_deleted.len(),
            last.spared
        )),
        None => s.push_str("<dt>Last run</dt><dd>none since the server started</dd>"),
    }
    if let Some(e) = &gc.last_error {
        s.push_str(&format!("<dt>Last error</dt><dd class=\"error\">{}</dd>", html::esc(e)));
    }
    s.push_str("</dl>");
    s
}
