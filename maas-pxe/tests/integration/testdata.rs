//! The requests in `testdata/`, built here byte for byte, and a test that the files match.
//!
//! Each builder lays out the header with dhcproto and then the options in the order the
//! client's own source writes them (see `testdata/README.md`). Run with
//! `MAAS_PXE_WRITE_TESTDATA=1` to rewrite the files after changing a builder.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use maas_pxe::dhcp::v4;
use maas_pxe::dhcproto::v4::{Flags, Message};

/// The MAC address of the QEMU machines in the peers' setup.
pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x02, 0x30];
/// A machine UUID as SMBIOS gives it.
pub(crate) const UUID: [u8; 16] = [
    0x4c, 0x4c, 0x45, 0x44, 0x00, 0x37, 0x30, 0x10, 0x80, 0x52, 0xb7, 0xc0, 0x4f, 0x4e, 0x35, 0x32,
];

/// Builds one file's bytes.
pub(crate) type Builder = fn() -> Vec<u8>;

/// Every file, with its builder.
pub(crate) const FILES: &[(&str, Builder)] = &[
    ("edk2-x64-pxe-discover.bin", edk2_pxe_discover),
    ("edk2-x64-http-discover.bin", edk2_http_discover),
    ("ipxe-bios-discover.bin", ipxe_discover_raw),
    ("ipxe-bios-discover-rfc3004.bin", ipxe_discover_rfc3004),
    ("udhcpc-arch-bios-discover.bin", udhcpc_arch_bios),
    (
        "udhcpc-user-class-ipxe-discover.bin",
        udhcpc_user_class_ipxe,
    ),
    ("udhcpc-pxe-vendor-class-discover.bin", udhcpc_vendor_class),
    ("udhcpc-plain-discover.bin", udhcpc_plain),
    ("edk2-x64-pxe-solicit6.bin", edk2_pxe_solicit6),
    ("edk2-x64-http-solicit6.bin", edk2_http_solicit6),
    ("ipxe-solicit6.bin", ipxe_solicit6),
];

pub(crate) fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// A testdata file's bytes.
pub(crate) fn load(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("cannot read testdata/{name}: {e}"))
}

/// The fixed header of a BOOTREQUEST with the magic cookie, laid out by dhcproto.
fn header(xid: u32, broadcast: bool) -> Vec<u8> {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, zero, zero, zero, zero, &MAC);
    if broadcast {
        m.set_flags(Flags::default().set_broadcast());
    }
    let mut bytes = v4::encode_to_vec(&m).expect("a header encodes");
    bytes.truncate(v4::HEADER_LEN);
    bytes
}

/// Appends an option.
fn opt(b: &mut Vec<u8>, code: u8, value: &[u8]) {
    b.push(code);
    b.push(u8::try_from(value.len()).expect("a short option"));
    b.extend_from_slice(value);
}

/// The end option, then padding to `min` bytes.
fn end(mut b: Vec<u8>, min: usize) -> Vec<u8> {
    b.push(255);
    if b.len() < min {
        b.resize(min, 0);
    }
    b
}

fn uuid_option() -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&UUID);
    v
}

/// The 35-entry parameter request list of edk2's PXE driver (PxeBcBuildDhcp4Options).
pub(crate) const EDK2_PXE_PRL: [u8; 35] = [
    1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66,
    67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
];

/// edk2 (OVMF) UEFI x86-64 PXE: the DHCP4 driver's 53 and 57 (1472, set by the PXE driver's
/// callback), then the PXE driver's 55, 97, 94, 93 and 60. Broadcast flag set, no padding.
pub(crate) fn edk2_pxe_discover() -> Vec<u8> {
    let mut b = header(0x1c5d_a3e0, true);
    opt(&mut b, 53, &[1]);
    opt(&mut b, 57, &1472u16.to_be_bytes());
    opt(&mut b, 55, &EDK2_PXE_PRL);
    opt(&mut b, 97, &uuid_option());
    opt(&mut b, 94, &[1, 3, 0]);
    opt(&mut b, 93, &[0, 7]);
    opt(&mut b, 60, b"PXEClient:Arch:00007:UNDI:003000");
    end(b, 0)
}

