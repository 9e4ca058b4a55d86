//! `wharf garbage-collect [--dry-run] [--delete-untagged] CONFIG`, registry:2's command line:
//! through the server holding the storage root when one runs (`control`), else on the store
//! itself with the root lock held. Prints registry:2's lines (what is eligible for deletion)
//! and a summary with the bytes freed.

use super::control::{self, Via};
use crate::config;
use crate::registry::{GcOptions, GcReport, Registry};
use anyhow::Context;
use axum::http::Method;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// registry:2 configuration file (default: $REGISTRY_CONFIGURATION_PATH, else built-in defaults).
    pub config: Option<PathBuf>,
    /// Only report what would be deleted.
    #[arg(short = 'd', long = "dry-run")]
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (never the children of a tagged index).
    #[arg(short = 'm', long = "delete-untagged")]
    pub delete_untagged: bool,
}

pub fn run(args: GcArgs) -> anyhow::Result<()> {
    let loaded = config::load(args.config.as_deref())?;
    for w in &loaded.warnings {
        eprintln!("wharf: warning: {w}");
    }
    let cfg = loaded.config;
    let opts = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        delay: cfg.storage.maintenance.gc.delay,
    };
    if cfg.storage.object().is_some() {
        let report = on_object_storage(&cfg, opts)?;
        print_report(&report, Via::Bucket);
        return Ok(());
    }
    let target = format!("/v2/_wharf/gc?dryrun={}&deleteuntagged={}", opts.dry_run, opts.delete_untagged);
    let (report, via) = control::act(&cfg, Method::POST, &target, async |registry| {
        Ok(registry.collect_garbage(opts).await?)
    })?;
    print_report(&report, via);
    Ok(())
}

/// A collection on the configured bucket from here: replicas serving it need not stop, they
/// rescue what they use from it (`registry::gc::shared`); one running elsewhere is refused.
fn on_object_storage(cfg: &config::Config, opts: GcOptions) -> anyhow::Result<GcReport> {
    let Some(settings) = cfg.storage.object() else {
        anyhow::bail!("no object storage is configured (storage.s3 or storage.azure)")
    };
    let runtime = control::command_runtime()?;
    runtime.block_on(async {
        let store = crate::store::object_storage(settings, cfg.storage.redirect_disabled())
            .await
            .with_context(|| format!("cannot use {} (storage.{})", settings.shown(), settings.key()))?;
        let registry = Registry::new(store, control::registry_options(cfg)?);
        Ok(registry.collect_garbage(opts).await?)
    })
}

fn print_report(r: &GcReport, via: Via) {
    if let Some(retention) = &r.retention {
        let verb = if retention.dryrun { "would delete" } else { "deleted" };
        for t in &retention.tags {
            println!("{}: retention {verb} tag {} ({}): {}", t.repository, t.tag, t.digest, t.reason);
        }
        for m in &retention.manifests {
            println!("{}: retention {verb} manifest {}: {}", m.repository, m.digest, m.reason);
        }
    }
    for m in &r.manifests_deleted {
        println!("{}: manifest eligible for deletion: {}", m.repository, m.digest);
    }
    for b in &r.blobs_deleted {
        println!("blob eligible for deletion: {} ({} bytes)", b.digest, b.size);
    }
    for l in &r.layer_links_deleted {
        println!("{}: layer link eligible for deletion: {}", l.repository, l.digest);
    }
    println!();
    println!(
        "{} blobs marked, {} blobs and {} manifests eligible for deletion",
        r.marked,
        r.blobs_deleted.len(),
        r.manifests_deleted.len()
    );
    let by = match via {
        Via::Server => "by the running server",
        Via::Local => "with the storage root locked (no server running)",
        Via::Bucket => "on the shared bucket, beside the replicas serving it",
    };
    let verb = if r.dryrun { "would free" } else { "freed" };
    println!(
        "wharf: garbage collection{} {by}: {verb} {} bytes in {:.3}s ({} unreferenced kept: younger than the delay or in use)",
        if r.dryrun { " (dry run)" } else { "" },
        r.bytes_freed,
        r.duration_seconds,
        r.spared
    );
}
