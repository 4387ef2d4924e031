//! Replays the committed fuzz corpora of maas-power (`fuzz/corpus/power_*`) under
//! `cargo test`, with the fuzz targets' own checks (`fuzz/src/power.rs`).

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/power.rs"]
mod checks;

#[path = "../../../fuzz/src/replay.rs"]
mod replay;
use replay::replay;

#[test]
fn rmcp_decode_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/power_rmcp_decode"
        ),
        checks::check_rmcp_decode,
    );
}

#[test]
fn ipmi_session_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/power_ipmi_session"
        ),
        checks::check_ipmi_session,
    );
}

#[test]
fn redfish_json_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/power_redfish_json"
        ),
        checks::check_redfish_json,
    );
}

#[test]
fn ipmi_rs_guard_corpus() {
    replay(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/power_ipmi_rs_guard"
        ),
        checks::check_ipmi_rs_guard,
    );
}
