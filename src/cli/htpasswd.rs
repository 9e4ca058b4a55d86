//! `wharf htpasswd`: manage password files in the format registry:2 and Apache read (bcrypt).
//!
//! Edits keep every other line as it was (comments included) and replace the file atomically:
//! a temporary file in the same directory, synced, then renamed over the old one. A new file is
//! created with mode 0600; an existing file keeps its mode (and owner, when run as root), so a
//! registry running as another user can still read it.
//!
//! `wharf htpasswd -Bbn USER PASS` and the other forms of Apache's command line are handled by
//! `apache`, which is also the container image's `htpasswd`.

pub mod apache;

use crate::auth::htpasswd::{parse_line, HashKind, Line};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// bcrypt reads at most this many bytes of a password; longer ones are refused rather than
/// silently cut.
const MAX_PASSWORD_BYTES: usize = 72;
/// Length of generated passwords (letters and digits: about 143 bits).
const GENERATED_LEN: usize = 24;

/// The names of wharf's own subcommands; anything else after `wharf htpasswd` is Apache's
/// command line (`wharf htpasswd -Bbn USER PASS`).
pub const SUBCOMMANDS: &[&str] = &["add", "set", "remove", "verify", "list"];

#[derive(Subcommand, Debug)]
pub enum HtpasswdCommand {
    /// Add a user; fails if the user already exists. Creates FILE if needed.
    Add(SetArgs),
    /// Add a user or change their password. Creates FILE if needed.
    Set(SetArgs),
    /// Remove a user.
    Remove { file: PathBuf, user: String },
    /// Check a user's password: exit status 0 if it is right, 1 otherwise.
    Verify {
        file: PathBuf,
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the users, one per line (users whose hash wharf cannot use are flagged on stderr).
    List { file: PathBuf },
}

#[derive(Args, Debug)]
pub struct SetArgs {
    pub file: PathBuf,
    pub user: String,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// bcrypt cost, 4 to 31. Each step doubles the time a check takes, for the registry as for
    /// an attacker. Default 10; Apache's `htpasswd -B` defaults to 5, the cost of the files
    /// made by `htpasswd -Bbn` in registry:2's documentation.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub cost: u32,
}

/// Where the password comes from. With neither option: a prompt when stdin is a terminal;
/// otherwise `add`/`set` generate a random password and print it once on stdout.
#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// Read the password from stdin (one line; the trailing newline is dropped).
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// The password. Visible to other local users in the process list: prefer --password-stdin.
    #[arg(short = 'p', long)]
    pub password: Option<String>,
}

pub fn run(cmd: HtpasswdCommand) -> anyhow::Result<()> {
    match cmd {
        HtpasswdCommand::Add(args) => set(args, false),
        HtpasswdCommand::Set(args) => set(args, true),
        HtpasswdCommand::Remove { file, user } => remove(&file, &user),
        HtpasswdCommand::Verify { file, user, password } => verify(&file, &user, &password),
        HtpasswdCommand::List { file } => list(&file),
    }
}

fn set(args: SetArgs, replace: bool) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    let text = read_optional(&args.file)?;
    let exists = text.as_deref().and_then(|t| find(t, &args.user)).is_some();
    if exists && !replace {
        bail!(
            "user {:?} already exists in {} (use `wharf htpasswd set` to change the password)",
            args.user,
            args.file.display()
        );
    }
    let (password, generated) = match obtain_password(&args.password, &args.user, true)? {
        Some(p) => (p, false),
        None => (generate_password(), true),
    };
    check_new_password(&password)?;
    let hash = bcrypt::hash_with_result(&password, args.cost)
        .context("hashing the password")?
        .format_for_version(bcrypt::Version::TwoY);
    let updated = set_entry(text.as_deref().unwrap_or(""), &args.user, &hash);
    write_atomically(&args.file, &updated)?;
    if generated {
        // Alone on stdout, so a script can capture it; said once, never stored in clear.
        println!("{password}");
        eprintln!(
            "wharf: generated a password for {:?} (printed above; it cannot be shown again)",
            args.user
        );
    }
    let verb = if exists { "updated" } else { "added" };
    eprintln!("wharf: {verb} user {:?} in {}", args.user, args.file.display());
    Ok(())
}

fn remove(file: &Path, user: &str) -> anyhow::Result<()> {
    let text = read_required(file)?;
    if find(&text, user).is_none() {
        bail!("user {user:?} is not in {}", file.display());
    }
    write_atomically(file, &remove_entries(&text, user))?;
    eprintln!("wharf: removed user {user:?} from {}", file.display());
    Ok(())
}

