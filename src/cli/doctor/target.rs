//! The registry address as clients write it: `HOST[:PORT]`, `[IPv6]:PORT`, an image reference
//! (`HOST:PORT/repo:tag`) or an `http://` / `https://` URL.

use std::fmt;
use std::net::IpAddr;

/// The port Docker, containerd and podman use for a registry named without one (`HOST/IMAGE`
/// is `HOST:443`), so the port doctor checks when none is given.
pub const DEFAULT_PORT: u16 = 443;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name (lower case, no trailing dot) or IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP literal.
    pub ip: Option<IpAddr>,
    /// The scheme, when the address was given as a URL.
    pub scheme: Option<Scheme>,
    /// Whether the port was written out (Docker itself assumes 443 when it is not).
    pub port_given: bool,
}

impl Target {
    pub fn parse(input: &str) -> Result<Target, String> {
        let s = input.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((sch, rest)) => match sch.to_ascii_lowercase().as_str() {
                "http" => (Some(Scheme::Http), rest),
                "https" => (Some(Scheme::Https), rest),
                other => {
                    return Err(format!(
                        "unsupported scheme {other:?}: use HOST[:PORT], http://HOST[:PORT] or https://HOST[:PORT]"
                    ))
                }
            },
            None => (None, s),
        };
        // Anything after the first slash is a path or an image name: not part of the address.
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(format!("{input:?} names no host: use HOST[:PORT], e.g. 192.168.1.10:5000"));
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() && !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
            return Err(format!("{host:?} is not a valid host name or IP address"));
        }
        let default_port = match scheme {
            None | Some(Scheme::Https) => DEFAULT_PORT,
            Some(Scheme::Http) => 80,
        };
        Ok(Target {
            host: if ip.is_some() {
                host
            } else {
                host.trim_end_matches('.').to_ascii_lowercase()
            },
            port: port.unwrap_or(default_port),
            ip,
            scheme,
            port_given: port.is_some(),
        })
    }

    /// `HOST:PORT`, with brackets around an IPv6 address: the form for messages and dialing.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    /// The registry's name in image references, and so the directory name under certs.d and the
    /// key in ~/.docker/config.json: `HOST:PORT`, or just `HOST` for port 443.
    pub fn registry_name(&self) -> String {
        if self.port == 443 {
            self.bracketed_host()
        } else {
            self.host_port()
        }
    }

    pub fn bracketed_host(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        }
    }

    /// `localhost` and loopback literals: traffic never leaves the machine.
    pub fn is_loopback_name(&self) -> bool {
        self.ip
            .map_or(self.host == "localhost" || self.host.ends_with(".localhost"), |ip| ip.is_loopback())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host_port())
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority:?}: missing ']' after the IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{authority:?}: expected :PORT after ']'"))?,
            )?),
        };
        return Ok((host.to_string(), port));
    }
    // A bare IPv6 address has colons of its own and cannot carry a port without brackets.
    if authority.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((authority.to_string(), None));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), Some(parse_port(port)?))),
        None => Ok((authority.to_string(), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port number (1-65535)")),
        Ok(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn forms() {
        let a = t("192.168.0.12");
        assert_eq!((a.host.as_str(), a.port, a.port_given), ("192.168.0.12", 443, false));
        assert_eq!(a.registry_name(), "192.168.0.12", "Docker's name for HOST:443 has no port");
        assert_eq!(t("Registry.LAN:5001").host_port(), "registry.lan:5001");
        assert_eq!(t("https://reg.lan/v2/").port, 443);
        assert_eq!(t("https://reg.lan/v2/").registry_name(), "reg.lan");
        assert_eq!(t("http://reg.lan").port, 80);
        assert_eq!(t("http://reg.lan").scheme, Some(Scheme::Http));
        let v6 = t("[::1]:5000");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5000));
        assert_eq!(v6.host_port(), "[::1]:5000");
        assert!(v6.is_loopback_name());
        assert_eq!(t("::1").port, 443);
        assert_eq!(t("10.0.0.5:5000/team/app:1.0").host_port(), "10.0.0.5:5000");
        assert!(t("localhost:5000").is_loopback_name());
        assert!(!t("10.0.0.5").is_loopback_name());
    }

    #[test]
    fn errors() {
        for bad in ["", ":5000", "reg.lan:0", "reg.lan:99999", "ftp://x", "[::1", "[nope]:1", "bad host"] {
            assert!(Target::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
