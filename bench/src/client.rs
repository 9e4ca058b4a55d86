//! A minimal HTTP/1.1 client over one kept-alive TCP connection: what every workload uses to
//! talk to a registry. Bodies are streamed from shared buffers, so the client copies nothing.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request body: an optional head, then `len` bytes taken cyclically from `block`.
/// Different heads make different blobs out of the same block.
#[derive(Clone)]
pub struct Content {
    pub head: Bytes,
    pub block: Bytes,
    pub len: u64,
}

impl Content {
    pub fn small(bytes: Bytes) -> Content {
        Content {
            len: bytes.len() as u64,
            head: bytes,
            block: Bytes::new(),
        }
    }

    pub fn empty() -> Content {
        Content::small(Bytes::new())
    }

    /// The bytes from `offset`, `len` of them, as the body of one request.
    pub fn slice(&self, offset: u64, len: u64) -> ContentBody {
        ContentBody {
            content: self.clone(),
            pos: offset,
            end: offset + len,
        }
    }

    pub fn body(&self) -> ContentBody {
        self.slice(0, self.len)
    }

    /// Feeds the same bytes a body would send to `f`, in order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) {
        let mut body = self.body();
        while let Some(chunk) = body.next_chunk() {
            f(&chunk);
        }
    }

    pub fn sha256(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        self.for_each_chunk(|c| h.update(c));
        format!("sha256:{:x}", h.finalize())
    }
}

pub struct ContentBody {
    content: Content,
    pos: u64,
    end: u64,
}

/// Largest frame handed to hyper at once.
const FRAME: u64 = 1 << 20;

impl ContentBody {
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.pos >= self.end {
            return None;
        }
        let head_len = self.content.head.len() as u64;
        let chunk = if self.pos < head_len {
            let end = self.end.min(head_len);
            self.content.head.slice(self.pos as usize..end as usize)
        } else {
            let block_len = self.content.block.len() as u64;
            let at = (self.pos - head_len) % block_len;
            let n = (block_len - at).min(self.end - self.pos).min(FRAME);
            self.content.block.slice(at as usize..(at + n) as usize)
        };
        self.pos += chunk.len() as u64;
        Some(chunk)
    }
}

impl Body for ContentBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_chunk().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}

/// One connection to a registry.
pub struct Conn {
    sender: SendRequest<ContentBody>,
    host: String,
    authorization: Option<String>,
}

/// What came back: status, headers, and how many body bytes (kept only when `keep_body`).
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub len: u64,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn expect(self, want: StatusCode, what: &str) -> Result<Reply> {
        if self.status != want {
            return Err(format!("{what}: got {} want {want}: {}", self.status, String::from_utf8_lossy(&self.body)).into());
        }
        Ok(self)
    }
}

impl Conn {
    pub async fn open(addr: &str, user: Option<(&str, &str)>) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        // Reads of up to 4 MiB, like the loopback probe's 1 MiB ones: the client should not be
        // what limits a pull from either registry.
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(4 << 20)
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authorization = user.map(|(u, p)| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
        });
        Ok(Conn {
            sender,
            host: addr.to_string(),
            authorization,
        })
    }

    /// Sends a request; the body is read to the end and kept when `keep_body`.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: ContentBody,
        keep_body: bool,
    ) -> Result<Reply> {
        let mut kept = Vec::new();
        let mut keep = |data: &Bytes| {
            if keep_body {
                kept.extend_from_slice(data);
            }
        };
        let mut reply = self.send_into(method, path, headers, body, &mut keep).await?;
        reply.body = kept;
        Ok(reply)
    }

    /// A GET whose body goes, frame by frame as it arrives, to `on_data` (a [`Digester`]).
    pub async fn get_into(&mut self, path: &str, headers: &[(&str, String)], on_data: &mut (dyn FnMut(&Bytes) + Send)) -> Result<Reply> {
        self.send_into(Method::GET, path, headers, Content::empty().body(), on_data).await
    }

    /// Sends a request and hands every frame of the answer's body to `on_data`.
    async fn send_into(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: ContentBody,
        on_data: &mut (dyn FnMut(&Bytes) + Send),
    ) -> Result<Reply> {
        let mut req = Request::builder().method(method).uri(path).header("host", &self.host);
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.sender.ready().await?;
        let resp: Response<hyper::body::Incoming> = self.sender.send_request(req.body(body)?).await?;
        let (parts, mut incoming) = resp.into_parts();
        let mut len = 0u64;
        while let Some(frame) = incoming.frame().await {
            if let Ok(data) = frame?.into_data() {
                len += data.len() as u64;
                on_data(&data);
            }
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            len,
            body: Vec::new(),
        })
    }

    pub async fn get_body(&mut self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, &[], Content::empty().body(), true).await
    }
}

/// Turns a `Location` header (absolute or relative) into a path with query.
pub fn location_path(reply: &Reply) -> Result<String> {
    let loc = reply.header("location").ok_or("no Location header")?;
    let path = match loc.find("://") {
        Some(i) => {
            let rest = &loc[i + 3..];
            rest.find('/').map(|j| rest[j..].to_string()).unwrap_or_else(|| "/".into())
        }
        None => loc.to_string(),
    };
    Ok(path)
}

/// Appends a query parameter to a path that may already have a query.
pub fn with_param(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}

/// SHA-256 of a pulled body, computed after the clock stopped: the frames are kept as they
/// arrive (`Bytes` are shared, not copied) and hashed in `finish`. Hashing while the pull runs
/// would take a core from the server on a two-core machine and cap both registries at the
/// client's sha256 speed.
#[derive(Default)]
pub struct Digester {
    frames: Vec<Bytes>,
}

impl Digester {
    pub fn new() -> Digester {
        Digester::default()
    }

    pub fn feed(&mut self, data: &Bytes) {
        self.frames.push(data.clone());
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Result<String> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for frame in &self.frames {
            h.update(frame);
        }
        Ok(format!("sha256:{:x}", h.finalize()))
    }
}
