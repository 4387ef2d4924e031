//! Replays the committed fuzz corpora of the TFTP layer (`fuzz/corpus/tftp_decode/` and
//! `fuzz/corpus/tftp_transfer/`) under `cargo test`, with the fuzz targets' own checks
//! (`fuzz/src/tftp.rs`).

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/tftp.rs"]
mod checks;

// The DHCP corpus replay includes the same file; each module keeps its own copy.
#[allow(clippy::duplicate_mod)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn tftp_decode_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/tftp_decode"),
        checks::check_tftp_decode,
    );
}

#[test]
fn tftp_transfer_corpus() {
    replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/tftp_transfer"),
        checks::check_tftp_transfer,
    );
}
