//! Apache's `htpasswd` command line (`-Bbn USER PASS`, `-Bc FILE USER`, `-b FILE USER PASS`,
//! `-D`, `-v`, `-i`, `-C COST`), as the `htpasswd` of the container image and as
//! `wharf htpasswd -B...`. registry:2's documentation makes password files with
//! `docker run --entrypoint htpasswd registry:2 -Bbn USER PASS > auth/htpasswd`; that command
//! keeps working with wharf's image in place of registry:2's.
//!
//! Only bcrypt is produced: it is the one hash registry:2 and wharf accept, so it is also the
//! default here (Apache's default, MD5, would make a file no registry can use), and the flags
//! for other hashes are refused with that reason.

use super::{check_new_password, check_user_name, find, read_required, remove_entries, set_entry, write_atomically};
use crate::auth::htpasswd::HashKind;
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

/// Apache's default bcrypt cost for `-B`, which files in registry:2's documentation use.
const APACHE_BCRYPT_COST: u32 = 5;

pub const USAGE: &str = "\
Usage (Apache htpasswd's command line; bcrypt only, the hash registry:2 and wharf accept):
  htpasswd [-ciBDv] [-C cost] passwordfile username
  htpasswd -b[cBDv] [-C cost] passwordfile username password
  htpasswd -n[iB] [-C cost] username
  htpasswd -nb[B] [-C cost] username password
 -c  Create a new file (replacing an existing one).
 -n  Don't update a file; print the result on stdout.
 -b  Take the password from the command line rather than prompting for it.
 -i  Read the password from stdin without verification (for scripts).
 -B  bcrypt (the default and the only hash produced).
 -C  bcrypt cost, 4 to 31 (default: 5, as Apache's).
 -D  Delete the user.
 -v  Verify the user's password.
The same binary is `wharf htpasswd`; `wharf htpasswd --help` shows its other commands.";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    create: bool,
    stdout: bool,
    password_arg: bool,
    password_stdin: bool,
    delete: bool,
    verify: bool,
    cost: Option<u32>,
    file: Option<PathBuf>,
    user: String,
    password: Option<String>,
}

/// Runs the Apache command line; `args` excludes the program name. Usage errors exit 2 as
/// Apache's do, other failures 1 (3 for a password that does not verify).
pub fn main(args: &[OsString]) -> std::process::ExitCode {
    let request = match parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("htpasswd: {e:#}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(request) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("htpasswd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse(args: &[OsString]) -> anyhow::Result<Request> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_str().map(str::to_string).context("arguments must be UTF-8"))
        .collect::<Result<_, _>>()?;
    let mut r = Request::default();
    let mut rest = args.iter();
    let mut positional: Vec<&String> = Vec::new();
    // Flags come first, bundled or not (`-Bbn`, `-B -b -n`); `-C` takes the next argument.
    while let Some(arg) = rest.next() {
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty() && positional.is_empty()) else {
            positional.push(arg);
            continue;
        };
        for flag in flags.chars() {
            match flag {
                'c' => r.create = true,
                'n' => r.stdout = true,
                'b' => r.password_arg = true,
                'i' => r.password_stdin = true,
                'B' => {}
                'D' => r.delete = true,
                'v' => r.verify = true,
                'C' => {
                    let value = rest.next().context("-C needs a cost")?;
                    let cost: u32 = value
                        .parse()
                        .ok()
                        .filter(|c| (4..=31).contains(c))
                        .with_context(|| format!("invalid bcrypt cost {value:?}: expected a number from 4 to 31"))?;
                    r.cost = Some(cost);
                }
                'm' | '2' | '5' | 'd' | 's' | 'p' | 'r' => {
                    bail!("-{flag}: only bcrypt (-B) hashes work with registry:2 and wharf, so no other hash is made")
                }
                other => bail!("unknown option -{other}"),
            }
        }
    }
    if r.stdout && (r.create || r.delete || r.verify) {
        bail!("-n cannot be combined with -c, -D or -v");
    }
    if r.delete && r.verify {
        bail!("-D and -v cannot be combined");
    }
    if r.password_arg && r.password_stdin {
        bail!("-b and -i cannot be combined");
    }
    let wanted = usize::from(!r.stdout) + 1 + usize::from(r.password_arg && !r.delete);
    if positional.len() != wanted {
        bail!("expected {wanted} arguments after the options, got {}", positional.len());
    }
    let mut positional = positional.into_iter();
    if !r.stdout {
        r.file = positional.next().map(PathBuf::from);
    }
    r.user = positional.next().cloned().unwrap_or_default();
    r.password = positional.next().cloned();
    Ok(r)
}

