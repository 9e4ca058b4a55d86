//! The container image's entrypoint, with registry:2's rules: `IMAGE serve CONFIG`,
//! `IMAGE CONFIG.yml` and `IMAGE --version` run the registry; any other first word is a
//! program to run instead (`IMAGE htpasswd -Bbn USER PASS`). registry:2's entrypoint.sh does
//! the same, with `registry` where wharf stands here.
//!
//! Before serving as root it hands the process to the owner of the storage root when that
//! owner can do the work (see `run_as`): a named volume made from the image belongs to the
//! image's `wharf` user, and a root-owned host directory keeps the server root.

mod run_as;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

pub use run_as::{UNPRIVILEGED_GID, UNPRIVILEGED_UID};

/// Program names under which the binary is the entrypoint (`/entrypoint` in the image).
pub const NAMES: &[&str] = &["entrypoint", "entrypoint.sh"];
/// The configuration registry:2's image serves, which the image ships as well.
pub const IMAGE_CONFIG: &str = "/etc/docker/registry/config.yml";

/// What the entrypoint does with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Run wharf with these arguments (without the program name).
    Wharf(Vec<OsString>),
    /// Run another program of the image, found on PATH.
    Exec(Vec<OsString>),
}

/// registry:2's entrypoint.sh rules; `commands` are wharf's subcommands, which are wharf's
/// too (`IMAGE config check`).
pub fn plan(args: &[OsString], commands: &[&str]) -> Plan {
    let Some(first) = args.first().map(|a| a.to_string_lossy().into_owned()) else {
        return Plan::Wharf(vec!["serve".into(), IMAGE_CONFIG.into()]);
    };
    if first.ends_with(".yml") || first.ends_with(".yaml") {
        let mut serve = vec![OsString::from("serve")];
        serve.extend_from_slice(args);
        return Plan::Wharf(serve);
    }
    if first.starts_with('-') || matches!(first.as_str(), "serve" | "help") || commands.contains(&first.as_str()) {
        return Plan::Wharf(args.to_vec());
    }
    Plan::Exec(args.to_vec())
}

/// Replaces this process with `command`; returns only when that fails (127, as a shell does
/// for a program it cannot find).
pub fn exec(command: &[OsString]) -> std::process::ExitCode {
    let Some((program, args)) = command.split_first() else {
        return std::process::ExitCode::SUCCESS;
    };
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!("wharf: cannot run {}: {error}", program.to_string_lossy());
    std::process::ExitCode::from(127)
}

/// Called before `serve` runs from the entrypoint (or as the image's `registry`): switches to
/// the storage root's owner where that works, and says who the server runs as.
pub fn before_serve(args: &super::serve::ServeArgs) {
    run_as::settle(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(args: &[&str]) -> Plan {
        plan(
            &args.iter().map(OsString::from).collect::<Vec<_>>(),
            &["serve", "config", "htpasswd"],
        )
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn registry2_entrypoint_forms() {
        assert_eq!(plan_of(&[]), Plan::Wharf(os(&["serve", IMAGE_CONFIG])));
        assert_eq!(plan_of(&["serve", IMAGE_CONFIG]), Plan::Wharf(os(&["serve", IMAGE_CONFIG])));
        assert_eq!(plan_of(&["/c/my.yaml"]), Plan::Wharf(os(&["serve", "/c/my.yaml"])));
        assert_eq!(plan_of(&["--version"]), Plan::Wharf(os(&["--version"])));
        assert_eq!(plan_of(&["config", "check"]), Plan::Wharf(os(&["config", "check"])));
        // As in registry:2, `IMAGE htpasswd ...` runs the image's htpasswd program.
        assert_eq!(
            plan_of(&["htpasswd", "-Bbn", "u", "p"]),
            Plan::Wharf(os(&["htpasswd", "-Bbn", "u", "p"]))
        );
        assert_eq!(plan_of(&["sh", "-c", "x"]), Plan::Exec(os(&["sh", "-c", "x"])));
    }
}
