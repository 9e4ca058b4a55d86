//! `--login USER`: what `docker login` does, once the CA is trusted: check the password
//! against the registry, then store it in the Docker client's config.json, which podman,
//! skopeo, buildah, crane and oras read too.

use super::ca::Ca;
use super::fetch;
use super::plan::{self, Outcome};
use super::target::Target;
use anyhow::{anyhow, bail, Context};
use base64::Engine;
use serde_json::{Map, Value};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The Docker client configuration file of the user the login is for.
pub struct DockerConfig {
    /// Absolute path on the target system (before `--root`).
    pub path: PathBuf,
    /// Under sudo: the invoking user, who must own the file to use it.
    pub owner: Option<(u32, u32)>,
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` of the user who ran sudo (the
/// one who will run docker), else of the current user.
pub fn docker_config() -> anyhow::Result<DockerConfig> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(DockerConfig {
            path: PathBuf::from(dir).join("config.json"),
            owner: None,
        });
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        if let Some((home, uid, gid)) = std::env::var("SUDO_USER").ok().filter(|u| u != "root").and_then(|u| user_home(&u)) {
            return Ok(DockerConfig {
                path: home.join(".docker/config.json"),
                owner: Some((uid, gid)),
            });
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set: cannot find ~/.docker/config.json"))?;
    Ok(DockerConfig {
        path: PathBuf::from(home).join(".docker/config.json"),
        owner: None,
    })
}

/// The home directory, uid and gid of `user` in the password database. getpwnam_r, not
/// getpwnam: the entry lands in a buffer of this call's own, so a lookup on another thread
/// (wharf trust runs on a multi-threaded runtime) cannot overwrite it while it is read.
fn user_home(user: &str) -> Option<(PathBuf, u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    let mut size = 1024;
    // Grows when the entry does not fit, up to 1 MiB: no real entry is larger.
    while size <= 1 << 20 {
        let mut buf: Vec<libc::c_char> = vec![0; size];
        // SAFETY: passwd is plain data (integers and pointers) that getpwnam_r fills in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated, `entry` and `found` are writable, and `buf` is
        // writable for `buf.len()` bytes; the strings of the entry are written into `buf`.
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 if found.is_null() || entry.pw_dir.is_null() => return None,
            0 => {
                // SAFETY: the call succeeded, so pw_dir points to a NUL-terminated string in
                // `buf`, which lives until the end of this block.
                let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
                return Some((PathBuf::from(dir.to_str().ok()?), entry.pw_uid, entry.pw_gid));
            }
            libc::ERANGE => size *= 4,
            _ => return None,
        }
    }
    None
}

/// Reads config.json (an empty object when missing). With `check_helpers`, refuses files that
/// hand credentials to a helper: Docker would ask the helper and ignore what is written here.
pub fn load(real: &Path, names: &[String], check_helpers: bool) -> anyhow::Result<Map<String, Value>> {
    let doc = match std::fs::read(real) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => bail!("{} is not a JSON object; fix it or move it away, then run again", real.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(anyhow!("reading {}: {e}", real.display())),
    };
    let helper = names
        .iter()
        .find_map(|n| doc.get("credHelpers").and_then(|h| h.get(n)).and_then(Value::as_str))
        .or_else(|| doc.get("credsStore").and_then(Value::as_str));
    if let Some(helper) = helper.filter(|h| check_helpers && !h.is_empty()) {
        bail!(
            "{} stores credentials with docker-credential-{helper}, which Docker asks instead of the file: \
             run `docker login {}` to log in (the CA is trusted now)",
            real.display(),
            names[0]
        );
    }
    Ok(doc)
}

/// The password, from standard input (`--password-stdin`, one trailing newline dropped, as
/// `docker login` does) or typed on the terminal without echo.
pub fn read_password(user: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        let s = s.strip_suffix('\n').unwrap_or(&s);
        s.strip_suffix('\r').unwrap_or(s).to_string()
    } else {
        read_hidden(&format!("Password for {user}: "))?
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data, all zeroes a valid value.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `term` is a writable termios; tcgetattr fills it or reports failure.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        bail!("--login needs the password: type it on a terminal, or pipe it in with --password-stdin");
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    eprint!("{prompt}");
    // SAFETY: `term` is the terminal's own settings (from tcgetattr) with echo off; `saved` is
    // put back below whatever the read returns.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: `saved` is the settings tcgetattr returned.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `GET /v2/` with the credentials, over a connection whose certificate was first verified
/// against the CA: 200 means they work.
pub async fn check(target: &Target, ca: &Ca, user: &str, password: &str) -> anyhow::Result<()> {
    let conn = fetch::connect(target).await?;
    fetch::verify_chain(&conn.chain, &ca.der, target)?;
    let (status, _) = fetch::get(conn, target, "/v2/", Some(&format!("Basic {}", basic(user, password)))).await?;
    match status {
        200 => Ok(()),
        401 => bail!(
            "wrong user name or password for {user} at {} (the registry answered 401); nothing stored",
            target.name()
        ),
        429 => bail!(
            "{} refuses logins for now after too many failures (429); wait and try again",
            target.name()
        ),
        s => bail!("GET {}/v2/ answered {s}, not 200: this does not look like a registry", target.url()),
    }
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Sets `auths[name].auth` for every name of the registry, keeping everything else.
pub fn store(doc: &mut Map<String, Value>, names: &[String], user: &str, password: &str) -> anyhow::Result<bool> {
    let auths = doc.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| anyhow!("\"auths\" in config.json is not an object"))?;
    let mut changed = false;
    for name in names {
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(basic(user, password)));
        // An identity token would take precedence over the password: replaced with the entry.
        changed |= auths.get(name) != Some(&Value::Object(entry.clone()));
        auths.insert(name.clone(), Value::Object(entry));
    }
    Ok(changed)
}

/// Removes the registry's entries from `auths`.
pub fn forget(doc: &mut Map<String, Value>, names: &[String]) -> bool {
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return false;
    };
    // Every name is removed: counting rather than `any`, which would stop at the first.
    names.iter().filter(|n| auths.remove(n.as_str()).is_some()).count() > 0
}

/// Writes config.json with mode 0600 (it holds a password), its directory 0700 when new.
pub fn save(real: &Path, doc: &Map<String, Value>, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let dir = real.parent().expect("config.json has a directory");
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        plan::create_dirs(dir.parent().expect("absolute"))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        chown(dir, owner)?;
    }
    let mut bytes = serde_json::to_vec_pretty(doc)?;
    bytes.push(b'\n');
    plan::write_atomic(real, &bytes, 0o600)?;
    chown(real, owner)
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("giving {} to its user", path.display()))?;
    }
    Ok(())
}

/// The report word for a credentials change.
pub fn outcome(changed: bool, removing: bool) -> Outcome {
    match (changed, removing) {
        (true, false) => Outcome::Wrote,
        (true, true) => Outcome::Removed,
        (false, false) => Outcome::Unchanged,
        (false, true) => Outcome::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_home_reads_the_password_database() {
        // root is in every Linux password database, with uid and gid 0.
        let (home, uid, gid) = user_home("root").expect("root's entry");
        assert_eq!((uid, gid), (0, 0));
        assert!(home.is_absolute(), "{}", home.display());
        assert_eq!(user_home("no-such-user-wharf-test"), None);
        assert_eq!(user_home("nul\0inside"), None);
    }

    #[test]
    fn merge_keeps_other_entries_and_drops_tokens() {
        let mut doc: Map<String, Value> =
            serde_json::from_str(r#"{"auths":{"other:5000":{"auth":"eA=="},"r:5000":{"identitytoken":"t"}},"psFormat":"table"}"#).unwrap();
        let names = vec!["r:5000".to_string()];
        assert!(store(&mut doc, &names, "alice", "s3cret").unwrap());
        assert!(!store(&mut doc, &names, "alice", "s3cret").unwrap(), "second run changes nothing");
        assert_eq!(doc["auths"]["r:5000"], serde_json::json!({"auth": "YWxpY2U6czNjcmV0"}));
        assert_eq!(doc["auths"]["other:5000"]["auth"], "eA==");
        assert_eq!(doc["psFormat"], "table");
        assert!(forget(&mut doc, &names));
        assert!(!forget(&mut doc, &names));
        assert!(doc["auths"].get("r:5000").is_none());
    }

    #[test]
    fn helpers_are_respected() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("config.json");
        std::fs::write(&f, r#"{"credsStore":"desktop"}"#).unwrap();
        let e = load(&f, &["r:5000".into()], true).unwrap_err().to_string();
        assert!(e.contains("docker-credential-desktop") && e.contains("docker login r:5000"), "{e}");
        std::fs::write(&f, "not json").unwrap();
        assert!(load(&f, &["r:5000".into()], true).is_err());
        assert!(load(&tmp.path().join("missing.json"), &["r:5000".into()], true).unwrap().is_empty());
    }
}
