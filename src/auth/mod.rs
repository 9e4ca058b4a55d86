//! Who is calling and what they may do: the authentication and access-control core, free of HTTP.
//!
//! The HTTP middleware asks, in this order:
//! 1. [`parse_authorization`]: what the `Authorization` header claims (nothing, Basic, Bearer);
//! 2. [`LoginLimiter::begin`]: whether this client may try to log in as this user right now
//!    (the attempt holds a slot until its outcome is reported);
//! 3. [`Htpasswd::verify`]: whether the Basic credentials are right, run in the
//!    [`bcrypt_pool::BcryptPool`] (then `failed`/`succeeded` on the attempt);
//! 4. [`Policy::allows`]: whether the (possibly anonymous) user may pull, push or delete in the
//!    repository.
//!
//! Secrets never leave this module in readable form: [`Credentials`] prints as `<redacted>`,
//! errors never quote a header, a password or a hash, and verified passwords are remembered
//! only as salted digests.

pub mod bcrypt_pool;
pub mod credentials;
pub mod htpasswd;
pub mod policy;
pub mod ratelimit;
pub mod token;
mod token_keys;

pub use credentials::{parse_authorization, Credentials, CredentialsError};
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use policy::{AccessConfig, Policy, PolicyError};
pub use ratelimit::LoginLimiter;

use std::fmt;
use std::str::FromStr;

/// What a request does to a repository, in the vocabulary of registry:2 token scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers (GET and HEAD).
    Pull,
    /// Upload blobs, put manifests and tags, mount blobs.
    Push,
    /// Delete manifests, tags or blobs.
    Delete,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The action's name in configuration files and token scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of `pull`, `push`, `delete`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown right {0:?} (expected pull, push or delete)")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    /// Exact, lower-case names, as registry:2 token scopes spell them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.to_string().parse::<Action>().unwrap(), a);
        }
        assert_eq!("pull".parse::<Action>().unwrap(), Action::Pull);
        assert_eq!("push".parse::<Action>().unwrap(), Action::Push);
        assert_eq!("delete".parse::<Action>().unwrap(), Action::Delete);
    }

    #[test]
    fn unknown_action_names_are_errors() {
        for bad in ["", "Pull", "PUSH", "read", "*", "pull,push", " pull"] {
            let e = bad.parse::<Action>().unwrap_err();
            assert!(e.to_string().contains("unknown right"), "{bad:?}: {e}");
        }
    }
}
