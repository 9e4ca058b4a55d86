//! `wharf htpasswd` against Apache's real `htpasswd` (Debian package apache2-utils): files
//! wharf writes must pass `htpasswd -vb`, and files `htpasswd -B` writes must work in wharf,
//! both through the command line and through the library the server uses.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `wharf ARGS` with `stdin` as its standard input (`None`: no input, not a terminal).
fn wharf(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(common::wharf_bin())
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wharf");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    finish(child.wait_with_output().unwrap())
}

fn finish(out: Output) -> Run {
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn wharf_ok(args: &[&str], stdin: Option<&str>) -> Run {
    let r = wharf(args, stdin);
    assert_eq!(r.status, 0, "wharf {args:?} failed:\n{}", r.stderr);
    r
}

/// Apache's verdict on `user`/`password` in `file`.
fn apache_verifies(file: &Path, user: &str, password: &str) -> bool {
    let out = Command::new("htpasswd")
        .arg("-vb")
        .arg(file)
        .arg(user)
        .arg(password)
        .output()
        .unwrap();
    out.status.success()
}

/// What `htpasswd -Bbn` prints for a user: the line registry:2's documentation pipes to a file.
fn apache_line(user: &str, password: &str, cost: u32) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", "-C", &cost.to_string(), user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Dir {
    _tmp: tempfile::TempDir,
    file: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("htpasswd");
        Dir { _tmp: tmp, file }
    }

    fn f(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap()
    }
}

#[test]
fn apache_accepts_what_wharf_writes() {
    if !common::require_tool("htpasswd") {
        return;
    }
    let d = Dir::new();
    wharf_ok(&["htpasswd", "add", d.f(), "testuser", "-p", "testpassword"], None);
    wharf_ok(
        &["htpasswd", "add", d.f(), "moby", "--password-stdin", "--cost", "5"],
        Some("gordon\n"),
    );
    wharf_ok(
        &["htpasswd", "set", d.f(), "colon", "--password-stdin", "--cost", "4"],
        Some("a:b:c pässwörd\n"),
    );
    assert!(apache_verifies(&d.file, "testuser", "testpassword"));
    assert!(apache_verifies(&d.file, "moby", "gordon"));
    assert!(apache_verifies(&d.file, "colon", "a:b:c pässwörd"));
    assert!(
        !apache_verifies(&d.file, "moby", "gordon\n"),
        "the newline from stdin is not part of the password"
    );
    assert!(!apache_verifies(&d.file, "testuser", "wrong"));
    // The format Apache and registry:2 write: $2y$, cost as asked (10 by default).
    let text = d.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("testuser:$2y$10$") && lines[0].len() == "testuser:".len() + 60,
        "{text}"
    );
    assert!(lines[1].starts_with("moby:$2y$05$"), "{text}");
    assert!(lines[2].starts_with("colon:$2y$04$"), "{text}");
    let mode = std::fs::metadata(&d.file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created private");
}

