//! The `gc` section: garbage collection of a store with 10,000 manifests, wharf against
//! distribution's `garbage-collect` on copies of the same data, and wharf collecting online
//! while a client pulls.
//!
//! The store is written straight into registry:2's layout (a push of 10,000 images would take
//! longer than everything else in the bench): 100 repositories of 100 image manifests, each
//! with its own config and layer and a base layer its repository's images share; 10 manifests
//! per repository are untagged. With `--delete-untagged` both collectors must keep the 9,000
//! tagged images (27,000 blobs and the 100 base layers) and delete the 1,000 untagged manifests
//! with their 3,000 blobs. Each round collects three fresh copies of the store:
//! - `wharf garbage-collect --delete-untagged` and `docker-registry garbage-collect
//!   --delete-untagged` (offline; wharf then holds the root lock), in alternating order, each
//!   timed with its peak RSS and CPU from `wait4`; what each found is asserted to be what the
//!   seeding made unreferenced, and the blobs left on the two copies must be the same;
//! - a running `wharf serve` collecting through `POST /v2/_wharf/gc` while a client pulls
//!   tagged images (manifest by tag, then its layer) on two connections: the pulls' latency
//!   before and during the collection and every failed pull are reported.
//!
//! The machine's floor for this section is a walk of the store (readdir of every directory,
//! stat of every file) on a warm cache: what any collector that looks at everything pays.

use crate::client::{Conn, Content};
use crate::report::Table;
use crate::seed::{blob, link_layer, link_revision, link_tag, write_objects, Objects};
use crate::servers::{self, Kind, RssSampler, Server};
use hyper::{Method, StatusCode};
use rand::RngCore;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const REPOS: usize = 100;
const PER_REPO: usize = 100;
const UNTAGGED_PER_REPO: usize = 10;
const LAYER_BYTES: usize = 1024;
/// Connections pulling during the online collection (the machine has two cores).
const PULLERS: usize = 2;
/// How long the pulls' latency is measured before the collection starts.
const BASELINE: Duration = Duration::from_secs(2);
/// No collection of this store may take longer (bounds every wait of the section).
const GC_TIMEOUT: Duration = Duration::from_secs(900);

pub const WALL: &str = "GC, 10,000 manifests, --delete-untagged (offline)";
pub const ONLINE: &str = "GC online: POST /v2/_wharf/gc while pulling";

/// What a collection found: the summary line both collectors print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Found {
    pub marked: usize,
    pub blobs_deleted: usize,
    pub manifests_deleted: usize,
}

/// A tagged image the online client pulls.
struct Pull {
    manifest: String,
    layer: String,
}

struct Seeded {
    expected: Found,
    pulls: Vec<Pull>,
    blobs: usize,
}

fn repo_name(r: usize) -> String {
    format!("gc/r{r:03}")
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Writes the store described at the top of this file under `root`.
fn seed(root: &Path) -> Seeded {
    let mut pulls = Vec::new();
    let mut blobs = 0;
    let mut out = Objects::new();
    for r in 0..REPOS {
        let repo = repo_name(r);
        let base = blob(&mut out, random(LAYER_BYTES));
        link_layer(&mut out, &repo, &base);
        blobs += 1;
        for i in 0..PER_REPO {
            let layer_bytes = random(LAYER_BYTES);
            let layer = blob(&mut out, layer_bytes);
            let config = serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": [base, layer] },
                "config": { "Labels": { "image": format!("{repo}:{i}") } }
            })
            .to_string();
            let config_d = blob(&mut out, config.clone().into_bytes());
            let layer_desc =
                |d: &str| serde_json::json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": LAYER_BYTES });
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len() },
                "layers": [layer_desc(&base), layer_desc(&layer)]
            })
            .to_string();
            let manifest_d = blob(&mut out, manifest.into_bytes());
            blobs += 3;
            link_layer(&mut out, &repo, &layer);
            link_layer(&mut out, &repo, &config_d);
            link_revision(&mut out, &repo, &manifest_d);
            if i >= UNTAGGED_PER_REPO {
                let tag = format!("v{i:03}");
                link_tag(&mut out, &repo, &tag, &manifest_d);
                pulls.push(Pull {
                    manifest: format!("/v2/{repo}/manifests/{tag}"),
                    layer: format!("/v2/{repo}/blobs/{layer}"),
                });
            }
        }
    }
    write_objects(root, out);
    let untagged = REPOS * UNTAGGED_PER_REPO;
    Seeded {
        expected: Found {
            marked: REPOS + 3 * (REPOS * PER_REPO - untagged),
            blobs_deleted: 3 * untagged,
            manifests_deleted: untagged,
        },
        pulls,
        blobs,
    }
}

