//! mDNS (multicast DNS, RFC 6762) and DNS-SD (RFC 6763) on the local network, for
//! `wharf serve --mdns NAME`: machines on the LAN (balena devices, laptops) reach the registry
//! as `NAME.local` without a DNS server, and service browsers list it.
//!
//! The responder answers A and AAAA queries for `NAME.local` with the addresses of the LAN
//! interfaces (loopback is left out: no other machine can use it) and publishes the registry
//! as an `_https._tcp` (or `_http._tcp`) service with `path=/v2/`: the registered DNS-SD types
//! for what it is, since no registry-specific type is registered.

use anyhow::{bail, Context};
use mdns_sd::{HostnameResolutionEvent, IfKind, ServiceDaemon, ServiceInfo};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// `NAME.local`: the host name clients use.
pub fn host_name(name: &str) -> String {
    format!("{}.local", name.trim_end_matches(".local").to_ascii_lowercase())
}

/// A single DNS label: `NAME.local` must be one name in the `.local` domain.
pub fn validate(name: &str) -> anyhow::Result<()> {
    let label = name.trim_end_matches(".local");
    let ok = !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if !ok {
        bail!("--mdns {name:?}: give one name of letters, digits and '-' (clients then use {label}.local)");
    }
    Ok(())
}

/// The running responder; dropping it says goodbye (clients forget the name at once) and
/// stops it.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
    pub host: String,
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// Starts answering for `NAME.local` and publishing the registry on `port`.
pub fn advertise(name: &str, port: u16, tls: bool) -> anyhow::Result<Advertisement> {
    validate(name)?;
    let host = host_name(name);
    let daemon = ServiceDaemon::new().context("starting the mDNS responder (UDP port 5353)")?;
    daemon
        .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
        .context("mDNS: leaving out loopback")?;
    let service_type = if tls { "_https._tcp.local." } else { "_http._tcp.local." };
    let properties = [("path", "/v2/"), ("type", "oci-registry")];
    // No fixed addresses: the responder follows the interfaces' addresses as they change.
    let info = ServiceInfo::new(service_type, name, &format!("{host}."), "", port, &properties[..])
        .context("mDNS: describing the service")?
        .enable_addr_auto();
    let fullname = info.get_fullname().to_string();
    daemon.register(info).context("mDNS: publishing the service")?;
    Ok(Advertisement { daemon, fullname, host })
}

/// `wharf serve`'s certificate names plus `NAME.local` when `--mdns NAME` is given.
pub fn with_tls_name(mdns: Option<&str>, mut names: Vec<String>) -> anyhow::Result<Vec<String>> {
    if let Some(name) = mdns {
        validate(name)?;
        names.push(host_name(name));
    }
    Ok(names)
}

/// Starts advertising for `wharf serve --mdns NAME` once the port is bound, and says so.
pub fn start_for_serve(mdns: Option<&str>, port: u16, tls: bool) -> anyhow::Result<Option<Advertisement>> {
    let Some(name) = mdns else { return Ok(None) };
    let ad = advertise(name, port, tls)?;
    println!(
        "wharf: mDNS: answering for {} on the LAN interfaces; clients use {}:{port}",
        ad.host, ad.host
    );
    Ok(Some(ad))
}

/// Resolves `host` (`NAME.local`) over mDNS itself, not through the system resolver: the
/// addresses that answered within `timeout`.
pub fn resolve(host: &str, timeout: Duration) -> anyhow::Result<Vec<IpAddr>> {
    let daemon = ServiceDaemon::new().context("starting an mDNS resolver (UDP port 5353)")?;
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let events = daemon.resolve_hostname(&fqdn, Some(millis)).context("mDNS query")?;
    let deadline = Instant::now() + timeout;
    let mut found = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(HostnameResolutionEvent::AddressesFound(_, addrs)) => {
                found.extend(addrs.iter().map(|a| a.to_ip_addr()));
                break;
            }
            Ok(HostnameResolutionEvent::SearchTimeout(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = daemon.shutdown();
    found.sort();
    found.dedup();
    Ok(found)
}

/// Doctor's check for a `.local` registry: whether the name answers over mDNS, and whether
/// this machine's resolver (what Docker and containerd use) finds it too. `None` for other names.
pub fn diagnose(host: &str) -> Option<Result<String, String>> {
    if !host.ends_with(".local") {
        return None;
    }
    let over_mdns = match resolve(host, Duration::from_secs(3)) {
        Ok(addrs) if !addrs.is_empty() => addrs,
        Ok(_) => {
            return Some(Err(format!(
                "{host} does not answer over mDNS on this network: is `wharf serve --mdns {}` running on the same LAN \
                 (multicast does not cross routers or most VPNs)?",
                host.trim_end_matches(".local")
            )))
        }
        Err(e) => return Some(Err(format!("cannot query mDNS: {e:#}"))),
    };
    let shown: Vec<String> = over_mdns.iter().map(IpAddr::to_string).collect();
    let system = std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
        .map(|a| a.count() > 0)
        .unwrap_or(false);
    Some(if system {
        Ok(format!(
            "{host} resolves over mDNS ({}) and through this machine's resolver",
            shown.join(", ")
        ))
    } else {
        Err(format!(
            "{host} answers over mDNS ({}) but this machine's resolver does not use mDNS, so Docker and containerd cannot \
             find it. Fix: sudo apt-get install libnss-mdns avahi-daemon (other systems: enable nss-mdns/Avahi; macOS resolves .local itself)",
            shown.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(host_name("Registry"), "registry.local");
        assert_eq!(host_name("registry.local"), "registry.local");
        assert!(validate("registry").is_ok());
        for bad in ["", "a.b", "-x", "a b", "ü"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        assert!(diagnose("registry.lan").is_none());
    }
}
