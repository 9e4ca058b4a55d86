//! `wharf healthcheck`: asks the local server for `GET /v2/` and exits 0 when it answers as a
//! registry does (200, or 401 when authentication is on). The container image's HEALTHCHECK
//! runs it, since an image `FROM scratch` has no curl.
//!
//! The port comes from the configuration the server uses: the file given, else that of the
//! `wharf serve` running as PID 1 (the container's server), else `REGISTRY_*` variables and
//! defaults. TLS is tried first and plain HTTP second, so the probe needs to know neither
//! whether TLS is on nor whether the certificate would verify: it only asks whether the
//! server answers, sends no credentials, and talks to this machine only.

use crate::config;
use anyhow::{bail, Context};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct HealthcheckArgs {
    /// registry:2 configuration file of the server to probe (default: the one `wharf serve`
    /// runs with as PID 1, else $REGISTRY_CONFIGURATION_PATH, else built-in defaults).
    pub config: Option<PathBuf>,
    /// Probe this address instead of the configured one, e.g. 127.0.0.1:5000.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

pub fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let target = match args.addr {
        Some(a) => a,
        None => local_target(args.config)?,
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(1));
    let status = match probe_tls(target, deadline) {
        Ok(status) => status,
        Err(tls_error) => {
            probe_plain(target, deadline).with_context(|| format!("no answer over TLS ({tls_error:#}) nor plain HTTP from {target}"))?
        }
    };
    if status == 200 || status == 401 {
        println!("wharf: healthy: GET /v2/ on {target} answered {status}");
        Ok(())
    } else {
        bail!("unhealthy: GET /v2/ on {target} answered {status}")
    }
}

/// Where the local server listens, as seen from this machine: an address on every interface
/// is probed on loopback.
fn local_target(config_file: Option<PathBuf>) -> anyhow::Result<SocketAddr> {
    let (config_file, addr_override) = match config_file {
        Some(f) => (Some(f), None),
        None => server_of_pid1(),
    };
    let mut cfg = config::load(config_file.as_deref())?.config;
    if let Some(addr) = addr_override {
        cfg.http.addr = addr;
    }
    let mut addr = cfg.listen_addr()?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Ok(addr)
}

/// The configuration file and `--addr` of `wharf serve` when it is PID 1 (in a container,
/// started through the entrypoint or directly).
fn server_of_pid1() -> (Option<PathBuf>, Option<String>) {
    let Ok(raw) = std::fs::read("/proc/1/cmdline") else {
        return (None, None);
    };
    let argv: Vec<std::ffi::OsString> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| std::ffi::OsString::from(String::from_utf8_lossy(a).into_owned()))
        .collect();
    let program = argv
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let mut args = argv.get(1..).unwrap_or_default().to_vec();
    if program.as_deref().is_some_and(|p| super::entrypoint::NAMES.contains(&p)) {
        match super::entrypoint::plan(&args, &["serve"]) {
            super::entrypoint::Plan::Wharf(a) => args = a,
            super::entrypoint::Plan::Exec(_) => return (None, None),
        }
    }
    serve_options(&args)
}

/// The configuration file and `--addr` in `serve ...` arguments.
fn serve_options(args: &[std::ffi::OsString]) -> (Option<PathBuf>, Option<String>) {
    let words: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if words.first().map(String::as_str) != Some("serve") {
        return (None, None);
    }
    let (mut file, mut addr) = (None, None);
    let mut rest = words[1..].iter();
    while let Some(w) = rest.next() {
        if let Some(a) = w.strip_prefix("--addr=") {
            addr = Some(a.to_string());
        } else if w == "--addr" {
            addr = rest.next().cloned();
        } else if matches!(w.as_str(), "--root" | "--tls-name") {
            rest.next();
        } else if !w.starts_with('-') && file.is_none() {
            file = Some(PathBuf::from(w));
        }
    }
    (file, addr)
}

const REQUEST: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wharf-healthcheck\r\nConnection: close\r\n\r\n";

fn connect(target: SocketAddr, deadline: Instant) -> anyhow::Result<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
    let tcp = TcpStream::connect_timeout(&target, left).with_context(|| format!("cannot connect to {target}"))?;
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))?;
    Ok(tcp)
}

fn probe_plain(target: SocketAddr, deadline: Instant) -> anyhow::Result<u16> {
    let mut tcp = connect(target, deadline)?;
    tcp.write_all(REQUEST)?;
    status_of(&mut tcp)
}

fn probe_tls(target: SocketAddr, deadline: Instant) -> anyhow::Result<u16> {
    let config = crate::tls::client::accepting_any_certificate()?;
    let name = ServerName::IpAddress(target.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tls = rustls::StreamOwned::new(conn, connect(target, deadline)?);
    tls.write_all(REQUEST)?;
    status_of(&mut tls)
}

/// The status code of the HTTP response on `stream`.
fn status_of(stream: &mut impl Read) -> anyhow::Result<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    line.strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(std::ffi::OsString::from).collect()
    }

    #[test]
    fn serve_options_find_the_file_and_address() {
        assert_eq!(
            serve_options(&os(&["serve", "/etc/docker/registry/config.yml"])),
            (Some(PathBuf::from("/etc/docker/registry/config.yml")), None)
        );
        assert_eq!(
            serve_options(&os(&["serve", "--root", "/r", "--addr", ":6000", "c.yml"])),
            (Some(PathBuf::from("c.yml")), Some(":6000".into()))
        );
        assert_eq!(serve_options(&os(&["serve", "--addr=0.0.0.0:1"])), (None, Some("0.0.0.0:1".into())));
        assert_eq!(serve_options(&os(&["htpasswd", "x"])), (None, None));
    }

    #[test]
    fn status_line() {
        assert_eq!(status_of(&mut &b"HTTP/1.1 401 Unauthorized\r\nX: y\r\n\r\n"[..]).unwrap(), 401);
        assert!(status_of(&mut &b"\x15\x03\x03\x00\x02\x02\x46"[..]).is_err());
    }
}
