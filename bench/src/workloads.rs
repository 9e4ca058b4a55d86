//! The HTTP workloads, each run against one registry address and returning raw figures.
//! Uploads use the two-step flow every client uses (POST a session, then PUT or PATCH+PUT),
//! which both registries support.

use crate::client::{location_path, with_param, Conn, Content, Digester, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::time::{Duration, Instant};

const OCTET: &str = "application/octet-stream";

async fn start_session(c: &mut Conn, repo: &str) -> Result<String> {
    let r = c
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0".into())],
            Content::empty().body(),
            true,
        )
        .await?
        .expect(StatusCode::ACCEPTED, "start upload")?;
    location_path(&r)
}

/// POST, then one PUT carrying the whole blob. Returns seconds.
pub async fn push_monolithic(addr: &str, repo: &str, content: &Content, digest: &str) -> Result<f64> {
    let mut c = Conn::open(addr, None).await?;
    let start = Instant::now();
    let loc = start_session(&mut c, repo).await?;
    let headers = [("content-type", OCTET.to_string()), ("content-length", content.len.to_string())];
    c.send(Method::PUT, &with_param(&loc, "digest", digest), &headers, content.body(), true)
        .await?
        .expect(StatusCode::CREATED, "monolithic PUT")?;
    Ok(start.elapsed().as_secs_f64())
}

/// POST, PATCHes of `chunk` bytes with Content-Range, then an empty PUT. Returns seconds.
pub async fn push_chunked(addr: &str, repo: &str, content: &Content, digest: &str, chunk: u64) -> Result<f64> {
    let mut c = Conn::open(addr, None).await?;
    let start = Instant::now();
    let mut loc = start_session(&mut c, repo).await?;
    let mut off = 0;
    while off < content.len {
        let n = chunk.min(content.len - off);
        let headers = [
            ("content-type", OCTET.to_string()),
            ("content-length", n.to_string()),
            ("content-range", format!("{}-{}", off, off + n - 1)),
        ];
        let r = c
            .send(Method::PATCH, &loc, &headers, content.slice(off, n), true)
            .await?
            .expect(StatusCode::ACCEPTED, "PATCH chunk")?;
        loc = location_path(&r)?;
        off += n;
    }
    c.send(
        Method::PUT,
        &with_param(&loc, "digest", digest),
        &[("content-length", "0".into())],
        Content::empty().body(),
        true,
    )
    .await?
    .expect(StatusCode::CREATED, "closing PUT")?;
    Ok(start.elapsed().as_secs_f64())
}

/// GET of the whole blob, whose bytes must have its digest; returns seconds.
pub async fn pull(addr: &str, repo: &str, digest: &str, size: u64) -> Result<f64> {
    let mut c = Conn::open(addr, None).await?;
    let path = format!("/v2/{repo}/blobs/{digest}");
    let start = Instant::now();
    let r = c.get_into(&path, &[], &mut |_| {}).await?;
    let secs = start.elapsed().as_secs_f64();
    if r.status != StatusCode::OK || r.len != size {
        return Err(format!("pull: status {} with {} of {size} bytes", r.status, r.len).into());
    }
    // Checked by a second, untimed pull: hashing during the timed one would take a core from
    // the server on a two-core machine and cap both registries at the client's sha256 speed.
    let mut pulled = Digester::new();
    c.get_into(&path, &[], &mut |d| pulled.feed(d)).await?;
    same_digest("pull", pulled, digest)?;
    Ok(secs)
}

/// The whole blob as consecutive `range`-byte Range requests on one connection, whose bytes
/// put together must have its digest (checked by an untimed second pass); returns seconds.
pub async fn pull_ranged(addr: &str, repo: &str, digest: &str, size: u64, range: u64) -> Result<f64> {
    let mut c = Conn::open(addr, None).await?;
    let start = Instant::now();
    ranges(&mut c, repo, digest, size, range, &mut |_| {}).await?;
    let secs = start.elapsed().as_secs_f64();
    let mut pulled = Digester::new();
    ranges(&mut c, repo, digest, size, range, &mut |d| pulled.feed(d)).await?;
    same_digest("ranged pull", pulled, digest)?;
    Ok(secs)
}

