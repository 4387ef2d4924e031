//! Load and abuse: 1,000 concurrent transfers, requests that never acknowledge (no
//! amplification) and a request flood.

use super::*;

/// 1,000 transfers at once from the crate's client, all complete and exact.
#[test]
fn thousand_concurrent_transfers() {
    if !can_run("concurrent", &["ip"]) {
        return;
    }
    let mut lan = Lan::new(6, "concurrent");
    let data = lan.file("pxelinux.0", 64 * 1024);
    lan.serve(&[
        "--quiet",
        "--max-per-client",
        "2000",
        "--rate",
        "100000",
        "--burst",
        "2000",
    ]);
    let ip = lan.server_ip().to_string();
    let lines = lan.client(
        &example("tftp").display().to_string(),
        &[
            "--server",
            &ip,
            "--get",
            "pxelinux.0",
            "--out",
            &lan.out("one"),
            "--repeat",
            "1000",
            "--concurrency",
            "1000",
            "--blksize",
            "1468",
            "--windowsize",
            "8",
        ],
    );
    lan.assert_received("one", &data, "concurrent");
    let done = lines
        .iter()
        .find_map(|l| support::netns::json_object(l))
        .unwrap();
    assert_eq!(done["failed"], 0, "{done}");
    assert_eq!(done["bytes"], 1000 * data.len() as u64, "{done}");
    let metrics = lan.stop();
    assert_eq!(metrics["completed"], 1000, "{metrics}");
    assert_eq!(metrics["bytes"], 1000 * data.len() as u64, "{metrics}");
    assert_eq!(metrics["active"], 0, "{metrics}");
}

/// A Python script run in the client namespace that sends raw datagrams and reports what
/// came back, as JSON.
const PROBE: &str = r#"
import json, socket, sys, time
server, mode, count, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", 0))
if mode == "options":
    req = b"\x00\x01big.bin\x00octet\x00blksize\x0065464\x00windowsize\x0064\x00tsize\x000\x00"
elif mode == "plain":
    req = b"\x00\x01big.bin\x00octet\x00"
else:
    req = b"\x00\x01no-such-file\x00octet\x00"
for i in range(count):
    s.sendto(req, (server, 69))
    # Paced (100 requests every 2 ms) so that the limiter, not a busy server's receive
    # buffer, is what drops the flood.
    if mode == "flood" and i % 100 == 99:
        time.sleep(0.002)
s.settimeout(wait)
got = []
while True:
    try:
        data, src = s.recvfrom(70000)
    except socket.timeout:
        break
    got.append({"op": data[1], "len": len(data), "block": int.from_bytes(data[2:4], "big") if data[1] == 3 else None})
print(json.dumps({"packets": got}))
"#;

fn probe(lan: &Lan, mode: &str, count: usize, wait: &str) -> Vec<Value> {
    std::fs::write(lan.scratch.join("probe.py"), PROBE).unwrap();
    let lines = lan.client(
        "python3",
        &[
            &lan.scratch.join("probe.py").display().to_string(),
            &lan.server_ip().to_string(),
            mode,
            &count.to_string(),
            wait,
        ],
    );
    let v = lines
        .iter()
        .find_map(|l| support::netns::json_object(l))
        .unwrap();
    v["packets"].as_array().unwrap().clone()
}

/// A forged request (the client never acknowledges) gets only small packets, a bounded
/// number of times: the OACK alone with options, block 1 alone without.
#[test]
fn no_amplification() {
    if !can_run("amplification", &["ip", "python3"]) {
        return;
    }
    let mut lan = Lan::new(7, "amplification");
    lan.file("big.bin", 10 * 1024 * 1024);
    lan.serve(&["--initial-timeout-ms", "200", "--max-tries", "4"]);
    let got = probe(&lan, "options", 1, "4");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.iter()
            .all(|p| p["op"] == 6 && p["len"].as_u64() < Some(60)),
        "{got:?}"
    );
    let got = probe(&lan, "plain", 1, "4");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.iter()
            .all(|p| p["op"] == 3 && p["block"] == 1 && p["len"] == 516),
        "{got:?}"
    );
    let metrics = lan.stop();
    assert_eq!(metrics["timed_out"], 2, "{metrics}");
}

/// A flood of requests from one address is answered only up to the rate limit.
#[test]
fn request_flood_is_limited() {
    if !can_run("flood", &["ip", "python3"]) {
        return;
    }
    let mut lan = Lan::new(8, "flood");
    lan.serve(&["--quiet", "--rate", "20", "--burst", "50"]);
    let got = probe(&lan, "flood", 3000, "1");
    assert!(got.iter().all(|p| p["op"] == 5), "{got:?}");
    // The burst and what the rate refills during the flood (well under a second).
    assert!(
        got.len() >= 50 && got.len() < 150,
        "{} answers to 3000 requests",
        got.len()
    );
    let metrics = lan.stop();
    // Every request that reached the server beyond the burst was dropped unanswered. Most
    // of the flood must have reached it (a loaded machine may still drop some in the
    // socket's buffer), or the test would not show the limiter at work.
    let requests = metrics["requests"].as_u64().unwrap();
    let limited = metrics["rate_limited"].as_u64().unwrap();
    assert!(requests >= 500 && limited + 150 > requests, "{metrics}");
    assert_eq!(
        metrics["refused"].as_u64().unwrap() + limited,
        requests,
        "{metrics}"
    );
}
