//! Round trips, reopening and agreement with the memory store are in the store suite that
//! every store runs (`tests/integration/store`); these are the tests of what only this store
//! has.

use std::path::PathBuf;

use super::*;

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "maas-ipam-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).expect("create a temporary directory");
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("ipam.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn second_open_is_refused_with_the_path() {
    let dir = TempDir::new("locked");
    let _first = RedbStore::open(dir.file()).unwrap();
    let err = RedbStore::open(dir.file()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.file().display().to_string()),
        "{err}"
    );
}

#[test]
fn open_fails_in_a_missing_directory() {
    let dir = TempDir::new("missing");
    let err = RedbStore::open(dir.0.join("nowhere").join("ipam.redb")).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn another_format_version_is_refused() {
    let dir = TempDir::new("version");
    drop(RedbStore::open(dir.file()).unwrap());
    {
        let db = Database::create(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_FORMAT, &99u32.to_le_bytes()[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.file()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedVersion {
                found: 99,
                supported: RedbStore::FORMAT_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn damaged_entries_are_reported_not_panicked_on() {
    let dir = TempDir::new("damaged");
    drop(RedbStore::open(dir.file()).unwrap());
    {
        let db = Database::create(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(RECORDS)
            .unwrap()
            .insert((&[1u8, 2, 3][..], false), &[0xffu8, 0xff][..])
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.file()).unwrap().load().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    let dir = TempDir::new("undecodable");
    drop(RedbStore::open(dir.file()).unwrap());
    {
        let db = Database::create(dir.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(RECORDS)
            .unwrap()
            .insert((&[10u8, 77, 1, 5][..], false), &[0xffu8, 0xff][..])
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.file()).unwrap().load().unwrap_err();
    assert!(matches!(err, StoreError::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("10.77.1.5"), "{err}");
}

/// The application's own table is written in the address manager's transactions: a
/// record queued before `sync` is durable once its ticket is, with no address change, and
/// reads back after a reopen beside the address records.
#[test]
fn an_applications_records_commit_with_the_addresses() {
    const APP: TableDefinition<'_, &str, &str> = TableDefinition::new("app");
    let dir = TempDir::new("hook");
    let queue: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = std::sync::Arc::default();
    {
        let mut store = RedbStore::open(dir.file()).expect("open");
        let pending = std::sync::Arc::clone(&queue);
        let waiting = std::sync::Arc::clone(&queue);
        store.on_commit(
            move || !waiting.lock().expect("lock").is_empty(),
            move |txn| {
                let mut table = txn.open_table(APP)?;
                for (k, v) in pending.lock().expect("lock").drain(..) {
                    table.insert(k.as_str(), v.as_str())?;
                }
                Ok(())
            },
        );
        let durable = crate::Durable::open(store).expect("durable");
        queue
            .lock()
            .expect("lock")
            .push(("machine".into(), "52:54:00:77:00:01".into()));
        let ticket = durable.sync().expect("sync");
        durable.wait(ticket).expect("durable");
        assert!(queue.lock().expect("lock").is_empty());
        drop(durable);
    }
    let store = RedbStore::open(dir.file()).expect("reopen");
    let txn = store.database().begin_read().expect("read");
    let table = txn.open_table(APP).expect("table");
    assert_eq!(
        table
            .get("machine")
            .expect("get")
            .map(|v| v.value().to_string()),
        Some("52:54:00:77:00:01".to_string())
    );
}

mod journal_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use maas_net::{Mac, SubnetId};
    use proptest::prelude::*;

    use super::*;
    use crate::{AddressKind, Lease, LeaseState, MemoryStore, Timestamp};

    /// A lease's record for `host`, or the removal of it, or a binding.
    fn change(op: u8, host: u8, client: u8) -> Change {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 77, 0, host));
        let client = ClientKey::Mac(Mac::from([2, 0, 0, 0, 0, client]));
        match op % 3 {
            0 => Change::PutRecord(Record {
                ip,
                subnet: SubnetId::new(1),
                kind: AddressKind::Dhcp,
                mac: None,
                owner: None,
                lease: Some(Lease {
                    client,
                    state: LeaseState::Bound,
                    expires: Timestamp(u64::from(host) + 1000),
                }),
                created: Timestamp(0),
                updated: Timestamp(u64::from(op)),
            }),
            1 => Change::RemoveRecord {
                ip,
                discovered: false,
            },
            _ => Change::PutBinding { client, ip },
        }
    }

    fn sorted(mut snapshot: Snapshot) -> Snapshot {
        snapshot.records.sort_by_key(record_key);
        snapshot.bindings.sort();
        snapshot
    }

    /// Copies the database and its journal as they are on disk now, as a crash would leave
    /// them, into `to`.
    fn crash_image(dir: &TempDir, to: &TempDir) {
        std::fs::copy(dir.file(), to.file()).expect("copy the database");
        let journal = journal::path_for(&dir.file());
        if journal.exists() {
            std::fs::copy(&journal, journal::path_for(&to.file())).expect("copy the journal");
        }
    }

    /// Takes a crash image of `store` (open, as a killed process leaves it), reopens the
    /// image, checks it holds what `memory` holds, and returns it.
    /// A journaled store in a new directory, a directory for its crash image, and the
    /// in-memory store it is compared with.
    fn journaled(tag: &str) -> (TempDir, TempDir, RedbStore, MemoryStore) {
        let dir = TempDir::new(tag);
        let image = TempDir::new(&format!("{tag}-image"));
        let store = RedbStore::open(dir.file()).expect("open");
        (dir, image, store, MemoryStore::new())
    }

    fn reopen_crash_image(
        store: RedbStore,
        dir: &TempDir,
        image: &TempDir,
        memory: &MemoryStore,
    ) -> RedbStore {
        crash_image(dir, image);
        drop(store);
        let mut reopened = RedbStore::open(image.file()).expect("reopen the crash image");
        assert_eq!(
            sorted(reopened.load().expect("load")),
            sorted(memory.snapshot())
        );
        reopened
    }

    #[test]
    fn journaled_batches_survive_a_crash() {
        let (dir, image, mut store, mut memory) = journaled("journal-crash");
        for n in 1..=20 {
            let batch = [change(0, n, n), change(2, n, n)];
            store.commit(&batch).expect("commit");
            memory.commit(&batch).expect("commit");
        }
        let journal = store.journal.as_ref().expect("a journal");
        assert!(!journal.is_empty(), "the batches went to the journal");
        assert_eq!(journal.last_seq(), 20);
        let reopened = reopen_crash_image(store, &dir, &image, &memory);
        // The replay was checkpointed: the tables alone hold everything now.
        assert!(reopened.journal.as_ref().is_some_and(Journal::is_empty));
    }

    #[test]
    fn an_owned_batch_is_moved_to_the_pending_list_and_survives_a_crash() {
        let (dir, image, mut store, mut memory) = journaled("journal-owned");
        for n in 1..=5 {
            let mut batch = vec![change(0, n, n), change(2, n, n)];
            memory.commit(&batch).expect("commit");
            store.commit_owned(&mut batch).expect("commit");
            assert!(
                batch.is_empty(),
                "the journaled changes were moved, not copied"
            );
        }
        // One that goes to the tables is left to the caller.
        let mut large: Vec<Change> = (0..RedbStore::DIRECT_BATCH)
            .map(|n| change(0, (n % 250) as u8 + 6, (n % 200) as u8))
            .collect();
        memory.commit(&large).expect("commit");
        store.commit_owned(&mut large).expect("commit");
        assert_eq!(large.len(), RedbStore::DIRECT_BATCH);
        let mut last = vec![change(1, 3, 3), change(2, 3, 9)];
        memory.commit(&last).expect("commit");
        store.commit_owned(&mut last).expect("commit");
        assert_eq!(store.pending.len(), 2);
        reopen_crash_image(store, &dir, &image, &memory);
    }

    #[test]
    fn a_batch_journals_only_the_last_change_of_each_key() {
        let (dir, image, mut store, mut memory) = journaled("journal-superseded");
        // An offer's hold, then the lease of the same address, then its binding; a record
        // put and then removed; by reference and by value.
        let first = [
            change(0, 1, 1),
            change(3, 1, 1),
            change(2, 1, 1),
            change(0, 2, 2),
            change(1, 2, 2),
        ];
        memory.commit(&first).expect("commit");
        store.commit(&first).expect("commit");
        assert_eq!(store.pending.len(), 3);
        let mut second = vec![change(0, 3, 3), change(3, 3, 4), change(2, 3, 4)];
        memory.commit(&second).expect("commit");
        store.commit_owned(&mut second).expect("commit");
        assert!(second.is_empty());
        assert_eq!(store.pending.len(), 5);
        assert!(matches!(
            &store.pending[3],
            Change::PutRecord(r) if r.updated == Timestamp(3)
        ));
        reopen_crash_image(store, &dir, &image, &memory);
    }

    #[test]
    fn a_large_batch_goes_to_the_tables_with_what_was_journaled() {
        let (dir, image, mut store, mut memory) = journaled("journal-large");
        let small = [change(0, 1, 1), change(2, 1, 1)];
        store.commit(&small).expect("commit");
        memory.commit(&small).expect("commit");
        assert!(!store.journal.as_ref().expect("journal").is_empty());
        let large: Vec<Change> = (0..RedbStore::DIRECT_BATCH)
            .map(|n| change(0, (n % 250) as u8 + 2, (n % 200) as u8))
            .collect();
        store.commit(&large).expect("commit");
        memory.commit(&large).expect("commit");
        // Written once, into the tables, and the journal started over.
        assert!(store.journal.as_ref().expect("journal").is_empty());
        assert!(store.pending.is_empty());
        reopen_crash_image(store, &dir, &image, &memory);
    }

    #[test]
    fn a_journal_beside_a_new_database_is_not_replayed() {
        let dir = TempDir::new("journal-orphan");
        let image = TempDir::new("journal-orphan-image");
        let mut store = RedbStore::open(dir.file()).expect("open");
        store.commit(&[change(0, 1, 1)]).expect("commit");
        crash_image(&dir, &image);
        drop(store);
        // The database is deleted and created again; its old journal stays.
        std::fs::remove_file(image.file()).expect("remove");
        let mut fresh = RedbStore::open(image.file()).expect("open a new database");
        assert!(fresh.load().expect("load").is_empty());
    }

    #[test]
    fn a_torn_last_entry_is_not_replayed() {
        let (dir, image, mut store, mut memory) = journaled("journal-torn");
        for n in 1..=5 {
            let batch = [change(0, n, n)];
            store.commit(&batch).expect("commit");
            if n < 5 {
                memory.commit(&batch).expect("commit");
            }
        }
        let end = store.journal.as_ref().expect("journal").end();
        crash_image(&dir, &image);
        drop(store);
        // The last entry's final byte never reached the disk.
        let path = journal::path_for(&image.file());
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[end as usize - 1] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let mut reopened = RedbStore::open(image.file()).expect("reopen");
        assert_eq!(
            sorted(reopened.load().expect("load")),
            sorted(memory.snapshot())
        );
    }

    #[test]
    fn hook_with_records_commits_to_the_tables() {
        let dir = TempDir::new("journal-hook");
        let mut store = RedbStore::open(dir.file()).expect("open");
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pending = std::sync::Arc::clone(&flag);
        let written = std::sync::Arc::clone(&flag);
        store.on_commit(
            move || pending.load(std::sync::atomic::Ordering::SeqCst),
            move |_| {
                written.store(false, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            },
        );
        store.commit(&[change(0, 1, 1)]).expect("commit");
        assert!(!store.journal.as_ref().expect("journal").is_empty());
        // Nothing staged and no change: no commit at all.
        store.commit(&[]).expect("commit");
        assert_eq!(store.journal.as_ref().expect("journal").last_seq(), 1);
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        store.commit(&[]).expect("commit");
        assert!(
            !flag.load(std::sync::atomic::Ordering::SeqCst),
            "the hook wrote"
        );
        assert!(store.journal.as_ref().expect("journal").is_empty());
        assert!(store.pending.is_empty());
    }

    #[test]
    fn version_1_and_2_files_are_upgraded_and_their_data_kept() {
        for old in [1u32, 2] {
            let dir = TempDir::new(&format!("journal-v{old}"));
            {
                let mut store = RedbStore::open_with_journal(dir.file(), 0).expect("open");
                store.commit(&[change(0, 7, 7)]).expect("commit");
                let txn = store.db.begin_write().expect("write");
                txn.open_table(META)
                    .expect("meta")
                    .insert(META_FORMAT, &old.to_le_bytes()[..])
                    .expect("insert");
                txn.commit().expect("commit");
            }
            let mut store = RedbStore::open(dir.file()).expect("open an older file");
            assert_eq!(
                store.load().expect("load").records.len(),
                1,
                "version {old}"
            );
            let txn = store.db.begin_read().expect("read");
            let meta = txn.open_table(META).expect("meta");
            let version = meta
                .get(META_FORMAT)
                .expect("get")
                .map(|v| v.value().to_vec());
            assert_eq!(
                version,
                Some(RedbStore::FORMAT_VERSION.to_le_bytes().to_vec())
            );
        }
    }

    #[test]
    fn replay_stops_at_zeros_stale_entries_and_reports_gaps() {
        assert_eq!(read_journal(&[0; 4096], 9, 0), Ok(JournalReplay::default()));
        let one = journal::encode(9, 1, &[change(0, 1, 1)], Vec::new()).expect("encode");
        let two = journal::encode(9, 2, &[change(2, 1, 1)], Vec::new()).expect("encode");
        let three = journal::encode(9, 3, &[change(1, 1, 1)], Vec::new()).expect("encode");
        let all = [one.clone(), two.clone(), three.clone()].concat();
        assert_eq!(read_journal(&all, 9, 0).expect("replay").batches.len(), 3);
        // After a checkpoint at 3, the same bytes are stale.
        assert_eq!(read_journal(&all, 9, 3).expect("replay").batches.len(), 0);
        // Entry 4 written over entry 1: 4 is replayed, 2 and 3 are stale.
        let four = journal::encode(9, 4, &[change(1, 1, 1)], Vec::new()).expect("encode");
        let rewritten = [four.clone(), two.clone(), three.clone()].concat();
        let replay = read_journal(&rewritten, 9, 3).expect("replay");
        assert_eq!(replay.batches.len(), 1);
        assert_eq!(replay.end, four.len());
        // An intact entry that skips a number is damage, not a torn write.
        let gap = [one, three].concat();
        assert!(matches!(
            read_journal(&gap, 9, 0),
            Err(JournalError::Gap {
                found: 3,
                expected: 2,
                ..
            })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the journal's size (checkpoints in between, entries too large for it), a
        /// crash image taken after any commit holds exactly what was committed.
        #[test]
        fn crash_images_hold_every_commit(
            capacity in prop_oneof![Just(0u64), 100u64..2_000, Just(1 << 20)],
            batches in prop::collection::vec(
                prop::collection::vec((0u8..3, 1u8..12, 0u8..6), 0..8),
                1..24,
            ),
            crash_at in 0usize..24,
        ) {
            let dir = TempDir::new("journal-prop");
            let image = TempDir::new("journal-prop-image");
            let mut store = RedbStore::open_with_journal(dir.file(), capacity).expect("open");
            let mut memory = MemoryStore::new();
            for (i, batch) in batches.iter().enumerate() {
                let changes: Vec<Change> =
                    batch.iter().map(|&(op, host, client)| change(op, host, client)).collect();
                store.commit(&changes).expect("commit");
                memory.commit(&changes).expect("commit");
                if i == crash_at.min(batches.len() - 1) {
                    crash_image(&dir, &image);
                    break;
                }
            }
            drop(store);
            let mut reopened = RedbStore::open_with_journal(image.file(), capacity).expect("reopen");
            prop_assert_eq!(sorted(reopened.load().expect("load")), sorted(memory.snapshot()));
        }
    }
}
