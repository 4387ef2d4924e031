//! ISC dhclient (DHCPv4 and DHCPv6) and dhcpcd.

use super::*;

/// A dhclient script that prints what dhclient learnt instead of configuring anything (the
/// stock script would rewrite the host's resolv.conf).
fn dhclient_script(scratch: &Scratch) -> PathBuf {
    let script = scratch.join("dhclient.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"dhclient-script: reason=$reason ip=$new_ip_address \
         ip6=$new_ip6_address file=$new_filename url6=$new_dhcp6_bootfile_url\"\n",
    )
    .unwrap();
    run_chmod_x(&script);
    script
}

/// Starts dhclient in the foreground on `lan`'s client link with `extra` options first.
fn dhclient(lan: &Lan, scratch: &Scratch, extra: &[&str]) -> Daemon {
    let script = dhclient_script(scratch);
    let mut cmd = in_ns(&lan.cli, "dhclient");
    cmd.args(extra)
        .args(["-1", "-d", "-v", "-lf"])
        .arg(scratch.join("leases"))
        .arg("-pf")
        .arg(scratch.join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("vcli");
    Daemon::spawn("dhclient", cmd)
}

#[test]
fn dhclient_gets_a_lease() {
    if !can_run("dhclient", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient");
    let lan = Lan::new(1);
    let server = lan.dhcpd(&[]);
    let client = dhclient(&lan, &scratch, &[]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND "))
        .unwrap_or_else(|| {
            panic!(
                "dhclient did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv4Addr = field(&bound, "ip").unwrap().parse().unwrap();
    assert!(in_range(ip, lan.range()), "{ip} not in the pool");
    assert_eq!(
        field(&bound, "file"),
        Some(""),
        "a plain client gets no boot file"
    );
    let event = leased_event(&server, IpAddr::V4(ip));
    assert_eq!(event_boot_file(&event), None, "{event}");
    assert_eq!(event["mac"], Lan::mac(1), "{event}");
}

#[test]
fn dhcpcd_gets_a_lease() {
    if !can_run("dhcpcd", &["ip", "dhcpcd"]) {
        return;
    }
    let lan = Lan::new(8);
    let server = lan.dhcpd(&[]);
    let mut cmd = in_ns(&lan.cli, "dhcpcd");
    // No hooks script: the stock one would rewrite the host's resolv.conf.
    cmd.args([
        "-4",
        "-1",
        "-B",
        "-t",
        "15",
        "-f",
        "/dev/null",
        "-c",
        "/bin/true",
        "vcli",
    ]);
    let (lines, status) = run_bounded("dhcpcd", cmd, WAIT);
    let leased = lines
        .iter()
        .find_map(|l| l.split_once("leased ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("dhcpcd got no lease ({status:?}):\n{}", lines.join("\n")));
    let ip: Ipv4Addr = leased.parse().unwrap();
    assert!(in_range(ip, lan.range()), "{ip} not in the pool");
    let event = leased_event(&server, IpAddr::V4(ip));
    assert_eq!(event_boot_file(&event), None, "{event}");
}

/// DHCPv6: dhclient -6 gets an address from the v6 pool.
#[test]
fn dhclient6_gets_an_address() {
    if !can_run("dhclient6", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient6");
    let lan = Lan::new(9);
    let server = lan.dhcpd(&[
        "--v6",
        "--subnet6",
        "fd77:9::/64",
        "--range6",
        "fd77:9::100-fd77:9::1ff",
    ]);
    lan.cli.wait_link_local("vcli", WAIT);
    let client = dhclient(&lan, &scratch, &["-6"]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv6Addr = field(&bound, "ip6").unwrap().parse().unwrap();
    let range: (Ipv6Addr, Ipv6Addr) = (
        "fd77:9::100".parse().unwrap(),
        "fd77:9::1ff".parse().unwrap(),
    );
    assert!((range.0..=range.1).contains(&ip), "{ip} not in the pool");
    leased_event(&server, IpAddr::V6(ip));
}

/// dhclient -6 posing as x86-64 UEFI PXE firmware (client architecture 7 in option 61, the
/// boot-file URL in its option request) gets an address and the URL of `bootx64.efi`.
#[test]
fn dhclient6_uefi_gets_the_boot_url() {
    if !can_run("dhclient6_uefi", &["ip", "dhclient"]) {
        return;
    }
    let scratch = Scratch::new("dhclient6-uefi");
    let lan = Lan::new(10);
    let server = lan.dhcpd(&[
        "--v6",
        "--subnet6",
        "fd77:10::/64",
        "--range6",
        "fd77:10::100-fd77:10::1ff",
    ]);
    lan.cli.wait_link_local("vcli", WAIT);
    let conf = scratch.join("dhclient6.conf");
    std::fs::write(
        &conf,
        "option dhcp6.client-arch-type code 61 = unsigned integer 16;\n\
         option dhcp6.bootfile-url code 59 = string;\n\
         send dhcp6.client-arch-type 7;\n\
         also request dhcp6.bootfile-url;\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let client = dhclient(&lan, &scratch, &["-6", "-cf", &conf]);
    let bound = client
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                client.transcript(),
                server.transcript()
            )
        });
    let ip: Ipv6Addr = field(&bound, "ip6").unwrap().parse().unwrap();
    assert!(
        ("fd77:10::100".parse::<Ipv6Addr>().unwrap()..="fd77:10::1ff".parse().unwrap())
            .contains(&ip),
        "{ip} not in the pool"
    );
    assert_eq!(
        field(&bound, "url6"),
        Some("tftp://[fd77:10::1]/bootx64.efi"),
        "{bound}"
    );
    let event = leased_event(&server, IpAddr::V6(ip));
    assert_eq!(
        event_boot_file(&event),
        Some("tftp://[fd77:10::1]/bootx64.efi"),
        "{event}"
    );
}
