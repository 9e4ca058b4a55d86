//! A 2 GiB blob pushed and pulled through the real server must stream: its resident memory stays
//! under 64 MiB throughout. The figures are printed for the test log.

mod common;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BLOCK: usize = 1024 * 1024;
const BLOCKS: usize = 2048; // 2 GiB
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Deterministic, incompressible-looking content: a random block with its index stamped in.
fn block(seed: &[u8], i: usize) -> Vec<u8> {
    let mut b = seed.to_vec();
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b
}

/// Samples the server's RSS until stopped; returns the peak in KiB.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            {
                peak.fetch_max(kib, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gib_blob_streams_with_bounded_memory() {
    let w = common::Wharf::start();
    let seed: Vec<u8> = (0..BLOCK).map(|_| rand::random::<u8>()).collect();
    let mut h = Sha256::new();
    for i in 0..BLOCKS {
        h.update(block(&seed, i));
    }
    let digest = format!("sha256:{}", hex::encode(h.finalize()));
    let idle_kib = w.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss(w.pid(), stop.clone(), peak.clone());

    let client = reqwest::Client::new();
    let seed2 = seed.clone();
    let body = futures::stream::iter(0..BLOCKS).map(move |i| Ok::<_, std::io::Error>(block(&seed2, i)));
    let started = Instant::now();
    let resp = client
        .post(format!("{}/v2/big/blob/blobs/uploads/?digest={digest}", w.url))
        .header("content-length", (BLOCK * BLOCKS).to_string())
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("push");
    assert_eq!(resp.status(), 201, "push: {}", resp.text().await.unwrap_or_default());
    let push_secs = started.elapsed().as_secs_f64();
    let push_peak = peak.swap(0, Ordering::Relaxed);

    let started = Instant::now();
    let resp = client
        .get(format!("{}/v2/big/blob/blobs/{digest}", w.url))
        .send()
        .await
        .expect("pull");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some((BLOCK * BLOCKS) as u64));
    let mut h = Sha256::new();
    let mut total = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        total += chunk.len() as u64;
        h.update(&chunk);
    }
    let pull_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let pull_peak = peak.load(Ordering::Relaxed);

    assert_eq!(total, (BLOCK * BLOCKS) as u64);
    assert_eq!(
        format!("sha256:{}", hex::encode(h.finalize())),
        digest,
        "pulled bytes differ from pushed"
    );
    let stored = w
        .root
        .join(format!("docker/registry/v2/blobs/sha256/{}/{}/data", &digest[7..9], &digest[7..]));
    assert_eq!(std::fs::metadata(stored).unwrap().len(), (BLOCK * BLOCKS) as u64);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "2 GiB blob: server RSS idle {:.1} MiB, peak during push {:.1} MiB ({:.0} MB/s), peak during pull {:.1} MiB ({:.0} MB/s)",
        mib(idle_kib),
        mib(push_peak),
        2048.0 * 1.048576 / push_secs,
        mib(pull_peak),
        2048.0 * 1.048576 / pull_secs
    );
    assert!(push_peak > 0 && pull_peak > 0, "RSS was never sampled");
    assert!(push_peak < RSS_LIMIT_KIB, "RSS during push reached {:.1} MiB", mib(push_peak));
    assert!(pull_peak < RSS_LIMIT_KIB, "RSS during pull reached {:.1} MiB", mib(pull_peak));
}
