//! A TCP relay between wharf and the object store, on a free loopback port: it passes every
//! byte through unchanged and keeps what the client sent, so a test can read the requests wharf
//! made of the real store (the headers the store itself ignores, like `x-amz-storage-class` on
//! Garage). It can also hold the request that carries a given string until the test lets it
//! go, to act on the store (stop it, say) at a known point of a sequence of requests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a held request waits for [`Recorder::release`] at most.
const HOLD_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Hold {
    /// Hold the first request whose bytes contain this, once.
    trigger: Option<Vec<u8>>,
    holding: bool,
    released: bool,
}

#[derive(Default)]
struct Shared {
    /// What each connection's client sent, in order.
    sent: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    hold: Mutex<Hold>,
    changed: Condvar,
    stop: AtomicBool,
}

pub struct Recorder {
    /// `HOST:PORT` to give the client instead of the store's.
    pub addr: String,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Relays 127.0.0.1:<free port> to `upstream` (`HOST:PORT`).
    pub fn start(upstream: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let (s, upstream) = (shared.clone(), upstream.to_string());
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (s, upstream) = (s.clone(), upstream.clone());
                        std::thread::spawn(move || relay(client, &upstream, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Recorder { addr, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds the next request whose bytes contain `trigger`.
    pub fn hold_on(&self, trigger: &str) {
        *self.shared.hold.lock().unwrap() = Hold {
            trigger: Some(trigger.as_bytes().to_vec()),
            ..Default::default()
        };
    }

    /// Waits until a request is held, at most `limit`; true if one is.
    pub fn wait_holding(&self, limit: Duration) -> bool {
        let hold = self.shared.hold.lock().unwrap();
        let (hold, _) = self.shared.changed.wait_timeout_while(hold, limit, |h| !h.holding).unwrap();
        hold.holding
    }

    /// Lets the held request (if any) go on.
    pub fn release(&self) {
        self.shared.hold.lock().unwrap().released = true;
        self.shared.changed.notify_all();
    }

    /// The head (request line and headers) of every request clients sent so far.
    pub fn requests(&self) -> Vec<String> {
        let sent = self.shared.sent.lock().unwrap();
        sent.iter().flat_map(|c| request_heads(&c.lock().unwrap())).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release();
    }
}

/// The request heads in one connection's bytes: each line ending in ` HTTP/1.1` that starts
/// with a method, up to the blank line. Bodies are random bytes in these tests; that one of
/// them reads as a request line is not a chance worth counting.
fn request_heads(bytes: &[u8]) -> Vec<String> {
    let marker = b" HTTP/1.1\r\n";
    let mut heads = Vec::new();
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], marker).map(|i| i + at) {
        let line_start = bytes[..i].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let end = find(&bytes[i..], b"\r\n\r\n").map_or(bytes.len(), |e| i + e);
        let head = String::from_utf8_lossy(&bytes[line_start..end]).into_owned();
        let method = head.split(' ').next().unwrap_or("");
        if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) && head[method.len()..].starts_with(" /") {
            heads.push(head);
        }
        at = i + marker.len();
    }
    heads
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn relay(mut client: TcpStream, upstream: &str, s: &Shared) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    s.sent.lock().unwrap().push(sent.clone());
    let (mut client_back, mut server_back) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let answers = std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_back, &mut client_back);
        let _ = client_back.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let from = {
            let mut sent = sent.lock().unwrap();
            let from = sent.len();
            sent.extend_from_slice(&buf[..n]);
            from
        };
        wait_if_held(s, &sent, from);
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
    let _ = answers.join();
}

/// Blocks while the bytes from `from` on complete the hold's trigger, until released.
fn wait_if_held(s: &Shared, sent: &Mutex<Vec<u8>>, from: usize) {
    let mut hold = s.hold.lock().unwrap();
    let Some(trigger) = hold.trigger.clone() else { return };
    let hit = {
        let sent = sent.lock().unwrap();
        find(&sent[from.saturating_sub(trigger.len())..], &trigger).is_some()
    };
    if !hit {
        return;
    }
    hold.trigger = None;
    hold.holding = true;
    s.changed.notify_all();
    let _ = s.changed.wait_timeout_while(hold, HOLD_LIMIT, |h| !h.released).unwrap();
}
