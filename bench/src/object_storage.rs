//! The object-storage section (`--only s3`): wharf and distribution on one Garage node, each in
//! its own `rootdirectory` of one bucket, with the same registry:2 `storage.s3` settings
//! (registry:2's default chunk size, redirects off so blobs stream through the registry). The
//! same seeded data in both roots, the same workloads as the filesystem section where they exist,
//! and Garage's own speed for a 1 GiB PUT and GET in the same run, so the ratios can be read
//! against what the store allows.

use crate::client::Content;
use crate::garage::{Garage, BUCKET};
use crate::report::{median, Table};
use crate::s3::{Bucket, Credentials};
use crate::servers::{Kind, RssSampler, Server};
use crate::{mb, seed, workloads, GIB, MIB};
use bytes::Bytes;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub struct Options<'a> {
    pub wharf: &'a Path,
    pub distribution: &'a Path,
    pub quick: bool,
    pub rounds: usize,
}

/// Repositories for the catalog, as in the filesystem section; tags fewer (each tag is two
/// objects, and every seeded object is one PUT through Garage).
const REPOS: usize = 10_000;
const TAGS: usize = 1_000;
/// Connections seeding the bucket at once.
const SEED_CONNS: usize = 32;

const PUSH_REPO: &str = "bench/s3push";
const SMALL_REPO: &str = "bench/s3small";
const PUSH: &str = "1 GiB blob push, one PATCH (as docker)";
const PULL: &str = "1 GiB blob pull";
const PULL_CPU: &str = "1 GiB blob pull: server CPU";
/// Timed pulls per registry and round.
const PULLS_PER_ROUND: usize = 3;
const SMALL: &str = "200 × 4 KiB blobs, one connection";
const MANIFEST: &str = "manifest GET by tag, 32 conns";
const CATALOG: &str = "catalog, first page (100 of 10,000 repos)";
const TAG_PAGE: &str = "tag page (100 of 1,000 tags)";
const RSS_PUSH: &str = "RSS peak during the 1 GiB push";
const RSS_IDLE: &str = "RSS idle (after start)";

/// A blob of `len` bytes unlike any other in the run: a random block of 8 MiB + 1 repeated, so
/// no two of Garage's 1 MiB blocks (which it stores once per hash) are the same and the store
/// writes every byte.
fn unique_content(label: &str, len: u64) -> (Content, String) {
    let mut block = vec![0u8; 8 * MIB as usize + 1];
    rand::thread_rng().fill_bytes(&mut block);
    let c = Content {
        head: Bytes::from(label.as_bytes().to_vec()),
        block: Bytes::from(block),
        len,
    };
    let d = c.sha256();
    (c, d)
}