fn run(r: Request) -> anyhow::Result<std::process::ExitCode> {
    check_user_name(&r.user)?;
    let Some(file) = &r.file else {
        let line = hashed_line(&r)?;
        // Apache prints the entry followed by an empty line; readers skip it.
        std::io::Write::write_all(&mut std::io::stdout(), format!("{line}\n\n").as_bytes()).context("writing to stdout")?;
        return Ok(std::process::ExitCode::SUCCESS);
    };
    if r.delete {
        let text = read_required(file)?;
        if find(&text, &r.user).is_none() {
            eprintln!("User {} not found", r.user);
        } else {
            write_atomically(file, &remove_entries(&text, &r.user))?;
            eprintln!("Deleting password for user {}", r.user);
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if r.verify {
        let text = read_required(file)?;
        let Some(hash) = find(&text, &r.user) else {
            bail!("user {} not found", r.user);
        };
        if let HashKind::Unsupported(kind) = HashKind::of(hash) {
            bail!(
                "user {} has a {kind} password hash; registry:2 and wharf accept only bcrypt",
                r.user
            );
        }
        let password = password(&r, false)?;
        if bcrypt::verify(&password, hash).unwrap_or(false) {
            eprintln!("Password for user {} correct.", r.user);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        eprintln!("password verification failed");
        return Ok(std::process::ExitCode::from(3));
    }
    let existing = if r.create {
        String::new()
    } else {
        read_required(file).with_context(|| format!("cannot modify file {}; use '-c' to create it", file.display()))?
    };
    let updating = find(&existing, &r.user).is_some();
    let line = hashed_line(&r)?;
    let (user, hash) = line.split_once(':').unwrap_or_default();
    write_atomically(file, &set_entry(&existing, user, hash))?;
    let verb = if updating { "Updating" } else { "Adding" };
    eprintln!("{verb} password for user {}", r.user);
    Ok(std::process::ExitCode::SUCCESS)
}

/// `user:bcrypt-hash` for the request's password.
fn hashed_line(r: &Request) -> anyhow::Result<String> {
    let password = password(r, true)?;
    check_new_password(&password)?;
    let hash = bcrypt::hash_with_result(&password, r.cost.unwrap_or(APACHE_BCRYPT_COST))
        .context("hashing the password")?
        .format_for_version(bcrypt::Version::TwoY);
    Ok(format!("{}:{hash}", r.user))
}

/// The password from the command line (`-b`), stdin (`-i`, or stdin that is not a terminal),
/// or a prompt on the terminal, twice when setting one as Apache does.
fn password(r: &Request, confirm: bool) -> anyhow::Result<String> {
    if let Some(p) = &r.password {
        return Ok(p.clone());
    }
    if r.password_stdin || !std::io::stdin().is_terminal() {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        let line = input.lines().next().unwrap_or_default();
        return Ok(line.strip_suffix('\r').unwrap_or(line).to_string());
    }
    let first = super::prompt("New password: ")?;
    if confirm && super::prompt("Re-type new password: ")? != first {
        bail!("password verification error");
    }
    Ok(first)
}

/// True when `wharf htpasswd ARGS` is Apache's command line rather than one of wharf's own
/// subcommands: it starts with an option other than help, or with a file name.
pub fn is_apache_form(args: &[OsString], subcommands: &[&str]) -> bool {
    let Some(first) = args.first().and_then(|a| a.to_str()) else {
        return false;
    };
    !matches!(first, "-h" | "--help" | "help") && !subcommands.contains(&first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> anyhow::Result<Request> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn bundled_and_separate_flags() {
        let r = parse_str(&["-Bbn", "user", "pass"]).unwrap();
        assert!(r.stdout && r.password_arg && r.file.is_none());
        assert_eq!((r.user.as_str(), r.password.as_deref()), ("user", Some("pass")));
        assert_eq!(parse_str(&["-B", "-b", "-n", "user", "pass"]).unwrap(), r);
        let r = parse_str(&["-Bc", "auth/registry.password", "admin"]).unwrap();
        assert!(r.create && !r.password_arg);
        assert_eq!(r.file.as_deref(), Some(std::path::Path::new("auth/registry.password")));
        let r = parse_str(&["-b", "-C", "7", "f", "u", "p"]).unwrap();
        assert_eq!(r.cost, Some(7));
        let r = parse_str(&["-D", "f", "u"]).unwrap();
        assert!(r.delete && r.password.is_none());
    }

    #[test]
    fn refusals_name_the_reason() {
        for (args, says) in [
            (&["-mbn", "u", "p"][..], "only bcrypt"),
            (&["-nc", "u"][..], "-n cannot"),
            (&["-bn", "u"][..], "expected 2 arguments"),
            (&["-b", "f", "u"][..], "expected 3 arguments"),
            (&["-C", "99", "f", "u"][..], "4 to 31"),
            (&["-x", "f", "u"][..], "unknown option"),
        ] {
            let e = format!("{:#}", parse_str(args).unwrap_err());
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn apache_form_or_wharf_subcommand() {
        let subs = ["add", "set", "list"];
        let form = |a: &[&str]| is_apache_form(&a.iter().map(OsString::from).collect::<Vec<_>>(), &subs);
        assert!(form(&["-Bbn", "u", "p"]));
        assert!(form(&["htpasswd.file", "u"]));
        assert!(!form(&["set", "f", "u"]));
        assert!(!form(&["--help"]));
        assert!(!form(&[]));
    }
}
