//! The controller's tables in PostgreSQL, beside the address manager's ([`PgStore`]): written
//! in the same transaction as each batch of address changes, so that both become durable
//! together, and shared by every region that uses the database.
//!
//! Several regions on one database each keep their state in memory and learn the others'
//! changes:
//!
//! - every commit ends with `NOTIFY maas_changes, '<region> <what>'` (`a`: addresses, `r`:
//!   records); each region listens on its own connection and, when another region committed,
//!   reloads what changed: its address manager, its records, or both (at most every
//!   [`FOLLOW_EVERY`]);
//! - the database settles races that memory cannot see. An address held by another region is
//!   refused by the address store; a machine row carries a revision, and a write that did not
//!   start from the revision stored is refused (another region allocated, deployed or
//!   released it first). A refused batch fails every operation in it (the API answers 409),
//!   and the region reloads.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use maas_ipam::PgStore;
use maas_ipam::postgres::{Client, NoTls};
use maas_net::Mac;

use super::store::{Change, Records, Store};

mod read;
mod schema;
mod write;

use self::read::read_all;
use self::schema::{VERSION, migrate};
use self::write::Hook;

/// The channel regions announce their commits on.
const CHANNEL: &str = "maas_changes";
/// The most machine events and audit entries read back (memory keeps as many).
const RECENT: i64 = 10_000;
/// How often, at most, a region reloads what other regions changed.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// A problem with the controller's tables in PostgreSQL. Messages name the database with its
/// password masked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgRecordsError {
    /// The address store (connection, migration, statements).
    #[error(transparent)]
    Store(#[from] maas_ipam::PgStoreError),
    /// A statement on the controller's tables failed.
    #[error("database {target}: cannot {action}: {source}")]
    Database {
        /// The database, password masked.
        target: String,
        /// What was being done.
        action: &'static str,
        /// The client's error.
        #[source]
        source: maas_ipam::postgres::Error,
    },
    /// The database's controller tables are newer than this build.
    #[error(
        "database {target}: the controller's tables have schema version {found}; this build knows versions up to {VERSION}"
    )]
    SchemaTooNew {
        /// The database.
        target: String,
        /// The version found.
        found: i32,
    },
    /// A stored record is not readable.
    #[error("database {target}: a stored {what} is not readable: {source}")]
    Decode {
        /// The database.
        target: String,
        /// What kind of record.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// What a region should read again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Want {
    /// The address records (another region's commit changed some).
    pub(crate) addresses: bool,
    /// The controller's records (another region's commit changed some, or a batch of this
    /// region was refused).
    pub(crate) records: bool,
}

impl Want {
    const BOTH: Self = Self {
        addresses: true,
        records: true,
    };

    fn any(self) -> bool {
        self.addresses || self.records
    }

    fn or(self, other: Self) -> Self {
        Self {
            addresses: self.addresses || other.addresses,
            records: self.records || other.records,
        }
    }

    /// The notification's text: what a commit changed (`a`: addresses, `r`: records).
    fn payload(self, origin: &str) -> String {
        let a = if self.addresses { "a" } else { "" };
        let r = if self.records { "r" } else { "" };
        format!("{origin} {a}{r}")
    }

    /// Reads a notification: who committed, and what changed.
    fn parse(payload: &str) -> (&str, Self) {
        let (origin, kinds) = payload.rsplit_once(' ').unwrap_or((payload, "ar"));
        let want = Self {
            addresses: kinds.contains('a'),
            records: kinds.contains('r'),
        };
        (origin, want)
    }
}

/// A change waiting for a commit, with the revision of the machine row it started from.
#[derive(Clone)]
struct Staged {
    change: Change,
    /// For a machine's change: the revision this region last saw (0: no row).
    rev: i64,
    /// For a machine's change: this write's name, unique across regions.
    writer: String,
}

/// What the hook (on the address store's writer thread) and the region share.
struct Shared {
    /// Staged, not yet taken by a commit.
    staged: Vec<Staged>,
    /// Taken by the commit in progress (written again if it is tried again).
    current: Vec<Staged>,
    /// The revision of each machine row as this region will have written it.
    revs: HashMap<Mac, i64>,
    /// This region's name on the change channel.
    origin: String,
    /// How many machine writes this region staged.
    writes: u64,
}

/// The controller's tables in PostgreSQL: see the module's documentation.
pub(crate) struct PgRecords {
    shared: Arc<Mutex<Shared>>,
    url: String,
    target: String,
    /// For reads after the start (reloads), made on first use and again after a failure.
    reader: Mutex<Option<Client>>,
    loaded: Mutex<Option<Records>>,
    /// Reload requests: other regions' commits, this region's refused batches.
    signal: Sender<Want>,
    signals: Mutex<Option<Receiver<Want>>>,
}

