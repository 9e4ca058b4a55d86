//! Crash safety on object storage: two `wharf serve` replicas on one bucket (a one-node Garage:
//! what is under test is wharf's use of the bucket, not Garage's replication, which
//! tests/s3_garage.rs covers with three nodes), concurrent pushers on each replica and across
//! both (an upload begun on one continued on the other), one replica killed with SIGKILL at a
//! random moment while the other goes on taking pushes, restarted, the other killed the next
//! round. After every restart each acknowledged (201) blob, manifest and tag move must be served
//! by both replicas with bytes equal to its digest; at the end every tag either lists must point
//! at a complete manifest.

mod common;

use common::crash::{kill, Checker, Client, Findings, Ledger, SharedLedger};
use common::garage::Garage;
use common::Wharf;
use rand::Rng;
use reqwest::Url;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rounds run by default (and in CI), each killing one replica, A and B in turn;
/// `WHARF_S3_CRASH_ROUNDS` changes it for local digging.
const DEFAULT_ROUNDS: usize = 6;
/// Pushers per group: on A only, on B only, and alternating between both.
const CLIENTS_PER_GROUP: usize = 2;
/// The whole test gives up (and fails) past this, so a hang cannot eat the CI budget.
const TIME_LIMIT: Duration = Duration::from_secs(600);
/// The replicas' root directory in the bucket.
const ROOT: &str = "/crash";
const REPLICA_NAMES: [&str; 2] = ["A", "B"];

/// A streams blobs itself, B redirects them to presigned URLs (the checker follows), so both
/// ways of serving what the kills left are checked.
fn settings(replica: usize) -> &'static [(&'static str, &'static str)] {
    match replica {
        0 => &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")],
        _ => &[],
    }
}

fn start(g: &Garage, replica: usize) -> Wharf {
    g.serve(0, ROOT, settings(replica))
}

/// Pushers for this round: each group's clients talk to its servers.
fn spawn_pushers(replicas: &[Wharf; 2], ledger: &SharedLedger, round: usize, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let bases: Vec<Url> = replicas.iter().map(|w| Url::parse(&w.url).unwrap()).collect();
    let groups = [vec![bases[0].clone()], vec![bases[1].clone()], bases.clone()];
    let mut handles = Vec::new();
    for (g, servers) in groups.iter().enumerate() {
        for k in 0..CLIENTS_PER_GROUP {
            let id = format!("{}-r{round}", g * CLIENTS_PER_GROUP + k);
            let client = Client::new(http.clone(), servers.clone(), ledger.clone(), id);
            handles.push(tokio::spawn(client.run(stop.clone())));
        }
    }
    handles
}

/// Checks what `ledger` acknowledged from `from` on, and every moved tag, on both replicas.
async fn check_both(replicas: &[Wharf; 2], ledger: &SharedLedger, from: (usize, usize), f: &mut Findings) {
    let ((blobs, manifests), moves) = {
        let l = ledger.lock().unwrap();
        (l.since(from), l.moves.clone())
    };
    for w in replicas {
        let checker = Checker::new(&w.url);
        checker.ledger(&blobs, &manifests, f).await;
        checker.moves(&moves, f).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_sigkill_of_either_replica_on_one_bucket() {
    let Some(g) = Garage::single() else { return };
    let rounds: usize = std::env::var("WHARF_S3_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let began = Instant::now();
    let ledger: SharedLedger = Arc::new(std::sync::Mutex::new(Ledger::default()));
    let mut findings = Findings::default();
    let mut checked = (0, 0);
    // Acknowledgements the survivor gave while the victim was down or restarting.
    let mut acked_during_outage = 0;
    let mut replicas = [start(&g, 0), start(&g, 1)];
    for round in 0..rounds {
        assert!(began.elapsed() < TIME_LIMIT, "crash test ran past {TIME_LIMIT:?} at round {round}");
        let victim = round % 2;
        let stop = Arc::new(AtomicBool::new(false));
        let pushers = spawn_pushers(&replicas, &ledger, round, &stop);
        let delay = rand::thread_rng().gen_range(200..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill(&mut replicas[victim]);
        let at_kill = ledger.lock().unwrap().counts();
        // The survivor's pushers go on while the victim starts again on the same bucket.
        replicas[victim] = tokio::task::block_in_place(|| start(&g, victim));
        stop.store(true, Ordering::Relaxed);
        for p in pushers {
            p.await.expect("pusher task panicked (a server answer was wrong)");
        }
        let now = ledger.lock().unwrap().counts();
        acked_during_outage += now.0 + now.1 - at_kill.0 - at_kill.1;
        // What this round acknowledged must be there now, through either replica.
        check_both(&replicas, &ledger, checked, &mut findings).await;
        checked = now;
        assert!(
            findings.is_clean(),
            "round {round} (killed {}): lost {:?} corrupt {:?}",
            REPLICA_NAMES[victim],
            findings.lost,
            findings.corrupt
        );
    }

    // Both replicas run undisturbed: everything acknowledged, every tag either one lists.
    check_both(&replicas, &ledger, (0, 0), &mut findings).await;
    let mut tags = Vec::new();
    for w in &replicas {
        let checker = Checker::new(&w.url);
        let repos = checker.catalog().await;
        assert!(!repos.is_empty(), "{} lists no repository", w.url);
        tags.push(checker.every_tag(&repos, &mut findings).await);
    }
    let (blobs, manifests, moves_acked) = {
        let l = ledger.lock().unwrap();
        let moved = l.manifests.iter().filter(|m| m.tag.is_none()).count();
        (l.blobs.len(), l.manifests.len(), moved)
    };
    let acknowledged = blobs + manifests;
    println!(
        "s3 crash: rounds {rounds} (SIGKILL of A and B in turn), {acknowledged} acknowledged (blobs {blobs}, manifests {manifests} \
         of which {moves_acked} tag moves; {acked_during_outage} while a replica was down or restarting), {} lost, {} corrupt, \
         checked on both replicas, tags listed and resolved {tags:?}, elapsed {:.1}s",
        findings.lost.len(),
        findings.corrupt.len(),
        began.elapsed().as_secs_f64()
    );
    assert!(findings.lost.is_empty(), "acknowledged pushes lost: {:?}", findings.lost);
    assert!(findings.corrupt.is_empty(), "corrupt content: {:?}", findings.corrupt);
    assert!(blobs > rounds * 4, "too few blobs were acknowledged to mean anything: {blobs}");
    assert!(manifests > rounds / 2, "too few manifests were acknowledged: {manifests}");
    assert!(moves_acked > 0, "no tag move was acknowledged");
    assert!(
        acked_during_outage > 0,
        "the survivor acknowledged nothing while the other replica was down"
    );
    assert_eq!(tags[0], tags[1], "the replicas list different tags");
}
