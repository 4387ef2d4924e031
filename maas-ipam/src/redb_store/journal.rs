//! The store's journal: each group commit appended to a preallocated file and synced, so that
//! a commit costs one contiguous write and one data sync; the database takes the journal's
//! changes in bulk at a checkpoint.
//!
//! Layout: entries one after the other from offset 0, each
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 4     | payload length, `u32` little-endian                       |
//! | 4     | CRC-32 of the database's journal id, the sequence number and the payload, `u32` LE |
//! | 8     | sequence number, `u64` LE (one more than the entry before) |
//! | n     | payload: the batch's [`Change`]s, postcard                |
//!
//! The database records the sequence number of the last entry it holds (its checkpoint), and
//! a random journal id drawn when it was created, so that a journal left beside another
//! database (one deleted and created again) checks as damaged and is not replayed.
//! After a checkpoint the journal is written from offset 0 again with the next number, so an
//! entry left from before is recognised as stale by its number, and an entry torn by a crash
//! by its checksum: replay takes the entries from offset 0 whose checksums hold and whose
//! numbers follow the checkpoint one by one, and stops at the first that does not.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::Change;

/// Bytes before an entry's payload.
pub(super) const HEADER: usize = 16;

/// What replaying a journal found ([`read_journal`](crate::read_journal)): the batches after
/// the checkpoint, in order.
#[derive(Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct JournalReplay {
    /// Each batch with its entry's sequence number.
    pub batches: Vec<(u64, Vec<Change>)>,
    /// Where the last replayed entry ends, in bytes from the start.
    pub end: usize,
}

/// A journal that cannot be replayed: an entry whose checksum holds but whose content does
/// not (written by another build, or damaged in a way a torn write does not explain).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// An intact entry's payload is not a list of changes.
    #[error("journal entry {seq} at offset {offset} does not decode: {reason}")]
    Undecodable {
        /// The entry's sequence number.
        seq: u64,
        /// Where it starts.
        offset: usize,
        /// What the decoder reported.
        reason: String,
    },
    /// An intact entry skips sequence numbers.
    #[error("journal entry at offset {offset} is number {found}; number {expected} was due")]
    Gap {
        /// Where it starts.
        offset: usize,
        /// Its number.
        found: u64,
        /// The number that should have come.
        expected: u64,
    },
}