/// One registry:2 configuration for both collectors; the delay of 0 (a wharf key under
/// `maintenance`, which registry:2 ignores) lets wharf collect content seeded a moment ago,
/// as registry:2, which has no delay, does.
fn config(root: &Path, addr: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n    gc:\n      delay: 0s\n\
         http:\n  addr: {addr}\n  secret: wharf-bench-secret\n",
        root.display()
    )
}

/// A collector run to its end: wall time, and from `wait4` its peak RSS and CPU time.
struct Measured {
    secs: f64,
    peak_rss_kib: u64,
    cpu_secs: f64,
    found: Found,
    /// The collection's own duration as wharf reports it (the rest is start-up: the index).
    inner_secs: Option<f64>,
}

/// The seconds in wharf's last line, "wharf: garbage collection ... bytes in 1.234s (...".
fn parse_wharf_duration(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.starts_with("wharf: garbage collection"))?;
    let (_, rest) = line.split_once(" in ")?;
    rest.split_once("s ")?.0.parse().ok()
}

/// Parses "N blobs marked, M blobs and K manifests eligible for deletion", the summary line
/// of registry:2's collector that wharf prints too.
pub fn parse_summary(output: &str) -> Option<Found> {
    output.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|x| *x == "marked,")?;
        let n = |i: usize| w.get(i).and_then(|s| s.parse::<usize>().ok());
        let words = (w.get(at.checked_sub(1)?)?, w.get(at + 2)?, w.get(at + 5)?);
        if words != (&"blobs", &"blobs", &"manifests") {
            return None;
        }
        Some(Found {
            marked: n(at.checked_sub(2)?)?,
            blobs_deleted: n(at + 1)?,
            manifests_deleted: n(at + 4)?,
        })
    })
}

/// Runs `bin garbage-collect --delete-untagged CONFIG` to its end, its output in `log`.
fn collect_offline(kind: Kind, bin: &Path, config: &Path, log: &Path) -> Measured {
    let out = std::fs::File::create(log).expect("gc log");
    let mut cmd = servers::registry_command(bin);
    cmd.args(["garbage-collect", "--delete-untagged"])
        .arg(config)
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out);
    let start = Instant::now();
    // Reaped by wait4 below, which also reports its peak RSS and CPU time.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we just started.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    let output = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} garbage-collect failed (status {status}):\n{}",
        kind.name(),
        tail(&output)
    );
    let found = parse_summary(&output).unwrap_or_else(|| panic!("{} printed no summary:\n{}", kind.name(), tail(&output)));
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        secs,
        peak_rss_kib: usage.ru_maxrss as u64,
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
        found,
        inner_secs: parse_wharf_duration(&output),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The blobs a store holds (`blobs/<alg>/<xx>/<hex>/data`).
