//! perfdhcp acting as a relay, for plain and UEFI clients, and as the load of the durability
//! test: leases acknowledged before a SIGKILL are still held after the restart.

use super::*;

/// A LAN for perfdhcp, which acts as a relay: the relay (perfdhcp) at `10.77.n.2/22`, the
/// pool `10.77.(n+1).0` to `10.77.(n+3).254` (766 addresses), and the server at
/// `10.77.(200+n/4).1/24`, outside that subnet: only the relay address (`giaddr`) can select
/// the subnet the server leases from.
struct RelayLan {
    n: u8,
    srv: Netns,
    cli: Netns,
}

impl RelayLan {
    fn new(n: u8) -> Self {
        assert_eq!(n % 4, 0, "a /22 starts on a multiple of 4");
        let srv = Netns::new(&format!("maas-dhcp{n}-srv"));
        let cli = Netns::new(&format!("maas-dhcp{n}-cli"));
        let lan = Self { n, srv, cli };
        lan.srv.veth("vsrv", &lan.cli, "vcli");
        let server = format!("{}/24", lan.server_ip());
        lan.srv.ip(&["addr", "add", &server, "dev", "vsrv"]);
        lan.srv.ip(&["link", "set", "vsrv", "up"]);
        let relayed = format!("10.77.{n}.0/22");
        lan.srv.ip(&["route", "add", &relayed, "dev", "vsrv"]);
        let relay = format!("{}/22", lan.relay_ip());
        lan.cli.ip(&["addr", "add", &relay, "dev", "vcli"]);
        lan.cli.ip(&["link", "set", "vcli", "up"]);
        let server_net = format!("10.77.{}.0/24", 200 + n / 4);
        lan.cli.ip(&["route", "add", &server_net, "dev", "vcli"]);
        lan
    }

    fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 200 + self.n / 4, 1)
    }

    fn relay_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.n, 2)
    }

    fn range(&self) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::new(10, 77, self.n + 1, 0),
            Ipv4Addr::new(10, 77, self.n + 3, 254),
        )
    }

    fn dhcpd_args(&self, state: Option<&std::path::Path>) -> Vec<String> {
        let (lo, hi) = self.range();
        let mut args = vec![
            "--interface".to_string(),
            "vsrv".to_string(),
            "--subnet".to_string(),
            format!("10.77.{}.0/22", self.n),
            "--range".to_string(),
            format!("{lo}-{hi}"),
            "--gateway".to_string(),
            self.relay_ip().to_string(),
        ];
        if let Some(state) = state {
            args.push("--state".to_string());
            args.push(state.display().to_string());
        }
        args
    }

    /// Captures the DHCP traffic the relay sees, to a pcap file; ready when it returns.
    fn capture(&self, file: &std::path::Path) -> Daemon {
        let mut cmd = in_ns(&self.cli, "tcpdump");
        cmd.args([
            "-i",
            "vcli",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "1500",
            "-w",
        ])
        .arg(file)
        .args(["udp", "port", "67"]);
        let capture = Daemon::spawn("tcpdump", cmd);
        assert!(
            capture
                .wait_line(WAIT, |l| l.contains("listening on"))
                .is_some(),
            "tcpdump did not start\n{}",
            capture.transcript()
        );
        capture
    }

    /// Starts perfdhcp relaying from this LAN's client side.
    fn perfdhcp(&self, args: &[&str]) -> Daemon {
        let mut cmd = in_ns(&self.cli, "perfdhcp");
        cmd.args(["-4", "-l", "vcli"]).args(args);
        Daemon::spawn("perfdhcp", cmd)
    }
}

/// The ACKs of a capture, stopping the capture once the file stops growing (tcpdump drops
/// what it has not written yet when it is stopped).
fn captured_acks(mut capture: Daemon, file: &std::path::Path) -> Vec<dhcp::Reply> {
    let size = || std::fs::metadata(file).map_or(0, |m| m.len());
    let mut last = size();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        if size() == last {
            break;
        }
        last = size();
    }
    capture.stop("INT", Duration::from_secs(5));
    read_acks(file)
}

/// The ACKs in a capture file so far.
fn read_acks(file: &std::path::Path) -> Vec<dhcp::Reply> {
    let bytes = std::fs::read(file).unwrap_or_default();
    dhcp::pcap_dhcp_payloads(&bytes)
        .iter()
        .filter_map(|p| dhcp::parse_reply(p))
        .filter(|r| r.kind == ACK)
        .collect()
}

