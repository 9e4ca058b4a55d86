//! wharf-bench: runs the same workloads against wharf and CNCF distribution (Debian's
//! `docker-registry`) on loopback, alternating A/B over several rounds, and prints medians, the
//! wharf/distribution ratios, the machine's limits and which targets are met.
//!
//! Usage: wharf-bench --wharf PATH [--distribution PATH] [--quick] [--rounds N]
//!                    [--only a,b,...] [--no-docker] [--no-skopeo]

mod client;
mod garage;
mod gc;
mod limits;
mod object_storage;
mod report;
mod s3;
mod seed;
mod servers;
mod tools;
mod workloads;

use bytes::Bytes;
use client::Content;
use rand::RngCore;
use report::Table;
use servers::{Auth, Kind, RssSampler, Server};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const USER: (&str, &str) = ("bench", "bench-password");

struct Args {
    wharf: PathBuf,
    distribution: PathBuf,
    quick: bool,
    rounds: usize,
    only: Option<Vec<String>>,
    docker: bool,
    skopeo: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        wharf: PathBuf::from("target/release/wharf"),
        distribution: PathBuf::from("/usr/bin/docker-registry"),
        quick: false,
        rounds: 0,
        only: None,
        docker: true,
        skopeo: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--wharf" => a.wharf = value().into(),
            "--distribution" => a.distribution = value().into(),
            "--quick" => a.quick = true,
            "--rounds" => a.rounds = value().parse().unwrap_or_else(|_| usage("--rounds takes a number")),
            "--only" => a.only = Some(value().split(',').map(str::to_string).collect()),
            "--no-docker" => a.docker = false,
            "--no-skopeo" => a.skopeo = false,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.rounds == 0 {
        a.rounds = if a.quick { 1 } else { 3 };
    }
    a
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("wharf-bench: {msg}");
    }
    eprintln!(
        "usage: wharf-bench --wharf PATH [--distribution PATH] [--quick] [--rounds N] [--only WORKLOADS] [--no-docker] [--no-skopeo]\n\
         workloads: push, pull, manifest, small, list, skopeo, docker, rss, gc; s3 (the object-storage section)"
    );
    std::process::exit(2)
}

/// Sizes and durations: full, or small enough for a quick iteration.
struct Plan {
    blob: u64,
    big_push: u64,
    load_secs: f64,
    list_secs: f64,
    repos: usize,
    tags: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                blob: 256 * MIB,
                big_push: 512 * MIB,
                load_secs: 1.5,
                list_secs: 1.0,
                repos: 10_000,
                tags: 10_000,
            }
        } else {
            Plan {
                blob: GIB,
                big_push: 2 * GIB,
                load_secs: 5.0,
                list_secs: 3.0,
                repos: 10_000,
                tags: 10_000,
            }
        }
    }
}