async fn ranges(c: &mut Conn, repo: &str, digest: &str, size: u64, range: u64, sink: &mut (dyn FnMut(&Bytes) + Send)) -> Result<()> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let mut off = 0;
    while off < size {
        let end = (off + range).min(size) - 1;
        let r = c.get_into(&path, &[("range", format!("bytes={off}-{end}"))], sink).await?;
        if r.status != StatusCode::PARTIAL_CONTENT || r.len != end - off + 1 {
            return Err(format!("ranged pull: status {} with {} bytes", r.status, r.len).into());
        }
        off = end + 1;
    }
    Ok(())
}

/// A pull with the right length but other bytes is a broken registry, not a fast one.
fn same_digest(what: &str, pulled: Digester, digest: &str) -> Result<()> {
    let got = pulled.finish()?;
    if got != digest {
        return Err(format!("{what}: the bytes pulled have digest {got}, not {digest}").into());
    }
    Ok(())
}

/// Request rate and latency percentiles of a load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn rate(mut latencies_us: Vec<u32>, elapsed: f64) -> Rate {
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((latencies_us.len() as f64 * p).ceil() as usize).clamp(1, latencies_us.len()) - 1;
        latencies_us[i] as f64 / 1000.0
    };
    Rate {
        per_sec: latencies_us.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// `conns` connections each sending GET (or HEAD) of a manifest by tag back to back for `secs`.
pub async fn manifest_load(addr: &str, path: &str, head: bool, conns: usize, secs: f64, user: Option<(&str, &str)>) -> Result<Rate> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (addr, path) = (addr.to_string(), path.to_string());
        let user = user.map(|(u, p)| (u.to_string(), p.to_string()));
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr, user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))).await?;
            let accept = [(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json".to_string(),
            )];
            let method = if head { Method::HEAD } else { Method::GET };
            let mut lat = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c.send(method.clone(), &path, &accept, Content::empty().body(), false).await?;
                if r.status != StatusCode::OK {
                    return Err(format!("manifest {method}: status {}", r.status).into());
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok::<_, crate::client::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(rate(all, start.elapsed().as_secs_f64()))
}

/// `count` small blobs, each POST + PUT, one after the other on one connection.
pub async fn small_blobs(addr: &str, repo: &str, blobs: &[(Content, String)]) -> Result<Rate> {
    let mut c = Conn::open(addr, None).await?;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(blobs.len());
    for (content, digest) in blobs {
        let t = Instant::now();
        let loc = start_session(&mut c, repo).await?;
        let headers = [("content-type", OCTET.to_string()), ("content-length", content.len.to_string())];
        c.send(Method::PUT, &with_param(&loc, "digest", digest), &headers, content.body(), true)
            .await?
            .expect(StatusCode::CREATED, "small blob PUT")?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    Ok(rate(lat, start.elapsed().as_secs_f64()))
}

/// GETs of list pages on one connection for about `secs` (at least `min` of them); `page(i)`
/// gives the i-th path. Each reply must be a 200 with a body.
pub async fn pages(addr: &str, secs: f64, min: usize, page: impl Fn(usize) -> String) -> Result<Rate> {
    let mut c = Conn::open(addr, None).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut lat = Vec::new();
    let mut i = 0;
    while lat.len() < min || Instant::now() < deadline {
        let t = Instant::now();
        let r = c.get_body(&page(i)).await?;
        if r.status != StatusCode::OK || r.body.is_empty() {
            return Err(format!("list page {}: status {}", page(i), r.status).into());
        }
        lat.push(t.elapsed().as_micros() as u32);
        i += 1;
    }
    Ok(rate(lat, start.elapsed().as_secs_f64()))
}
