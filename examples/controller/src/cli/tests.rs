//! Tests of the command line: each command and the request it becomes.

use clap::Parser as _;
use hyper::Method;
use serde_json::json;

use super::request::Call;
use super::*;

#[derive(clap::Parser)]
struct Top {
    #[command(flatten)]
    cli: CliArgs,
}

fn parse(text: &str) -> Result<(String, Call), clap::Error> {
    let top = Top::try_parse_from(std::iter::once("cli").chain(text.split_whitespace()))?;
    Ok((
        top.cli.api.clone().unwrap_or_default(),
        request(&top.cli.command).expect("no file to read"),
    ))
}

#[test]
fn deploy_sends_its_user_data_file_base64_encoded() {
    let dir = crate::tests::Scratch::new("cli-deploy");
    let file = dir.0.join("user-data");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(&file, "#cloud-config\n").unwrap();
    let line = format!(
        "deploy 52:54:00:77:00:01 --os debian --release bookworm --user-data {}",
        file.display()
    );
    let (_, call) = parse(&line).unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::POST, "/api/v1/machines/52:54:00:77:00:01/deploy")
    );
    assert_eq!(
        call.body,
        Some(json!({
            "osystem": "debian", "distro_series": "bookworm",
            "user_data": "I2Nsb3VkLWNvbmZpZwo=",
        }))
    );
    let top = Top::try_parse_from([
        "cli",
        "deploy",
        "52:54:00:77:00:01",
        "--user-data",
        "/nonexistent/x",
    ])
    .unwrap();
    assert!(
        request(&top.cli.command)
            .unwrap_err()
            .contains("/nonexistent/x")
    );
    let (_, call) = parse("netconfig 52:54:00:77:00:01 --format v1").unwrap();
    assert_eq!(
        call.path,
        "/api/v1/machines/52:54:00:77:00:01/netconfig?format=v1"
    );
}