fn blobs_left(root: &Path) -> BTreeSet<String> {
    let dir = root.join("docker/registry/v2/blobs/sha256");
    let mut out = BTreeSet::new();
    for prefix in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            if blob.path().join("data").is_file() {
                out.insert(blob.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Reads every directory and stats every file under `dir`; returns how many entries.
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        n += 1;
        match e.file_type() {
            Ok(t) if t.is_dir() => n += walk(&e.path()),
            _ => drop(std::hint::black_box(e.metadata())),
        }
    }
    n
}

/// Latencies (µs) and failures of pulls.
#[derive(Default)]
struct Pulled {
    latencies_us: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
}

impl Pulled {
    fn merge(&mut self, other: Pulled) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn max_ms(&self) -> f64 {
        self.latencies_us.iter().copied().max().unwrap_or(0) as f64 / 1000.0
    }
}

/// One tagged image: its manifest by tag, then its layer; both must answer 200 and the
/// layer's length.
async fn pull_once(c: &mut Conn, p: &Pull) -> Result<(), String> {
    let accept = [("accept", "application/vnd.oci.image.manifest.v1+json".to_string())];
    let m = c
        .send(Method::GET, &p.manifest, &accept, Content::empty().body(), false)
        .await
        .map_err(|e| format!("GET {}: {e}", p.manifest))?;
    if m.status != StatusCode::OK {
        return Err(format!("GET {}: {}", p.manifest, m.status));
    }
    let l = c
        .send(Method::GET, &p.layer, &[], Content::empty().body(), false)
        .await
        .map_err(|e| format!("GET {}: {e}", p.layer))?;
    if l.status != StatusCode::OK || l.len != LAYER_BYTES as u64 {
        return Err(format!("GET {}: {} with {} bytes", p.layer, l.status, l.len));
    }
    Ok(())
}

/// Pulls images from `pulls` (starting at `first`, stepping by `step`) until `stop` is set or
/// `until` passes; a failed pull is counted and the connection opened again.
async fn pull_until(addr: &str, pulls: &[Pull], first: usize, step: usize, stop: &AtomicBool, until: Instant) -> Pulled {
    let mut out = Pulled::default();
    let mut conn = None;
    let mut i = first;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        let t = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(addr, None).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match pull_once(c, &pulls[i % pulls.len()]).await {
            Ok(()) => out.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
                conn = None;
            }
        }
        i += step;
    }
    out
}

/// `PULLERS` clients pulling until `stop` or `until`.
async fn pulling(addr: &str, pulls: &Rc<Vec<Pull>>, stop: &Rc<AtomicBool>, until: Instant) -> Pulled {
    let set = tokio::task::LocalSet::new();
    let handles: Vec<_> = (0..PULLERS)
        .map(|k| {
            let (addr, pulls, stop) = (addr.to_string(), pulls.clone(), stop.clone());
            set.spawn_local(async move { pull_until(&addr, &pulls, k * 997, 7919, &stop, until).await })
        })
        .collect();
    set.await;
    let mut all = Pulled::default();
    for h in handles {
        all.merge(h.await.expect("puller"));
    }
    all
}

struct Online {
    secs: f64,
    server_cpu_secs: f64,
    peak_rss_kib: u64,
    found: Found,
    before: Pulled,
    during: Pulled,
}

fn report_found(report: &serde_json::Value) -> Option<Found> {
    let len = |k: &str| report.get(k)?.as_array().map(Vec::len);
    Some(Found {
        marked: report.get("marked")?.as_u64()? as usize,
        blobs_deleted: len("blobs_deleted")?,
        manifests_deleted: len("manifests_deleted")?,
    })
}

