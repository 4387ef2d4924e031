//! The rack's durable queue: what it could not deliver to a region (lease operations it
//! acknowledged while cut off, seen reports, discoveries), on disk in the order it happened,
//! replayed when a region answers again.
//!
//! The file (`rack-queue.jsonl` in the state directory, mode 0600) holds one JSON line per
//! entry, each with a sequence number. An append is written and synced before
//! [`Queue::push`] returns, so a lease acknowledged after it survives a crash. Removing
//! entries rewrites the file whole (a temporary file, synced, renamed over the old one). A
//! line cut short by a crash during an append is dropped at the next open: its operation was
//! never acknowledged.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::protocol::{DiscoveryReport, LeaseReport, SeenReport};

/// The queue's file name in the state directory.
pub(crate) const QUEUE_FILE: &str = "rack-queue.jsonl";

/// The most entries kept: beyond it the oldest discoveries go first, then the oldest seen
/// reports; lease operations are never dropped.
pub(crate) const MAX_QUEUED: usize = 10_000;

/// One report waiting for a region.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Queued {
    /// A lease operation the rack acknowledged (or applied) while cut off.
    Lease(LeaseReport),
    /// What a machine told DHCP.
    Seen(SeenReport),
    /// A discovery.
    Discovery(DiscoveryReport),
}

impl Queued {
    /// The kind, for logs.
    pub(crate) const fn kind(&self) -> &'static str {
        match self {
            Self::Lease(_) => "lease",
            Self::Seen(_) => "seen",
            Self::Discovery(_) => "discovery",
        }
    }
}

/// One line of the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Its place in the order, increasing.
    pub(crate) seq: u64,
    /// The report.
    pub(crate) item: Queued,
}

/// The queue: its entries in memory, and the file they are kept in.
pub(crate) struct Queue {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: VecDeque<Entry>,
    next_seq: u64,
    file: std::fs::File,
}

impl Queue {
    /// Opens the queue at `path`, with what it held (a last line cut short is dropped).
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries = VecDeque::new();
        let mut torn = false;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => entries.push_back(entry),
                Err(e) => {
                    tracing::warn!(event = "queue_line_dropped", path = %path.display(), error = %e);
                    torn = true;
                }
            }
        }
        let next_seq = entries.back().map_or(1, |e| e.seq + 1);
        if torn || !text.is_empty() && !text.ends_with(b"\n") {
            rewrite(path, &entries)?;
        }
        let file = append_handle(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                entries,
                next_seq,
                file,
            }),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many entries wait.
    pub(crate) fn len(&self) -> usize {
        self.inner().entries.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `items`, on disk (synced) before this returns. Past [`MAX_QUEUED`] entries the
    /// oldest discoveries, then the oldest seen reports, are dropped (a tenth of the bound
    /// more at once).
    pub(crate) fn push(&self, items: Vec<Queued>) -> std::io::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner();
        let mut bytes = Vec::new();
        let first = inner.next_seq;
        for (i, item) in items.into_iter().enumerate() {
            let entry = Entry {
                seq: first + i as u64,
                item,
            };
            serde_json::to_writer(&mut bytes, &entry).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            inner.entries.push_back(entry);
        }
        inner.next_seq = inner.entries.back().map_or(first, |e| e.seq + 1);
        let written = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            // Not on disk: not queued either (the caller refuses what it carried).
            inner.entries.retain(|e| e.seq < first);
            return Err(e);
        }
        if inner.entries.len() > MAX_QUEUED {
            // A tenth more than needed, so a full queue is not rewritten at every push.
            let over = inner.entries.len() - MAX_QUEUED + MAX_QUEUED / 10;
            let dropped = drop_oldest(&mut inner.entries, over);
            if dropped != (0, 0) {
                tracing::warn!(
                    event = "queue_full_dropped",
                    discoveries = dropped.0,
                    seen = dropped.1,
                    kept = inner.entries.len(),
                );
                self.rewrite(&mut inner)?;
            }
        }
        Ok(())
    }

    /// Up to `max` entries from the front, in order.
    pub(crate) fn front(&self, max: usize) -> Vec<Entry> {
        self.inner().entries.iter().take(max).cloned().collect()
    }

    /// Removes the entries of `seqs` (delivered, or refused by a region for good).
    pub(crate) fn remove(&self, seqs: &BTreeSet<u64>) -> std::io::Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner();
        inner.entries.retain(|e| !seqs.contains(&e.seq));
        self.rewrite(&mut inner)
    }

    fn rewrite(&self, inner: &mut Inner) -> std::io::Result<()> {
        rewrite(&self.path, &inner.entries)?;
        inner.file = append_handle(&self.path)?;
        Ok(())
    }
}

