//! QEMU firmware (iPXE on BIOS, edk2 on UEFI), also in ProxyDHCP mode beside dnsmasq.

use super::*;

/// A namespace with bridge `br0` (`10.77.n.1/24`, `fd77:n::1/64`) and `tap0` on it, the
/// server on the bridge, and a router advertisement on the link (iPXE otherwise waits for
/// IPv6 autoconfiguration to time out before it boots).
struct PxeLan {
    // Fields drop in order: the processes before their namespaces.
    server: Daemon,
    _ra: Option<Daemon>,
    /// ProxyDHCP only: the other server, which hands out the addresses.
    addresses: Option<AddressServer>,
    ns: Netns,
    /// The LAN's number: `10.77.n.0/24`.
    n: u8,
}

/// dnsmasq as a plain DHCP server (addresses, no boot information) in a namespace of its own
/// at `10.77.n.2`, on the PXE bridge through a veth, as the site's own DHCP server would be
/// where ProxyDHCP is used.
struct AddressServer {
    dnsmasq: Daemon,
    leases: PathBuf,
    _ns: Netns,
}

impl PxeLan {
    /// The server hands out addresses and boot answers.
    fn new(n: u8, scratch: &Scratch) -> Self {
        Self::start(n, scratch, false)
    }

    /// The server is a ProxyDHCP server (boot answers only, ports 67 and 4011) and dnsmasq,
    /// on another host of the link, hands out the addresses.
    fn proxy(n: u8, scratch: &Scratch) -> Self {
        Self::start(n, scratch, true)
    }

    fn start(n: u8, scratch: &Scratch, proxy: bool) -> Self {
        let ns = Netns::new(&format!("maas-dhcp{n}-pxe"));
        ns.bridge_with_tap("br0", &format!("10.77.{n}.1/24"), "tap0");
        ns.ip(&["addr", "add", &format!("fd77:{n}::1/64"), "dev", "br0"]);
        let addresses = proxy.then(|| {
            let other = Netns::new(&format!("maas-dhcp{n}-addr"));
            ns.veth("vaddr", &other, "vsrv");
            ns.ip(&["link", "set", "vaddr", "master", "br0"]);
            ns.ip(&["link", "set", "vaddr", "up"]);
            other.ip(&["addr", "add", &format!("10.77.{n}.2/24"), "dev", "vsrv"]);
            other.ip(&["link", "set", "vsrv", "up"]);
            let leases = scratch.join("dnsmasq.leases");
            let mut cmd = in_ns(&other, "dnsmasq");
            cmd.args([
                "-k",
                "--port=0",
                "--interface=vsrv",
                "--bind-interfaces",
                &format!("--dhcp-range=10.77.{n}.100,10.77.{n}.199,255.255.255.0,1h"),
                &format!("--dhcp-option=option:router,10.77.{n}.2"),
                &format!("--dhcp-leasefile={}", leases.display()),
                &format!("--pid-file={}", scratch.join("dnsmasq-dhcp.pid").display()),
                "--no-ping",
                "--log-dhcp",
                "--log-facility=-",
                "--user=root",
            ]);
            AddressServer {
                dnsmasq: Daemon::spawn("dnsmasq-dhcp", cmd),
                leases,
                _ns: other,
            }
        });
        let mut args = vec![
            "--interface".to_string(),
            "br0".into(),
            "--subnet".into(),
            format!("10.77.{n}.0/24"),
            "--range".into(),
            format!("10.77.{n}.100-10.77.{n}.199"),
            "--gateway".into(),
            format!("10.77.{n}.1"),
        ];
        if proxy {
            args.push("--proxy-dhcp".into());
        }
        let server = start_dhcpd(&ns, &args);
        let ra = qemu::router_advertisements(&ns, "br0", n, &scratch.join(""), LIFETIME);
        Self {
            server,
            _ra: ra,
            addresses,
            ns,
            n,
        }
    }

