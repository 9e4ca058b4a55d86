//! `--script`: the same installation as a POSIX sh script, for hosts without wharf (balena
//! devices, cluster nodes, Macs): `wharf trust HOST --fingerprint FP --script | ssh root@node sh`.
//! `wharf serve` hands out the same script at `TRUST_SCRIPT_PATH` for its one-liner.
//!
//! The CA travels inside the script and the script checks its fingerprint before installing
//! anything (openssl, or sha256sum of the DER where openssl is missing), so a damaged copy
//! installs nothing. `ROOT=/mnt/image sh script` installs under another root filesystem.
//!
//! The script looks at the system it runs on (or the one under ROOT) and writes what that
//! system reads: on macOS the System keychain (Docker Desktop reads it), on balenaOS only
//! `/etc/docker/certs.d` (balenaEngine reads it, and it is kept on the state partition while
//! the rest of the root filesystem is read-only), elsewhere every runtime's certs.d and the
//! system store. It sticks to what busybox `sh` and its applets offer.

use super::containerd;
use super::plan::{FileSpec, Plan, Runtime};
use super::target::Target;
use std::fmt::Write;

/// Single-quotes `s` for sh.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const PRELUDE: &str = r#"set -eu
umask 022
ROOT="${ROOT:-}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
changed=0

# same A B: whether files A and B hold the same bytes (the "x" keeps trailing newlines).
same() { [ "$(cat "$1"; echo x)" = "$(cat "$2"; echo x)" ]; }

# put PATH SOURCE [MARKER]: installs SOURCE as $ROOT/PATH, mode 0644, atomically; leaves a file
# without MARKER alone (someone else wrote it). Sets changed=1 when it wrote something.
put() {
  dest="$ROOT$1"
  changed=0
  if [ -f "$dest" ] && same "$dest" "$2"; then
    chmod 644 "$dest"
    echo "unchanged $dest"
    return 0
  fi
  if [ -f "$dest" ] && [ -n "${3:-}" ] && ! grep -qF "$3" "$dest"; then
    echo "left alone (not written by wharf trust) $dest"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  cp "$2" "$dest.wharf-tmp"
  chmod 644 "$dest.wharf-tmp"
  mv -f "$dest.wharf-tmp" "$dest"
  echo "wrote $dest"
  changed=1
}

# drop PATH [MARKER] [OWN_DIR]: removes $ROOT/PATH (unless it lacks MARKER), then its
# directory when OWN_DIR is 1 and it is empty. Sets changed=1 when it removed something.
drop() {
  dest="$ROOT$1"
  changed=0
  [ -f "$dest" ] || return 0
  if [ -n "${2:-}" ] && ! grep -qF "$2" "$dest"; then
    echo "left alone (not written by wharf trust) $dest"
    return 0
  fi
  rm -f "$dest"
  echo "removed $dest"
  changed=1
  if [ "${3:-0}" = 1 ]; then rmdir "$(dirname "$dest")" 2>/dev/null || true; fi
}

# found PROGRAM: whether PROGRAM is installed on the target system.
found() {
  for d in /usr/bin /usr/sbin /usr/local/bin /bin /sbin; do
    [ -x "$ROOT$d/$1" ] && return 0
  done
  [ -z "$ROOT" ] && command -v "$1" >/dev/null 2>&1
}

# seen LABEL PROGRAM...: says whether the runtime that reads LABEL's files is installed.
seen() {
  label=$1
  shift
  for p in "$@"; do
    if found "$p"; then echo "$label: $p found"; return 0; fi
  done
  echo "$label: $* not found (the CA is in place for when it is installed)"
}

# refresh COMMAND: rebuilds the system bundle on this system; under ROOT only says so.
refresh() {
  if [ -z "$ROOT" ] && command -v "$1" >/dev/null 2>&1; then
    "$1" >/dev/null
    echo "ran $1"
  else
    echo "run inside the target system: $1"
  fi
}
"#;

const CHECK: &str = r#"
fingerprint() {
  if command -v openssl >/dev/null 2>&1; then
    openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/^[^=]*=//'
  else
    sed '/^-----/d' "$1" | base64 -d | sha256sum | cut -d ' ' -f 1
  fi
}
normal() { tr -d ': \n' | tr 'abcdef' 'ABCDEF'; }
got=$(fingerprint "$work/ca.crt" | normal)
want=$(printf '%s' "$FINGERPRINT" | normal)
if [ "$got" != "$want" ]; then
  echo "wharf trust: the CA in this script does not have fingerprint $FINGERPRINT; nothing installed" >&2
  exit 1
fi
"#;

/// Which system the script is on (or ROOT holds): `macos`, `balena` or `linux`.
const DETECT: &str = r#"
os=linux
if [ -f "$ROOT/System/Library/CoreServices/SystemVersion.plist" ] || { [ -z "$ROOT" ] && [ "$(uname -s 2>/dev/null)" = Darwin ]; }; then
  os=macos
