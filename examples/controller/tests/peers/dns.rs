//! The controller's DNS server against dig, udhcpc and BIND 9.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::{Api, WAIT, in_ns, start_controller};

/// The controller's addresses that are not on any of its links: enough A records under its
/// name to overflow a 512-byte UDP answer.
const EXTRA_ADDRESSES: u8 = 40;

/// `dig` inside `ns` with `args`: its output lines.
fn dig(ns: &Netns, args: &[&str]) -> Vec<String> {
    let mut cmd = in_ns(ns, "dig");
    cmd.args(["+time=2", "+tries=2"]).args(args);
    run_bounded("dig", cmd, WAIT).0
}

/// `dig +short` for `name` and `qtype` from `source`: the answer's data, one per line.
fn short(ns: &Netns, server: &str, source: &str, name: &str, qtype: &str) -> Vec<String> {
    dig(
        ns,
        &[&format!("@{server}"), "-b", source, "+short", name, qtype],
    )
}

/// The status dig printed in the header (`NOERROR`, `REFUSED`...).
fn status(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string()
}

/// Waits (bounded by `within`) until `probe` gives `want`; what it gave last.
fn until(within: Duration, want: &[&str], probe: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = probe();
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// BIND 9 in `ns` on 127.0.0.1:5353, authoritative for `example.test` (the forwarders'
/// stand-in: the controller forwards what it does not serve there).
fn upstream(ns: &Netns, scratch: &Scratch) -> Daemon {
    let dir = scratch.join("named");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("example.test.zone"),
        "$TTL 60\n@ IN SOA ns.example.test. root.example.test. 1 60 60 600 60\n@ IN NS ns\n\
         ns IN A 127.0.0.1\nwww IN A 10.77.44.80\n",
    )
    .unwrap();
    let conf = dir.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{ directory \"{d}\"; pid-file \"{d}/named.pid\"; listen-on port 5353 \
             {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; }};\n\
             zone \"example.test\" {{ type master; file \"{d}/example.test.zone\"; }};\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = in_ns(ns, "named");
    cmd.args(["-g", "-u", "root", "-c"]).arg(&conf);
    let named = Daemon::spawn("named", cmd);
    assert!(
        named.wait_line(WAIT, |l| l.contains("running")).is_some(),
        "named did not start\n{}",
        named.transcript()
    );
    named
}

fn write_config(path: &Path, state: &Path, body: &str) {
    std::fs::write(
        path,
        format!(
            "[controller]\nstate_dir = \"{}\"\napi = \"127.0.0.1:5240\"\n\
             boot_http = \"0.0.0.0:5248\"\n{body}",
            state.display()
        ),
    )
    .unwrap();
}

/// The controller's DNS in a namespace, queried with dig from another: forward and reverse
/// answers for machines (boot and other interfaces) in a /24, an RFC 2317 /26 (CNAME glue in
/// the enclosing /24's zone, then the classless zone `64-26.42.77.10.in-addr.arpa`) and an
/// IPv6 /64 (nibble zone); a domain made through the API and a machine moved into it,
/// visible with a higher SOA serial; a DHCP client that gets the controller's DNS in option 6
/// and whose lease (its enlisted machine's name, the range's generated name) answers both
/// ways; a DHCPv6 client that gets it in option 23, its lease answering; the /26's dynamic
/// range under generated
/// names through the glue; an AXFR (in several messages) for an
/// allowed client and not for another; recursion forwarded to BIND for a client of an allow_dns subnet and
/// refused for one of a subnet without; a truncated UDP answer that dig gets whole over TCP.
#[test]
fn the_controller_answers_dns_for_what_it_knows() {
    if !can_run(
        "controller_dns",
        &["ip", "dig", "named", "busybox", "dhclient"],
    ) {
        return;
    }
    let ctl = Netns::new("maas-dns41-ctl");
    let cli = Netns::new("maas-dns41-cli");
    ctl.bridge(
        "br0",
        &[
            "10.77.41.1/24",
            "10.77.42.65/26",
            "fd77:41::1/64",
            "10.77.43.1/24",
        ],
    );
    ctl.attach("br0", "p1", &cli, "vcli");
    for addr in [
        "10.77.41.10/24",
        "10.77.42.70/26",
        "fd77:41::10/64",
        "10.77.43.10/24",
    ] {
        cli.ip(&["addr", "add", addr, "dev", "vcli"]);
    }
    cli.ip(&["link", "set", "vcli", "address", "52:54:00:77:41:02", "up"]);
    let scratch = Scratch::new("controller_dns");
    let _named = upstream(&ctl, &scratch);

    let mut addresses = vec!["\"10.77.41.1\"".to_string(), "\"fd77:41::1\"".to_string()];
    for i in 0..EXTRA_ADDRESSES {
        addresses.push(format!("\"10.77.45.{}\"", i + 1));
    }
    let config = scratch.join("controller.toml");
    write_config(
        &config,
        &scratch.join("state"),
        &format!(
            r#"
[dhcp]
interfaces = ["br0"]

[dns]
listen = ["10.77.41.1:53", "[fd77:41::1]:53", "127.0.0.1:53"]
forwarders = ["127.0.0.1:5353"]
allow_transfer = ["127.0.0.0/8", "10.77.41.10/32"]
addresses = [{addresses}]

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.41.0/24"
gateway_ip = "10.77.41.1"

[[ip_ranges]]
subnet = "10.77.41.0/24"
start = "10.77.41.100"
end = "10.77.41.199"
kind = "dynamic"

[[subnets]]
cidr = "10.77.42.64/26"
rdns_mode = "rfc2317"

[[ip_ranges]]
subnet = "10.77.42.64/26"
start = "10.77.42.96"
end = "10.77.42.120"
kind = "dynamic"

[[subnets]]
cidr = "fd77:41::/64"

[[ip_ranges]]
subnet = "fd77:41::/64"
start = "fd77:41::100"
end = "fd77:41::1ff"
kind = "dynamic"

[[subnets]]
cidr = "10.77.43.0/24"
allow_dns = false

[[machines]]
mac = "52:54:00:77:41:20"
hostname = "node1"
"#,
            addresses = addresses.join(", ")
        ),
    );
    let controller = start_controller(&ctl, &config);
    let api = Api::of(&ctl, &controller);
    let server = "10.77.41.1";
    let from = "10.77.41.10";

    // node1: eth0 (boot) in the /24 and the /64, eth1 in the /26.
    let doc = r#"{"hostname": "node1", "interfaces": [
            {"name": "eth0", "type": "physical", "mac": "52:54:00:77:41:20",
              "vlan": {"fabric": "fabric-0", "vid": 0},
              "links": [{"mode": "static", "subnet": "10.77.41.0/24", "ip": "10.77.41.20"},
                        {"mode": "static", "subnet": "fd77:41::/64", "ip": "fd77:41::20"}]},
            {"name": "eth1", "type": "physical", "mac": "52:54:00:77:41:21",
              "vlan": {"fabric": "fabric-0", "vid": 0},
              "links": [{"mode": "static", "subnet": "10.77.42.64/26", "ip": "10.77.42.80"}]}
        ]}"#;
    api.send(
        "PUT",
        "/api/v1/machines/52:54:00:77:41:20/interfaces",
        Some(doc),
    );
    let serial = || -> u64 {
        short(&cli, server, from, "maas", "SOA")
            .first()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    // The records change when the state does (no polling interval): usually within
    // milliseconds. The bound is generous so that a busy machine does not fail the test; the
    // lease-to-answer time is printed.
    let within = Duration::from_secs(10);
    assert_eq!(
        until(within, &["10.77.41.20"], || short(
            &cli,
            server,
            from,
            "node1.maas",
            "A"
        )),
        ["10.77.41.20"],
        "{}",
        controller.transcript()
    );
    assert_eq!(
        short(&cli, server, from, "node1.maas", "AAAA"),
        ["fd77:41::20"]
    );
    assert_eq!(
        short(&cli, server, from, "eth1.node1.maas", "A"),
        ["10.77.42.80"]
    );
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.41.20"
            ]
        ),
        ["node1.maas."]
    );
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "fd77:41::20"
            ]
        ),
        ["node1.maas."]
    );
    // RFC 2317: the glue zone's CNAME into the classless zone, then the PTR.
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.42.80"
            ]
        ),
        ["80.64-26.42.77.10.in-addr.arpa.", "eth1.node1.maas."]
    );
    for zone in [
        "41.77.10.in-addr.arpa",
        "64-26.42.77.10.in-addr.arpa",
        "42.77.10.in-addr.arpa",
        "0.0.0.0.0.0.0.0.1.4.0.0.7.7.d.f.ip6.arpa",
    ] {
        let soa = dig(&cli, &[&format!("@{server}"), "-b", from, zone, "SOA"]);
        assert_eq!(status(&soa), "NOERROR", "{zone}: {soa:?}");
        assert!(
            soa.iter().any(|l| l.starts_with(&format!("{zone}."))
                && l.contains("SOA")
                && !l.starts_with(';')),
            "{zone}: {soa:?}"
        );
    }
    let none = dig(
        &cli,
        &[
            &format!("@{server}"),
            "-b",
            from,
            "43.77.10.in-addr.arpa",
            "SOA",
        ],
    );
    assert_eq!(
        status(&none),
        "REFUSED",
        "no reverse zone without allow_dns"
    );

    // A domain through the API, node1 moved into it: visible, serial up.
    let before = serial();
    api.send(
        "POST",
        "/api/v1/domains",
        Some(r#"{"name": "lab.example", "ttl": 120}"#),
    );
    api.send(
        "PUT",
        "/api/v1/machines/52:54:00:77:41:20/domain",
        Some(r#"{"domain": "lab.example"}"#),
    );
    let moved = Instant::now();
    assert_eq!(
        until(within, &["10.77.41.20"], || short(
            &cli,
            server,
            from,
            "node1.lab.example",
            "A"
        )),
        ["10.77.41.20"]
    );
    eprintln!("domain move to DNS answer: {:?}", moved.elapsed());
    assert!(serial() > before, "the SOA serial did not increase");
    let deleted = api.call("DELETE", "/api/v1/domains/lab.example", None);
    assert_eq!(deleted.status, 409, "a domain in use: {}", deleted.output);
    let default = api.call("DELETE", "/api/v1/domains/maas", None);
    assert_eq!(
        default.status, 400,
        "the default domain: {}",
        default.output
    );

    // A DHCP client (PXE-like, so it is enlisted): option 6 names the controller, and its
    // lease answers both ways.
    let script = scratch.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip dns=$dns domain=$domain\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut udhcpc = in_ns(&cli, "busybox");
    udhcpc
        .args([
            "udhcpc",
            "-i",
            "vcli",
            "-n",
            "-q",
            "-f",
            "-x",
            "0x5d:0000",
            "-s",
        ])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let bound = lines
        .iter()
        .find(|l| l.contains("udhcpc-script: bound"))
        .unwrap_or_else(|| panic!("no lease: {lines:?}\n{}", controller.transcript()));
    assert!(bound.contains("dns=10.77.41.1"), "{bound}");
    assert!(bound.contains("domain=maas"), "{bound}");
    let leased = bound
        .split("ip=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let leased_at = Instant::now();
    let enlisted = until(within, &[leased.as_str()], || {
        short(&cli, server, from, "node-774102.maas", "A")
    });
    assert_eq!(enlisted, [leased.as_str()], "{}", controller.transcript());
    eprintln!("lease to DNS answer: {:?}", leased_at.elapsed());
    assert_eq!(
        dig(
            &cli,
            &[&format!("@{server}"), "-b", from, "+short", "-x", &leased]
        ),
        ["node-774102.maas."]
    );
    let generated = format!("{}.maas", leased.replace('.', "-"));
    assert_eq!(
        short(&cli, server, from, &generated, "A"),
        [leased.as_str()]
    );
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.41.150"
            ]
        ),
        ["10-77-41-150.maas."]
    );

    // The /26's range: generated names through the RFC 2317 glue.
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.42.100"
            ]
        ),
        ["100.64-26.42.77.10.in-addr.arpa.", "10-77-42-100.maas."]
    );
    assert_eq!(
        short(&cli, server, from, "10-77-42-100.maas", "A"),
        ["10.77.42.100"]
    );

    // A DHCPv6 lease: option 23 names the controller, and the lease answers under its
    // generated name.
    ctl.wait_link_local("br0", WAIT);
    cli.wait_link_local("vcli", WAIT);
    let script6 = scratch.join("dhclient.sh");
    std::fs::write(
        &script6,
        "#!/bin/sh\necho \"dhclient-script: reason=$reason ip6=$new_ip6_address \
         dns=$new_dhcp6_name_servers\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &script6,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = in_ns(&cli, "dhclient");
    cmd.args(["-6", "-1", "-d", "-v", "-lf"])
        .arg(scratch.join("leases6"))
        .arg("-pf")
        .arg(scratch.join("dhclient6.pid"))
        .arg("-sf")
        .arg(&script6)
        .arg("vcli");
    let dhclient = Daemon::spawn("dhclient", cmd);
    let bound6 = dhclient
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                dhclient.transcript(),
                controller.transcript()
            )
        });
    assert!(bound6.contains("dns=fd77:41::1"), "{bound6}");
    let leased6: std::net::Ipv6Addr = bound6
        .split("ip6=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{bound6}"));
    let name6 = format!("{}.maas", leased6.to_string().replace(':', "-"));
    let leased6 = leased6.to_string();
    assert_eq!(
        until(within, &[leased6.as_str()], || short(
            &cli, server, from, &name6, "AAAA"
        )),
        [leased6.as_str()],
        "{}",
        controller.transcript()
    );
    // The client's MAC is the machine enlisted above: the address is now that machine's,
    // and its name wins over the generated one in the reverse zone.
    // (The machine takes the address when its lease is recorded, which the DNS snapshot
    // shows at its next refresh: bounded waits, as above.)
    assert_eq!(
        until(Duration::from_secs(5), &["node-774102.maas."], || dig(
            &cli,
            &[&format!("@{server}"), "-b", from, "+short", "-x", &leased6]
        )),
        ["node-774102.maas."],
        "{}",
        controller.transcript()
    );
    assert_eq!(
        until(Duration::from_secs(5), &[leased6.as_str()], || short(
            &cli,
            server,
            from,
            "node-774102.maas",
            "AAAA"
        )),
        [leased6.as_str()]
    );
    drop(dhclient);

    // Zone transfers: for the allowed client only.
    let axfr = dig(&cli, &[&format!("@{server}"), "-b", from, "AXFR", "maas"]);
    assert!(
        axfr.iter()
            .any(|l| l.starts_with("10-77-41-100.maas.") && l.contains("10.77.41.100")),
        "{axfr:?}"
    );
    assert!(
        axfr.iter().filter(|l| l.contains("\tSOA\t")).count() == 2,
        "{axfr:?}"
    );
    // More than a hundred records: several messages.
    let messages = axfr
        .iter()
        .find_map(|l| l.split("(messages ").nth(1))
        .and_then(|m| m.split(',').next())
        .and_then(|m| m.parse::<u32>().ok());
    assert!(messages.is_some_and(|m| m >= 2), "{axfr:?}");
    let refused = dig(
        &cli,
        &[&format!("@{server}"), "-b", "10.77.42.70", "AXFR", "maas"],
    );
    assert!(
        refused.iter().any(|l| l.contains("Transfer failed")),
        "{refused:?}"
    );

    // Recursion: forwarded to BIND from an allow_dns subnet, refused from one without.
    assert_eq!(
        short(&cli, server, from, "www.example.test", "A"),
        ["10.77.44.80"]
    );
    let outside = dig(
        &cli,
        &[
            &format!("@{server}"),
            "-b",
            "10.77.43.10",
            "www.example.test",
            "A",
        ],
    );
    assert_eq!(status(&outside), "REFUSED", "{outside:?}");

    // A large answer: truncated over UDP, whole over TCP.
    let big = dig(
        &cli,
        &[
            &format!("@{server}"),
            "-b",
            from,
            "+bufsize=512",
            "maas-controller.maas",
            "A",
        ],
    );
    assert!(
        big.iter()
            .any(|l| l.contains("Truncated, retrying in TCP mode")),
        "{big:?}"
    );
    let records = big
        .iter()
        .filter(|l| l.starts_with("maas-controller.maas.") && l.contains("\tA\t"))
        .count();
    assert_eq!(records, usize::from(EXTRA_ADDRESSES) + 1, "{big:?}");
    drop(controller);
}

