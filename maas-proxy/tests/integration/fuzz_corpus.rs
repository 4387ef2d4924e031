//! Replays the committed fuzz corpus of the request checks (`fuzz/corpus/proxy_request/`)
//! under `cargo test`, so every input the fuzz target found interesting is checked in ordinary
//! CI, without libFuzzer. The checks are the fuzz target's own (`fuzz/src/proxy.rs`).

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/proxy.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn proxy_request_corpus() {
    replay::replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/proxy_request"),
        checks::check_proxy_request,
    );
}
