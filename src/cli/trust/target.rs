//! The registry address as the user types it, and every name clients derive from it.

use anyhow::bail;
use rustls_pki_types::ServerName;
use std::net::IpAddr;

/// The port registry guides (and registry:2's image) use when none is given.
pub const DEFAULT_PORT: u16 = 5000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A lower-case DNS name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Accepts `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT`, a bare IPv6 address, and any of
    /// these after `https://` (a trailing `/` or `/v2/` is ignored).
    pub fn parse(input: &str) -> anyhow::Result<Target> {
        let s = strip_scheme(input.trim())?;
        let s = strip_path(s, input)?;
        if s.contains('@') {
            bail!("{input:?}: give the registry address without a user name (use --login USER)");
        }
        let (host, port) = split_host_port(s, input)?;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.parse::<IpAddr>().is_err() && (!is_dns_name(&host) || ServerName::try_from(host.as_str()).is_err()) {
            bail!("{input:?}: {host:?} is neither an IP address nor a valid host name");
        }
        Ok(Target { host, port })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The registry's name as image references and every certs.d directory spell it:
    /// `HOST:PORT`, `[IPv6]:PORT`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host_for_url(), self.port)
    }

    /// The names clients look the registry up by. On port 443 image references usually
    /// omit the port (`HOST/image`), and Docker then looks in `certs.d/HOST`, so both count.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.name()];
        if self.port == 443 {
            names.push(self.host_for_url());
        }
        names
    }

    /// The host as it appears in a URL: IPv6 addresses in brackets.
    pub fn host_for_url(&self) -> String {
        match self.ip() {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.name())
    }

    /// A file name stem safe everywhere: `wharf-10.0.0.5-5000`, `wharf-fe80__1-5000`.
    pub fn file_stem(&self) -> String {
        let host: String = self
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("wharf-{host}-{}", self.port)
    }

    /// What TLS checks the certificate against: the IP address or the DNS name.
    pub fn server_name(&self) -> ServerName<'static> {
        match self.ip() {
            Some(ip) => ServerName::IpAddress(ip.into()),
            // `parse` only accepts names rustls accepts too; fall back defensively anyway.
            None => ServerName::try_from(self.host.clone()).unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into())),
        }
    }
}

fn strip_scheme(s: &str) -> anyhow::Result<&str> {
    let Some((scheme, rest)) = s.split_once("://") else { return Ok(s) };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(rest),
        "http" => bail!("{s}: a plain-HTTP registry has no certificate to trust; wharf trust is for https:// registries"),
        other => bail!("{s}: unsupported scheme {other:?}; give HOST:PORT or https://HOST:PORT"),
    }
}

/// Drops a trailing `/` or `/v2/`; anything longer is probably an image name.
fn strip_path<'a>(s: &'a str, input: &str) -> anyhow::Result<&'a str> {
    let Some(slash) = s.find('/') else { return Ok(s) };
    let (authority, path) = s.split_at(slash);
    if matches!(path, "/" | "/v2" | "/v2/") {
        return Ok(authority);
    }
    bail!("{input:?}: give the registry address (HOST:PORT), not an image or URL path ({path})")
}

fn split_host_port<'a>(s: &'a str, input: &str) -> anyhow::Result<(&'a str, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            bail!("{input:?}: missing ']' after the IPv6 address")
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            bail!("{input:?}: {host:?} is not an IPv6 address");
        }
        return match after {
            "" => Ok((host, DEFAULT_PORT)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, parse_port(port, input)?)),
                None => bail!("{input:?}: unexpected {after:?} after the IPv6 address"),
            },
        };
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((s, DEFAULT_PORT));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Ok((host, parse_port(port, input)?)),
        None => Ok((s, DEFAULT_PORT)),
    }
}

fn parse_port(port: &str, input: &str) -> anyhow::Result<u16> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("{input:?}: {port:?} is not a port number (1-65535)"),
    }
}

/// RFC 1123 host names (underscores tolerated, as some internal DNS has them).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_users_type() {
        assert_eq!(t("10.0.0.5").name(), "10.0.0.5:5000");
        assert_eq!(t("10.0.0.5:5001").name(), "10.0.0.5:5001");
        assert_eq!(t("https://Registry.Example.com:8443/").name(), "registry.example.com:8443");
        assert_eq!(t("https://registry.example.com/v2/").name(), "registry.example.com:5000");
        assert_eq!(t("image-registry:5000").host, "image-registry");
        assert_eq!(t("[fe80::1]:5000").name(), "[fe80::1]:5000");
        assert_eq!(t("[::1]").name(), "[::1]:5000");
        assert_eq!(t("::1").name(), "[::1]:5000");
        assert_eq!(t("https://[2001:db8::7]:443").names(), vec!["[2001:db8::7]:443", "[2001:db8::7]"]);
        assert_eq!(t("balena.local").names(), vec!["balena.local:5000"]);
    }

    #[test]
    fn derived_names() {
        let v6 = t("[fe80::1]:5000");
        assert_eq!(v6.file_stem(), "wharf-fe80__1-5000");
        assert_eq!(v6.url(), "https://[fe80::1]:5000");
        assert!(matches!(v6.server_name(), ServerName::IpAddress(_)));
        assert_eq!(t("reg.lan:5001").file_stem(), "wharf-reg.lan-5001");
        assert!(matches!(t("reg.lan").server_name(), ServerName::DnsName(_)));
    }

    #[test]
    fn refusals_say_why() {
        let err = |s: &str| Target::parse(s).unwrap_err().to_string();
        assert!(err("http://10.0.0.5:5000").contains("plain-HTTP"));
        assert!(err("10.0.0.5:5000/library/ubuntu").contains("not an image"));
        assert!(err("10.0.0.5:0").contains("port number"));
        assert!(err("10.0.0.5:http").contains("port number"));
        assert!(err("[fe80::1").contains("']'"));
        assert!(err("bad host!:5000").contains("neither"));
        assert!(err("admin@reg:5000").contains("--login"));
        assert!(err("ftp://reg").contains("scheme"));
    }
}
