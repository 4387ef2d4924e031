//! The properties the fuzz targets check, one function per parser.
//!
//! Each function takes the raw input bytes and panics when a documented property of
//! `maas-net` does not hold for them; inputs that the parser refuses are fine. The fuzz targets
//! in `fuzz_targets/` call these, and `maas-net/tests/fuzz_corpus.rs` includes this file to
//! replay the committed corpora under `cargo test`, so both apply exactly the same checks.

use std::str;

use maas_net::{BootArchitecture, Mac, Topology};

/// `Mac::try_from(&[u8])` takes exactly six bytes, in order. `Mac::parse` on UTF-8 input: a
/// parsed address displays as 17 characters of lower-case colon form that parse back to it.
pub fn check_mac(data: &[u8]) {
    match Mac::try_from(data) {
        Ok(mac) => {
            assert_eq!(data.len(), 6, "Mac::try_from accepted {data:02x?}");
            assert_eq!(mac.octets()[..], data[..], "Mac::try_from({data:02x?})");
        }
        Err(_) => assert_ne!(data.len(), 6, "Mac::try_from refused {data:02x?}"),
    }
    let Ok(s) = str::from_utf8(data) else {
        return;
    };
    let Ok(mac) = Mac::parse(s) else {
        return;
    };
    let text = mac.to_string();
    assert_eq!(text.len(), 17, "{s:?} parsed to {text:?}");
    let canonical = text.bytes().enumerate().all(|(i, b)| {
        if i % 3 == 2 {
            b == b':'
        } else {
            b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
        }
    });
    assert!(
        canonical,
        "{s:?} displays as {text:?}, not aa:bb:cc:dd:ee:ff"
    );
    assert_eq!(Mac::parse(&text), Ok(mac), "{s:?} displays as {text:?}");
}

/// A boot architecture parsed from UTF-8 input (name, octet pair or number) parses back from
/// its `name()` to the same value.
pub fn check_boot_architecture(data: &[u8]) {
    let Ok(s) = str::from_utf8(data) else {
        return;
    };
    let Ok(arch) = s.parse::<BootArchitecture>() else {
        return;
    };
    let name = arch.name();
    assert_eq!(
        name.parse::<BootArchitecture>(),
        Ok(arch),
        "{s:?} parsed to {arch:?} named {name:?}"
    );
}

/// A topology loaded from a TOML document survives every round trip.
pub fn check_topology_toml(data: &[u8]) {
    let Ok(s) = str::from_utf8(data) else {
        return;
    };
    if let Ok(topo) = toml::from_str::<Topology>(s) {
        check_round_trips(&topo);
    }
}

/// A topology loaded from a JSON document survives every round trip.
pub fn check_topology_json(data: &[u8]) {
    let Ok(s) = str::from_utf8(data) else {
        return;
    };
    if let Ok(topo) = serde_json::from_str::<Topology>(s) {
        check_round_trips(&topo);
    }
}

/// Document, TOML and JSON: encode, decode, and get the same topology back.
fn check_round_trips(topo: &Topology) {
    let doc = topo.to_doc();
    match Topology::from_doc(&doc) {
        Ok(back) => assert_eq!(&back, topo, "from_doc(to_doc) changed the topology"),
        Err(e) => panic!("to_doc of a loaded topology does not load: {e}\n{doc:#?}"),
    }

    let text = toml::to_string(topo).expect("a loaded topology serializes to TOML");
    match toml::from_str::<Topology>(&text) {
        Ok(back) => assert_eq!(&back, topo, "the TOML round trip changed it:\n{text}"),
        Err(e) => panic!("the TOML of a loaded topology does not load: {e}\n{text}"),
    }

    let json = serde_json::to_string(topo).expect("a loaded topology serializes to JSON");
    match serde_json::from_str::<Topology>(&json) {
        Ok(back) => assert_eq!(&back, topo, "the JSON round trip changed it:\n{json}"),
        Err(e) => panic!("the JSON of a loaded topology does not load: {e}\n{json}"),
    }
}
