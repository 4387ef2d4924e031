//! busybox udhcpc, plain and posing as each PXE client the server tells apart.

use super::*;

/// What a udhcpc run got: the address, `siaddr` and the boot file.
struct UdhcpcLease {
    ip: Ipv4Addr,
    siaddr: String,
    boot_file: String,
}

/// Runs udhcpc once on `lan`'s client link with `extra` options and returns its lease.
fn udhcpc(lan: &Lan, scratch: &Scratch, extra: &[&str]) -> UdhcpcLease {
    let script = scratch.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip siaddr=$siaddr boot_file=$boot_file\"\n",
    )
    .unwrap();
    run_chmod_x(&script);
    let mut cmd = in_ns(&lan.cli, "busybox");
    cmd.args([
        "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1",
    ])
    .arg("-s")
    .arg(&script)
    .args(extra);
    let (lines, status) = run_bounded("udhcpc", cmd, WAIT);
    let bound = lines
        .iter()
        .find(|l| l.starts_with("udhcpc-script: bound"))
        .unwrap_or_else(|| panic!("udhcpc got no lease ({status:?}):\n{}", lines.join("\n")));
    // boot_file is the last field and may be empty.
    let boot_file = bound.split_once("boot_file=").unwrap().1.trim().to_string();
    UdhcpcLease {
        ip: field(bound, "ip").unwrap().parse().unwrap(),
        siaddr: field(bound, "siaddr").unwrap_or_default().to_string(),
        boot_file,
    }
}

/// One udhcpc case: the client gets an address in the pool and `expected` boot file (`""`:
/// none), and the server's event says the same.
fn udhcpc_case(test: &str, n: u8, extra: &[&str], choice: Option<&str>, expected: &str) {
    if !can_run(test, &["ip", "busybox"]) {
        return;
    }
    let scratch = Scratch::new(test);
    let lan = Lan::new(n);
    let server = lan.dhcpd(&[]);
    let lease = udhcpc(&lan, &scratch, extra);
    assert!(
        in_range(lease.ip, lan.range()),
        "{} not in the pool",
        lease.ip
    );
    assert_eq!(lease.boot_file, expected, "boot file seen by udhcpc");
    if !expected.is_empty() && !expected.starts_with("http") {
        assert_eq!(lease.siaddr, lan.server_ip().to_string(), "next server");
    }
    let event = leased_event(&server, IpAddr::V4(lease.ip));
    assert_eq!(
        event_boot_file(&event).unwrap_or_default(),
        expected,
        "{event}"
    );
    if let Some(choice) = choice {
        assert_eq!(event["boot"]["choice"], choice, "{event}");
    }
    assert_eq!(event["mac"], Lan::mac(n), "{event}");
}

#[test]
fn udhcpc_plain_client_gets_no_boot_file() {
    udhcpc_case("udhcpc_plain", 2, &[], None, "");
}

#[test]
fn udhcpc_bios_pxe_gets_lpxelinux() {
    udhcpc_case(
        "udhcpc_bios",
        3,
        &["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"],
        Some("pxe"),
        "lpxelinux.0",
    );
}

#[test]
fn udhcpc_uefi_x64_gets_bootx64() {
    udhcpc_case(
        "udhcpc_uefi_x64",
        4,
        &["-x", "0x5d:0007"],
        Some("uefi_amd64_tftp"),
        "bootx64.efi",
    );
}

#[test]
fn udhcpc_uefi_arm64_gets_bootaa64() {
    udhcpc_case(
        "udhcpc_uefi_arm64",
        5,
        &["-x", "0x5d:000b"],
        Some("uefi_arm64_tftp"),
        "bootaa64.efi",
    );
}

#[test]
fn udhcpc_ipxe_gets_http_script() {
    udhcpc_case(
        "udhcpc_ipxe",
        6,
        &["-x", "0x5d:0000", "-x", "0x4d:046950584500"],
        Some("ipxe"),
        "http://10.77.6.1:5248/ipxe.cfg",
    );
}

#[test]
fn udhcpc_uefi_http_boot_gets_url() {
    udhcpc_case(
        "udhcpc_http_boot",
        7,
        &["-V", "HTTPClient:Arch:00016:UNDI:003000", "-x", "0x5d:0010"],
        Some("uefi_amd64_http"),
        "http://10.77.7.1:5248/images/bootx64.efi",
    );
}
