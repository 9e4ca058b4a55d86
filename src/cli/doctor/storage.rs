//! The `storage` step (with `--debug-addr`): the server's own view of its storage, read from
//! registry:2's `/debug/health` on its debug server (`http.debug.addr`), where the periodic
//! `health.storagedriver` check reports the last storage error. From the client side the
//! registry may answer `/v2/` while its bucket is gone; only the server can tell.

use super::report::Step;
use super::Doctor;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The answer to `GET /debug/health`: status and body.
async fn fetch_health(addr: &str, timeout: Duration) -> Result<(u16, String), String> {
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let head = format!("GET /debug/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: wharf-doctor\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        // A health answer is a few hundred bytes; a server sending more is not this one.
        (&mut stream)
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", head.lines().next().unwrap_or_default()))?;
    // The debug server answers with Content-Length; a chunked body would only carry the JSON
    // between size lines, which the parse below skips.
    let body = body.lines().find(|l| l.trim_start().starts_with('{')).unwrap_or(body);
    Ok((status, body.trim().to_string()))
}

/// `addr` as given to `--debug-addr`, with registry:2's `:PORT` meaning this machine.
fn connect_addr(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    }
}

impl Doctor {
    pub(crate) async fn storage(&mut self, debug_addr: &str) {
        let addr = connect_addr(debug_addr);
        let step = match fetch_health(&addr, self.timeout).await {
            Err(e) => Step::fail("storage", format!("cannot read /debug/health on {addr}: {e}"))
                .fix("give --debug-addr the server's http.debug.addr (its debug server, plain HTTP), e.g. 127.0.0.1:5001"),
            Ok((200, _)) => Step::ok(
                "storage",
                format!("the server reaches its storage (GET /debug/health on {addr}: 200)"),
            ),
            Ok((503, body)) => {
                let checks: Vec<String> = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&body) {
                    Ok(m) => m
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                        .collect(),
                    Err(_) => vec![body.clone()],
                };
                Step::fail(
                    "storage",
                    format!("the server cannot reach its storage (GET /debug/health on {addr}: 503)"),
                )
                .details(checks)
                .fix(
                    "check the storage the server's configuration names: `wharf config check CONFIG` reaches it \
                     the same way and says whether the endpoint, the credentials, the bucket or a permission is wrong",
                )
            }
            Ok((status, body)) => Step::warn(
                "storage",
                format!("GET /debug/health on {addr} answered {status}, not registry:2's 200 or 503: {body}"),
            ),
        };
        self.push(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_this_machine() {
        assert_eq!(connect_addr(":5001"), "127.0.0.1:5001");
        assert_eq!(connect_addr("10.0.0.2:5001"), "10.0.0.2:5001");
    }
}