/// A short perfdhcp run through the relay: nearly every exchange completes, every ACK is in
/// the pool with `boot_file`, and the server reports the leases.
fn perfdhcp_case(test: &str, n: u8, extra: &[&str], boot_file: Option<&str>) {
    if !can_run(test, &["ip", "perfdhcp", "tcpdump"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let lan = RelayLan::new(n);
    let server = start_dhcpd(&lan.srv, &lan.dhcpd_args(None));
    let pcap = scratch.join("relay.pcap");
    let capture = lan.capture(&pcap);
    let mut args = vec!["-r", "200", "-R", "500", "-p", "3", "-W", "500000"];
    args.extend_from_slice(extra);
    let mut perf = lan.perfdhcp(&args);
    let status = perf.wait_exit(WAIT);
    let report = perf.lines();
    assert!(
        status.is_some(),
        "perfdhcp did not finish\n{}",
        perf.transcript()
    );

    let stats = dhcp::perfdhcp_stats(&report);
    let (Some(offers), Some(acks)) = (stats.get("DISCOVER-OFFER"), stats.get("REQUEST-ACK")) else {
        panic!("no perfdhcp statistics\n{}", perf.transcript());
    };
    assert!(offers.received > 0 && acks.received > 0, "{stats:?}");
    // Generous: this is a correctness test on a shared machine, not a benchmark.
    assert!(
        (offers.sent - acks.received) * 10 < offers.sent,
        "more than 10 % of exchanges unanswered: {stats:?}\n{}",
        server.transcript()
    );

    let acked = captured_acks(capture, &pcap);
    assert!(!acked.is_empty(), "no ACK captured");
    for ack in &acked {
        assert!(in_range(ack.yiaddr, lan.range()), "{ack:?} not in the pool");
        assert_eq!(ack.file, boot_file.unwrap_or(""), "{ack:?}");
    }

    // The server answered the relay: its leases are in the pool of the relay's subnet (the
    // server has no address there), and the relay saw each acknowledged.
    let leased: BTreeSet<Ipv4Addr> = server
        .events()
        .iter()
        .filter(|e| e["event"] == "leased")
        .map(|e| {
            assert_eq!(event_boot_file(e), boot_file, "{e}");
            match event_ip(e) {
                Some(IpAddr::V4(ip)) => ip,
                _ => panic!("bad leased event {e}"),
            }
        })
        .collect();
    let seen: BTreeSet<Ipv4Addr> = acked.iter().map(|a| a.yiaddr).collect();
    eprintln!(
        "{test}: {stats:?}; {} ACKs captured, {} leases reported",
        acked.len(),
        leased.len()
    );
    assert!(
        seen.is_subset(&leased),
        "ACKs without a leased event: {:?}",
        seen.difference(&leased).collect::<Vec<_>>()
    );
}

#[test]
fn perfdhcp_through_a_relay() {
    perfdhcp_case("perfdhcp_relay", 40, &[], None);
}

#[test]
fn perfdhcp_uefi_clients_get_bootx64() {
    perfdhcp_case("perfdhcp_pxe", 44, &["-o", "93,0007"], Some("bootx64.efi"));
}

// Durability

/// Environment variable that turns [`relay_probe_helper`] on.
const PROBE_ENV: &str = "MAAS_PEERS_PROBE";

/// Not a test by itself: [`acknowledged_leases_survive_sigkill`] runs this binary again
/// inside its client namespace with `MAAS_PEERS_PROBE=FILE` to send relayed DISCOVERs from
/// there (a test process cannot enter a namespace itself without unsafe code). FILE holds
/// the server, the relay address and one MAC per line; the offers go to FILE.out.
#[test]
fn relay_probe_helper() {
    let Some(file) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let file = PathBuf::from(file);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    let mut addrs = lines.next().unwrap().split_whitespace();
    let server: Ipv4Addr = addrs.next().unwrap().parse().unwrap();
    let relay: Ipv4Addr = addrs.next().unwrap().parse().unwrap();
    let clients: Vec<[u8; 6]> = lines.map(|l| dhcp::parse_mac(l).unwrap()).collect();
    let out: String = dhcp::probe_offers(server, relay, &clients)
        .iter()
        .map(|(mac, ip)| {
            let ip = ip.map_or_else(|| "none".to_string(), |ip| ip.to_string());
            format!("{} {ip}\n", dhcp::mac_text(mac))
        })
        .collect();
    std::fs::write(file.with_extension("out"), out).unwrap();
}

/// Asks the server, through the relay, what it offers each of `clients`.
fn probe(
    lan: &RelayLan,
    scratch: &Scratch,
    clients: &[[u8; 6]],
) -> Vec<([u8; 6], Option<Ipv4Addr>)> {
    let request = scratch.join("probe.txt");
    let mut text = format!("{} {}\n", lan.server_ip(), lan.relay_ip());
    for mac in clients {
        text.push_str(&dhcp::mac_text(mac));
        text.push('\n');
    }
    std::fs::write(&request, text).unwrap();
    let mut cmd = in_ns(&lan.cli, std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "perfdhcp::relay_probe_helper",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(PROBE_ENV, &request);
    let (lines, status) = run_bounded("probe", cmd, Duration::from_secs(90));
    assert!(
        status.is_some_and(|s| s.success()),
        "probe failed\n{}",
        lines.join("\n")
    );
    std::fs::read_to_string(request.with_extension("out"))
        .unwrap()
        .lines()
        .map(|l| {
            let (mac, ip) = l.split_once(' ').unwrap();
            (dhcp::parse_mac(mac).unwrap(), ip.parse().ok())
        })
        .collect()
}

/// `kill -9` in the middle of a perfdhcp run loses no lease a client saw acknowledged: after
/// a restart on the same state file every such client is offered its address again, no
/// address was acknowledged to two clients, and a new client gets none of them.
#[test]
fn acknowledged_leases_survive_sigkill() {
    if !can_run("durability", &["ip", "perfdhcp", "tcpdump"]) {
        return;
    }
    let scratch = Scratch::new("durability");
    let lan = RelayLan::new(48);
    let state = scratch.join("state");
    let args = lan.dhcpd_args(Some(&state));
    let mut server = start_dhcpd(&lan.srv, &args);
    let pcap = scratch.join("acks.pcap");
    let capture = lan.capture(&pcap);
    // At most 500 clients, so the 766-address pool keeps room for the newcomers below.
    let mut perf = lan.perfdhcp(&["-r", "300", "-R", "100000", "-n", "500", "-p", "20"]);
    // Kill once clients hold a good number of ACKs (the capture is written packet by packet).
    let deadline = Instant::now() + WAIT;
    while read_acks(&pcap).len() < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill_hard();
    perf.stop("TERM", Duration::from_secs(5));
    let acked = captured_acks(capture, &pcap);
    assert!(
        acked.len() >= 50,
        "only {} ACKs captured\n{}\n{}",
        acked.len(),
        server.transcript(),
        perf.transcript()
    );

    // Each client's last acknowledged address; no address acknowledged to two clients.
    let mut holder: BTreeMap<Ipv4Addr, [u8; 6]> = BTreeMap::new();
    let mut latest: BTreeMap<[u8; 6], Ipv4Addr> = BTreeMap::new();
    for ack in &acked {
        assert!(in_range(ack.yiaddr, lan.range()), "{ack:?}");
        let first = *holder.entry(ack.yiaddr).or_insert(ack.chaddr);
        assert_eq!(
            first, ack.chaddr,
            "{} acknowledged to two clients",
            ack.yiaddr
        );
        latest.insert(ack.chaddr, ack.yiaddr);
    }

    let restarted = start_dhcpd(&lan.srv, &args);
    // New clients first: a server that forgot the leases would hand them the lowest
    // addresses, which the first clients hold.
    let newcomers: Vec<[u8; 6]> = (0..32).map(|i| [0x52, 0x54, 0, 0x77, 0x48, i]).collect();
    for (mac, offered) in probe(&lan, &scratch, &newcomers) {
        let offered = offered.unwrap_or_else(|| {
            panic!(
                "no offer for new client {}\n{}",
                dhcp::mac_text(&mac),
                restarted.transcript()
            )
        });
        assert!(in_range(offered, lan.range()), "{offered}");
        assert!(
            !holder.contains_key(&offered),
            "{offered}, acknowledged to {} before the kill, offered to new client {}",
            dhcp::mac_text(&holder[&offered]),
            dhcp::mac_text(&mac)
        );
    }
    // Then the known clients, in the reverse of the order they came in (perfdhcp numbers
    // its clients in sequence): a server allocating afresh would not pair them up again.
    let mut clients: Vec<[u8; 6]> = latest.keys().copied().collect();
    clients.reverse();
    let mut lost = Vec::new();
    for (mac, offered) in probe(&lan, &scratch, &clients) {
        if offered != Some(latest[&mac]) {
            lost.push(format!(
                "{} had {} now offered {offered:?}",
                dhcp::mac_text(&mac),
                latest[&mac]
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged leases lost:\n{}\n{}",
        lost.len(),
        clients.len(),
        lost.join("\n"),
        restarted.transcript()
    );
    eprintln!(
        "durability: {} ACKs to {} clients before SIGKILL, all offered again after restart",
        acked.len(),
        clients.len()
    );
}
