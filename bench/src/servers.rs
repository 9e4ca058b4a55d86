//! Starting the two registries with the same registry:2 configuration on a free loopback port,
//! stopping them by PID, and reading their CPU time and memory from /proc.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Wharf,
    Distribution,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wharf => "wharf",
            Kind::Distribution => "distribution",
        }
    }
}

pub struct Server {
    pub addr: String,
    child: Child,
    log: PathBuf,
}

pub struct Auth<'a> {
    pub htpasswd: &'a Path,
}

/// A registry binary run with only the configuration it is given: `REGISTRY_*` variables of
/// the bench's own environment would override it.
pub fn registry_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// The storage driver both servers use in the filesystem sections: the root directory itself.
pub fn filesystem_driver(root: &Path) -> String {
    format!("  filesystem:\n    rootdirectory: {}\n", root.display())
}

/// The registry:2 configuration both servers read: `driver` (the lines of `storage:` naming the
/// driver and its parameters), deletes on, no upload purging during the run, the in-memory blob
/// descriptor cache registry:2 ships enabled. `metrics`: the address of registry:2's debug
/// server, with its Prometheus endpoint on.
fn config_yaml(driver: &str, addr: &str, auth: Option<&Auth>, metrics: Option<&str>) -> String {
    let mut c = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n{driver}  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: wharf-bench-secret\n"
    );
    if let Some(debug) = metrics {
        c.push_str(&format!("  debug:\n    addr: {debug}\n    prometheus:\n      enabled: true\n"));
    }
    if let Some(a) = auth {
        c.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: bench\n    path: {}\n",
            a.htpasswd.display()
        ));
    }
    c
}

impl Server {
    pub fn start(kind: Kind, bin: &Path, root: &Path, work: &Path, auth: Option<&Auth>) -> Server {
        let suffix = if auth.is_some() { "-auth" } else { "" };
        Self::start_configured(kind, bin, &filesystem_driver(root), work, auth, None, suffix, &[])
    }

    /// A server whose debug server at `metrics` (HOST:PORT) serves `/metrics`.
    pub fn start_with_metrics(kind: Kind, bin: &Path, root: &Path, work: &Path, metrics: &str) -> Server {
        Self::start_configured(kind, bin, &filesystem_driver(root), work, None, Some(metrics), "-metrics", &[])
    }

    /// A server on another storage `driver` (see [`config_yaml`]), its environment without
    /// the variables `env_remove` names.
    pub fn start_on_driver(kind: Kind, bin: &Path, driver: &str, work: &Path, env_remove: &[&str]) -> Server {
        Self::start_configured(kind, bin, driver, work, None, None, "-driver", env_remove)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_configured(
        kind: Kind,
        bin: &Path,
        driver: &str,
        work: &Path,
        auth: Option<&Auth>,
        metrics: Option<&str>,
        suffix: &str,
        env_remove: &[&str],
    ) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let tag = format!("{}-{}{suffix}", kind.name(), port);
        let config = work.join(format!("{tag}.yml"));
        std::fs::write(&config, config_yaml(driver, &addr, auth, metrics)).expect("write config");
        Self::serve(kind, bin, &config, addr, work.join(format!("{tag}.log")), env_remove)
    }

    /// `bin serve CONFIG`, its output in `log`, once it listens on `addr` (what CONFIG says), its
    /// environment without the variables `env_remove` names.
    pub fn serve(kind: Kind, bin: &Path, config: &Path, addr: String, log: PathBuf, env_remove: &[&str]) -> Server {
        let out = File::create(&log).expect("server log");
        let mut cmd = registry_command(bin);
        cmd.arg("serve").arg(config).stdout(out.try_clone().expect("dup log")).stderr(out);
        for k in env_remove {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let server = Server { addr, child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&server.addr).is_err() {
            if Instant::now() > deadline {
                panic!("{} did not listen on {}; log:\n{}", kind.name(), server.addr, server.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User + system CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's RSS every few milliseconds on a thread until stopped; returns the peak.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(proc_status_kib(pid, "VmRSS:"))
        });
        RssSampler {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap_or(0)).unwrap_or(0)
    }
}
