//! The journal of `maas-ipam`'s embedded store: replaying any bytes gives batches or an error,
//! never a panic, and what it gives is consistent.

use maas_ipam::read_journal;

/// The first byte is the checkpoint (the number of the last entry the tables hold), the next
/// eight the journal id (little-endian); the rest is the journal file.
pub fn check_ipam_journal(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Some((id, bytes)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let (checkpoint, id) = (u64::from(first), u64::from_le_bytes(*id));
    let Ok(replay) = read_journal(bytes, id, checkpoint) else {
        return;
    };
    assert!(replay.end <= bytes.len(), "replay ends past the file");
    assert_eq!(replay.batches.is_empty(), replay.end == 0);
    for (i, (seq, _)) in replay.batches.iter().enumerate() {
        assert_eq!(
            *seq,
            checkpoint + 1 + i as u64,
            "entries follow the checkpoint"
        );
    }
    // The replayed prefix alone replays the same.
    let again = read_journal(&bytes[..replay.end], id, checkpoint).expect("a replayed prefix");
    assert_eq!(again, replay);
}
