//! Shared test harness: starts the real `wharf` binary on a free loopback port with its own data
//! directory, and stops it (by PID) when dropped.
#![allow(dead_code)]

pub mod api;
pub mod azurite;
pub mod crash;
pub mod cri;
pub mod distribution;
pub mod dockerd;
pub mod garage;
pub mod images;
pub mod netns;
pub mod recorder;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Wharf {
    pub child: Option<Child>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// `http://127.0.0.1:PORT` (or `https://` when the server serves TLS)
    pub url: String,
    /// Every line the server printed on stdout so far (the one-time admin password is there).
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Every line the server printed on stderr so far (warnings and the log).
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The storage root (`--root`); kept alive for the lifetime of the server unless `keep_root`.
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn wharf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wharf")
}

/// True when running under CI, where tests needing external tools must run, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Returns false (and prints why) when `tool` is missing outside CI; panics in CI.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if in_ci() {
            panic!("{tool} is required in CI but was not found on PATH");
        }
        eprintln!("SKIP: {tool} not installed (run the README's test command to install it)");
    }
    found
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Wharf {
    /// Starts `wharf serve` with a fresh temporary root.
    pub fn start() -> Wharf {
        Self::start_with(&[], &[])
    }

    /// Starts `wharf serve --addr 127.0.0.1:0 --root <tmp>` plus `extra_args`, with `env` set.
    pub fn start_with(extra_args: &[&str], env: &[(&str, &str)]) -> Wharf {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("data");
        let mut w = Self::start_on_root(&root, extra_args, env);
        w._tmp = Some(tmp);
        w
    }

    /// Starts a server on an existing root directory (not deleted on drop).
    pub fn start_on_root(root: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Wharf {
        Self::launch(&[], "127.0.0.1:0", root, extra_args, env)
    }

    /// Starts `prefix... wharf serve --addr <addr> --root <root> extra_args...`; `prefix` runs it
    /// elsewhere, e.g. `ip netns exec NS` for a registry on a non-loopback test address.
    pub fn launch(prefix: &[&str], addr: &str, root: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Wharf {
        let root_arg = root.display().to_string();
        let mut args = vec!["--addr", addr, "--root", &root_arg];
        args.extend_from_slice(extra_args);
        let mut w = Self::launch_args(prefix, &args, env);
        w.root = root.to_path_buf();
        w
    }

    /// Starts `prefix... wharf serve args...` with `env` added to the environment (the test
    /// runner's own `REGISTRY_*` and `WHARF_*` variables removed) and waits for its listening
    /// line; `root` is left empty for the caller to fill in when it matters.
    pub fn launch_args(prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Wharf {
        match Self::try_launch_args(prefix, args, env) {
            Ok(w) => w,
            Err(why) => panic!("{why}"),
        }
    }

    /// As `launch_args`, but a server that exits or never listens is an `Err` with its output.
    pub fn try_launch_args(prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Result<Wharf, String> {
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(wharf_bin());
                c
            }
            None => Command::new(wharf_bin()),
        };
        cmd.arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("REGISTRY_") || k.starts_with("WHARF_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wharf");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let err_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let err_seen = err_lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[wharf stderr] {line}");
                err_seen.lock().unwrap().push(line);
            }
        });
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("[wharf stdout] {line}");
                seen.lock().unwrap().push(line.clone());
                for scheme in ["http", "https"] {
                    if let Some(rest) = line.split(&format!("listening on {scheme}://")).nth(1) {
                        let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send((scheme, addr));
                        }
                    }
                }
            }
        });
        let (scheme, addr) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "wharf did not print its listening address within 30s ({status:?}); stdout:\n{}\nstderr:\n{}",
                    lines.lock().unwrap().join("\n"),
                    err_lines.lock().unwrap().join("\n")
                ));
            }
        };
        let w = Wharf {
            child: Some(child),
            url: format!("{scheme}://{addr}"),
            addr,
            root: PathBuf::new(),
            stdout: lines,
            stderr: err_lines,
            _tmp: None,
        };
        if prefix.is_empty() {
            w.wait_ready();
        }
        Ok(w)
    }

    /// Everything the server printed on stderr so far, one string.
    pub fn errors(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// All server output so far, one string.
    pub fn output(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Sends the server SIGHUP (reload the configuration).
    pub fn hangup(&self) {
        // SAFETY: kill(2) with the PID of the child this harness started and a valid signal.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) }, 0, "SIGHUP to wharf");
    }

    /// Waits (up to 20 s) until the server printed `line` at least `n` times.
    pub fn wait_for_output(&self, line: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.output().matches(line).count() < n {
            assert!(Instant::now() < deadline, "no {line:?} after 20s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 20 s) until the server printed `line` on stderr at least `n` times: stderr
    /// is read on a thread of its own, so what was printed before the listening line on stdout
    /// may not be in [`Wharf::errors`] yet when the server is up.
    pub fn wait_for_errors(&self, line: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.errors().matches(line).count() < n {
            assert!(Instant::now() < deadline, "no {line:?} on stderr after 20s:\n{}", self.errors());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the start-up log line that follows every start-up warning is on stderr.
    pub fn wait_for_start_messages(&self) {
        self.wait_for_errors("serving addr=", 1);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("wharf at {} never accepted connections", self.addr);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Resident set size of the server process in KiB, from /proc.
    /// The most memory the server has used so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (for servers that cannot be told to pick one).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// sha256 digest string of bytes (`sha256:<hex>`), for comparing against what clients report.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Writes an htpasswd file for `users` (user, password), bcrypt cost 4 so tests stay fast.
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).expect("bcrypt")))
        .collect();
    std::fs::write(path, lines).expect("write htpasswd");
}

/// The rest of the first line of `out` after `marker`, trimmed: a value `wharf serve` printed
/// (the admin password, the CA fingerprint, a client command). Panics, showing `out`, without it.
pub fn printed_after(out: &str, marker: &str) -> String {
    out.lines()
        .find_map(|l| l.split(marker).nth(1))
        .unwrap_or_else(|| panic!("wharf serve did not print {marker:?}:\n{out}"))
        .trim()
        .to_string()
}

/// Every regular file under `root`, sorted, as absolute paths on the system `root` holds
/// (`/etc/docker/certs.d/...`); none when `root` does not exist.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