/// The object key of a blob's data under `root`, in registry:2's layout.
fn blob_key(root: &str, digest: &str) -> String {
    let hex = &digest["sha256:".len()..];
    format!("{root}/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// PUTs every object under each root, `SEED_CONNS` at a time.
async fn seed_bucket(addr: &str, creds: &Credentials, objects: seed::Objects, roots: &[&str]) -> crate::client::Result<usize> {
    let objects = Arc::new(objects);
    let roots: Arc<Vec<String>> = Arc::new(roots.iter().map(|r| r.to_string()).collect());
    let total = objects.len() * roots.len();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..SEED_CONNS {
        let (objects, roots, addr, creds) = (objects.clone(), roots.clone(), addr.to_string(), creds.clone());
        tasks.spawn(async move {
            let mut b = Bucket::open(&addr, BUCKET, &creds).await?;
            for i in (worker..total).step_by(SEED_CONNS) {
                let (path, bytes) = &objects[i % objects.len()];
                let root = &roots[i / objects.len()];
                let c = Content::small(Bytes::from(bytes.clone()));
                b.put(&format!("{root}/{path}"), c.body(), c.len).await?;
            }
            Ok::<_, crate::client::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(total)
}

/// Garage's own 1 GiB PUT and GET with the bench's client (MB/s each); the object is deleted.
async fn raw_limits(addr: &str, creds: &Credentials, len: u64, round: usize) -> crate::client::Result<(f64, f64)> {
    let (c, _) = unique_content(&format!("raw round {round} "), len);
    let key = format!("raw/round-{round}");
    let mut b = Bucket::open(addr, BUCKET, creds).await?;
    let t = Instant::now();
    b.put(&key, c.body(), c.len).await?;
    let put = mb(len) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let got = b.get_into(&key, &mut |_| {}).await?;
    let get = mb(len) / t.elapsed().as_secs_f64();
    if got != len {
        return Err(format!("raw GET: {got} of {len} bytes").into());
    }
    b.delete(&key).await?;
    Ok((put, get))
}

/// The catalog page timed: the first 100 names. A page further on (`last=`) costs wharf the
/// same, but distribution 2.8.2's S3 driver walks the bucket one LIST per directory up to the
/// page, which took it about 40 s for `last=cat/r00100` here, and it answered that page empty.
const CATALOG_PATH: &str = "/v2/_catalog?n=100";

/// The catalog page must be full and in order on both registries, or the rates compare
/// different work (registry:2 lists only repositories with `_manifests`).
async fn check_catalog(addr: &str) -> crate::client::Result<()> {
    let mut c = crate::client::Conn::open(addr, None).await?;
    let r = c.get_body(CATALOG_PATH).await?;
    let json: serde_json::Value = serde_json::from_slice(&r.body)?;
    // The seeded repositories and the two this section pushes to before it lists.
    let mut want: Vec<String> = [seed::APP_REPO, seed::TAGS_REPO, PUSH_REPO, SMALL_REPO]
        .into_iter()
        .map(String::from)
        .chain((0..100).map(seed::catalog_repo))
        .collect();
    want.sort();
    want.truncate(100);
    if r.status != hyper::StatusCode::OK || json["repositories"] != serde_json::json!(want) {
        return Err(format!("catalog page {CATALOG_PATH}: {} {}", r.status, String::from_utf8_lossy(&r.body)).into());
    }
    Ok(())
}

struct Registry {
    kind: Kind,
    root: &'static str,
    server: Server,
}

pub fn run(o: &Options, work: &Path, rt: &tokio::runtime::Runtime) {
    println!("# object storage: wharf and distribution on one Garage node");
    let Some(bin) = crate::garage::binary() else {
        println!("object storage: SKIP, no garage binary (scripts/test.sh builds it into ~/.cache/wharf-tests)");
        return;
    };
    let dir: PathBuf = work.join("garage");
    let garage = Garage::start(&bin, &dir).unwrap_or_else(|e| panic!("garage: {e}"));
    let creds = garage.credentials();
    let addr = garage.s3_addr.clone();
    println!("garage {} at {addr} (data in {})", crate::garage::VERSION, dir.display());

    let blob = if o.quick { 256 * MIB } else { GIB };
    let (load_secs, list_secs) = if o.quick { (1.5, 1.0) } else { (5.0, 3.0) };

    let t = Instant::now();
    let seeded = rt
        .block_on(seed_bucket(
            &addr,
            &creds,
            seed::objects(REPOS, TAGS, seed::CatalogRepos::ManifestLink),
            &["wharf", "distribution"],
        ))
        .unwrap_or_else(|e| panic!("seeding the bucket: {e}"));
    println!(
        "seeded {REPOS} repositories and {TAGS} tags into both roots: {seeded} objects in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let regs = [
        (Kind::Wharf, "wharf", o.wharf),
        (Kind::Distribution, "distribution", o.distribution),
    ]
    .map(|(kind, root, bin)| {
        // distribution's AWS SDK reads a CA bundle from the environment when set; Garage is plain HTTP.
        let server = Server::start_on_driver(kind, bin, &garage.s3_driver(&format!("/{root}")), work, &["AWS_CA_BUNDLE"]);
        Registry { kind, root, server }
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut table = Table::default();
    for r in &regs {
        table.record(r.kind, RSS_IDLE, "MiB", r.server.rss_kib() as f64 / 1024.0);
    }
    let mut raw_put = Vec::new();
    let mut raw_get = Vec::new();

    for round in 0..o.rounds {
        let order: Vec<&Registry> = if round % 2 == 0 {
            regs.iter().collect()
        } else {
            regs.iter().rev().collect()
        };
        println!(
            "## object storage, round {} (order: {})",
            round + 1,
            order.iter().map(|r| r.kind.name()).collect::<Vec<_>>().join(", ")
        );
        crate::limits::settle();
        let (put, get) = rt
            .block_on(raw_limits(&addr, &creds, blob, round))
            .unwrap_or_else(|e| panic!("garage raw PUT/GET: {e}"));
        println!("  garage raw PUT {put:.0} MB/s, GET {get:.0} MB/s");
        raw_put.push(put);
        raw_get.push(get);

        let mut pushed = Vec::new();
        for r in &order {
            let name = r.kind.name();
            let (content, digest) = unique_content(&format!("s3 push {name} round {round} "), blob);
            crate::limits::settle();
            let cpu = r.server.cpu_seconds();
            let sampler = RssSampler::start(r.server.pid());
            let push_secs = rt
                .block_on(workloads::push_chunked(&r.server.addr, PUSH_REPO, &content, &digest, blob))
                .unwrap_or_else(|e| panic!("{name} push: {e}"));
            let peak = sampler.finish();
            let cpu = r.server.cpu_seconds() - cpu;
            table.record(r.kind, PUSH, "MB/s", mb(blob) / push_secs);
            table.record(r.kind, &format!("{PUSH}: server CPU"), "s", cpu);
            table.record(r.kind, RSS_PUSH, "MiB", peak as f64 / 1024.0);
            println!(
                "  {name} push {:.0} MB/s (server CPU {cpu:.2}s, peak RSS {:.1} MiB)",
                mb(blob) / push_secs,
                peak as f64 / 1024.0
            );
            pushed.push((r, digest));
        }
        // Pulls after both pushes, taking turns: one pull each is within the noise of a shared
        // 2-core machine, where Garage's own CPU sets the pace (about 2 s per GiB served here,
        // against 0.4-0.6 s for either registry); each pair is back to back.
        for turn in 0..PULLS_PER_ROUND {
            for (r, digest) in pushed.iter().cycle().skip(turn % 2).take(pushed.len()) {
                let name = r.kind.name();
                crate::limits::settle();
                let cpu = r.server.cpu_seconds();
                let secs = rt
                    .block_on(workloads::pull(&r.server.addr, PUSH_REPO, digest, blob))
                    .unwrap_or_else(|e| panic!("{name} pull: {e}"));
                let cpu = r.server.cpu_seconds() - cpu;
                table.record(r.kind, PULL, "MB/s", mb(blob) / secs);
                println!("  {name} pull {:.0} MB/s", mb(blob) / secs);
                if turn == 0 {
                    // The CPU of the timed pull and its untimed, digest-checked twin.
                    table.record(r.kind, PULL_CPU, "s", cpu / 2.0);
                }
            }
        }
        for (r, digest) in &pushed {
            // The blob is not used again: its data goes now, so the run's disk use stays near
            // one blob per registry (Garage frees the blocks after its own delay).
            rt.block_on(async {
                let mut b = Bucket::open(&addr, BUCKET, &creds).await?;
                b.delete(&blob_key(r.root, digest)).await
            })
            .unwrap_or_else(|e| panic!("deleting {}'s blob: {e}", r.kind.name()));
        }

        let blobs: Vec<(Content, String)> = (0..200)
            .map(|i| {
                let mut b = vec![0u8; 4096];
                rand::thread_rng().fill_bytes(&mut b);
                b[..16].copy_from_slice(&(round as u64 * 1000 + i as u64).to_le_bytes().repeat(2));
                let c = Content::small(Bytes::from(b));
                let d = c.sha256();
                (c, d)
            })
            .collect();
        for r in &order {
            let s = rt
                .block_on(workloads::small_blobs(&r.server.addr, SMALL_REPO, &blobs))
                .unwrap_or_else(|e| panic!("{} small blobs: {e}", r.kind.name()));
            table.record(r.kind, SMALL, "blobs/s", s.per_sec);
            table.record(r.kind, SMALL, "p99 ms", s.p99_ms);
            println!("  {} small blobs {:.0}/s p99 {:.2} ms", r.kind.name(), s.per_sec, s.p99_ms);
        }

        let path = format!("/v2/{}/manifests/latest", seed::APP_REPO);
        for r in &order {
            let m = rt
                .block_on(workloads::manifest_load(&r.server.addr, &path, false, 32, load_secs, None))
                .unwrap_or_else(|e| panic!("{} manifest GET: {e}", r.kind.name()));
            table.record(r.kind, MANIFEST, "req/s", m.per_sec);
            table.record(r.kind, MANIFEST, "p99 ms", m.p99_ms);
            println!("  {} manifest GET {:.0} req/s p99 {:.2} ms", r.kind.name(), m.per_sec, m.p99_ms);
        }

        for r in &order {
            if let Err(e) = rt.block_on(check_catalog(&r.server.addr)) {
                println!("  {} catalog: WRONG ANSWER, not timed: {e}", r.kind.name());
            } else {
                let cat = rt
                    .block_on(workloads::pages(&r.server.addr, list_secs, 3, |_| CATALOG_PATH.to_string()))
                    .unwrap_or_else(|e| panic!("{} catalog: {e}", r.kind.name()));
                table.record(r.kind, CATALOG, "req/s", cat.per_sec);
                table.record(r.kind, CATALOG, "p50 ms", cat.p50_ms);
                println!("  {} catalog page {:.1}/s (p50 {:.1} ms)", r.kind.name(), cat.per_sec, cat.p50_ms);
            }
            let tags = rt
                .block_on(workloads::pages(&r.server.addr, list_secs, 3, |i| {
                    let last = seed::tag_name((i * 7919) % TAGS);
                    format!("/v2/{}/tags/list?n=100&last={last}", seed::TAGS_REPO)
                }))
                .unwrap_or_else(|e| panic!("{} tags: {e}", r.kind.name()));
            table.record(r.kind, TAG_PAGE, "req/s", tags.per_sec);
            println!("  {} tag page {:.1}/s (p50 {:.1} ms)", r.kind.name(), tags.per_sec, tags.p50_ms);
        }
    }
    let (put, get) = (median(&raw_put).unwrap_or(0.0), median(&raw_get).unwrap_or(0.0));
    println!();
    println!(
        "Object storage limits (same run, median of {} round(s)): Garage raw PUT {put:.0} MB/s · raw GET {get:.0} MB/s ({} MiB objects, this bench's client)",
        raw_put.len(),
        blob / MIB
    );
    println!();
    print!("{}", table.markdown());
    println!();
    targets(&table, put, get);
    drop(regs);
    drop(garage);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The goals for object storage, each with the figures it is judged on.
fn targets(t: &Table, raw_put: f64, raw_get: f64) {
    println!("Object-storage targets:");
    let line = |ok: Option<bool>, text: String| {
        let mark = match ok {
            Some(true) => "MET ",
            Some(false) => "MISS",
            None => "n/a ",
        };
        println!("  [{mark}] {text}");
    };
    let w = |name: &str, unit: &str| t.get(name, unit, Kind::Wharf);
    let push = t.ratio(PUSH, "MB/s");
    line(
        push.map(|r| r >= 2.0),
        format!(
            "push: {:.2}× distribution (≥ 2); wharf at {:.2}× Garage's raw PUT",
            push.unwrap_or(0.0),
            w(PUSH, "MB/s").unwrap_or(0.0) / raw_put
        ),
    );
    let pull = t.ratio(PULL, "MB/s");
    line(
        pull.map(|r| r >= 1.0),
        format!(
            "pull: {:.2}× distribution (≥ 1); wharf at {:.2}× Garage's raw GET",
            pull.unwrap_or(0.0),
            w(PULL, "MB/s").unwrap_or(0.0) / raw_get
        ),
    );
    let small = t.ratio(SMALL, "blobs/s");
    line(
        small.map(|r| r >= 2.0),
        format!("small blobs: {:.2}× distribution (≥ 2)", small.unwrap_or(0.0)),
    );
    let rss = w(RSS_PUSH, "MiB");
    line(
        rss.map(|v| v < 64.0),
        format!("RSS during the 1 GiB push {:.1} MiB (< 64, default chunk size)", rss.unwrap_or(0.0)),
    );
    for name in [MANIFEST, CATALOG, TAG_PAGE] {
        let figure = |kind| match t.get(name, "req/s", kind) {
            Some(v) => format!("{v:.0} req/s"),
            None => "not timed (wrong answer)".to_string(),
        };
        let both = format!("wharf {}, distribution {}", figure(Kind::Wharf), figure(Kind::Distribution));
        line(None, format!("{name}: {both} (no goal)"));
    }
}
