//! The control channel: how a CLI command that changes or inspects a storage root (garbage
//! collection, retention, usage) acts through the server running on that root instead of
//! racing it through the filesystem.
//!
//! A running server holds the root lock (`docker/registry/v2/_wharf/lock`) and listens on a
//! Unix socket next to it, `docker/registry/v2/_wharf/control.sock`, serving its HTTP API there
//! without authentication: the socket is mode 0600, so only the registry's own user (or root)
//! can connect, and whoever can do that can also edit the storage root directly. A command
//! first tries to take the root lock: if it gets it, no server runs and none can start while it
//! holds it, so it opens the store itself and calls the same domain function; if the lock is
//! held, it sends the equivalent request over the socket.
//!
//! Unix socket addresses hold at most 107 bytes of path. A longer path (a deep storage root) is
//! reached through `/proc/self/fd/<fd>/control.sock`, where `<fd>` is a descriptor of the
//! socket's directory opened for this one bind or connect: the kernel resolves it to the same
//! directory, so the socket still lives at its documented place, and unlike a `chdir` to a
//! relative path it changes no state other threads of the server share.

use crate::config::Config;
use crate::registry::Registry;
use crate::store::root_lock::{LockError, RootLock};
use anyhow::{bail, Context};
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The longest path `sockaddr_un` carries (108 bytes with its terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// The control socket of the layout under `v2` (`<root>/docker/registry/v2`).
pub fn socket_path(v2: &Path) -> PathBuf {
    v2.join("_wharf").join("control.sock")
}

/// A path the socket calls accept for `path`, with what keeps it valid.
struct Addressable {
    path: PathBuf,
    /// The directory descriptor a `/proc/self/fd` path goes through; open while it is used.
    _dir: Option<std::fs::File>,
}

fn addressable(path: &Path) -> io::Result<Addressable> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok(Addressable {
            path: path.to_path_buf(),
            _dir: None,
        });
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "control socket path has no directory"));
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join(name);
    Ok(Addressable {
        path: short,
        _dir: Some(dir),
    })
}

/// The server's end: listens on the control socket of the root it holds the lock of. A socket
/// left by a server that was killed is replaced (the lock says nobody else serves this root).
pub fn listen(v2: &Path) -> io::Result<tokio::net::UnixListener> {
    let path = socket_path(v2);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let at = addressable(&path)?;
    let socket = tokio::net::UnixSocket::new_stream()?;
    socket.bind(&at.path)?;
    // Restricted before it listens: until then a connect is refused, so nobody else gets in
    // between (whatever the umask made of the file).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    socket.listen(64)
}

/// Removes the socket when the server stops (a killed server's is replaced at the next start).
pub fn remove(v2: &Path) {
    let _ = std::fs::remove_file(socket_path(v2));
}

async fn connect(v2: &Path) -> io::Result<tokio::net::UnixStream> {
    let at = addressable(&socket_path(v2))?;
    tokio::net::UnixStream::connect(&at.path).await
}

/// A running server's control channel.
pub struct Client {
    v2: PathBuf,
}