#[test]
fn commands_become_requests() {
    let (api, call) = parse("--api http://10.77.0.1:5240/ machine 52:54:00:77:00:01").unwrap();
    assert_eq!(api, "http://10.77.0.1:5240/");
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::GET, "/api/v1/machines/52:54:00:77:00:01")
    );
    let (_, call) = parse("reserve --subnet 0 --sticky --mac 52:54:00:77:00:02").unwrap();
    assert_eq!(call.method, Method::POST);
    assert_eq!(
        call.body,
        Some(json!({ "subnet": 0, "kind": "sticky", "mac": "52:54:00:77:00:02" }))
    );
    let (_, call) = parse("add-machine 52:54:00:77:00:03 --hostname n3").unwrap();
    assert_eq!(
        call.body,
        Some(json!({ "mac": "52:54:00:77:00:03", "hostname": "n3" }))
    );
    let (_, call) = parse(
        "allocate --zone a --not-in-zone b --not-in-zone c --arch amd64 --cpu-count 4 \
         --mem 8192 --tag gpu --tag ssd --not-tag old --hostname n1 --subnet 10.0.0.0/24",
    )
    .unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::POST, "/api/v1/machines/allocate")
    );
    assert_eq!(
        call.body,
        Some(json!({
            "zone": "a", "not_in_zone": ["b", "c"], "arch": "amd64", "cpu_count": 4,
            "mem": 8192, "tags": ["gpu", "ssd"], "not_tags": ["old"], "hostname": "n1",
            "subnets": ["10.0.0.0/24"],
        }))
    );
    let (_, call) = parse("allocate").unwrap();
    assert_eq!(call.body, Some(json!({})));
    let (_, call) = parse("release 52:54:00:77:00:04").unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::POST, "/api/v1/machines/52:54:00:77:00:04/release")
    );
    let (_, call) = parse("release 10.77.0.9").unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::DELETE, "/api/v1/ipaddresses/10.77.0.9")
    );
    let (_, call) = parse("machines --zone rack-b --status ready --tag gpu --tag a+b").unwrap();
    assert_eq!(
        call.path,
        "/api/v1/machines?zone=rack-b&status=ready&tag=gpu&tag=a%2Bb"
    );
    let (_, call) = parse("zone-create lab --description x").unwrap();
    assert_eq!(
        call.body,
        Some(json!({ "name": "lab", "description": "x" }))
    );
    let (_, call) = parse("zone-delete lab").unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::DELETE, "/api/v1/zones/lab")
    );
    let (_, call) = parse("set-zone 52:54:00:77:00:04 lab").unwrap();
    assert_eq!(
        (call.method, call.path.as_str(), call.body),
        (
            Method::PUT,
            "/api/v1/machines/52:54:00:77:00:04/zone",
            Some(json!({ "zone": "lab" }))
        )
    );
    let (_, call) = parse("domain-create lab.example --ttl 120").unwrap();
    assert_eq!(
        (call.method, call.path.as_str(), call.body),
        (
            Method::POST,
            "/api/v1/domains",
            Some(json!({ "name": "lab.example", "authoritative": true, "ttl": 120 }))
        )
    );
    let (_, call) = parse("domain-create other --non-authoritative").unwrap();
    assert_eq!(
        call.body,
        Some(json!({ "name": "other", "authoritative": false }))
    );
    let (_, call) = parse("domain-update lab.example --authoritative false").unwrap();
    assert_eq!(
        (call.method, call.path.as_str(), call.body),
        (
            Method::PUT,
            "/api/v1/domains/lab.example",
            Some(json!({ "authoritative": false }))
        )
    );
    let (_, call) = parse("domain-delete lab.example").unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::DELETE, "/api/v1/domains/lab.example")
    );
    let (_, call) = parse("set-domain 52:54:00:77:00:04 lab.example").unwrap();
    assert_eq!(
        (call.method, call.path.as_str(), call.body),
        (
            Method::PUT,
            "/api/v1/machines/52:54:00:77:00:04/domain",
            Some(json!({ "domain": "lab.example" }))
        )
    );
    let (_, call) = parse("domains").unwrap();
    assert_eq!(call.path, "/api/v1/domains");
    let (_, call) = parse("tag 52:54:00:77:00:04 gpu ssd").unwrap();
    assert_eq!(call.body, Some(json!({ "add": ["gpu", "ssd"] })));
    let (_, call) = parse("untag 52:54:00:77:00:04 gpu").unwrap();
    assert_eq!(call.body, Some(json!({ "remove": ["gpu"] })));
    for bad in [
        "",
        "allocate --cpu-count many",
        "tag 52:54:00:77:00:04",
        "set-zone 52:54:00:77:00:04",
        "machine",
        "frobnicate",
        "reserve --subnet x",
        "reserve",
        "add-machine m --colour red",
        "release",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn device_and_discovery_commands_make_their_requests() {
    let cases = [
        ("devices", Method::GET, "/api/v1/devices", None),
        ("device sw1", Method::GET, "/api/v1/devices/sw1", None),
        (
            "add-device sw1 --zone lab --parent 52:54:00:77:00:01 --mac 52:54:00:77:00:09 \
             --ip-assignment static --subnet 10.77.0.0/24",
            Method::POST,
            "/api/v1/devices",
            Some(
                json!({ "name": "sw1", "zone": "lab", "parent": "52:54:00:77:00:01",
                "interfaces": [{ "mac": "52:54:00:77:00:09", "ip_assignment": "static",
                "subnet": "10.77.0.0/24" }] }),
            ),
        ),
        (
            "add-device bare",
            Method::POST,
            "/api/v1/devices",
            Some(json!({ "name": "bare", "interfaces": [] })),
        ),
        (
            "update-device sw1 --name sw2 --parent",
            Method::PUT,
            "/api/v1/devices/sw1",
            None,
        ),
        (
            "delete-device sw1",
            Method::DELETE,
            "/api/v1/devices/sw1",
            None,
        ),
        (
            "add-device-interface sw1 --mac 52:54:00:77:00:0a --ip-assignment external --ip 10.77.0.5",
            Method::POST,
            "/api/v1/devices/sw1/interfaces",
            Some(
                json!({ "mac": "52:54:00:77:00:0a", "ip_assignment": "external", "ip": "10.77.0.5" }),
            ),
        ),
        (
            "remove-device-interface sw1 52:54:00:77:00:0a",
            Method::DELETE,
            "/api/v1/devices/sw1/interfaces/52:54:00:77:00:0a",
            None,
        ),
        (
            "discoveries --unknown both",
            Method::GET,
            "/api/v1/discoveries?unknown=both",
            None,
        ),
        (
            "clear-discoveries --mdns",
            Method::POST,
            "/api/v1/discoveries/clear",
            Some(json!({ "all": false, "neighbours": false, "mdns": true })),
        ),
        (
            "clear-discovery 52:54:00:77:00:0b 10.77.0.7",
            Method::POST,
            "/api/v1/discoveries/clear-by-mac-and-ip",
            Some(json!({ "mac": "52:54:00:77:00:0b", "ip": "10.77.0.7" })),
        ),
        (
            "convert-discovery 10.77.0.7 52:54:00:77:00:0b --as interface --target sw1 \
             --ip-assignment dynamic",
            Method::POST,
            "/api/v1/discoveries/convert",
            Some(
                json!({ "ip": "10.77.0.7", "mac": "52:54:00:77:00:0b", "as": "interface",
                "ip_assignment": "dynamic", "target": "sw1" }),
            ),
        ),
    ];
    for (line, method, path, body) in cases {
        if line.ends_with("--parent") {
            // An empty parent (removing it) cannot be spelt on a split line: checked below.
            assert!(parse(line).is_err(), "{line}");
            continue;
        }
        let (_, call) = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "{line}"
        );
        assert_eq!(call.body, body, "{line}");
    }
    let (_, call) = parse("update-device sw1 --name sw2 --zone lab").unwrap();
    assert_eq!(call.body, Some(json!({ "name": "sw2", "zone": "lab" })));
    for bad in [
        "device",
        "add-device sw1 --ip 10.77.0.5",
        "add-device-interface sw1",
        "convert-discovery 10.77.0.7",
        "convert-discovery 10.77.0.7 52:54:00:77:00:0b",
    ] {
        let parsed = Top::try_parse_from(std::iter::once("cli").chain(bad.split_whitespace()));
        let refused = match parsed {
            Err(_) => true,
            Ok(top) => request(&top.cli.command).is_err(),
        };
        assert!(refused, "{bad:?}");
    }
}
