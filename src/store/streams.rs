//! Streaming stored bytes out. Blocking reads run on tokio's blocking pool and hand chunks to
//! the connection through a small bounded channel, so a slow client holds back the reader
//! instead of filling memory.

use super::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Read buffer for files that may change while they are read (upload sessions).
const READ_CHUNK: usize = 256 * 1024;
/// How much of a committed blob one memory map covers. Only mapped windows count towards the
/// process's resident memory, so this times the channel depth bounds what one pull holds.
const MAP_WINDOW: u64 = 2 * 1024 * 1024;
/// Chunks in flight between the reader thread and the connection.
const CHANNEL_DEPTH: usize = 2;

/// Streams `len` bytes of `file` from `start` with ordinary reads into fresh buffers. Safe for
/// files that another request may truncate (an upload rolling back a failed append).
pub fn read_stream(file: File, start: u64, len: u64) -> ByteStream {
    spawn_producer(move |tx| read_into(tx, file, start, len))
}

fn read_into(tx: &Sender, mut file: File, start: u64, len: u64) -> io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let mut reader = file.take(len);
    loop {
        // Sized to what is left, so a small blob does not cost a full chunk.
        let mut buf = vec![0u8; reader.limit().min(READ_CHUNK as u64) as usize];
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if !send(tx, Bytes::from(buf)) {
            return Ok(());
        }
    }
}

/// Streams `len` bytes of a committed blob from `start` as memory-mapped windows handed to the
/// connection as they are: the bytes go from the page cache to the socket with no copy through
/// a user-space buffer, which is what lets a pull run near loopback speed.
///
/// Only for committed blobs: they are never modified in place (a delete unlinks the file, which
/// leaves existing maps valid), so a map cannot lose its pages under the reader.
pub fn mapped_stream(file: File, start: u64, len: u64) -> ByteStream {
    spawn_producer(move |tx| {
        advise_sequential(&file, start, len);
        let end = start + len;
        let mut at = start;
        while at < end {
            let window = (end - at).min(MAP_WINDOW);
            // SAFETY: see the function comment; the file is a committed, immutable blob.
            let map = unsafe { memmap2::MmapOptions::new().offset(at).len(window as usize).populate().map(&file) };
            let Ok(map) = map else {
                // A file system that cannot map files (or a process out of address space)
                // still serves the blob, with ordinary reads.
                return read_into(tx, file, at, end - at);
            };
            if !send(tx, Bytes::from_owner(map)) {
                return Ok(());
            }
            at += window;
        }
        Ok(())
    })
}

/// Asks the kernel for aggressive read-ahead: a cold blob then streams at disk speed.
fn advise_sequential(file: &File, start: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Best effort: it only tunes read-ahead.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                start as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_SEQUENTIAL,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
}

type Sender = tokio::sync::mpsc::Sender<io::Result<Bytes>>;

/// False once the receiving side (the client) has gone away.
fn send(tx: &Sender, chunk: Bytes) -> bool {
    tx.blocking_send(Ok(chunk)).is_ok()
}

/// Runs `produce` on the blocking pool; its error, if any, ends the stream as an error item.
fn spawn_producer<F>(produce: F) -> ByteStream
where
    F: FnOnce(&Sender) -> io::Result<()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