fn verify(file: &Path, user: &str, source: &PasswordArgs) -> anyhow::Result<()> {
    let text = read_required(file)?;
    let Some(hash) = find(&text, user) else {
        bail!("user {user:?} is not in {}", file.display());
    };
    if let HashKind::Unsupported(kind) = HashKind::of(hash) {
        bail!("user {user:?} has a {kind} password hash; wharf and registry:2 accept only bcrypt");
    }
    let password = obtain_password(source, user, false)?
        .ok_or_else(|| anyhow!("no password given: use --password-stdin or -p, or run on a terminal"))?;
    if bcrypt::verify(&password, hash).unwrap_or(false) {
        eprintln!("wharf: password for user {user:?} is correct");
        Ok(())
    } else {
        bail!("password for user {user:?} is not correct")
    }
}

fn list(file: &Path) -> anyhow::Result<()> {
    let text = read_required(file)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = std::io::stdout().lock();
    for (n, line) in text.lines().enumerate() {
        match parse_line(line) {
            Line::Entry { user, hash } if seen.insert(user) => {
                writeln!(out, "{user}")?;
                if let HashKind::Unsupported(kind) = HashKind::of(hash) {
                    eprintln!("wharf: warning: user {user:?} has a {kind} password hash and cannot log in (only bcrypt works)");
                }
            }
            Line::Invalid => eprintln!("wharf: warning: line {} is not user:hash; registry:2 refuses such a file", n + 1),
            _ => {}
        }
    }
    Ok(())
}

/// User names end at the first `:` and are matched after trimming, so neither can be part
/// of one.
fn check_user_name(user: &str) -> anyhow::Result<()> {
    if user.is_empty() {
        bail!("the user name is empty");
    }
    if user.contains(':') || user.starts_with('#') || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("invalid user name {user:?}: it cannot contain ':', whitespace or control characters, nor start with '#'");
    }
    if user == "*" {
        bail!("\"*\" means every user in access rules; choose another name");
    }
    Ok(())
}

fn check_new_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!(
            "the password is {} bytes long; bcrypt uses only the first {MAX_PASSWORD_BYTES}, so choose a shorter one",
            password.len()
        );
    }
    Ok(())
}

/// The password from the options, from a terminal prompt, or `None` when there is neither.
fn obtain_password(source: &PasswordArgs, user: &str, confirm: bool) -> anyhow::Result<Option<String>> {
    if let Some(p) = &source.password {
        return Ok(Some(p.clone()));
    }
    if source.password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        let password = input.strip_suffix('\n').unwrap_or(&input);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.contains('\n') {
            bail!("--password-stdin expects one line, got several");
        }
        return Ok(Some(password.to_string()));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let password = prompt(&format!("Password for {user}: "))?;
    if confirm && prompt("Retype password: ")? != password {
        bail!("the passwords do not match");
    }
    Ok(Some(password))
}

/// Reads a line from the terminal on stdin without echoing it.
fn prompt(message: &str) -> anyhow::Result<String> {
    eprint!("{message}");
    std::io::stderr().flush()?;
    let line = {
        let _echo_off = EchoOff::new();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password")?;
        line
    };
    eprintln!();
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Turns terminal echo off on stdin for its lifetime, restoring the settings on drop (also
/// when reading fails).
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it and reports failure by return value.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return EchoOff(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios obtained from tcgetattr, with one flag cleared.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) };
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings tcgetattr returned.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

fn generate_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, GENERATED_LEN)
}

fn read_optional(file: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(to_text(file, bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

fn read_required(file: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    to_text(file, bytes)
}

/// Rewriting a file that is not UTF-8 could mangle lines we do not own: refuse instead.
fn to_text(file: &Path, bytes: Vec<u8>) -> anyhow::Result<String> {
    String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", file.display()))
}

/// The hash of `user`'s entry: the last one, which is what registry:2 uses.
fn find<'a>(text: &'a str, user: &str) -> Option<&'a str> {
    text.lines().rev().find_map(|l| match parse_line(l) {
        Line::Entry { user: u, hash } if u == user => Some(hash),
        _ => None,
    })
}

fn is_entry_of(line: &str, user: &str) -> bool {
    matches!(parse_line(line), Line::Entry { user: u, .. } if u == user)
}

/// `text` with `user`'s entry set to `hash`: the first entry is replaced in place and later
/// duplicates dropped, or a new entry is appended. Every other line is kept byte for byte.
fn set_entry(text: &str, user: &str, hash: &str) -> String {
    let new_line = format!("{user}:{hash}");
    let mut out: Vec<&str> = Vec::new();
    let mut placed = false;
    for line in text.lines() {
        if is_entry_of(line, user) {
            if !placed {
                out.push(&new_line);
                placed = true;
            }
        } else {
            out.push(line);
        }
    }
    if !placed {
        out.push(&new_line);
    }
    join_lines(&out)
}

/// `text` without any entry of `user`.
fn remove_entries(text: &str, user: &str) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !is_entry_of(l, user)).collect();
    join_lines(&kept)
}