/// edk2 UEFI x86-64 HTTP boot (HttpBootBuildDhcp4Options): as PXE, but a 27-entry list
/// whose entry 24 edk2 never sets (so it is 0), architecture 16 and `HTTPClient`.
pub(crate) fn edk2_http_discover() -> Vec<u8> {
    let mut prl = [0u8; 27];
    prl[..24].copy_from_slice(&EDK2_PXE_PRL[..24]);
    prl[25] = 67;
    prl[26] = 97;
    let mut b = header(0x2e41_09b7, true);
    opt(&mut b, 53, &[1]);
    opt(&mut b, 57, &1472u16.to_be_bytes());
    opt(&mut b, 55, &prl);
    opt(&mut b, 97, &uuid_option());
    opt(&mut b, 94, &[1, 3, 0]);
    opt(&mut b, 93, &[0, 16]);
    opt(&mut b, 60, b"HTTPClient:Arch:00016:UNDI:003000");
    end(b, 0)
}

/// The parameter request list of iPXE (dhcp_request_options_data).
const IPXE_PRL: [u8; 23] = [
    1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175,
    203,
];

/// iPXE's feature indicators (HTTP, TFTP, DNS, bzImage, Multiboot, PXE, ELF, COMBOOT, menu),
/// its bus id (PCI e1000) and its version, inside option 175.
const IPXE_FEATURES: &[u8] = &[
    0x13, 1, 1, 0x15, 1, 1, 0x17, 1, 1, 0x18, 1, 1, 0x19, 1, 1, 0x21, 1, 1, 0x22, 1, 1, 0x23, 1, 1,
    0x27, 1, 1, 0xb1, 7, 1, 0x80, 0x86, 0x10, 0x0e, 0x00, 0x18, 0xeb, 3, 1, 21, 1,
];

fn ipxe_discover(user_class: &[u8]) -> Vec<u8> {
    let mut b = header(0x6e9f_2c11, false);
    opt(&mut b, 53, &[1]);
    opt(&mut b, 57, &1472u16.to_be_bytes());
    opt(&mut b, 93, &[0, 0]);
    opt(&mut b, 94, &[1, 2, 1]);
    opt(&mut b, 60, b"PXEClient:Arch:00000:UNDI:002001");
    opt(&mut b, 77, user_class);
    opt(&mut b, 55, &IPXE_PRL);
    opt(&mut b, 175, IPXE_FEATURES);
    let mut client_id = vec![1];
    client_id.extend_from_slice(&MAC);
    opt(&mut b, 61, &client_id);
    opt(&mut b, 97, &uuid_option());
    end(b, 0)
}

/// iPXE on BIOS (undionly.kpxe): the raw user class `iPXE`.
pub(crate) fn ipxe_discover_raw() -> Vec<u8> {
    ipxe_discover(b"iPXE")
}

/// The same with the user class in RFC 3004 form.
pub(crate) fn ipxe_discover_rfc3004() -> Vec<u8> {
    ipxe_discover(b"\x04iPXE")
}

/// busybox udhcpc: 53, 61 (01 + MAC), 57 (576), 55 (its default list), then its option list
/// sorted by code: the vendor class and the `-x` options. Padded to 300 bytes.
fn udhcpc(vendor_class: &[u8], extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = header(0x3b1f_0e52, false);
    opt(&mut b, 53, &[1]);
    let mut client_id = vec![1];
    client_id.extend_from_slice(&MAC);
    opt(&mut b, 61, &client_id);
    opt(&mut b, 57, &576u16.to_be_bytes());
    opt(&mut b, 55, &[1, 3, 6, 12, 15, 28, 42]);
    let mut sorted: Vec<(u8, &[u8])> = vec![(60, vendor_class)];
    sorted.extend_from_slice(extra);
    sorted.sort_by_key(|(c, _)| *c);
    for (c, v) in sorted {
        opt(&mut b, c, v);
    }
    end(b, 300)
}

/// `udhcpc -x 0x5d:0000`: a BIOS architecture, no PXE vendor class.
pub(crate) fn udhcpc_arch_bios() -> Vec<u8> {
    udhcpc(b"udhcp 1.36.1", &[(93, &[0, 0])])
}