struct Target {
    kind: Kind,
    open: Server,
    auth: Server,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let args = parse_args();
    let wants = |w: &str| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == w));
    let plan = Plan::new(args.quick);
    let work = std::env::temp_dir().join(format!("wharf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    // The filesystem section runs unless `--only` names the object-storage section alone.
    let filesystem = args.only.as_ref().is_none_or(|o| o.iter().any(|x| x != "s3"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if filesystem {
            run(&args, &plan, &work, &wants);
        }
        if wants("s3") {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let o = object_storage::Options {
                wharf: &args.wharf,
                distribution: &args.distribution,
                quick: args.quick,
                rounds: args.rounds,
            };
            object_storage::run(&o, &work, &rt);
        }
    }));
    let _ = std::fs::remove_dir_all(&work);
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run(args: &Args, plan: &Plan, work: &Path, wants: &dyn Fn(&str) -> bool) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    println!(
        "# wharf-bench{}: {} round(s), A/B alternating",
        if args.quick { " --quick" } else { "" },
        args.rounds
    );
    println!("wharf: {}  distribution: {}", args.wharf.display(), args.distribution.display());

    let mut limit_samples = Vec::new();
    let mut measure_limits = || {
        limits::settle();
        let l = limits::measure(work, args.quick);
        println!(
            "machine limits: sha256 one core {:.0} MB/s, loopback TCP {:.0} MB/s, fsync'd sequential write {:.0} MB/s",
            l.sha256_mbs, l.loopback_mbs, l.fsync_write_mbs
        );
        limit_samples.push(l);
    };
    measure_limits();
    // The gc section needs neither the seeded servers nor the rounds below: with `--only gc`
    // it is all that runs.
    let gc = wants("gc").then(|| gc::run(&rt, &args.wharf, &args.distribution, work, args.rounds));
    if args.only.as_ref().is_some_and(|o| o.iter().all(|w| w == "gc")) {
        gc.iter().for_each(gc::Section::print);
        return;
    }

    let htpasswd = work.join("htpasswd");
    seed::htpasswd(&htpasswd, USER.0, USER.1);
    let mut targets = Vec::new();
    let mut idle = Vec::new();
    for kind in [Kind::Wharf, Kind::Distribution] {
        let root = work.join(format!("{}-root", kind.name()));
        let t = std::time::Instant::now();
        seed::seed(&root, plan.repos, plan.tags);
        println!(
            "{}: seeded {} repositories and {} tags in {:.1}s",
            kind.name(),
            plan.repos,
            plan.tags,
            t.elapsed().as_secs_f64()
        );
        let bin = match kind {
            Kind::Wharf => &args.wharf,
            Kind::Distribution => &args.distribution,
        };
        // wharf serves one root per process (it locks it), so the server with auth gets a
        // copy of the seeded data; distribution gets the same treatment, to compare alike.
        let auth_root = work.join(format!("{}-auth-root", kind.name()));
        seed::copy_root(&root, &auth_root);
        let open = Server::start(kind, bin, &root, work, None);
        let auth = Server::start(kind, bin, &auth_root, work, Some(&Auth { htpasswd: &htpasswd }));
        targets.push(Target { kind, open, auth });
    }
    // wharf once more on a copy of the same data, its debug server counting every request in /metrics:
    // the "metrics" workload measures what that costs on the hottest path, manifest GETs.
    let metrics_addr = format!("127.0.0.1:{}", servers::free_port());
    let with_metrics = wants("metrics").then(|| {
        let root = work.join("wharf-metrics-root");
        seed::copy_root(&work.join("wharf-root"), &root);
        Server::start_with_metrics(Kind::Wharf, &args.wharf, &root, work, &metrics_addr)
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    for t in &targets {
        idle.push((t.kind, t.open.rss_kib()));
    }

    let mut table = Table::default();
    let mut block = vec![0u8; 8 * MIB as usize];
    rand::thread_rng().fill_bytes(&mut block);
    let block = Bytes::from(block);
    let content = |label: String, len: u64| {
        let c = Content {
            head: Bytes::from(label.into_bytes()),
            block: block.clone(),
            len,
        };
        let d = c.sha256();
        (c, d)
    };
    let mut manifest_peak: Vec<(Kind, u64)> = Vec::new();

    for round in 0..args.rounds {
        if round > 0 {
            measure_limits();
        }
        // A/B, then B/A: neither registry always runs on a warmer or cooler machine.
        let order: Vec<&Target> = if round % 2 == 0 {
            targets.iter().collect()
        } else {
            targets.iter().rev().collect()
        };
        println!(
            "## round {} (order: {})",
            round + 1,
            order.iter().map(|t| t.kind.name()).collect::<Vec<_>>().join(", ")
        );
        let (mono, mono_d) = content(format!("mono round {round} "), plan.blob);
        if wants("push") || wants("pull") {
            let (chunked, chunked_d) = content(format!("chunked round {round} "), plan.blob);
            for t in &order {
                limits::settle();
                let cpu = t.open.cpu_seconds();
                let secs = rt
                    .block_on(workloads::push_monolithic(&t.open.addr, "bench/push", &mono, &mono_d))
                    .unwrap_or_else(|e| panic!("{} push: {e}", t.kind.name()));
                let cpu = t.open.cpu_seconds() - cpu;
                table.record(t.kind, "blob push, monolithic", "MB/s", mb(plan.blob) / secs);
                table.record(t.kind, "blob push, monolithic: server CPU", "s", cpu);
                println!(
                    "  {} push monolithic {:.0} MB/s, server CPU {cpu:.2}s",
                    t.kind.name(),
                    mb(plan.blob) / secs
                );
            }
            for t in &order {
                limits::settle();
                let cpu = t.open.cpu_seconds();
                let secs = rt
                    .block_on(workloads::push_chunked(&t.open.addr, "bench/push", &chunked, &chunked_d, 16 * MIB))
                    .unwrap_or_else(|e| panic!("{} chunked push: {e}", t.kind.name()));
                let cpu = t.open.cpu_seconds() - cpu;
                table.record(t.kind, "blob push, 16 MiB chunks", "MB/s", mb(plan.blob) / secs);
                table.record(t.kind, "blob push, 16 MiB chunks: server CPU", "s", cpu);
                println!(
                    "  {} push chunked {:.0} MB/s, server CPU {cpu:.2}s",
                    t.kind.name(),
                    mb(plan.blob) / secs
                );
            }
            for t in &order {
                limits::settle();
                let secs = rt
                    .block_on(workloads::pull(&t.open.addr, "bench/push", &mono_d, plan.blob))
                    .unwrap_or_else(|e| panic!("{} pull: {e}", t.kind.name()));
                table.record(t.kind, "blob pull", "MB/s", mb(plan.blob) / secs);
                let ranged = rt
                    .block_on(workloads::pull_ranged(&t.open.addr, "bench/push", &mono_d, plan.blob, 16 * MIB))
                    .unwrap_or_else(|e| panic!("{} ranged pull: {e}", t.kind.name()));
                table.record(t.kind, "blob pull, 16 MiB ranges", "MB/s", mb(plan.blob) / ranged);
                println!(
                    "  {} pull {:.0} MB/s, ranged {:.0} MB/s",
                    t.kind.name(),
                    mb(plan.blob) / secs,
                    mb(plan.blob) / ranged
                );
            }
        }
        if wants("manifest") {
            let path = format!("/v2/{}/manifests/latest", seed::APP_REPO);
            for (auth, label) in [(false, ""), (true, ", Basic auth")] {
                for head in [false, true] {
                    let name = format!("manifest {} by tag, 32 conns{label}", if head { "HEAD" } else { "GET" });
                    for t in &order {
                        let server = if auth { &t.auth } else { &t.open };
                        let sampler = RssSampler::start(server.pid());
                        let user = auth.then_some(USER);
                        let r = rt
                            .block_on(workloads::manifest_load(&server.addr, &path, head, 32, plan.load_secs, user))
                            .unwrap_or_else(|e| panic!("{} {name}: {e}", t.kind.name()));
                        manifest_peak.push((t.kind, sampler.finish()));
                        table.record(t.kind, &name, "req/s", r.per_sec);
                        table.record(t.kind, &name, "p50 ms", r.p50_ms);
                        table.record(t.kind, &name, "p99 ms", r.p99_ms);
                        println!(
                            "  {} {name}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms",
                            t.kind.name(),
                            r.per_sec,
                            r.p50_ms,
                            r.p99_ms
                        );
                    }
                }
            }
        }
        if let Some(on) = &with_metrics {
            let off = &targets.iter().find(|t| t.kind == Kind::Wharf).expect("wharf target").open;
            let ratio = rt
                .block_on(metrics_cost(off, on, &metrics_addr, plan.load_secs))
                .unwrap_or_else(|e| panic!("metrics cost: {e}"));
            table.record(Kind::Wharf, METRICS_RATIO, "×", ratio);
            println!("  wharf manifest GET with /metrics on: {ratio:.3}× of the rate without");
        }
        if wants("small") {
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
            for t in &order {
                let r = rt
                    .block_on(workloads::small_blobs(&t.open.addr, "bench/small", &blobs))
                    .unwrap_or_else(|e| panic!("{} small blobs: {e}", t.kind.name()));
                table.record(t.kind, "200 × 4 KiB blobs, one connection", "blobs/s", r.per_sec);
                table.record(t.kind, "200 × 4 KiB blobs, one connection", "p99 ms", r.p99_ms);
                println!("  {} small blobs {:.0}/s p99 {:.2} ms", t.kind.name(), r.per_sec, r.p99_ms);
            }
        }
        if wants("list") {
            let repos = plan.repos;
            let tags = plan.tags;
            for t in &order {
                let cat = rt
                    .block_on(workloads::pages(&t.open.addr, plan.list_secs, 3, |i| {
                        let last = seed::catalog_repo((i * 7919) % repos.max(1));
                        format!("/v2/_catalog?n=100&last={last}")
                    }))
                    .unwrap_or_else(|e| panic!("{} catalog: {e}", t.kind.name()));
                table.record(t.kind, "catalog page (100 of 10,000 repos)", "req/s", cat.per_sec);
                let tag = rt
                    .block_on(workloads::pages(&t.open.addr, plan.list_secs, 3, |i| {
                        let last = seed::tag_name((i * 7919) % tags.max(1));
                        format!("/v2/{}/tags/list?n=100&last={last}", seed::TAGS_REPO)
                    }))
                    .unwrap_or_else(|e| panic!("{} tags: {e}", t.kind.name()));
                table.record(t.kind, "tag page (100 of 10,000 tags)", "req/s", tag.per_sec);
                println!(
                    "  {} catalog page {:.1}/s (p50 {:.2} ms), tag page {:.1}/s (p50 {:.2} ms)",
                    t.kind.name(),
                    cat.per_sec,
                    cat.p50_ms,
                    tag.per_sec,
                    tag.p50_ms
                );
            }
        }
        if wants("skopeo") && args.skopeo && which("skopeo") {
            let layout = work.join(format!("oci-{round}"));
            tools::oci_layout(&layout, 20, if args.quick { 256 * 1024 } else { 2 * MIB as usize });
            let home = work.join("home");
            let _ = std::fs::create_dir_all(&home);
            for t in &order {
                match tools::skopeo_copy(&layout, &home, &t.open.addr, "bench/skopeo", &format!("r{round}")) {
                    Ok(s) => {
                        table.record(t.kind, "skopeo copy, 20 layers", "s", s);
                        println!("  {} skopeo copy {s:.2}s", t.kind.name());
                    }
                    Err(e) => println!("  {} skopeo copy FAILED: {e}", t.kind.name()),
                }
            }
            let _ = std::fs::remove_dir_all(&layout);
        }
        if wants("docker") && args.docker && which("dockerd") {
            docker_round(&order, work, round, args.quick, &mut table);
        }
    }

    if wants("rss") {
        for t in &targets {
            let (big, big_d) = content(format!("rss {} ", t.kind.name()), plan.big_push);
            let sampler = RssSampler::start(t.open.pid());
            let secs = rt
                .block_on(workloads::push_monolithic(&t.open.addr, "bench/big", &big, &big_d))
                .unwrap_or_else(|e| panic!("{} big push: {e}", t.kind.name()));
            let peak = sampler.finish();
            let label = format!("RSS during a {} MiB push", plan.big_push / MIB);
            table.record(t.kind, &label, "MiB", peak as f64 / 1024.0);
            println!(
                "  {} big push {:.0} MB/s, peak RSS {:.1} MiB",
                t.kind.name(),
                mb(plan.big_push) / secs,
                peak as f64 / 1024.0
            );
        }
    }
    for (kind, kib) in &idle {
        table.record(*kind, "RSS idle (after start, 10,000 repos)", "MiB", *kib as f64 / 1024.0);
    }
    for kind in [Kind::Wharf, Kind::Distribution] {
        if let Some(peak) = manifest_peak.iter().filter(|(k, _)| *k == kind).map(|(_, p)| *p).max() {
            table.record(kind, "RSS peak under manifest load", "MiB", peak as f64 / 1024.0);
        }
    }

    let limits = limits::median(&limit_samples);
    println!();
    println!(
        "Machine limits (same run, median of {}): sha256 one core {:.0} MB/s · loopback TCP {:.0} MB/s · fsync'd sequential write {:.0} MB/s",
        limit_samples.len(),
        limits.sha256_mbs, limits.loopback_mbs, limits.fsync_write_mbs
    );
    println!();
    print!("{}", table.markdown());
    println!();
    targets_report(&table, &limits);
    gc.iter().for_each(gc::Section::print);
}

fn which(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn docker_round(order: &[&Target], work: &Path, round: usize, quick: bool, table: &mut Table) {
    let dir = work.join(format!("docker-{round}"));
    let dockerd = match tools::Dockerd::start(&dir) {
        Ok(d) => d,
        Err(e) => {
            println!("  docker: cannot start a private dockerd: {e}");
            return;
        }
    };
    let local = format!("bench-img:r{round}");
    let (layers, size) = if quick { (4, 2 * MIB as usize) } else { (8, 8 * MIB as usize) };
    if let Err(e) = dockerd.build(&dir.join("ctx"), &local, layers, size) {
        println!("  docker build FAILED: {e}");
        return;
    }
    let remote = |t: &Target| format!("{}/bench/docker:r{round}", t.open.addr);
    for t in order {
        let r = remote(t);
        let pushed = dockerd
            .docker(&["tag", &local, &r])
            .and_then(|_| dockerd.docker(&["push", "-q", &r]));
        match pushed {
            Ok(s) => {
                table.record(t.kind, &format!("docker push, {layers} layers"), "s", s);
                println!("  {} docker push {s:.2}s", t.kind.name());
            }
            Err(e) => println!("  {} docker push FAILED: {e}", t.kind.name()),
        }
    }
    let all: Vec<String> = std::iter::once(local.clone()).chain(order.iter().map(|t| remote(t))).collect();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    for t in order {
        dockerd.rmi(&all_refs);
        match dockerd.docker(&["pull", "-q", &remote(t)]) {
            Ok(s) => {
                table.record(t.kind, &format!("docker pull, {layers} layers"), "s", s);
                println!("  {} docker pull {s:.2}s", t.kind.name());
            }
            Err(e) => println!("  {} docker pull FAILED: {e}", t.kind.name()),
        }
    }
    dockerd.rmi(&all_refs);
}

/// The metrics-on/metrics-off rate of manifest GETs, one figure per round.
const METRICS_RATIO: &str = "manifest GET by tag, 32 conns: /metrics on ÷ off";

/// Manifest GET load against the same data without and with metrics, in the order off, on, on,
/// off (so drift in the machine's speed during the round cancels), then checks that /metrics
/// counted the requests. Returns the rate with metrics over the rate without.
async fn metrics_cost(off: &Server, on: &Server, metrics_addr: &str, secs: f64) -> client::Result<f64> {
    let path = format!("/v2/{}/manifests/latest", seed::APP_REPO);
    let (mut without, mut with) = (0.0, 0.0);
    for server in [off, on, on, off] {
        limits::settle();
        let r = workloads::manifest_load(&server.addr, &path, false, 32, secs, None).await?;
        if std::ptr::eq(server, on) {
            with += r.per_sec;
        } else {
            without += r.per_sec;
        }
    }
    let mut c = client::Conn::open(metrics_addr, None).await?;
    let reply = c.get_body("/metrics").await?;
    let text = String::from_utf8_lossy(&reply.body);
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("registry_http_requests_total{") && l.contains("code=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    if counted < with * secs * 0.5 {
        return Err(format!("/metrics counted {counted} successful requests, expected about {:.0}", with * secs).into());
    }
    Ok(with / without)
}

/// The targets, each with the figures it is judged on.
fn targets_report(t: &Table, l: &limits::Limits) {
    println!("Targets:");
    let line = |ok: Option<bool>, text: String| {
        let mark = match ok {
            Some(true) => "MET ",
            Some(false) => "MISS",
            None => "n/a ",
        };
        println!("  [{mark}] {text}");
    };
    let w = |name: &str, unit: &str| t.get(name, unit, Kind::Wharf);
    for name in ["blob push, monolithic", "blob push, 16 MiB chunks"] {
        let (r, v) = (t.ratio(name, "MB/s"), w(name, "MB/s"));
        let ok = r.zip(v).map(|(r, v)| r >= 4.0 && v >= 0.7 * l.sha256_mbs);
        line(
            ok,
            format!(
                "{name}: {:.2}× distribution (≥ 4), {:.2}× sha256 limit (≥ 0.7)",
                r.unwrap_or(0.0),
                v.unwrap_or(0.0) / l.sha256_mbs
            ),
        );
    }
    let pull = w("blob pull", "MB/s");
    line(
        pull.map(|p| p >= 0.9 * l.loopback_mbs),
        format!("blob pull: {:.2}× loopback limit (≥ 0.9)", pull.unwrap_or(0.0) / l.loopback_mbs),
    );
    let get = "manifest GET by tag, 32 conns";
    let r = t.ratio(get, "req/s");
    line(
        r.map(|r| r >= 10.0),
        format!("manifest GET: {:.2}× distribution (≥ 10)", r.unwrap_or(0.0)),
    );
    let auth = "manifest GET by tag, 32 conns, Basic auth";
    let wa = w(auth, "req/s").zip(w(get, "req/s")).map(|(a, o)| a / o);
    let da = t
        .get(auth, "req/s", Kind::Distribution)
        .zip(t.get(get, "req/s", Kind::Distribution))
        .map(|(a, o)| a / o);
    line(
        wa.map(|r| r >= 0.9),
        format!(
            "authenticated/unauthenticated manifest GET: wharf {:.2} (≥ 0.9), distribution {:.2}",
            wa.unwrap_or(0.0),
            da.unwrap_or(0.0)
        ),
    );
    let small = t.ratio("200 × 4 KiB blobs, one connection", "blobs/s");
    line(
        small.map(|r| r >= 2.0),
        format!("small blobs: {:.2}× distribution (≥ 2)", small.unwrap_or(0.0)),
    );
    for name in ["catalog page (100 of 10,000 repos)", "tag page (100 of 10,000 tags)"] {
        let r = t.ratio(name, "req/s");
        line(
            r.map(|r| r >= 20.0),
            format!("{name}: {:.1}× distribution (≥ 20)", r.unwrap_or(0.0)),
        );
    }
    let metrics = w(METRICS_RATIO, "×").map(|r| (1.0 - r) * 100.0);
    line(
        metrics.map(|cost| cost < 3.0),
        format!("cost of /metrics on manifest GETs: {:.1} % (< 3 %)", metrics.unwrap_or(0.0)),
    );
    let idle = w("RSS idle (after start, 10,000 repos)", "MiB");
    line(idle.map(|v| v <= 10.0), format!("idle RSS {:.1} MiB (≤ 10)", idle.unwrap_or(0.0)));
    let peak = w("RSS peak under manifest load", "MiB");
    line(
        peak.map(|v| v <= 32.0),
        format!("peak RSS under manifest load {:.1} MiB (≤ 32)", peak.unwrap_or(0.0)),
    );
    let big = t
        .rows
        .iter()
        .find(|r| r.name.starts_with("RSS during"))
        .and_then(|r| report::median(&r.wharf));
    line(
        big.map(|v| v < 64.0),
        format!("RSS during the big push {:.1} MiB (< 64)", big.unwrap_or(0.0)),
    );
}