    /// The address the ProxyDHCP LAN's dnsmasq leased to `mac` (from its lease file, read
    /// until the lease appears, within [`WAIT`]), checked to lie in its range `.100-.199`.
    fn dnsmasq_lease(&self, mac: &str) -> Ipv4Addr {
        let other = self.addresses.as_ref().expect("a ProxyDHCP LAN");
        let deadline = Instant::now() + WAIT;
        let ip = loop {
            // "<expiry> <mac> <ip> <hostname> <client-id>" per line.
            let text = std::fs::read_to_string(&other.leases).unwrap_or_default();
            let found: Option<Ipv4Addr> = text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(1) == Some(&mac))
                    .then(|| fields.get(2)?.parse().ok())
                    .flatten()
            });
            match found {
                Some(ip) => break ip,
                None if Instant::now() >= deadline => {
                    panic!("no dnsmasq lease for {mac}\n{}", other.dnsmasq.transcript())
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let n = self.n;
        let range = (Ipv4Addr::new(10, 77, n, 100), Ipv4Addr::new(10, 77, n, 199));
        assert!(in_range(ip, range), "{ip} outside dnsmasq's range");
        ip
    }

    /// What the ProxyDHCP LAN's dnsmasq said, for failure messages.
    fn dnsmasq_transcript(&self) -> String {
        self.addresses
            .as_ref()
            .map(|a| a.dnsmasq.transcript())
            .unwrap_or_default()
    }

    /// Records the TFTP read requests that reach the server's address.
    fn tftp_requests(&self) -> Daemon {
        let mut cmd = in_ns(&self.ns, "tcpdump");
        cmd.args(["-l", "-n", "-i", "br0", "udp", "dst", "port", "69"]);
        let tcpdump = Daemon::spawn("tcpdump", cmd);
        assert!(
            tcpdump
                .wait_line(WAIT, |l| l.contains("listening on"))
                .is_some(),
            "tcpdump did not start\n{}",
            tcpdump.transcript()
        );
        tcpdump
    }

    /// Records the first HTTP request line to port 5248 (MAAS's boot HTTP port).
    fn http_requests(&self) -> Daemon {
        let mut cmd = in_ns(&self.ns, "busybox");
        cmd.args(["nc", "-l", "-p", "5248"]);
        Daemon::spawn("http", cmd)
    }

    /// Boots a QEMU machine with `firmware` on `tap0`.
    fn boot(&self, firmware: Firmware, mac: &str, scratch: &Scratch) -> (Daemon, PathBuf) {
        let serial = scratch.join("serial");
        let vm = qemu::boot(
            &self.ns,
            firmware,
            mac,
            &serial,
            &scratch.join(""),
            LIFETIME,
        );
        (vm, serial)
    }
}

/// QEMU's BIOS boots its iPXE ROM, which asks for the iPXE script over HTTP.
#[test]
fn qemu_bios_ipxe_fetches_the_boot_script() {
    if !can_run("qemu_bios", &["ip", "qemu-system-x86_64", "busybox"]) {
        return;
    }
    if !qemu::installed("qemu_bios", Firmware::Bios) {
        return;
    }
    let scratch = Scratch::new("qemu_bios");
    let lan = PxeLan::new(20, &scratch);
    let http = lan.http_requests();
    let mac = "52:54:00:77:14:10";
    let (_vm, serial) = lan.boot(Firmware::Bios, mac, &scratch);
    let request = http
        .wait_line(WAIT_FIRMWARE, |l| l.starts_with("GET "))
        .unwrap_or_else(|| {
            panic!(
                "no HTTP request from iPXE\n{}\n{}",
                lan.server.transcript(),
                qemu::serial_text(&serial)
            )
        });
    let event = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "leased" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no lease for the VM\n{}", lan.server.transcript()));
    eprintln!("qemu_bios: iPXE sent {request:?} after {event}");
    assert_eq!(event["boot"]["choice"], "ipxe", "{event}");
    let url = event_boot_file(&event).unwrap();
    assert_eq!(url, "http://10.77.20.1:5248/ipxe.cfg");
    assert_eq!(
        request.split_whitespace().nth(1),
        Some("/ipxe.cfg"),
        "{request}"
    );
    match event_ip(&event) {
        Some(IpAddr::V4(ip)) => assert!(in_range(
            ip,
            (
                Ipv4Addr::new(10, 77, 20, 100),
                Ipv4Addr::new(10, 77, 20, 199)
            )
        )),
        other => panic!("{other:?}"),
    }
}

/// OVMF's own PXE (edk2, no iPXE ROM) asks for bootx64.efi over TFTP.
#[test]
fn qemu_uefi_edk2_requests_bootx64() {
    if !can_run("qemu_uefi", &["ip", "qemu-system-x86_64", "tcpdump"]) {
        return;
    }
    if !qemu::installed("qemu_uefi", Firmware::Uefi) {
        return;
    }
    let scratch = Scratch::new("qemu_uefi");
    let lan = PxeLan::new(21, &scratch);
    let tftp = lan.tftp_requests();
    let mac = "52:54:00:77:15:30";
    let (_vm, serial) = lan.boot(Firmware::Uefi, mac, &scratch);
    let rrq = tftp
        .wait_line(WAIT_FIRMWARE, |l| l.contains("RRQ"))
        .unwrap_or_else(|| {
            panic!(
                "no TFTP request from edk2\n{}\n{}",
                lan.server.transcript(),
                qemu::serial_text(&serial)
            )
        });
    eprintln!("qemu_uefi: edk2 sent {rrq:?}");
    assert!(rrq.contains("RRQ \"bootx64.efi\""), "{rrq}");
    assert!(rrq.contains("> 10.77.21.1.69"), "{rrq}");
    let event = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "leased" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no lease for the VM\n{}", lan.server.transcript()));
    assert_eq!(event["boot"]["choice"], "uefi_amd64_tftp", "{event}");
    assert_eq!(event_boot_file(&event), Some("bootx64.efi"), "{event}");
}