impl PgRecords {
    /// Connects the address store to `url`, migrates the controller's tables beside it, reads
    /// them, and makes every commit of the store write what is staged here.
    pub(crate) fn connect(url: &str) -> Result<(PgStore, Self), PgRecordsError> {
        let mut store = PgStore::connect(url)?;
        let target = store.target().to_owned();
        migrate(store.client(), &target)?;
        let (revs, records) = read_all(store.client(), &target, RECENT)?;
        let origin = region_name();
        let shared = Arc::new(Mutex::new(Shared {
            staged: Vec::new(),
            current: Vec::new(),
            revs,
            origin,
            writes: 0,
        }));
        let (signal, signals) = std::sync::mpsc::channel();
        store.on_commit(Hook {
            shared: Arc::clone(&shared),
            signal: signal.clone(),
        });
        Ok((
            store,
            Self {
                shared,
                url: url.to_owned(),
                target,
                reader: Mutex::new(None),
                loaded: Mutex::new(Some(records)),
                signal,
                signals: Mutex::new(Some(signals)),
            },
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether changes staged here are not yet committed (or refused): a reload now would
    /// read the database without them.
    pub(crate) fn busy(&self) -> bool {
        let shared = self.lock();
        !shared.staged.is_empty() || !shared.current.is_empty()
    }

    /// Reads every table again, and takes the machines' revisions from what it read.
    pub(crate) fn reload(&self) -> Result<Records, PgRecordsError> {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.as_ref().is_none_or(Client::is_closed) {
            *reader = Some(Client::connect(&self.url, NoTls).map_err(|source| {
                PgRecordsError::Database {
                    target: self.target.clone(),
                    action: "connect for a reload",
                    source,
                }
            })?);
        }
        let Some(client) = reader.as_mut() else {
            unreachable!("connected above");
        };
        let read = read_all(client, &self.target, RECENT);
        if read.is_err() {
            *reader = None;
        }
        let (revs, records) = read?;
        self.lock().revs = revs;
        Ok(records)
    }

    /// Reads every record, all events and audit entries included (to copy the state).
    pub(crate) fn read_everything(&self) -> Result<Records, PgRecordsError> {
        let mut client =
            Client::connect(&self.url, NoTls).map_err(|source| PgRecordsError::Database {
                target: self.target.clone(),
                action: "connect",
                source,
            })?;
        Ok(read_all(&mut client, &self.target, i64::MAX)?.1)
    }

    /// Starts following the other regions: a thread listens on the change channel, and
    /// another calls `reload` (at most every [`FOLLOW_EVERY`]) after another region's commit
    /// or a refused batch of this one, until `alive` is gone. Only the first call starts them.
    pub(crate) fn follow<T: Send + Sync + 'static>(
        &self,
        alive: Weak<T>,
        reload: impl Fn(&T, Want) -> bool + Send + 'static,
    ) {
        let Some(signals) = self
            .signals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let url = self.url.clone();
        let origin = self.lock().origin.clone();
        let signal = self.signal.clone();
        let watched = alive.clone();
        let target = self.target.clone();
        std::thread::Builder::new()
            .name("region-listener".into())
            .spawn(move || listen(&url, &target, &origin, &signal, &watched))
            .ok();
        std::thread::Builder::new()
            .name("region-follower".into())
            .spawn(move || follow_loop(&signals, &alive, reload))
            .ok();
    }
}

/// Listens for other regions' commits until `alive` is gone; after a lost connection it
/// connects again (at most once a second) and asks for a reload, since it may have missed
/// some.
fn listen<T>(url: &str, target: &str, origin: &str, signal: &Sender<Want>, alive: &Weak<T>) {
    while alive.strong_count() > 0 {
        let mut client = match Client::connect(url, NoTls)
            .and_then(|mut c| c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "region_listener_failed", database = target, error = %e);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let _ = signal.send(Want::BOTH);
        while alive.strong_count() > 0 {
            let mut notes = client.notifications();
            let mut iter = notes.timeout_iter(Duration::from_secs(1));
            match fallible_iterator::FallibleIterator::next(&mut iter) {
                Ok(Some(note)) => {
                    let (from, want) = Want::parse(note.payload());
                    if from != origin && want.any() {
                        let _ = signal.send(want);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(event = "region_listener_lost", database = target, error = %e);
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

/// Calls `reload` with what the signals asked for, after each burst of them and at most every
/// [`FOLLOW_EVERY`], until `alive` is gone; a reload that could not run (changes in flight,
/// the database away) is tried again.
fn follow_loop<T>(signals: &Receiver<Want>, alive: &Weak<T>, reload: impl Fn(&T, Want) -> bool) {
    let mut wanted = Want::default();
    loop {
        let wait = if wanted.any() {
            FOLLOW_EVERY
        } else {
            Duration::from_secs(1)
        };
        match signals.recv_timeout(wait) {
            Ok(want) => {
                wanted = wanted.or(want);
                // Let the burst finish: one reload for many commits.
                let until = Instant::now() + FOLLOW_EVERY;
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    match signals.recv_timeout(left) {
                        Ok(want) => wanted = wanted.or(want),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(state) = alive.upgrade() else {
            return;
        };
        if wanted.any() && reload(&state, wanted) {
            wanted = Want::default();
        }
    }
}

/// A name for this region on the change channel, unique among the regions of a database.
fn region_name() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{hex}", host.trim(), std::process::id())
}

impl Store for PgRecords {
    type Error = PgRecordsError;

    fn load(&self) -> Result<Records, PgRecordsError> {
        Ok(self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default())
    }

    fn stage(&self, changes: Vec<Change>) {
        let mut shared = self.lock();
        for change in changes {
            shared.writes += 1;
            let writer = format!("{}/{}", shared.origin, shared.writes);
            let rev = match &change {
                Change::PutMachine(m) => {
                    let rev = shared.revs.get(&m.mac).copied().unwrap_or(0);
                    shared.revs.insert(m.mac, rev + 1);
                    rev
                }
                Change::RemoveMachine(mac) => shared.revs.remove(mac).unwrap_or(0),
                _ => 0,
            };
            shared.staged.push(Staged {
                change,
                rev,
                writer,
            });
        }
    }
}