/// Drops `over` entries, oldest discoveries first, then oldest seen reports: how many of
/// each.
fn drop_oldest(entries: &mut VecDeque<Entry>, over: usize) -> (usize, usize) {
    let mut dropped = (0, 0);
    for seen in [false, true] {
        let mut left = over - dropped.0 - dropped.1;
        entries.retain(|e| {
            let matches = match e.item {
                Queued::Discovery(_) => !seen,
                Queued::Seen(_) => seen,
                Queued::Lease(_) => false,
            };
            if matches && left > 0 {
                left -= 1;
                false
            } else {
                true
            }
        });
        let done = over - dropped.0 - dropped.1 - left;
        if seen {
            dropped.1 = done;
        } else {
            dropped.0 = done;
        }
    }
    dropped
}

fn append_handle(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Writes `entries` to `path` atomically.
fn rewrite(path: &Path, entries: &VecDeque<Entry>) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut bytes, entry).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
    }
    super::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LeaseOp;
    use maas_net::ClientKey;

    fn lease(n: u8) -> Queued {
        Queued::Lease(LeaseReport {
            op: LeaseOp::Bind,
            ip: format!("10.77.93.{n}").parse().unwrap(),
            client: ClientKey::Mac(format!("52:54:00:77:93:{n:02x}").parse().unwrap()),
            hostname: None,
            lease_secs: Some(600),
            quarantine_secs: None,
        })
    }

    fn seen(n: u8) -> Queued {
        Queued::Seen(SeenReport {
            mac: format!("52:54:00:77:94:{n:02x}").parse().unwrap(),
            ip: None,
            boot: None,
        })
    }

    fn ips(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match &e.item {
                Queued::Lease(r) => r.ip.to_string(),
                Queued::Seen(s) => s.mac.to_string(),
                Queued::Discovery(d) => d.ip.to_string(),
            })
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("maas-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(QUEUE_FILE)
    }

    /// What was pushed is there after a reopen, in order; removing some keeps the rest in
    /// order across another reopen, and new entries go after them.
    #[test]
    fn the_queue_survives_a_restart_in_order() {
        let path = scratch("restart");
        let queue = Queue::open(&path).unwrap();
        queue.push(vec![lease(1), seen(2)]).unwrap();
        queue.push(vec![lease(3)]).unwrap();
        drop(queue);
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let queue = Queue::open(&path).unwrap();
        let front = queue.front(10);
        assert_eq!(
            ips(&front),
            ["10.77.93.1", "52:54:00:77:94:02", "10.77.93.3"]
        );
        queue.remove(&BTreeSet::from([front[0].seq])).unwrap();
        queue.push(vec![lease(4)]).unwrap();
        drop(queue);
        let queue = Queue::open(&path).unwrap();
        let front = queue.front(10);
        assert_eq!(
            ips(&front),
            ["52:54:00:77:94:02", "10.77.93.3", "10.77.93.4"]
        );
        assert!(front.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    /// A line cut short by a crash is dropped at open; the whole lines before it stay.
    #[test]
    fn a_torn_last_line_is_dropped() {
        let path = scratch("torn");
        let queue = Queue::open(&path).unwrap();
        queue.push(vec![lease(1), lease(2)]).unwrap();
        drop(queue);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"seq":3,"item":{"lea"#).unwrap();
        drop(file);
        let queue = Queue::open(&path).unwrap();
        assert_eq!(ips(&queue.front(10)), ["10.77.93.1", "10.77.93.2"]);
        queue.push(vec![lease(5)]).unwrap();
        drop(queue);
        let queue = Queue::open(&path).unwrap();
        assert_eq!(
            ips(&queue.front(10)),
            ["10.77.93.1", "10.77.93.2", "10.77.93.5"]
        );
    }

    /// A queue pushed past its bound drops the oldest reports, keeps its lease operations, and
    /// says so on disk too.
    #[test]
    fn a_full_queue_keeps_its_leases_on_disk() {
        let path = scratch("full");
        let queue = Queue::open(&path).unwrap();
        let mut items = vec![lease(1)];
        items.extend((0..MAX_QUEUED).map(|i| seen(u8::try_from(i % 250).unwrap())));
        queue.push(items).unwrap();
        let kept = MAX_QUEUED - MAX_QUEUED / 10;
        assert_eq!(queue.len(), kept);
        drop(queue);
        let queue = Queue::open(&path).unwrap();
        assert_eq!(queue.len(), kept);
        assert_eq!(ips(&queue.front(1)), ["10.77.93.1"]);
    }

    /// Past the bound, seen reports go (oldest first) and lease operations stay.
    #[test]
    fn a_full_queue_drops_reports_never_leases() {
        let mut entries: VecDeque<Entry> = [lease(1), seen(2), lease(3), seen(4), seen(5)]
            .into_iter()
            .enumerate()
            .map(|(i, item)| Entry {
                seq: i as u64,
                item,
            })
            .collect();
        assert_eq!(drop_oldest(&mut entries, 2), (0, 2));
        let left: Vec<Entry> = entries.into_iter().collect();
        assert_eq!(
            ips(&left),
            ["10.77.93.1", "10.77.93.3", "52:54:00:77:94:05"]
        );
    }
}