/// ProxyDHCP: dnsmasq on another host of the link hands out the address, the server only the
/// boot answer. QEMU's iPXE takes the address from one and the script URL from the other, and
/// fetches the script.
#[test]
fn qemu_bios_ipxe_boots_through_proxydhcp() {
    if !can_run(
        "qemu_bios_proxydhcp",
        &["ip", "qemu-system-x86_64", "busybox", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("qemu_bios_proxydhcp", Firmware::Bios) {
        return;
    }
    let scratch = Scratch::new("qemu_bios_proxydhcp");
    let lan = PxeLan::proxy(22, &scratch);
    let http = lan.http_requests();
    let mac = "52:54:00:77:16:10";
    let (_vm, serial) = lan.boot(Firmware::Bios, mac, &scratch);
    let request = http
        .wait_line(WAIT_FIRMWARE, |l| l.starts_with("GET "))
        .unwrap_or_else(|| {
            panic!(
                "no HTTP request from iPXE\n{}\n{}\n{}",
                lan.server.transcript(),
                lan.dnsmasq_transcript(),
                qemu::serial_text(&serial)
            )
        });
    assert_eq!(
        request.split_whitespace().nth(1),
        Some("/ipxe.cfg"),
        "{request}"
    );
    let answer = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "proxy_answered" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no ProxyDHCP answer\n{}", lan.server.transcript()));
    assert_eq!(answer["boot"]["choice"], "ipxe", "{answer}");
    assert_eq!(
        event_boot_file(&answer),
        Some("http://10.77.22.1:5248/ipxe.cfg"),
        "{answer}"
    );
    // The address came from dnsmasq's range, and the server handed out none.
    let ip = lan.dnsmasq_lease(mac);
    let events = lan.server.events();
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "offered" || e["event"] == "leased"),
        "a ProxyDHCP server handed out an address\n{}",
        lan.server.transcript()
    );
    eprintln!("qemu_bios_proxydhcp: {ip} from dnsmasq, {answer}");
}

/// ProxyDHCP with edk2's own PXE: the address from dnsmasq, `bootx64.efi` over TFTP from the
/// ProxyDHCP server's answer.
#[test]
fn qemu_uefi_edk2_boots_through_proxydhcp() {
    if !can_run(
        "qemu_uefi_proxydhcp",
        &["ip", "qemu-system-x86_64", "tcpdump", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("qemu_uefi_proxydhcp", Firmware::Uefi) {
        return;
    }
    let scratch = Scratch::new("qemu_uefi_proxydhcp");
    let lan = PxeLan::proxy(23, &scratch);
    let tftp = lan.tftp_requests();
    let mac = "52:54:00:77:17:30";
    let (_vm, serial) = lan.boot(Firmware::Uefi, mac, &scratch);
    let rrq = tftp
        .wait_line(WAIT_FIRMWARE, |l| l.contains("RRQ"))
        .unwrap_or_else(|| {
            panic!(
                "no TFTP request from edk2\n{}\n{}\n{}",
                lan.server.transcript(),
                lan.dnsmasq_transcript(),
                qemu::serial_text(&serial)
            )
        });
    eprintln!("qemu_uefi_proxydhcp: edk2 sent {rrq:?}");
    assert!(rrq.contains("RRQ \"bootx64.efi\""), "{rrq}");
    assert!(rrq.contains("> 10.77.23.1.69"), "{rrq}");
    let answer = lan
        .server
        .wait_event(WAIT, |e| e["event"] == "proxy_answered" && e["mac"] == mac)
        .unwrap_or_else(|| panic!("no ProxyDHCP answer\n{}", lan.server.transcript()));
    assert_eq!(answer["boot"]["choice"], "uefi_amd64_tftp", "{answer}");
    let ip = lan.dnsmasq_lease(mac);
    // The TFTP request came from the address dnsmasq leased.
    assert!(rrq.contains(&format!("{ip}.")), "{rrq} not from {ip}");
}