/// `udhcpc -x 0x4d:046950584500`: user class `iPXE` RFC 3004 style, then an empty class.
pub(crate) fn udhcpc_user_class_ipxe() -> Vec<u8> {
    udhcpc(b"udhcp 1.36.1", &[(77, b"\x04iPXE\x00")])
}

/// `udhcpc -V PXEClient:Arch:00000:UNDI:002001`: the architecture only in the vendor class.
pub(crate) fn udhcpc_vendor_class() -> Vec<u8> {
    udhcpc(b"PXEClient:Arch:00000:UNDI:002001", &[])
}

/// Plain `udhcpc`: an operating system's DHCP client.
pub(crate) fn udhcpc_plain() -> Vec<u8> {
    udhcpc(b"udhcp 1.36.1", &[])
}

fn opt6(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(
        &u16::try_from(value.len())
            .expect("a short option")
            .to_be_bytes(),
    );
    b.extend_from_slice(value);
}

fn vendor_class6(class: &[u8]) -> Vec<u8> {
    let mut v = 343u32.to_be_bytes().to_vec();
    v.extend_from_slice(&u16::try_from(class.len()).expect("short").to_be_bytes());
    v.extend_from_slice(class);
    v
}

fn ia_na(iaid: u32) -> Vec<u8> {
    let mut v = iaid.to_be_bytes().to_vec();
    v.extend_from_slice(&[0; 8]);
    v
}

/// An edk2 DHCPv6 SOLICIT: the DHCP6 driver's client id (DUID-UUID), elapsed time, then the
/// boot driver's option request (59, 60, 23, 24), interface identifier, architecture and
/// vendor class, then the IA_NA.
fn edk2_solicit6(arch: u16, class: &[u8], xid: [u8; 3]) -> Vec<u8> {
    let mut b = vec![1, xid[0], xid[1], xid[2]];
    let mut duid = vec![0, 4];
    duid.extend_from_slice(&UUID);
    opt6(&mut b, 1, &duid);
    opt6(&mut b, 8, &[0, 0]);
    opt6(&mut b, 6, &[0, 59, 0, 60, 0, 23, 0, 24]);
    opt6(&mut b, 62, &[1, 3, 0]);
    opt6(&mut b, 61, &arch.to_be_bytes());
    opt6(&mut b, 16, &vendor_class6(class));
    opt6(&mut b, 3, &ia_na(0x7702_3000));
    b
}

/// edk2 UEFI x86-64 PXE over IPv6.
pub(crate) fn edk2_pxe_solicit6() -> Vec<u8> {
    edk2_solicit6(7, b"PXEClient:Arch:00007:UNDI:003000", [0x4a, 0x10, 0x9e])
}

/// edk2 UEFI x86-64 HTTP boot over IPv6.
pub(crate) fn edk2_http_solicit6() -> Vec<u8> {
    edk2_solicit6(16, b"HTTPClient:Arch:00016:UNDI:003000", [0x0c, 0x77, 0x31])
}

/// iPXE over IPv6: DUID-LL client id, option request, user class `iPXE`, architecture.
pub(crate) fn ipxe_solicit6() -> Vec<u8> {
    let mut b = vec![1, 0x91, 0x02, 0x5c];
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&MAC);
    opt6(&mut b, 1, &duid);
    opt6(&mut b, 6, &[0, 23, 0, 24, 0, 59, 0, 60]);
    opt6(&mut b, 15, b"\x00\x04iPXE");
    opt6(&mut b, 61, &[0, 7]);
    opt6(&mut b, 8, &[0, 0]);
    opt6(&mut b, 3, &ia_na(0x0277_3000));
    b
}

#[test]
fn testdata_files_match_their_builders() {
    let write = std::env::var_os("MAAS_PXE_WRITE_TESTDATA").is_some();
    for (name, build) in FILES {
        let bytes = build();
        if write {
            std::fs::write(path(name), &bytes).expect("testdata is writable");
        }
        assert_eq!(
            load(name),
            bytes,
            "testdata/{name} differs from its builder"
        );
    }
}
