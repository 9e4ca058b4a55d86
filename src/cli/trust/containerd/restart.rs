//! containerd reads config.toml only when it starts (hosts.toml, by contrast, on every pull):
//! after wharf changed config.toml, containerd is restarted when systemd runs it here, and
//! otherwise the one line printed says exactly what to do.

use crate::cli::trust::plan::{on_path, Ctx};
use std::path::Path;

/// What happened, or what the user must do, in one line; Err when a restart was tried and failed.
pub fn after_config_change(ctx: &Ctx) -> Result<String, String> {
    let how = "systemctl restart containerd";
    if ctx.dry_run {
        return Ok(format!("would restart containerd ({how}): it reads config.toml only at start"));
    }
    if ctx.root != Path::new("/") {
        return Ok(format!(
            "restart containerd on the system under {} for the CRI to read config_path: {how}",
            ctx.root.display()
        ));
    }
    if Path::new("/run/systemd/system").is_dir() && on_path("systemctl") {
        if !unit_active("containerd") {
            return Ok("containerd is not running: it reads the new config_path when it starts".into());
        }
        return match std::process::Command::new("systemctl").args(["restart", "containerd"]).output() {
            Ok(o) if o.status.success() => Ok(format!("restarted containerd ({how}): the CRI now reads certs.d")),
            Ok(o) => Err(format!(
                "{how} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("running {how}: {e}")),
        };
    }
    Ok(match running_containerd() {
        Some(pid) => format!(
            "restart containerd (PID {pid}; no systemd here) for the CRI to read config_path: stop it and start it again as it was started"
        ),
        None => "containerd is not running: it reads the new config_path when it starts".into(),
    })
}

fn unit_active(unit: &str) -> bool {
    std::process::Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .status()
        .is_ok_and(|s| s.success())
}

/// The PID of a process named `containerd` (not a shim), if one runs.
fn running_containerd() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "containerd").then_some(pid)
    })
}