/// The checksum of an entry: the journal id, its sequence number, then its payload.
fn checksum(id: u64, seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&id.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Decodes a [`RedbStore`](crate::RedbStore) journal: the batches in `bytes` that come after
/// the checkpoint `checkpointed` (the number of the last entry the tables hold) in the journal
/// of the database whose journal id is `id`, as opening the store replays them. Entries from before the checkpoint and a tail torn by a crash end
/// the replay; an intact entry that does not decode, or that skips numbers, is an error.
///
/// Any input gives batches or an error, never a panic.
pub fn read_journal(
    bytes: &[u8],
    id: u64,
    checkpointed: u64,
) -> Result<JournalReplay, JournalError> {
    let mut replay = JournalReplay::default();
    let mut offset = 0;
    let mut expected = checkpointed.saturating_add(1);
    while let Some(header) = bytes.get(offset..offset + HEADER) {
        let field = |at: usize| <[u8; 4]>::try_from(&header[at..at + 4]).unwrap_or_default();
        let len = u32::from_le_bytes(field(0)) as usize;
        let crc = u32::from_le_bytes(field(4));
        let seq = u64::from_le_bytes(<[u8; 8]>::try_from(&header[8..16]).unwrap_or_default());
        let Some(payload) = (offset + HEADER)
            .checked_add(len)
            .and_then(|end| bytes.get(offset + HEADER..end))
        else {
            break; // Runs past the file: torn.
        };
        if checksum(id, seq, payload) != crc {
            break; // Torn, or never written since the file was preallocated.
        }
        if seq != expected {
            if seq <= checkpointed {
                break; // Stale: from before the checkpoint.
            }
            return Err(JournalError::Gap {
                offset,
                found: seq,
                expected,
            });
        }
        let changes: Vec<Change> =
            postcard::from_bytes(payload).map_err(|e| JournalError::Undecodable {
                seq,
                offset,
                reason: e.to_string(),
            })?;
        replay.batches.push((seq, changes));
        offset += HEADER + len;
        replay.end = offset;
        expected = expected.saturating_add(1);
    }
    Ok(replay)
}

/// Encodes one entry of `changes` numbered `seq` for the journal `id` into `buf` (cleared
/// first).
pub(super) fn encode(
    id: u64,
    seq: u64,
    changes: &[Change],
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, (postcard::Error, Vec<u8>)> {
    buf.clear();
    buf.resize(HEADER, 0);
    let mut buf = match postcard::to_extend(changes, buf) {
        Ok(buf) => buf,
        Err(e) => return Err((e, Vec::new())),
    };
    let len = buf.len() - HEADER;
    let Ok(len32) = u32::try_from(len) else {
        return Err((postcard::Error::SerializeBufferFull, buf));
    };
    let crc = checksum(id, seq, &buf[HEADER..]);
    buf[0..4].copy_from_slice(&len32.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    Ok(buf)
}

/// Why an append did not happen.
#[derive(Debug)]
pub(super) enum AppendError {
    /// The entry does not fit in what is left of the journal: checkpoint, then try again (an
    /// entry larger than the whole journal never fits: commit it to the database instead).
    Full,
    /// The batch could not be encoded.
    Encode(postcard::Error),
    /// Writing or syncing failed.
    Io(std::io::Error),
}

/// The journal file of one store, open for appending.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    capacity: u64,
    /// Where the next entry goes.
    pos: u64,
    /// The next entry's number.
    next_seq: u64,
    /// The database's journal id.
    id: u64,
    /// Scratch space for encoding.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("pos", &self.pos)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// The journal's file beside the database file `db`: its name with `-journal` appended.
pub(super) fn path_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push("-journal");
    db.with_file_name(name)
}

/// Reads the whole journal at `path`, if there is one.
pub(super) fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Journal {
    /// Opens the journal at `path` for appending after the checkpoint `checkpointed` (whose
    /// entries the database holds), creating it or growing it to `capacity` bytes of zeros,
    /// synced, so that an append rewrites allocated blocks and its sync writes no metadata.
    pub(super) fn create(
        path: PathBuf,
        capacity: u64,
        id: u64,
        checkpointed: u64,
    ) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len < capacity {
            let zeros = vec![0u8; 64 * 1024];
            let mut at = len;
            while at < capacity {
                let n = (capacity - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(Self {
            file,
            path,
            capacity,
            pos: 0,
            next_seq: checkpointed.wrapping_add(1),
            id,
            buf: Vec::new(),
        })
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the last entry appended (the checkpoint's, when none was since).
    pub(super) fn last_seq(&self) -> u64 {
        self.next_seq.wrapping_sub(1)
    }

    /// Where the next entry goes: the bytes appended since the last checkpoint.
    #[cfg(test)]
    pub(super) fn end(&self) -> u64 {
        self.pos
    }

    /// Whether entries were appended since the last checkpoint.
    pub(super) fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends `changes` as one entry and syncs it: when this returns `Ok`, the entry survives
    /// a crash.
    pub(super) fn append(&mut self, changes: &[Change]) -> Result<(), AppendError> {
        let buf = encode(
            self.id,
            self.next_seq,
            changes,
            std::mem::take(&mut self.buf),
        )
        .map_err(|(e, buf)| {
            self.buf = buf;
            AppendError::Encode(e)
        })?;
        let fits = self.pos + buf.len() as u64 <= self.capacity;
        let result = if fits {
            self.file
                .write_all_at(&buf, self.pos)
                .and_then(|()| self.file.sync_data())
                .map_err(AppendError::Io)
        } else {
            Err(AppendError::Full)
        };
        if result.is_ok() {
            self.pos += buf.len() as u64;
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        self.buf = buf;
        result
    }

    /// After a checkpoint that holds every entry: the next entry goes at the start again.
    pub(super) fn rewind(&mut self) {
        self.pos = 0;
    }
}
