//! HTML output: escaping, the page frame, and the few formats the pages share. Every value
//! that comes from a client, a manifest or a configuration goes through `esc` (text and
//! attribute values alike) or `url` (query components).

use std::fmt::Write;
use std::time::SystemTime;

/// Escapes text for an HTML text node or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query component (everything but unreserved characters).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Bytes in binary units, as `du -h` and registries' UIs show them.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A time as RFC 3339 in UTC, to the second; "–" for none.
pub fn time(t: Option<SystemTime>) -> String {
    let Some(t) = t else { return "–".into() };
    let t = time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A command shown with a copy button (the button copies the `data-copy` text: the command
/// exactly as shown).
pub fn command(id: &str, text: &str) -> String {
    format!(
        "<div class=\"cmd\"><code id=\"{id}\">{t}</code><button type=\"button\" class=\"copy\" data-copy=\"{t}\" data-for=\"{id}\">Copy</button></div>",
        id = esc(id),
        t = esc(text)
    )
}

/// Who is looking, for the page header.
pub struct Header<'a> {
    pub user: Option<&'a str>,
    /// Whether a login is configured at all (shows "log in" to anonymous viewers).
    pub auth: bool,
}

/// The page frame: title, navigation, and `body`, which the caller has escaped.
pub fn page(title: &str, header: &Header, body: &str) -> String {
    let who = match (header.user, header.auth) {
        (Some(u), _) => format!("<span class=\"user\">{}</span>", esc(u)),
        (None, true) => "<a href=\"/ui/login\">Log in</a>".to_string(),
        (None, false) => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · wharf</title><link rel=\"stylesheet\" href=\"/ui/assets/style.css\">\
<script src=\"/ui/assets/ui.js\" defer></script></head><body>\
<header><a class=\"brand\" href=\"/ui/\">wharf</a><nav><a href=\"/ui/\">Repositories</a>\
<a href=\"/ui/status\">Status</a></nav><div class=\"who\">{who}</div></header>\
<main><h1>{title}</h1>{body}</main></body></html>\n",
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("team/app:v1 x&y=z"), "team%2Fapp%3Av1%20x%26y%3Dz");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(time(None), "–");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        assert_eq!(time(Some(t)), "2023-11-14T22:13:20Z");
    }
}