/// One `\n` after every line. `str::lines` drops a `\r` before `\n`, so CRLF files come back
/// with LF endings, which every reader accepts.
fn join_lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Replaces `file` with `content` so that readers see the old or the new file, never a part.
fn write_atomically(file: &Path, content: &str) -> anyhow::Result<()> {
    // Write beside the real file when `file` is a symlink, and keep the link.
    let target = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let existing = std::fs::metadata(&target).ok();
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().ok_or_else(|| anyhow!("{} is not a file name", file.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.{:08x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    out.write_all(content.as_bytes())?;
    if let Some(meta) = &existing {
        out.set_permissions(std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777))?;
        if meta.uid() != effective_uid() {
            // Best effort: only root can give a file away.
            let _ = std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid()));
        }
    }
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, &target).with_context(|| format!("cannot replace {}", target.display()))?;
    guard.disarm();
    // The rename is durable once the directory is synced.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# registry users\nalice:$2y$04$aaa\n\n  # keep me\nbob:$2y$04$bbb\n";

    #[test]
    fn subcommand_names_are_the_commands() {
        use clap::Subcommand;
        let cmd = HtpasswdCommand::augment_subcommands(clap::Command::new("htpasswd"));
        let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(names, SUBCOMMANDS);
    }

    #[test]
    fn set_replaces_in_place_and_keeps_other_lines() {
        let out = set_entry(FILE, "alice", "$2y$04$new");
        assert_eq!(out, "# registry users\nalice:$2y$04$new\n\n  # keep me\nbob:$2y$04$bbb\n");
    }

    #[test]
    fn set_appends_new_users_and_adds_a_missing_final_newline() {
        assert_eq!(set_entry("a:x", "b", "y"), "a:x\nb:y\n");
        assert_eq!(set_entry("", "b", "y"), "b:y\n");
    }

    #[test]
    fn set_collapses_duplicates_and_matches_like_registry2() {
        let text = " alice:old1 \nbob:b\nalice:old2\n";
        assert_eq!(set_entry(text, "alice", "new"), "alice:new\nbob:b\n");
        // A comment mentioning the user is not an entry, nor is a longer name.
        let text = "#alice:x\nalicex:y\n";
        assert_eq!(set_entry(text, "alice", "z"), "#alice:x\nalicex:y\nalice:z\n");
    }

    #[test]
    fn remove_drops_every_entry_of_the_user_only() {
        assert_eq!(remove_entries(FILE, "alice"), "# registry users\n\n  # keep me\nbob:$2y$04$bbb\n");
        assert_eq!(remove_entries("a:1\nb:2\na:3\n", "a"), "b:2\n");
    }

    #[test]
    fn find_uses_the_last_entry() {
        assert_eq!(find("a:1\nb:2\na:3\n", "a"), Some("3"));
        assert_eq!(find("a:1\n", "b"), None);
    }

    #[test]
    fn user_name_rules() {
        for ok in ["alice", "ci-bot", "user@example.com", "jürgen"] {
            check_user_name(ok).unwrap();
        }
        for bad in ["", "a:b", "a b", "#a", "a\tb", "*", "a\u{7}"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn password_rules() {
        check_new_password("x").unwrap();
        check_new_password(&"x".repeat(72)).unwrap();
        assert!(check_new_password("").is_err());
        let e = check_new_password(&"x".repeat(73)).unwrap_err().to_string();
        assert!(e.contains("72") && !e.contains("xxx"), "{e}");
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn atomic_write_creates_0600_and_keeps_an_existing_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        write_atomically(&path, "a:1\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "a:2\n").unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a:2\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn atomic_write_through_a_symlink_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::fs::write(&real, "a:1\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, "a:2\n").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "a:2\n");
    }
}