#[test]
fn wharf_accepts_what_apache_writes() {
    if !common::require_tool("htpasswd") {
        return;
    }
    let d = Dir::new();
    // As the seeds do it: `htpasswd -Bbn USER PASS > auth/htpasswd`, plus a hand-written comment.
    let content = format!(
        "# registry users\n{}\n{}\n",
        apache_line("moby", "gordon", 5),
        apache_line("testuser", "testpassword", 4)
    );
    std::fs::write(&d.file, &content).unwrap();
    wharf_ok(&["htpasswd", "verify", d.f(), "moby", "-p", "gordon"], None);
    wharf_ok(
        &["htpasswd", "verify", d.f(), "testuser", "--password-stdin"],
        Some("testpassword\n"),
    );
    let wrong = wharf(&["htpasswd", "verify", d.f(), "moby", "-p", "gordon2"], None);
    assert_eq!(wrong.status, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("not correct"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("gordon2"), "the password is not echoed: {}", wrong.stderr);
    let unknown = wharf(&["htpasswd", "verify", d.f(), "nobody", "-p", "x"], None);
    assert_eq!(unknown.status, 1);
    // The server's loader reads the same file.
    let h = wharf::auth::Htpasswd::open(&d.file).unwrap();
    assert!(h.verify("moby", "gordon"));
    assert!(h.verify("testuser", "testpassword"));
    assert!(!h.verify("moby", "testpassword"));
    assert_eq!(h.users(), vec!["moby", "testuser"]);
    let listed = wharf_ok(&["htpasswd", "list", d.f()], None);
    assert_eq!(listed.stdout, "moby\ntestuser\n");
}

#[test]
fn apache_hashes_wharf_cannot_use_are_reported() {
    if !common::require_tool("htpasswd") {
        return;
    }
    let d = Dir::new();
    // -s: SHA-1, -m: MD5 ($apr1$), -B: bcrypt. registry:2 accepts only bcrypt, and so does wharf.
    for (flag, user) in [("-s", "sha"), ("-m", "md5"), ("-B", "good")] {
        let create = if d.file.exists() { "-b" } else { "-cb" };
        let out = Command::new("htpasswd")
            .args([create, flag])
            .arg(&d.file)
            .args([user, "pw"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let h = wharf::auth::Htpasswd::open(&d.file).unwrap();
    assert!(h.verify("good", "pw"));
    assert!(!h.verify("sha", "pw") && !h.verify("md5", "pw"));
    let listed = wharf_ok(&["htpasswd", "list", d.f()], None);
    assert_eq!(listed.stdout, "sha\nmd5\ngood\n");
    assert!(
        listed.stderr.contains("\"sha\" has a SHA-1") && listed.stderr.contains("\"md5\" has a Apache MD5"),
        "{}",
        listed.stderr
    );
    let v = wharf(&["htpasswd", "verify", d.f(), "sha", "-p", "pw"], None);
    assert_eq!(v.status, 1);
    assert!(v.stderr.contains("only bcrypt"), "{}", v.stderr);
    // `set` turns the user into a bcrypt one that Apache still accepts.
    wharf_ok(&["htpasswd", "set", d.f(), "sha", "-p", "newpw", "--cost", "4"], None);
    assert!(apache_verifies(&d.file, "sha", "newpw"));
    assert!(wharf::auth::Htpasswd::open(&d.file).unwrap().verify("sha", "newpw"));
}

#[test]
fn edits_keep_other_lines_and_replace_the_file_atomically() {
    if !common::require_tool("htpasswd") {
        return;
    }
    let d = Dir::new();
    let original = format!(
        "# team registry\n{}\n\n  # CI account below\n{}\n",
        apache_line("alice", "alicepw", 4),
        apache_line("ci", "cipw", 4)
    );
    std::fs::write(&d.file, &original).unwrap();
    std::fs::set_permissions(&d.file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let inode = std::fs::metadata(&d.file).unwrap().ino();

    // add refuses an existing user and leaves the file alone.
    let refused = wharf(&["htpasswd", "add", d.f(), "alice", "-p", "other"], None);
    assert_eq!(refused.status, 1);
    assert!(refused.stderr.contains("already exists"), "{}", refused.stderr);
    assert_eq!(d.text(), original);

    // set changes alice in place; every other line stays byte for byte.
    wharf_ok(&["htpasswd", "set", d.f(), "alice", "-p", "newpw", "--cost", "4"], None);
    let text = d.text();
    let lines: Vec<&str> = text.lines().collect();
    let before: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), before.len());
    assert!(lines[1].starts_with("alice:$2y$04$") && lines[1] != before[1]);
    for i in [0, 2, 3, 4] {
        assert_eq!(lines[i], before[i], "line {i}");
    }
    assert!(apache_verifies(&d.file, "alice", "newpw"));
    assert!(!apache_verifies(&d.file, "alice", "alicepw"));
    assert!(apache_verifies(&d.file, "ci", "cipw"));
    let meta = std::fs::metadata(&d.file).unwrap();
    assert_ne!(meta.ino(), inode, "replaced by rename, not rewritten in place");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640, "an existing file keeps its mode");

    // remove drops only that user.
    wharf_ok(&["htpasswd", "remove", d.f(), "alice"], None);
    assert_eq!(d.text(), format!("# team registry\n\n  # CI account below\n{}\n", before[4]));
    let again = wharf(&["htpasswd", "remove", d.f(), "alice"], None);
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("not in"), "{}", again.stderr);
    let leftovers = std::fs::read_dir(d.file.parent().unwrap()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary files left behind");
}

#[test]
fn without_password_or_terminal_a_password_is_generated_and_printed_once() {
    if !common::require_tool("htpasswd") {
        return;
    }
    let d = Dir::new();
    let r = wharf_ok(&["htpasswd", "add", d.f(), "admin", "--cost", "4"], None);
    let password = r.stdout.trim();
    assert_eq!(r.stdout.lines().count(), 1, "only the password on stdout: {:?}", r.stdout);
    assert!(
        password.len() >= 20 && password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password:?}"
    );
    assert!(r.stderr.contains("generated"), "{}", r.stderr);
    assert!(!r.stderr.contains(password), "said once, on stdout only");
    assert!(apache_verifies(&d.file, "admin", password));
    // verify never generates: without a password it fails.
    let v = wharf(&["htpasswd", "verify", d.f(), "admin"], None);
    assert_eq!(v.status, 1);
    assert!(v.stderr.contains("no password given"), "{}", v.stderr);
}

#[test]
fn bad_input_is_refused_clearly() {
    let d = Dir::new();
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (&["htpasswd", "add", d.f(), "a:b", "-p", "x"], None, "invalid user name"),
        (&["htpasswd", "add", d.f(), "a b", "-p", "x"], None, "invalid user name"),
        (&["htpasswd", "add", d.f(), "u", "-p", ""], None, "password is empty"),
        (
            &["htpasswd", "add", d.f(), "u", "--password-stdin"],
            Some("\n"),
            "password is empty",
        ),
        (&["htpasswd", "add", d.f(), "u", "--password-stdin"], Some("a\nb\n"), "one line"),
        (&["htpasswd", "add", d.f(), "u", "-p", &"x".repeat(73)], None, "72"),
        (&["htpasswd", "add", d.f(), "u", "-p", "x", "--cost", "3"], None, "--cost"),
        (&["htpasswd", "add", d.f(), "u", "-p", "x", "--cost", "32"], None, "--cost"),
        (
            &["htpasswd", "add", d.f(), "u", "-p", "x", "--password-stdin"],
            None,
            "cannot be used with",
        ),
        (&["htpasswd", "list", d.f()], None, "cannot read"),
        (&["htpasswd", "remove", d.f(), "u"], None, "cannot read"),
    ];
    for (args, stdin, want) in cases {
        let r = wharf(args, *stdin);
        assert_ne!(r.status, 0, "{args:?} succeeded");
        assert!(r.stderr.contains(want), "{args:?}: wanted {want:?} in\n{}", r.stderr);
        assert!(!d.file.exists(), "{args:?} created the file");
    }
}

#[test]
fn help_documents_the_cost() {
    let r = wharf_ok(&["htpasswd", "add", "--help"], None);
    assert!(
        r.stdout.contains("--cost") && r.stdout.contains("Default 10") && r.stdout.contains("defaults to 5"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--password-stdin"), "{}", r.stdout);
    let top = wharf_ok(&["htpasswd", "--help"], None);
    for sub in ["add", "set", "remove", "verify", "list"] {
        assert!(top.stdout.contains(sub), "{sub} missing from\n{}", top.stdout);
    }
}