elif grep -Eq '^ID="?(balena-os|resin-os)"?$' "$ROOT/etc/os-release" 2>/dev/null; then
  os=balena
fi
"#;

/// `keychain FILE`: trusts FILE for TLS in the System keychain on this Mac; under ROOT, or where
/// `security` cannot do it (it may need someone at the Mac to confirm), prints the command.
const KEYCHAIN: &str = r#"
keychain() {
  cmd="security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain '$1'"
  if [ -z "$ROOT" ] && command -v security >/dev/null 2>&1; then
    if security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "$1"; then
      echo "macOS: added to the System keychain: $1"
      echo "macOS: restart Docker Desktop for it to use the CA"
    else
      echo "macOS: security could not change the System keychain; run in a Terminal on the Mac: sudo $cmd" >&2
      exit 1
    fi
  else
    echo "macOS: run on the Mac: sudo $cmd"
    echo "macOS: then restart Docker Desktop"
  fi
}
"#;

/// Where the CA goes on a Mac before it enters the keychain (kept for `--remove` and reuse).
fn macos_ca_path(target: &Target) -> String {
    format!("/Library/Application Support/wharf/{}.crt", target.file_stem())
}

fn header(out: &mut String, target: &Target, action: &str) {
    let name = target.name();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(out, "# {action} the CA of the container registry {name}");
    let _ = writeln!(
        out,
        "# for Docker, containerd, podman/CRI-O/skopeo/buildah and the system trust store"
    );
    let _ = writeln!(out, "# (on macOS the System keychain, on balenaOS balenaEngine's certs.d).");
    let _ = writeln!(out, "# Made by `wharf trust {name} --script`. Run it as root: sh SCRIPT");
    let _ = writeln!(out, "# ROOT=/path sh SCRIPT works on another root filesystem instead of this one.");
}

/// `default_root`: `--root`, baked in as ROOT's default.
pub fn install(target: &Target, plan: &Plan, ca_pem: &str, fingerprint: &str, default_root: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, target, "Trust");
    out.push_str(&PRELUDE.replace(r#"ROOT="${ROOT:-}""#, &root_line(default_root)));
    out.push_str(KEYCHAIN);
    let _ = writeln!(out, "FINGERPRINT={}", q(fingerprint));
    heredoc(&mut out, "$work/ca.crt", ca_pem);
    out.push_str(CHECK);
    out.push_str(DETECT);
    out.push_str("case \"$os\" in\nmacos)\n");
    macos_steps(&mut out, target, plan);
    out.push_str(";;\nbalena)\n");
    balena_steps(&mut out, plan);
    out.push_str(";;\n*)\n");
    linux_steps(&mut out, plan);
    out.push_str(";;\nesac\n");
    let _ = writeln!(out, "echo \"done: test with  docker pull {}/IMAGE\"", target.name());
    out
}

/// Docker Desktop, and everything else on a Mac, trusts what the System keychain trusts.
fn macos_steps(out: &mut String, target: &Target, plan: &Plan) {
    if !plan.files.iter().any(|f| f.runtime == Runtime::Docker) && plan.stores.is_empty() {
        out.push_str("echo \"macOS: nothing to do for the runtimes chosen (docker or system trusts the keychain)\"\n");
        return;
    }
    let file = macos_ca_path(target);
    let _ = writeln!(out, "put {} \"$work/ca.crt\"", q(&file));
    let _ = writeln!(out, "keychain {}", q(&file));
}

/// balenaEngine reads /etc/docker/certs.d on every pull; /etc/docker is kept on the state
/// partition across reboots and host OS updates, while the rest of the root filesystem is
/// read-only (so no other runtime's directory or system store can be written, nor is needed).
fn balena_steps(out: &mut String, plan: &Plan) {
    let docker: Vec<&FileSpec> = plan.files.iter().filter(|f| f.runtime == Runtime::Docker).collect();
    if docker.is_empty() {
        out.push_str("echo \"balenaOS: nothing to do: only balenaEngine (--runtimes docker) reads a registry CA there\"\n");
        return;
    }
    for spec in docker {
        let _ = writeln!(out, "put {} \"$work/ca.crt\"", q(&path(spec)));
    }
    out.push_str(
        "echo \"balenaOS: balenaEngine reads /etc/docker/certs.d on each pull (no restart needed; it persists on the state partition)\"\n",
    );
    out.push_str("echo \"balenaOS: the read-only host OS keeps its system CA store; balenaEngine does not need it\"\n");
}

fn linux_steps(out: &mut String, plan: &Plan) {
    let mut noted = Vec::new();
    for (n, spec) in plan.files.iter().enumerate() {
        let source = match spec.marker {
            None => "\"$work/ca.crt\"".to_string(),
            Some(_) => {
                let file = format!("$work/file{n}");
                heredoc(out, &file, &spec.content);
                format!("\"{file}\"")
            }
        };
        let marker = spec.marker.map(|m| format!(" {}", q(m))).unwrap_or_default();
        let _ = writeln!(out, "put {} {source}{marker}", q(&path(spec)));
        if !noted.contains(&spec.runtime) {
            noted.push(spec.runtime);
            let _ = writeln!(out, "seen {} {}", spec.runtime.label(), programs(spec.runtime));
        }
    }
    if !plan.stores.is_empty() {
        out.push_str("store=''\n");
        for (store, spec) in &plan.stores {
            let _ = writeln!(out, "if [ -d \"$ROOT\"{} ]; then", q(store.anchors));
            let _ = writeln!(out, "  put {} \"$work/ca.crt\"", q(&path(spec)));
            let _ = writeln!(out, "  if [ \"$changed\" = 1 ]; then refresh {}; fi", store.update);
            let _ = writeln!(out, "  store=1");
            let _ = writeln!(out, "fi");
        }
        out.push_str("[ -n \"$store\" ] || echo \"no system trust store found (skipped)\"\n");
    }
    if plan.files.iter().any(|f| f.marker.is_some()) {
        containerd_note(out);
    }
}

/// The programs whose presence shows a runtime reading these files is installed.
fn programs(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Docker => "dockerd",
        Runtime::Containerd => "containerd",
        Runtime::Containers => "podman crio skopeo buildah",
        Runtime::System => "update-ca-certificates update-ca-trust",
    }
}

