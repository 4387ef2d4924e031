//! QEMU PXE firmware for the peer tests, on `tap0` of a namespace (see
//! `Netns::bridge_with_tap`): a BIOS machine (QEMU's iPXE ROM on an e1000) or a UEFI one
//! (edk2's own PXE on a ROM-less virtio NIC, with a private copy of the OVMF variables).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::netns::{Daemon, Netns};

const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/pxe-e1000.rom";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Which firmware boots.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Firmware {
    /// SeaBIOS with QEMU's iPXE ROM.
    Bios,
    /// OVMF (edk2) with its own network stack.
    Uefi,
}

/// Whether `firmware` is installed; prints why `test` skips when it is not.
pub(crate) fn installed(test: &str, firmware: Firmware) -> bool {
    let (files, package): (&[&str], &str) = match firmware {
        Firmware::Bios => (&[IPXE_ROM], "ipxe-qemu"),
        Firmware::Uefi => (&[OVMF_CODE, OVMF_VARS], "ovmf"),
    };
    let ok = files.iter().all(|f| Path::new(f).exists());
    if !ok {
        eprintln!("skipping {test}: no {firmware:?} firmware ({package})");
    }
    ok
}

/// Boots a machine with `mac` that network-boots first, its serial console written to
/// `serial`; `scratch` holds the UEFI variable store. The process ends with the `Daemon`.
pub(crate) fn boot(
    ns: &Netns,
    firmware: Firmware,
    mac: &str,
    serial: &Path,
    scratch: &Path,
    lifetime: Duration,
) -> Daemon {
    let mut cmd = ns.command("qemu-system-x86_64", lifetime);
    cmd.args([
        "-accel", "tcg", "-display", "none", "-monitor", "none", "-serial",
    ])
    .arg(format!("file:{}", serial.display()))
    .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
    match firmware {
        Firmware::Bios => {
            cmd.args(["-m", "256", "-machine", "pc,graphics=off", "-boot", "n"])
                .args(["-device", &format!("e1000,netdev=n0,mac={mac}")]);
        }
        Firmware::Uefi => {
            let vars: PathBuf = scratch.join("ovmf-vars.fd");
            std::fs::copy(OVMF_VARS, &vars).expect("copy the OVMF variable store");
            cmd.args(["-m", "512", "-machine", "q35,graphics=off"])
                .args([
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                ])
                .args([
                    "-drive",
                    &format!("if=pflash,format=raw,file={}", vars.display()),
                ])
                .args([
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1"),
                ]);
        }
    }
    Daemon::spawn("qemu", cmd)
}

/// The serial console so far, for failure messages.
pub(crate) fn serial_text(serial: &Path) -> String {
    let text = std::fs::read(serial).unwrap_or_default();
    format!("--- serial ---\n{}", String::from_utf8_lossy(&text))
}

/// The first complete line of the serial console holding `marker`, waiting up to `timeout`
/// (a line still being written is not taken: it may be cut short).
pub(crate) fn wait_serial(serial: &Path, marker: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned();
        if let Some(line) = text
            .split_inclusive('\n')
            .find(|l| l.ends_with('\n') && l.contains(marker))
        {
            return Some(line.trim_end().to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Router advertisements for `fd77:n::/64` on `bridge` (dnsmasq, RA only: no DHCP, no DNS),
/// so that iPXE does not wait for IPv6 autoconfiguration to time out before it boots. `None`
/// without dnsmasq.
pub(crate) fn router_advertisements(
    ns: &Netns,
    bridge: &str,
    n: u8,
    scratch: &Path,
    lifetime: Duration,
) -> Option<Daemon> {
    super::which("dnsmasq")?;
    let mut cmd = ns.command("dnsmasq", lifetime);
    cmd.args([
        "-k",
        "--port=0",
        &format!("--interface={bridge}"),
        "--bind-interfaces",
        "--enable-ra",
        &format!("--dhcp-range=fd77:{n}::,ra-only,64"),
        &format!("--pid-file={}", scratch.join("dnsmasq-ra.pid").display()),
        "--leasefile-ro",
        "--user=root",
    ]);
    Some(Daemon::spawn("dnsmasq-ra", cmd))
}
