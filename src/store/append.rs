//! The disk side of an upload append: chunks arrive from the connection through a bounded
//! channel and are written to the session's data file by a blocking thread, so receiving and
//! hashing (on the connection) overlap with writing (here).

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;

/// Chunks are gathered up to this many bytes and written with one vectored write: few system
/// calls, and no copy into an intermediate buffer.
const BATCH_BYTES: usize = 1024 * 1024;
/// Linux takes at most 1024 slices per vectored write; staying well below keeps each call whole.
const BATCH_SLICES: usize = 256;
/// Writeback of what was written is started every this many bytes.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

pub enum WriteMsg {
    Chunk(Bytes),
    /// The stream ended cleanly; anything else (the sender dropped) means abort.
    Finish,
}

/// Takes chunks until `Finish`, writes them, and returns the file's new length. If the stream is
/// aborted or a write fails, the file is cut back to its starting length, so a session never
/// keeps part of a chunk the client was told failed.
pub fn append_from_channel(path: PathBuf, mut rx: tokio::sync::mpsc::Receiver<WriteMsg>) -> io::Result<u64> {
    let mut file = OpenOptions::new().append(true).open(&path)?;
    let start = file.metadata()?.len();
    let mut batch = Batch::default();
    let mut writeback = Writeback { started_up_to: start };
    let mut written = start;
    let result = (|| {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                WriteMsg::Chunk(b) => {
                    batch.push(b);
                    if batch.is_full() {
                        written += batch.write_to(&mut file)?;
                        writeback.kick(&file, written, false);
                    }
                }
                WriteMsg::Finish => {
                    written += batch.write_to(&mut file)?;
                    // The rest is handed to the disk now; the commit's fsync then waits for
                    // less, and a session pushed in many small chunks gets the same head start.
                    writeback.kick(&file, written, true);
                    return file.metadata().map(|m| m.len());
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload body ended early"))
    })();
    if result.is_err() {
        let _ = file.set_len(start);
    }
    result
}

#[derive(Default)]
struct Batch {
    chunks: Vec<Bytes>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push(chunk);
        }
    }

    fn is_full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.chunks.len() >= BATCH_SLICES
    }

    /// Writes everything gathered, in order, and empties the batch; returns the bytes written.
    fn write_to(&mut self, file: &mut File) -> io::Result<u64> {
        let mut slices: Vec<IoSlice<'_>> = self.chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes")),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        drop(slices);
        let n = self.bytes as u64;
        self.chunks.clear();
        self.bytes = 0;
        Ok(n)
    }
}

/// Starts writeback of what an upload has written so far, so the disk works while the body is
/// still arriving and the fsync at commit finds little left to do. It only schedules writes:
/// durability still comes from that fsync.
struct Writeback {
    started_up_to: u64,
}

impl Writeback {
    fn kick(&mut self, file: &File, written_up_to: u64, all: bool) {
        let pending = written_up_to.saturating_sub(self.started_up_to);
        if pending == 0 || (!all && pending < WRITEBACK_STEP) {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // Best effort: an error here would show again, and count, at the fsync.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.started_up_to as libc::off64_t,
                    pending as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        self.started_up_to = written_up_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(initial: &[u8], msgs: Vec<WriteMsg>) -> (io::Result<u64>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, initial).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(msgs.len().max(1));
        for m in msgs {
            tx.try_send(m).ok().unwrap();
        }
        drop(tx);
        let result = append_from_channel(path.clone(), rx);
        (result, std::fs::read(&path).unwrap())
    }

    #[test]
    fn appends_many_chunks_in_order_across_batches() {
        // More chunks than one batch holds, of uneven sizes, some empty.
        let chunks: Vec<Vec<u8>> = (0..700).map(|i| vec![(i % 251) as u8; (i * 37) % 5000]).collect();
        let mut msgs: Vec<WriteMsg> = chunks.iter().map(|c| WriteMsg::Chunk(Bytes::from(c.clone()))).collect();
        msgs.push(WriteMsg::Finish);
        let (result, content) = run(b"head", msgs);
        let expected: Vec<u8> = b"head".iter().copied().chain(chunks.concat()).collect();
        assert_eq!(result.unwrap(), expected.len() as u64);
        assert_eq!(content, expected);
    }

    #[test]
    fn a_stream_that_ends_without_finish_is_rolled_back() {
        let msgs = vec![WriteMsg::Chunk(Bytes::from(vec![7u8; 3 * BATCH_BYTES]))];
        let (result, content) = run(b"kept", msgs);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(content, b"kept");
    }
}