/// An answer over the control channel.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Client {
    /// Sends one request (`target` is a path with its query, e.g. `/v2/_wharf/gc`).
    pub async fn request(&self, method: Method, target: &str) -> anyhow::Result<Answer> {
        let stream = connect(&self.v2).await.with_context(|| {
            format!(
                "a server holds the storage root but its control socket {} does not answer",
                socket_path(&self.v2).display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "control.sock")
            .header("user-agent", concat!("wharf-cli/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    /// A request whose 2xx answer is JSON of type `T`; anything else is an error with the
    /// server's message.
    pub async fn json<T: DeserializeOwned>(&self, method: Method, target: &str) -> anyhow::Result<T> {
        let answer = self.request(method, target).await?;
        if !answer.status.is_success() {
            bail!(
                "the server answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            );
        }
        serde_json::from_slice(&answer.body).with_context(|| format!("the server's answer to {target} is not what was expected"))
    }
}

/// Who acts on a storage root for a command.
pub enum Holder {
    /// A server runs on it: go through its control channel.
    Server(Client),
    /// Nobody did: this process now holds the root lock for as long as it keeps this.
    Local(RootLock),
}

/// Finds out who may act on the root under `v2`: the server holding it, or this process.
pub fn holder(v2: &Path) -> anyhow::Result<Holder> {
    match RootLock::acquire(v2) {
        Ok(lock) => Ok(Holder::Local(lock)),
        Err(LockError::Held { .. }) => Ok(Holder::Server(Client { v2: v2.to_path_buf() })),
        Err(e) => Err(e.into()),
    }
}

/// How a command's action was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Server,
    Local,
    /// On shared object storage, beside whatever replicas serve it.
    Bucket,
}

/// Opens the store under `cfg`'s root as `wharf serve` does, for a command holding the lock.
pub async fn open_registry(cfg: &Config) -> anyhow::Result<Arc<Registry>> {
    let root = cfg.root_directory();
    let store = crate::store::filesystem(&root)
        .await
        .with_context(|| format!("cannot use {} as the storage root", root.display()))?;
    Ok(Arc::new(Registry::new(store, registry_options(cfg)?)))
}

/// The registry settings `cfg` makes, for the server and for commands opening the store.
pub fn registry_options(cfg: &Config) -> anyhow::Result<crate::registry::Options> {
    let retention = crate::registry::retention::Rules::new(&cfg.storage.maintenance.retention).map_err(|e| anyhow::anyhow!(e))?;
    Ok(crate::registry::Options {
        delete_enabled: cfg.storage.delete.enabled,
        read_only: cfg.storage.maintenance.readonly.enabled,
        retention: Some(Arc::new(retention)),
        gc_delay: Some(cfg.storage.maintenance.gc.delay),
        shared_storage: cfg.storage.object().is_some(),
        gc_timing: gc_timing(cfg)?,
    })
}

/// The shared-storage collection's timing, checked.
fn gc_timing(cfg: &Config) -> anyhow::Result<crate::registry::gc::shared::Timing> {
    let gc = &cfg.storage.maintenance.gc;
    let timing = crate::registry::gc::shared::Timing {
        window: gc.window,
        poll: gc.poll,
        margin: gc.margin,
        max_run_age: gc.maxrunage,
    };
    timing.check().map_err(|e| anyhow::anyhow!(e))?;
    Ok(timing)
}

/// Runs one action on `cfg`'s storage root: through the running server (`method target`,
/// answering JSON of type `T`) when there is one, else `local` on the store opened here with the
/// root lock held. The one entry point for commands such as `wharf garbage-collect`.
/// The runtime a command that acts on the store runs on (two workers, as small machines have).
pub fn command_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn act<T, F, Fut>(cfg: &Config, method: Method, target: &str, local: F) -> anyhow::Result<(T, Via)>
where
    T: DeserializeOwned,
    F: FnOnce(Arc<Registry>) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let v2 = crate::store::paths::Layout::new(&cfg.root_directory()).v2().to_path_buf();
    let runtime = command_runtime()?;
    runtime.block_on(async {
        match holder(&v2)? {
            Holder::Server(client) => Ok((client.json(method, target).await?, Via::Server)),
            Holder::Local(_lock) => {
                let registry = open_registry(cfg).await?;
                Ok((local(registry).await?, Via::Local))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root deep enough that its socket path cannot fit `sockaddr_un` is still served and
    /// reached at the documented place.
    #[tokio::test]
    async fn a_socket_path_longer_than_sun_path_is_bound_and_reached() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("d".repeat(60)).join("e".repeat(60));
        let v2 = deep.join("docker/registry/v2");
        std::fs::create_dir_all(v2.join("_wharf")).unwrap();
        assert!(socket_path(&v2).as_os_str().len() > SUN_PATH_MAX);
        let listener = listen(&v2).unwrap();
        let meta = std::fs::symlink_metadata(socket_path(&v2)).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let accepted = tokio::spawn(async move { listener.accept().await.map(drop) });
        connect(&v2).await.unwrap();
        accepted.await.unwrap().unwrap();
        remove(&v2);
        assert!(connect(&v2).await.is_err(), "gone once removed");
    }
}