pub fn remove(target: &Target, plan: &Plan, default_root: Option<&str>) -> String {
    let mut out = String::new();
    header(&mut out, target, "Stop trusting");
    out.push_str(&PRELUDE.replace(r#"ROOT="${ROOT:-}""#, &root_line(default_root)));
    out.push('\n');
    for spec in &plan.files {
        let marker = q(spec.marker.unwrap_or(""));
        let _ = writeln!(out, "drop {} {marker} {}", q(&path(spec)), u8::from(spec.own_dir));
    }
    for (store, spec) in &plan.stores {
        let _ = writeln!(out, "drop {}", q(&path(spec)));
        let _ = writeln!(out, "if [ \"$changed\" = 1 ]; then refresh {}; fi", store.update);
    }
    // A Mac's copy leaves the keychain first: `security` needs the certificate to find it.
    let mac = q(&macos_ca_path(target));
    let _ = writeln!(out, "if [ -f \"$ROOT\"{mac} ]; then");
    let _ = writeln!(out, "  if [ -z \"$ROOT\" ] && command -v security >/dev/null 2>&1; then");
    let _ = writeln!(out, "    security remove-trusted-cert -d {mac} || true");
    let _ = writeln!(out, "  else");
    let _ = writeln!(
        out,
        "    echo \"macOS: run on the Mac: sudo security remove-trusted-cert -d \"{mac}"
    );
    let _ = writeln!(out, "  fi");
    let _ = writeln!(out, "  drop {mac}");
    let _ = writeln!(out, "fi");
    out
}

fn root_line(default_root: Option<&str>) -> String {
    format!(
        "ROOT=\"${{ROOT:-{}}}\"",
        default_root.unwrap_or("").trim_end_matches('/').replace(['"', '$', '`', '\\'], "")
    )
}

fn path(spec: &FileSpec) -> String {
    spec.path.display().to_string()
}

fn heredoc(out: &mut String, file: &str, content: &str) {
    let _ = writeln!(out, "cat > \"{file}\" <<'WHARF_END_OF_FILE'");
    out.push_str(content);
    if !content.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("WHARF_END_OF_FILE\n");
}

/// containerd's CRI only reads certs.d when config.toml points at it; the script can only look.
fn containerd_note(out: &mut String) {
    let dir = containerd::CERTS_D;
    let _ = writeln!(out, "cfg=\"$ROOT{}\"", containerd::CONFIG);
    let _ = writeln!(
        out,
        "if [ -f \"$cfg\" ] && ! grep -Eq \"^[[:space:]]*config_path[[:space:]]*=[[:space:]]*[\\\"'][^\\\"']*{dir}\" \"$cfg\"; then"
    );
    let _ = writeln!(
        out,
        "  echo \"containerd: {} does not set config_path = \\\"{dir}\\\": Kubernetes (CRI) will not use this CA until it does (then restart containerd)\"",
        containerd::CONFIG
    );
    let _ = writeln!(out, "fi");
    let _ = writeln!(out, "echo \"containerd: ctr needs --hosts-dir {dir}\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            q("/etc/docker/certs.d/[::1]:5000/ca.crt"),
            "'/etc/docker/certs.d/[::1]:5000/ca.crt'"
        );
        assert_eq!(q("it's"), r"'it'\''s'");
        assert_eq!(root_line(Some("/mnt/x/")), "ROOT=\"${ROOT:-/mnt/x}\"");
        assert_eq!(root_line(None), "ROOT=\"${ROOT:-}\"");
    }
}
