//! The client's address behind a reverse proxy (`http.trustedproxies`): the TCP peer, unless
//! the peer is a listed proxy, in which case `X-Forwarded-For` is read from the right, past
//! every listed proxy, to the first address that is not one. Only proxies the operator listed
//! are believed, so a client cannot pick its own address by sending the header itself.

use axum::http::HeaderMap;
use std::net::IpAddr;

/// Headers longer than this are not read: a real chain of proxies is a few addresses long.
const MAX_HOPS: usize = 32;

/// Listed proxies: addresses or CIDR networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`; `Err` names the entry that is neither.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for entry in entries {
            let bad = || format!("{entry:?} is not an IP address or a CIDR network like 10.0.0.0/8");
            let (addr, bits) = match entry.trim().split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (entry.trim(), None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                None => max,
            };
            networks.push((addr, bits));
        }
        Ok(TrustedProxies { networks })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|&(net, bits)| contains(net, bits, ip))
    }

    /// The client a request from `peer` speaks for.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.networks.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            if !self.trusts(client) {
                break;
            }
            match parse_hop(hop) {
                Some(ip) => client = ip,
                // Garbage from beyond the last trusted proxy: that proxy is the client.
                None => break,
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    hop.rsplit_once(':').and_then(|(ip, port)| {
        port.parse::<u16>().ok()?;
        ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (canonical(net), ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            n.to_bits() & mask == i.to_bits() & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_speak_for_themselves() {
        let p = proxies(&["10.0.0.1"]);
        assert_eq!(p.client(ip("192.0.2.9"), &xff(&["198.51.100.7"])), ip("192.0.2.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &xff(&["1.2.3.4"])), ip("10.0.0.1"));
    }

    #[test]
    fn the_header_is_read_from_the_right_past_trusted_proxies() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        // A client's own forged entry (6.6.6.6) stays left of the address the proxy saw.
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        assert_eq!(p.client(ip("fd00::1"), &xff(&["[2001:db8::5]:4711"])), ip("2001:db8::5"));
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &xff(&["198.51.100.7:80"])), ip("198.51.100.7"));
        // Nothing forwarded, or garbage: the proxy is the client.
        assert_eq!(p.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(p.client(ip("10.0.0.1"), &xff(&["unknown"])), ip("10.0.0.1"));
        // Every hop a proxy: the leftmost one.
        assert_eq!(p.client(ip("10.0.0.1"), &xff(&["10.9.9.9, 10.2.2.2"])), ip("10.9.9.9"));
    }

    #[test]
    fn entries_are_validated() {
        for bad in ["10.0.0.0/33", "fd00::/129", "example.com", "10.0.0.1/x", ""] {
            let e = TrustedProxies::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains("not an IP address"), "{bad}: {e}");
        }
        let p = proxies(&["0.0.0.0/0"]);
        assert!(p.trusts(ip("203.0.113.1")));
        assert!(!p.trusts(ip("2001:db8::1")));
    }
}
