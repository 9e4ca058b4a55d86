//! Name resolution and the TCP connection, with the errors Go clients print for them.

use super::report::Step;
use super::target::Target;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// At most this many resolved addresses are tried, like a dialer that gives up eventually.
const MAX_ADDRESSES: usize = 4;

/// Step 2: the addresses the name resolves to.
pub async fn resolve(t: &Target, timeout: Duration) -> (Step, Vec<SocketAddr>) {
    if let Some(ip) = t.ip {
        let addr = SocketAddr::new(ip, t.port);
        return (
            Step::ok("dns", format!("{} is an IP address: no name to resolve", t.host)),
            vec![addr],
        );
    }
    let lookup = tokio::net::lookup_host((t.host.as_str(), t.port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.dedup();
            if addrs.is_empty() {
                return (dns_failure(t, "no addresses"), addrs);
            }
            let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            (Step::ok("dns", format!("{} resolves to {}", t.host, shown.join(", "))), addrs)
        }
        Ok(Err(e)) => (dns_failure(t, &e.to_string()), Vec::new()),
        Err(_) => (
            dns_failure(t, &format!("no answer from the resolver within {}s", timeout.as_secs())),
            Vec::new(),
        ),
    }
}

fn dns_failure(t: &Target, cause: &str) -> Step {
    let host = &t.host;
    let mut fix = format!(
        "make {host} resolve on this machine (and on every client and cluster node):\n\
         add a line \"IP_OF_THE_REGISTRY {host}\" to /etc/hosts, or a record in your DNS server;\n\
         or use the registry's IP address instead of the name — then its certificate needs that IP as a subjectAltName:\n\
         wharf cert issue --ca CA_DIR --out CERT_DIR --ip IP_OF_THE_REGISTRY --dns {host}"
    );
    if host.ends_with(".local") {
        fix.push_str(&format!(
            "\n{host} is an mDNS name: it resolves only where an mDNS responder (avahi-daemon) runs on the registry's \
             machine and nss-mdns is installed on this one"
        ));
    }
    Step::fail("dns", format!("dial tcp: lookup {host}: no such host ({cause})")).fix(fix)
}

/// Step 3: a TCP connection to the first address that accepts one.
pub async fn connect(t: &Target, addrs: &[SocketAddr], timeout: Duration) -> (Step, Option<SocketAddr>) {
    let mut failures = Vec::new();
    for addr in addrs.iter().take(MAX_ADDRESSES) {
        let started = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let mut step = Step::ok("connect", format!("TCP connection to {addr} established in {ms:.1} ms"));
                for (a, why) in &failures {
                    step = step.detail(format!("{a} failed first: {}", why_text(a, why)));
                }
                return (step, Some(*addr));
            }
            Ok(Err(e)) => failures.push((*addr, Failure::from_io(&e))),
            Err(_) => failures.push((*addr, Failure::Timeout)),
        }
    }
    (connect_failure(t, &failures), None)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Refused,
    Timeout,
    HostUnreachable,
    NetworkUnreachable,
    Other(String),
}

impl Failure {
    fn from_io(e: &io::Error) -> Failure {
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::ConnectionRefused, _) => Failure::Refused,
            (io::ErrorKind::TimedOut, _) => Failure::Timeout,
            (_, Some(libc::EHOSTUNREACH)) => Failure::HostUnreachable,
            (_, Some(libc::ENETUNREACH)) => Failure::NetworkUnreachable,
            _ => Failure::Other(e.to_string()),
        }
    }
}

/// Go's wording, which is what `docker login` and `docker push` print.
fn why_text(addr: &SocketAddr, f: &Failure) -> String {
    match f {
        Failure::Refused => format!("dial tcp {addr}: connect: connection refused"),
        Failure::Timeout => format!("dial tcp {addr}: i/o timeout"),
        Failure::HostUnreachable => format!("dial tcp {addr}: connect: no route to host"),
        Failure::NetworkUnreachable => format!("dial tcp {addr}: connect: network is unreachable"),
        Failure::Other(e) => format!("dial tcp {addr}: {e}"),
    }
}

fn connect_failure(t: &Target, failures: &[(SocketAddr, Failure)]) -> Step {
    let Some((addr, first)) = failures.first() else {
        return Step::fail("connect", format!("no address to connect to for {}", t.host));
    };
    let mut step = Step::fail("connect", why_text(addr, first));
    for (a, f) in &failures[1..] {
        step = step.detail(why_text(a, f));
    }
    let port = t.port;
    match first {
        Failure::Refused => {
            let mut fix = format!(
                "nothing accepts connections on {} port {port}. On the registry's machine:\n\
                 - is the registry running? (wharf serve; or docker ps for a registry container)\n\
                 - on the right port? ss -ltn 'sport = :{port}' shows what listens; a container must publish it (-p {port}:5000)\n\
                 - on an address others can reach? a server bound to 127.0.0.1 refuses other machines: \
                 wharf serve --addr 0.0.0.0:{port} (http.addr / REGISTRY_HTTP_ADDR)",
                addr.ip()
            );
            if port == 5000 {
                fix.push_str(
                    "\non macOS, port 5000 belongs to the AirPlay Receiver (\"bind: address already in use\" when the registry \
                     starts): publish the registry on another port (-p 5001:5000, then use HOST:5001) or turn AirPlay Receiver \
                     off in System Settings > General > AirDrop & Handoff",
                );
            }
            step.message.push_str(" (nothing is listening there)");
            step.fix(fix)
        }
        Failure::Timeout => step
            .detail("the connection attempt got no answer at all: packets are dropped on the way")
            .fix(format!(
                "a firewall between here and {} drops the connection, or the address is wrong. On the registry's machine open \
             the port: sudo ufw allow {port}/tcp, or sudo firewall-cmd --permanent --add-port={port}/tcp && sudo \
             firewall-cmd --reload; in a cloud, allow TCP {port} in the security group",
                addr.ip()
            )),
        Failure::HostUnreachable | Failure::NetworkUnreachable => step.fix(format!(
            "{} cannot be reached from this machine: check the address, that the registry's machine is up and on this \
             network (ip route get {}), the VPN; a firewall that rejects with icmp-host-prohibited (firewalld's default) \
             also causes this: sudo firewall-cmd --permanent --add-port={port}/tcp && sudo firewall-cmd --reload",
            addr.ip(),
            addr.ip()
        )),
        Failure::Other(_) => step.fix("check the address and the network between this machine and the registry"),
    }
}