/// A running wharf on `root` collects through its HTTP endpoint while clients pull.
fn collect_online(rt: &tokio::runtime::Runtime, wharf: &Path, root: &Path, work: &Path, pulls: &Rc<Vec<Pull>>) -> Online {
    let addr = format!("127.0.0.1:{}", servers::free_port());
    let config_path = work.join("gc-online.yml");
    std::fs::write(&config_path, config(root, &addr)).expect("write config");
    let server = Server::serve(Kind::Wharf, wharf, &config_path, addr.clone(), work.join("gc-online.log"), &[]);
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async {
        let never = Rc::new(AtomicBool::new(false));
        let before = pulling(&addr, pulls, &never, Instant::now() + BASELINE).await;
        let stop = Rc::new(AtomicBool::new(false));
        let clients = {
            let (addr, pulls, stop) = (addr.clone(), pulls.clone(), stop.clone());
            tokio::task::spawn_local(async move { pulling(&addr, &pulls, &stop, Instant::now() + GC_TIMEOUT).await })
        };
        let sampler = RssSampler::start(server.pid());
        let cpu = server.cpu_seconds();
        let start = Instant::now();
        let reply = async {
            let mut c = Conn::open(&addr, None).await?;
            let path = "/v2/_wharf/gc?deleteuntagged=true";
            c.send(Method::POST, path, &[("content-length", "0".into())], Content::empty().body(), true)
                .await
        };
        let reply = tokio::time::timeout(GC_TIMEOUT, reply)
            .await
            .unwrap_or_else(|_| panic!("the online collection took longer than {GC_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("POST /v2/_wharf/gc: {e}"));
        let secs = start.elapsed().as_secs_f64();
        let server_cpu_secs = server.cpu_seconds() - cpu;
        stop.store(true, Ordering::Relaxed);
        let during = clients.await.expect("pull clients");
        let peak_rss_kib = sampler.finish();
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "POST /v2/_wharf/gc: {body}\nlog:\n{}",
            tail(&server.log_text())
        );
        let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GC report {e}: {body}"));
        let found = report_found(&report).unwrap_or_else(|| panic!("GC report without counts: {body}"));
        Online {
            secs,
            server_cpu_secs,
            peak_rss_kib,
            found,
            before,
            during,
        }
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The section's figures, printed after the others.
pub struct Section {
    table: Table,
    /// Median seconds of the store walk.
    floor: f64,
    rounds: usize,
}

impl Section {
    pub fn print(&self) {
        println!();
        println!(
            "GC section (median of {}): store walk, readdir + stat of every entry on a warm cache: {:.2} s",
            self.rounds, self.floor
        );
        println!();
        print!("{}", self.table.markdown());
        println!();
        let ratio = self.table.ratio(WALL, "s").map(|r| 1.0 / r);
        let failed = self.table.get("pulls failed (before + during)", "count", Kind::Wharf);
        let mark = |ok: bool| if ok { "MET " } else { "MISS" };
        println!("Targets (gc):");
        println!(
            "  [{}] GC of 10,000 manifests: wharf {:.1}× faster than distribution's garbage-collect (≥ 10)",
            mark(ratio.is_some_and(|r| r >= 10.0)),
            ratio.unwrap_or(0.0)
        );
        println!(
            "  [{}] GC online: {} failed pulls while wharf collected (0)",
            mark(failed == Some(0.0)),
            failed.unwrap_or(f64::NAN)
        );
    }
}

/// Runs the section for `rounds` rounds.
pub fn run(rt: &tokio::runtime::Runtime, wharf: &Path, distribution: &Path, work: &Path, rounds: usize) -> Section {
    let mut section = Section {
        table: Table::default(),
        floor: 0.0,
        rounds,
    };
    let table = &mut section.table;
    let dir = work.join("gc");
    std::fs::create_dir_all(&dir).expect("gc dir");
    let seeded_root = dir.join("seeded");
    let t = Instant::now();
    let seeded = seed(&seeded_root);
    let pulls = Rc::new(seeded.pulls);
    println!(
        "gc: seeded {} repositories, {} manifests ({} untagged), {} blobs in {:.1}s",
        REPOS,
        REPOS * PER_REPO,
        seeded.expected.manifests_deleted,
        seeded.blobs,
        t.elapsed().as_secs_f64()
    );
    let copy = |name: &str| -> PathBuf {
        let root = dir.join(name);
        crate::seed::copy_root(&seeded_root, &root);
        crate::limits::settle();
        root
    };
    let mut floor = Vec::new();
    for round in 0..rounds {
        let walked = copy("walk");
        let t = Instant::now();
        let entries = walk(&walked);
        floor.push(t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&walked);
        println!("## gc round {}: store walk, {entries} entries: {:.2}s", round + 1, floor[round]);

        let order = if round % 2 == 0 {
            [Kind::Wharf, Kind::Distribution]
        } else {
            [Kind::Distribution, Kind::Wharf]
        };
        let mut left = Vec::new();
        for kind in order {
            let root = copy(kind.name());
            let config_path = dir.join(format!("{}.yml", kind.name()));
            std::fs::write(&config_path, config(&root, "127.0.0.1:0")).expect("write config");
            let bin = match kind {
                Kind::Wharf => wharf,
                Kind::Distribution => distribution,
            };
            let m = collect_offline(kind, bin, &config_path, &dir.join(format!("{}-gc.log", kind.name())));
            println!(
                "  {} garbage-collect {:.2}s, CPU {:.2}s, peak RSS {:.1} MiB: {} marked, {} blobs and {} manifests deleted",
                kind.name(),
                m.secs,
                m.cpu_secs,
                mib(m.peak_rss_kib),
                m.found.marked,
                m.found.blobs_deleted,
                m.found.manifests_deleted
            );
            assert_eq!(
                m.found,
                seeded.expected,
                "{} found other than what the seeding left unreferenced",
                kind.name()
            );
            table.record(kind, WALL, "s", m.secs);
            table.record(kind, &format!("{WALL}: CPU"), "s", m.cpu_secs);
            table.record(kind, &format!("{WALL}: peak RSS"), "MiB", mib(m.peak_rss_kib));
            if let Some(inner) = m.inner_secs {
                println!(
                    "  {} of which the collection itself (after loading the index): {inner:.2}s",
                    kind.name()
                );
                table.record(kind, &format!("{WALL}: the collection after start-up"), "s", inner);
            }
            left.push(blobs_left(&root));
            let _ = std::fs::remove_dir_all(&root);
        }
        assert_eq!(left[0], left[1], "wharf and distribution left different blobs");
        assert_eq!(
            left[0].len(),
            seeded.blobs - seeded.expected.blobs_deleted,
            "blobs left after the collection"
        );

        let root = copy("online");
        let o = collect_online(rt, wharf, &root, &dir, &pulls);
        let before = crate::workloads::rate(o.before.latencies_us.clone(), BASELINE.as_secs_f64());
        let during = crate::workloads::rate(o.during.latencies_us.clone(), o.secs);
        println!(
            "  wharf online collection {:.2}s (server CPU {:.2}s, peak RSS {:.1} MiB): {} marked, {} blobs and {} manifests deleted; \
             pulls before: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {} errors; during: {} pulls, p50 {:.2} ms p99 {:.2} ms max {:.1} ms, {} errors{}",
            o.secs,
            o.server_cpu_secs,
            mib(o.peak_rss_kib),
            o.found.marked,
            o.found.blobs_deleted,
            o.found.manifests_deleted,
            before.per_sec,
            before.p50_ms,
            before.p99_ms,
            o.before.errors,
            o.during.latencies_us.len(),
            during.p50_ms,
            during.p99_ms,
            o.during.max_ms(),
            o.during.errors,
            o.during.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        );
        assert_eq!(
            o.found, seeded.expected,
            "the online collection found other than what the seeding left unreferenced"
        );
        assert_eq!(
            blobs_left(&root),
            left[0],
            "the online collection left other blobs than the offline ones"
        );
        let _ = std::fs::remove_dir_all(&root);
        table.record(Kind::Wharf, ONLINE, "s", o.secs);
        table.record(Kind::Wharf, &format!("{ONLINE}: server CPU"), "s", o.server_cpu_secs);
        table.record(Kind::Wharf, &format!("{ONLINE}: peak RSS"), "MiB", mib(o.peak_rss_kib));
        table.record(Kind::Wharf, "pulls before the collection", "p50 ms", before.p50_ms);
        table.record(Kind::Wharf, "pulls before the collection", "p99 ms", before.p99_ms);
        table.record(Kind::Wharf, "pulls during the collection", "p50 ms", during.p50_ms);
        table.record(Kind::Wharf, "pulls during the collection", "p99 ms", during.p99_ms);
        table.record(Kind::Wharf, "pulls during the collection", "max ms", o.during.max_ms());
        table.record(
            Kind::Wharf,
            "pulls during the collection",
            "count",
            o.during.latencies_us.len() as f64,
        );
        table.record(
            Kind::Wharf,
            "pulls failed (before + during)",
            "count",
            (o.before.errors + o.during.errors) as f64,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    section.floor = crate::report::median(&floor).unwrap_or(0.0);
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_of_both_collectors_parses() {
        let out =
            "blob eligible for deletion: sha256:ab\n\n27100 blobs marked, 3000 blobs and 1000 manifests eligible for deletion\nwharf: ...";
        let want = Found {
            marked: 27100,
            blobs_deleted: 3000,
            manifests_deleted: 1000,
        };
        assert_eq!(parse_summary(out), Some(want));
        assert_eq!(parse_summary("nothing here"), None);
        let wharf = "wharf: garbage collection with the storage root locked (no server running): freed 42 bytes in 1.250s (0 unreferenced kept: ...)";
        assert_eq!(parse_wharf_duration(wharf), Some(1.25));
    }
}