/// A /16 is one reverse zone, `77.10.in-addr.arpa` (octet boundary, as MAAS names it), and a
/// machine's address and a dynamic range's generated name in it answer both ways.
#[test]
fn the_controller_serves_a_sixteen_as_one_reverse_zone() {
    if !can_run("controller_dns_16", &["ip", "dig"]) {
        return;
    }
    let ctl = Netns::new("maas-dns16-ctl");
    let cli = Netns::new("maas-dns16-cli");
    ctl.bridge("br0", &["10.77.0.1/16"]);
    ctl.attach("br0", "p1", &cli, "vcli");
    cli.ip(&["addr", "add", "10.77.200.10/16", "dev", "vcli"]);
    cli.ip(&["link", "set", "vcli", "up"]);
    let scratch = Scratch::new("controller_dns_16");
    let config = scratch.join("controller.toml");
    write_config(
        &config,
        &scratch.join("state"),
        r#"
[dns]
listen = ["10.77.0.1:53"]
addresses = ["10.77.0.1"]

[[subnets]]
cidr = "10.77.0.0/16"

[[ip_ranges]]
subnet = "10.77.0.0/16"
start = "10.77.9.0"
end = "10.77.9.255"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:16:20"
hostname = "wide"
"#,
    );
    let controller = start_controller(&ctl, &config);
    let api = Api::of(&ctl, &controller);
    api.send(
        "PUT",
        "/api/v1/machines/52:54:00:77:16:20/interfaces",
        Some(
            r#"{"hostname": "wide", "interfaces": [{"name": "eth0", "type": "physical", "mac": "52:54:00:77:16:20",
                "vlan": {"fabric": "fabric-0", "vid": 0},
                "links": [{"mode": "static", "subnet": "10.77.0.0/16", "ip": "10.77.5.9"}]}]}"#,
        ),
    );
    let server = "10.77.0.1";
    let from = "10.77.200.10";
    assert_eq!(
        until(Duration::from_secs(1), &["10.77.5.9"], || short(
            &cli,
            server,
            from,
            "wide.maas",
            "A"
        )),
        ["10.77.5.9"]
    );
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.5.9"
            ]
        ),
        ["wide.maas."]
    );
    assert_eq!(
        short(&cli, server, from, "10-77-9-9.maas", "A"),
        ["10.77.9.9"]
    );
    assert_eq!(
        dig(
            &cli,
            &[
                &format!("@{server}"),
                "-b",
                from,
                "+short",
                "-x",
                "10.77.9.9"
            ]
        ),
        ["10-77-9-9.maas."]
    );
    let soa = dig(
        &cli,
        &[
            &format!("@{server}"),
            "-b",
            from,
            "77.10.in-addr.arpa",
            "SOA",
        ],
    );
    assert_eq!(status(&soa), "NOERROR", "{soa:?}");
    let split = dig(
        &cli,
        &[
            &format!("@{server}"),
            "-b",
            from,
            "5.77.10.in-addr.arpa",
            "SOA",
        ],
    );
    assert!(
        split
            .iter()
            .any(|l| l.starts_with("77.10.in-addr.arpa.") && l.contains("SOA")),
        "the /24 is not a zone of its own: the answer's authority is the /16's: {split:?}"
    );
    drop(controller);
}
