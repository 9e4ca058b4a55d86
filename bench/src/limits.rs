//! The machine's own limits, measured in the same run: what a registry could reach at best.

use rand::RngCore;
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

const MB: f64 = 1e6;

pub struct Limits {
    pub sha256_mbs: f64,
    pub loopback_mbs: f64,
    pub fsync_write_mbs: f64,
}

fn random_block(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// sha256 over `total` bytes on one core (sha2 picks SHA-NI when the CPU has it, as wharf does).
pub fn sha256(total: u64) -> f64 {
    let block = random_block(1 << 20);
    let mut h = sha2::Sha256::new();
    let start = Instant::now();
    let mut done = 0u64;
    while done < total {
        h.update(&block);
        done += block.len() as u64;
    }
    std::hint::black_box(h.finalize());
    done as f64 / MB / start.elapsed().as_secs_f64()
}

/// One TCP stream over 127.0.0.1, 1 MiB writes and reads.
pub fn loopback(total: u64) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        got
    });
    let block = random_block(1 << 20);
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&block).expect("send");
        sent += block.len() as u64;
    }
    drop(s);
    let got = reader.join().expect("reader");
    got as f64 / MB / start.elapsed().as_secs_f64()
}

/// Sequential 1 MiB writes to a new file in `dir`, then fdatasync; the time includes the sync.
pub fn fsync_write(dir: &Path, total: u64) -> f64 {
    let path = dir.join("fsync-probe");
    let block = random_block(1 << 20);
    let start = Instant::now();
    {
        let mut f = std::fs::File::create(&path).expect("create probe");
        let mut done = 0u64;
        while done < total {
            f.write_all(&block).expect("write probe");
            done += block.len() as u64;
        }
        f.sync_data().expect("fdatasync");
    }
    let mbs = total as f64 / MB / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    mbs
}

/// Waits until everything written so far is on disk, so one workload's writeback does not run
/// into the next one's timing (the registries alternate, so it would favour whichever went first).
pub fn settle() {
    unsafe { libc::sync() };
}

/// The median of each limit over several measurements: one sample on a shared machine can be
/// far off in either direction.
pub fn median(samples: &[Limits]) -> Limits {
    let mid = |f: fn(&Limits) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Limits {
        sha256_mbs: mid(|l| l.sha256_mbs),
        loopback_mbs: mid(|l| l.loopback_mbs),
        fsync_write_mbs: mid(|l| l.fsync_write_mbs),
    }
}

pub fn measure(dir: &Path, quick: bool) -> Limits {
    let gib: u64 = 1 << 30;
    let (hash, tcp, disk) = if quick { (gib / 4, gib / 2, gib / 4) } else { (gib, 2 * gib, gib) };
    Limits {
        sha256_mbs: sha256(hash),
        loopback_mbs: loopback(tcp),
        fsync_write_mbs: fsync_write(dir, disk),
    }
}
