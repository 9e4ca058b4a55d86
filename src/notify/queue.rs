//! An endpoint's on-disk event queue: one file per event, named by a sequence number that
//! only grows, so the directory listing is the delivery order. A file is written under a
//! temporary name and renamed into place, so a crash leaves whole events or none; it is
//! removed only once the endpoint accepted it. The queue is bounded: when it holds `max`
//! events, new ones are refused (the caller counts and logs them) rather than the oldest
//! dropped, so what is queued still arrives in order.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SUFFIX: &str = ".json";
const TEMP_SUFFIX: &str = ".tmp";

pub struct DiskQueue {
    dir: PathBuf,
    max: u64,
    state: Mutex<State>,
}

struct State {
    /// Sequence numbers on disk, oldest first.
    queued: VecDeque<u64>,
    next: u64,
}

/// What `push_batch` did with a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub queued: u64,
    /// Refused because the queue was full.
    pub refused: u64,
}

impl DiskQueue {
    /// Opens (creating) the queue in `dir`, picking up what an earlier run left there.
    pub fn open(dir: &Path, max: u64) -> io::Result<DiskQueue> {
        fs::create_dir_all(dir)?;
        let mut queued = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMP_SUFFIX) {
                // An event whose write a crash cut short: it was never acknowledged as queued.
                let _ = fs::remove_file(entry.path());
            } else if let Some(seq) = name.strip_suffix(SUFFIX).and_then(|n| n.parse::<u64>().ok()) {
                queued.push(seq);
            }
        }
        queued.sort_unstable();
        let next = queued.last().map_or(0, |last| last + 1);
        Ok(DiskQueue {
            dir: dir.to_path_buf(),
            max: max.max(1),
            state: Mutex::new(State {
                queued: queued.into(),
                next,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> u64 {
        self.state().queued.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn path(&self, seq: u64, suffix: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}{suffix}"))
    }

    /// Queues `bodies` in order, durably: every file and the directory are synced once for
    /// the whole batch before the events count as queued.
    pub fn push_batch(&self, bodies: &[Vec<u8>]) -> io::Result<Pushed> {
        let mut pushed = Pushed::default();
        let mut written = Vec::new();
        {
            // One writer (the endpoint's enqueuer) at a time; the lock keeps `next` unique.
            let mut state = self.state();
            for body in bodies {
                if state.queued.len() as u64 + written.len() as u64 >= self.max {
                    pushed.refused += 1;
                    continue;
                }
                let seq = state.next;
                state.next += 1;
                let temp = self.path(seq, TEMP_SUFFIX);
                let mut file = File::create(&temp)?;
                file.write_all(body)?;
                written.push((seq, temp, file));
            }
        }
        for (_, _, file) in &written {
            file.sync_data()?;
        }
        for (seq, temp, _) in &written {
            fs::rename(temp, self.path(*seq, SUFFIX))?;
        }
        File::open(&self.dir)?.sync_all()?;
        let mut state = self.state();
        for (seq, _, _) in written {
            state.queued.push_back(seq);
            pushed.queued += 1;
        }
        Ok(pushed)
    }

    /// The oldest event, not removed.
    pub fn oldest(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        loop {
            let Some(seq) = self.state().queued.front().copied() else {
                return Ok(None);
            };
            match fs::read(self.path(seq, SUFFIX)) {
                Ok(body) => return Ok(Some((seq, body))),
                // Removed from outside (an operator emptying the queue): skip it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.forget(seq),
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes a delivered event.
    pub fn remove(&self, seq: u64) -> io::Result<()> {
        match fs::remove_file(self.path(seq, SUFFIX)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.forget(seq);
        Ok(())
    }

    fn forget(&self, seq: u64) {
        let mut state = self.state();
        if state.queued.front() == Some(&seq) {
            state.queued.pop_front();
        } else {
            state.queued.retain(|s| *s != seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn events_come_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), 10).unwrap();
        assert_eq!(q.push_batch(&bodies(&["a", "b"])).unwrap().queued, 2);
        let (first, body) = q.oldest().unwrap().unwrap();
        assert_eq!(body, b"a");
        q.remove(first).unwrap();
        drop(q);
        // A write cut short by a crash is not an event.
        fs::write(dir.path().join(format!("{:020}.tmp", 7)), b"half").unwrap();
        let q = DiskQueue::open(dir.path(), 10).unwrap();
        q.push_batch(&bodies(&["c"])).unwrap();
        let mut seen = Vec::new();
        while let Some((seq, body)) = q.oldest().unwrap() {
            seen.push(String::from_utf8(body).unwrap());
            q.remove(seq).unwrap();
        }
        assert_eq!(seen, ["b", "c"]);
        assert!(q.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left on disk");
    }

    #[test]
    fn a_full_queue_refuses_new_events_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), 2).unwrap();
        let pushed = q.push_batch(&bodies(&["a", "b", "c"])).unwrap();
        assert_eq!(pushed, Pushed { queued: 2, refused: 1 });
        assert_eq!(q.oldest().unwrap().unwrap().1, b"a");
        assert_eq!(q.len(), 2);
    }
}
