//! The option values a booting client sends and a boot server answers with, parsed and
//! built: client architectures (DHCPv4 93, DHCPv6 61), the network interface identifier (94,
//! 62), the machine UUID (97, DUID-UUID), vendor and user classes (60, 77, 175; DHCPv6 16, 15),
//! PXE vendor sub-options (43), the parameter request list (55) and DHCPv6 boot-file
//! parameters (60).
//!
//! Every parser takes the option's value (the bytes after code and length, already
//! concatenated as RFC 3396 says) and either returns the whole value or an [`OptionError`];
//! none of them stops early and returns part of a list.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::error::{EncodeError, LengthRule, OptionError};

/// DHCPv4 option codes this crate reads or writes.
pub mod code {
    /// Padding.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const MTU: u8 = 26;
    /// Vendor-specific information (PXE sub-options for PXE clients).
    pub const VENDOR_OPTIONS: u8 = 43;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload.
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Vendor class identifier.
    pub const VENDOR_CLASS: u8 = 60;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// TFTP server name.
    pub const TFTP_SERVER_NAME: u8 = 66;
    /// Boot file name.
    pub const BOOT_FILE: u8 = 67;
    /// User class.
    pub const USER_CLASS: u8 = 77;
    /// Relay agent information.
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// Client system architecture.
    pub const CLIENT_ARCH: u8 = 93;
    /// Client network interface identifier.
    pub const CLIENT_NDI: u8 = 94;
    /// Client machine identifier (UUID).
    pub const CLIENT_UUID: u8 = 97;
    /// Domain search list.
    pub const DOMAIN_SEARCH: u8 = 119;
    /// TFTP server address (option 150, Cisco).
    pub const TFTP_SERVER_ADDRESS: u8 = 150;
    /// iPXE encapsulated options.
    pub const IPXE_ENCAPSULATED: u8 = 175;
    /// PXELINUX configuration file.
    pub const PXELINUX_CONFIG_FILE: u8 = 209;
    /// PXELINUX path prefix.
    pub const PXELINUX_PATH_PREFIX: u8 = 210;
    /// PXELINUX reboot time.
    pub const PXELINUX_REBOOT_TIME: u8 = 211;
    /// End of options.
    pub const END: u8 = 255;

    /// DHCPv6 option codes.
    pub mod v6 {
        /// Client identifier (DUID).
        pub const CLIENT_ID: u16 = 1;
        /// Option request option.
        pub const ORO: u16 = 6;
        /// Relay message.
        pub const RELAY_MSG: u16 = 9;
        /// User class.
        pub const USER_CLASS: u16 = 15;
        /// Vendor class.
        pub const VENDOR_CLASS: u16 = 16;
        /// Vendor-specific information.
        pub const VENDOR_OPTS: u16 = 17;
        /// Boot file URL.
        pub const BOOT_FILE_URL: u16 = 59;
        /// Boot file parameters.
        pub const BOOT_FILE_PARAM: u16 = 60;
        /// Client system architecture.
        pub const CLIENT_ARCH: u16 = 61;
        /// Client network interface identifier.
        pub const CLIENT_NII: u16 = 62;
    }
}

/// The options a client asked for with its parameter request list (option 55).
///
/// A client that sends no list is taken to want everything the server has for it.
///
/// ```
/// use maas_pxe::dhcp::RequestedOptions;
///
/// let prl = RequestedOptions::from_list(&[1, 3, 6, 67]);
/// assert!(prl.wants(67) && !prl.wants(66));
/// assert!(RequestedOptions::ALL.wants(66));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestedOptions {
    list: Option<[u64; 4]>,
}

impl RequestedOptions {
    /// No list: every option is wanted.
    pub const ALL: Self = Self { list: None };

    /// The options named in a parameter request list.
    pub fn from_list(codes: &[u8]) -> Self {
        let mut bits = [0u64; 4];
        for &c in codes {
            bits[usize::from(c >> 6)] |= 1 << (c & 63);
        }
        Self { list: Some(bits) }
    }

    /// Whether the client sent a list.
    pub const fn has_list(&self) -> bool {
        self.list.is_some()
    }

    /// Whether the list names `code` (false when there is no list).
    pub const fn contains(&self, code: u8) -> bool {
        match self.list {
            Some(bits) => bits[(code >> 6) as usize] & (1 << (code & 63)) != 0,
            None => false,
        }
    }

    /// Whether the client wants `code`: the list names it, or there is no list.
    pub const fn wants(&self, code: u8) -> bool {
        self.list.is_none() || self.contains(code)
    }
}

impl Default for RequestedOptions {
    fn default() -> Self {
        Self::ALL
    }
}

/// Reads a client system architecture list: DHCPv4 option 93 or DHCPv6 option 61 (RFC 4578,
/// RFC 5970), a list of 16-bit codes from the IANA processor architecture registry, in the
/// client's order of preference.
///
/// ```
/// assert_eq!(maas_pxe::dhcp::parse_architectures(&[0, 7, 0, 9])?, [7, 9]);
/// assert!(maas_pxe::dhcp::parse_architectures(&[0, 7, 0]).is_err());
/// # Ok::<(), maas_pxe::dhcp::OptionError>(())
/// ```
pub fn parse_architectures(data: &[u8]) -> Result<Vec<u16>, OptionError> {
    OptionError::check(data, LengthRule::MultipleOf { unit: 2, min: 2 })?;
    Ok(data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// The client network interface identifier: DHCPv4 option 94 (RFC 4578) or DHCPv6 option 62
/// (RFC 5970). Type 1 is UNDI; PXE 2.1 firmware sends version 2.1, UEFI firmware 3.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ndi {
    /// Interface type (1: UNDI).
    pub interface_type: u8,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl Ndi {
    /// Reads the three-byte value.
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        OptionError::check(data, LengthRule::Exactly(3))?;
        Ok(Self {
            interface_type: data[0],
            major: data[1],
            minor: data[2],
        })
    }

    /// The three-byte value.
    pub const fn to_bytes(self) -> [u8; 3] {
        [self.interface_type, self.major, self.minor]
    }

    /// Whether the interface is UNDI (type 1).
    pub const fn is_undi(self) -> bool {
        self.interface_type == 1
    }
}

impl fmt::Display for Ndi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} version {}.{}",
            self.interface_type, self.major, self.minor
        )
    }
}

/// A client machine identifier: the 16-byte UUID of DHCPv4 option 97 (RFC 4578: type 0
/// followed by the UUID) or of a DHCPv6 DUID-UUID (RFC 6355).
///
/// The bytes are kept as sent. Firmware that copies an EFI GUID sends its first three fields
/// little-endian, so the same machine may print differently in tools that decode SMBIOS.
///
/// ```
/// use maas_pxe::dhcp::MachineId;
///
/// let mut value = vec![0u8];
/// value.extend(0x11u8..0x21);
/// let id = MachineId::parse(&value)?;
/// assert_eq!(id.to_string(), "11121314-1516-1718-191a-1b1c1d1e1f20");
/// assert!(MachineId::parse(&value[..16]).is_err());
/// # Ok::<(), maas_pxe::dhcp::OptionError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId([u8; 16]);

impl MachineId {
    /// A machine identifier from its 16 bytes.
    pub const fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes, as sent.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether every byte is zero: firmware sends this when it has no UUID to give.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Reads DHCPv4 option 97: type 0 and sixteen bytes.
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        OptionError::check(data, LengthRule::Exactly(17))?;
        if data[0] != 0 {
            return Err(OptionError::invalid(format!(
                "identifier type {} where 0 (UUID) is the only type defined",
                data[0]
            )));
        }
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&data[1..]);
        Ok(Self(bytes))
    }

    /// The value of DHCPv4 option 97 for this identifier.
    pub fn to_option(&self) -> [u8; 17] {
        let mut out = [0; 17];
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The UUID of a DHCPv6 DUID-UUID (type 4), if `duid` is one.
    pub fn from_duid(duid: &[u8]) -> Option<Self> {
        match duid {
            [0, 4, rest @ ..] if rest.len() == 16 => {
                let mut bytes = [0; 16];
                bytes.copy_from_slice(rest);
                Some(Self(bytes))
            }
            _ => None,
        }
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a vendor class identifier says the client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VendorKind {
    /// `PXEClient...`: PXE firmware (BIOS or UEFI) or iPXE.
    Pxe,
    /// `HTTPClient...`: UEFI HTTP boot.
    Http,
    /// Anything else (an operating system's DHCP client, a vendor's own class).
    Other,
}

/// The UNDI version in a PXE vendor class (`UNDI:yyyzzz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UndiVersion {
    /// Major version (`yyy`).
    pub major: u16,
    /// Minor version (`zzz`).
    pub minor: u16,
}

/// A vendor class identifier: DHCPv4 option 60, or one item of DHCPv6 option 16.
///
/// PXE and UEFI firmware send `PXEClient:Arch:xxxxx:UNDI:yyyzzz` (`HTTPClient:...` for HTTP
/// boot): the architecture in five decimal digits, the UNDI version in two groups of three.
/// The bare `PXEClient` and `PXEClient:Arch:xxxxx` forms are accepted too, and trailing NUL
/// bytes (a C-string terminator some firmware includes) are ignored. A value that starts with
/// `PXEClient` or `HTTPClient` but does not follow the format is refused; any other value is
/// kept as it is, as [`VendorKind::Other`].
///
/// ```
/// use maas_pxe::dhcp::{VendorClass, VendorKind};
///
/// let pxe = VendorClass::parse(b"PXEClient:Arch:00007:UNDI:003000")?;
/// assert_eq!((pxe.kind(), pxe.architecture()), (VendorKind::Pxe, Some(7)));
/// let http = VendorClass::parse(b"HTTPClient:Arch:00016:UNDI:003000")?;
/// assert_eq!((http.kind(), http.architecture()), (VendorKind::Http, Some(16)));
/// assert_eq!(VendorClass::parse(b"udhcp 1.36.1")?.kind(), VendorKind::Other);
/// assert!(VendorClass::parse(b"PXEClient:Arch:7").is_err());
/// # Ok::<(), maas_pxe::dhcp::OptionError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VendorClass {
    raw: Vec<u8>,
    kind: VendorKind,
    architecture: Option<u16>,
    undi: Option<UndiVersion>,
}

impl VendorClass {
    /// The vendor class PXE servers answer with.
    pub const PXE_CLIENT: &'static str = "PXEClient";
    /// The vendor class HTTP boot servers answer with.
    pub const HTTP_CLIENT: &'static str = "HTTPClient";

    /// Reads a vendor class identifier.
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        let (kind, architecture, undi) = Self::fields(data)?;
        Ok(Self {
            raw: data.to_vec(),
            kind,
            architecture,
            undi,
        })
    }

    /// Checks a vendor class identifier without keeping it.
    pub(crate) fn check(data: &[u8]) -> Result<(), OptionError> {
        Self::fields(data).map(drop)
    }

    #[allow(clippy::type_complexity)]
    fn fields(data: &[u8]) -> Result<(VendorKind, Option<u16>, Option<UndiVersion>), OptionError> {
        OptionError::check(data, LengthRule::AtLeast(1))?;
        let text = trim_nul(data);
        let (kind, rest, prefix) = if let Some(rest) = text.strip_prefix(b"PXEClient") {
            (VendorKind::Pxe, rest, Self::PXE_CLIENT)
        } else if let Some(rest) = text.strip_prefix(b"HTTPClient") {
            (VendorKind::Http, rest, Self::HTTP_CLIENT)
        } else {
            return Ok((VendorKind::Other, None, None));
        };
        let bad = |why: &str| {
            OptionError::invalid(format!(
                "vendor class {:?}: {why}; expected {prefix}:Arch:NNNNN:UNDI:yyyzzz",
                String::from_utf8_lossy(data)
            ))
        };
        let mut architecture = None;
        let mut undi = None;
        if !rest.is_empty() {
            let after = rest
                .strip_prefix(b":Arch:")
                .ok_or_else(|| bad("unexpected text after the class name"))?;
            let (digits, after) = after.split_at_checked(5).unwrap_or((after, &[]));
            let arch = decimal(digits, 5)
                .ok_or_else(|| bad("the architecture is not five decimal digits"))?;
            architecture = Some(
                u16::try_from(arch).map_err(|_| bad("the architecture is larger than 65535"))?,
            );
            if !after.is_empty() {
                let version = after
                    .strip_prefix(b":UNDI:")
                    .ok_or_else(|| bad("unexpected text after the architecture"))?;
                if version.len() != 6 {
                    return Err(bad("the UNDI version is not six decimal digits"));
                }
                let (major, minor) = version.split_at(3);
                let digits = |d| decimal(d, 3).and_then(|v| u16::try_from(v).ok());
                match (digits(major), digits(minor)) {
                    (Some(major), Some(minor)) => undi = Some(UndiVersion { major, minor }),
                    _ => return Err(bad("the UNDI version is not six decimal digits")),
                }
            }
        }
        Ok((kind, architecture, undi))
    }

    /// The value as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// What kind of client the class names.
    pub const fn kind(&self) -> VendorKind {
        self.kind
    }

    /// The architecture code in `:Arch:NNNNN`, if present.
    pub const fn architecture(&self) -> Option<u16> {
        self.architecture
    }

    /// The UNDI version in `:UNDI:yyyzzz`, if present.
    pub const fn undi(&self) -> Option<UndiVersion> {
        self.undi
    }
}

impl fmt::Display for VendorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(trim_nul(&self.raw)))
    }
}

/// `data` without trailing NUL bytes.
fn trim_nul(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &data[..end]
}

/// The value of exactly `digits` ASCII decimal digits.
fn decimal(s: &[u8], digits: usize) -> Option<u32> {
    if s.len() != digits || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// A user class: DHCPv4 option 77 or DHCPv6 option 15.
///
/// RFC 3004 makes DHCPv4 option 77 a list of length-prefixed classes, but iPXE and other
/// clients send a bare string (`iPXE`). A value that reads exactly as an RFC 3004 list (empty
/// items allowed, as dnsmasq allows them) is taken as one; anything else is one raw class.
///
/// ```
/// use maas_pxe::dhcp::UserClass;
///
/// assert!(UserClass::parse(b"iPXE")?.contains(b"iPXE"));
/// assert!(UserClass::parse(b"\x04iPXE")?.contains(b"iPXE"));
/// assert!(UserClass::parse(b"\x04iPXE\x00")?.contains(b"iPXE"));
/// assert!(!UserClass::parse(b"gPXE")?.contains(b"iPXE"));
/// # Ok::<(), maas_pxe::dhcp::OptionError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UserClass {
    /// One class, sent without a length prefix.
    Raw(Vec<u8>),
    /// A list of classes (RFC 3004 in DHCPv4, RFC 8415 in DHCPv6).
    List(Vec<Vec<u8>>),
}

impl UserClass {
    /// The user class iPXE sends.
    pub const IPXE: &'static [u8] = b"iPXE";

    /// Reads DHCPv4 option 77.
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        OptionError::check(data, LengthRule::AtLeast(1))?;
        let mut i = 0;
        while i < data.len() {
            i += 1 + usize::from(data[i]);
        }
        if i != data.len() {
            return Ok(Self::Raw(data.to_vec()));
        }
        let mut items = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let len = usize::from(data[i]);
            items.push(data[i + 1..i + 1 + len].to_vec());
            i += 1 + len;
        }
        Ok(Self::List(items))
    }

    /// The classes.
    pub fn classes(&self) -> impl Iterator<Item = &[u8]> {
        let (raw, list) = match self {
            Self::Raw(raw) => (Some(raw.as_slice()), &[][..]),
            Self::List(list) => (None, list.as_slice()),
        };
        raw.into_iter().chain(list.iter().map(Vec::as_slice))
    }

    /// Whether one of the classes is exactly `class`.
    pub fn contains(&self, class: &[u8]) -> bool {
        self.classes().any(|c| c == class)
    }
}

/// The iPXE feature indicators in DHCPv4 option 175 (iPXE's encapsulated options), as MAAS
/// reads them: a client that announces HTTP (sub-option 19) and bzImage (24) or EFI (36)
/// support is iPXE even when it sends no user class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IpxeFeatures {
    present: [u64; 4],
}

impl IpxeFeatures {
    /// HTTP protocol support.
    pub const HTTP: u8 = 0x13;
    /// bzImage format support.
    pub const BZIMAGE: u8 = 0x18;
    /// EFI format support.
    pub const EFI: u8 = 0x24;

    /// Reads option 175: sub-options coded like DHCP options (pad and end allowed).
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        let mut present = [0u64; 4];
        for sub in SubOptions::new(data) {
            let (c, _) = sub?;
            present[usize::from(c >> 6)] |= 1 << (c & 63);
        }
        Ok(Self { present })
    }

    /// Whether sub-option `code` is present.
    pub const fn has(&self, code: u8) -> bool {
        self.present[(code >> 6) as usize] & (1 << (code & 63)) != 0
    }

    /// Whether the features say iPXE, as MAAS's `exists ipxe.http and (exists ipxe.bzimage or
    /// exists ipxe.efi)`.
    pub const fn is_ipxe(&self) -> bool {
        self.has(Self::HTTP) && (self.has(Self::BZIMAGE) || self.has(Self::EFI))
    }
}

/// Walks sub-options coded like DHCPv4 options: code, length, value; code 0 is padding and
/// code 255 ends the list.
struct SubOptions<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SubOptions<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

impl<'a> Iterator for SubOptions<'a> {
    type Item = Result<(u8, &'a [u8]), OptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let &code = self.data.get(self.pos)?;
            match code {
                0 => self.pos += 1,
                255 => {
                    self.pos = self.data.len();
                    return None;
                }
                _ => {
                    let start = self.pos;
                    let Some(&len) = self.data.get(start + 1) else {
                        self.pos = self.data.len();
                        return Some(Err(OptionError::invalid(format!(
                            "sub-option {code} at byte {start} has no length byte"
                        ))));
                    };
                    let end = start + 2 + usize::from(len);
                    let Some(value) = self.data.get(start + 2..end) else {
                        self.pos = self.data.len();
                        return Some(Err(OptionError::invalid(format!(
                            "sub-option {code} at byte {start} claims {len} bytes but only {} \
                             remain",
                            self.data.len() - start - 2
                        ))));
                    };
                    self.pos = end;
                    return Some(Ok((code, value)));
                }
            }
        }
    }
}

/// PXE vendor sub-options: the value of option 43 between a PXE server and a PXE client
/// (PXE 2.1 specification, section 2.2.5).
///
/// A DHCP server that hands out the boot file itself sends only discovery control 8 (boot the
/// file in this offer; skip boot-server discovery). A ProxyDHCP server may instead offer boot
/// servers (sub-option 8), a menu (9) and a prompt (10); a client that then asks a boot server
/// on port 4011 names the chosen item in sub-option 71.
///
/// ```
/// use maas_pxe::dhcp::{MenuItem, MenuPrompt, PxeVendorOptions};
///
/// let direct = PxeVendorOptions::boot_file_only();
/// assert_eq!(direct.encode()?, [6, 1, 8, 255]);
///
/// let menu = PxeVendorOptions {
///     discovery_control: Some(3),
///     menu: vec![MenuItem { server_type: 0x8000, description: "MAAS".into() }],
///     prompt: Some(MenuPrompt { timeout: 0, text: "Booting".into() }),
///     ..PxeVendorOptions::default()
/// };
/// assert_eq!(PxeVendorOptions::parse(&menu.encode()?)?, menu);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PxeVendorOptions {
    /// Sub-option 6, PXE_DISCOVERY_CONTROL: bit 0 disables broadcast discovery, bit 1
    /// multicast discovery, bit 2 restricts the client to the listed boot servers, bit 3 makes
    /// it boot the file named in the offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_control: Option<u8>,
    /// Sub-option 8, PXE_BOOT_SERVERS.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boot_servers: Vec<BootServers>,
    /// Sub-option 9, PXE_BOOT_MENU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub menu: Vec<MenuItem>,
    /// Sub-option 10, PXE_MENU_PROMPT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<MenuPrompt>,
    /// Sub-option 71, PXE_BOOT_ITEM (sent by clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_item: Option<BootItem>,
    /// Any other sub-options, in order (multicast TFTP settings and vendor extensions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawSubOption>,
}

/// The boot servers of one type (sub-option 8).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootServers {
    /// The boot server type (0: PXE bootstrap server, 0x8000 and up: vendor types).
    pub server_type: u16,
    /// The servers' addresses.
    pub addresses: Vec<Ipv4Addr>,
}

/// One boot menu entry (sub-option 9).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// The boot server type the entry selects.
    pub server_type: u16,
    /// The text shown.
    pub description: String,
}

/// The boot menu prompt (sub-option 10).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuPrompt {
    /// Seconds to wait for a key (0: boot the first item at once; 255: wait for ever).
    pub timeout: u8,
    /// The text shown.
    pub text: String,
}

/// The boot item a client asks a boot server for (sub-option 71).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootItem {
    /// The boot server type.
    pub server_type: u16,
    /// The layer of the boot file (0: the first).
    pub layer: u16,
}

/// A sub-option kept as bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubOption {
    /// The sub-option code (1 to 254).
    pub code: u8,
    /// Its value.
    pub data: Vec<u8>,
}

impl PxeVendorOptions {
    const DISCOVERY_CONTROL: u8 = 6;
    const BOOT_SERVERS: u8 = 8;
    const BOOT_MENU: u8 = 9;
    const MENU_PROMPT: u8 = 10;
    const BOOT_ITEM: u8 = 71;

    /// Discovery control 8 alone: "boot the file named in this offer", which spares the
    /// client a boot-server discovery round.
    pub fn boot_file_only() -> Self {
        Self {
            discovery_control: Some(8),
            ..Self::default()
        }
    }

    /// Reads an option 43 value. The end sub-option (255) is optional; each of the
    /// sub-options 6, 8, 9, 10 and 71 may appear once.
    pub fn parse(data: &[u8]) -> Result<Self, OptionError> {
        let mut out = Self::default();
        let mut seen = [false; 5];
        for sub in SubOptions::new(data) {
            let (code, value) = sub?;
            let slot = match code {
                Self::DISCOVERY_CONTROL => Some(0),
                Self::BOOT_SERVERS => Some(1),
                Self::BOOT_MENU => Some(2),
                Self::MENU_PROMPT => Some(3),
                Self::BOOT_ITEM => Some(4),
                _ => None,
            };
            if let Some(slot) = slot {
                if seen[slot] {
                    return Err(OptionError::invalid(format!(
                        "PXE sub-option {code} appears twice"
                    )));
                }
                seen[slot] = true;
            }
            let sub_err =
                |e: OptionError| OptionError::invalid(format!("PXE sub-option {code}: {e}"));
            match code {
                Self::DISCOVERY_CONTROL => {
                    OptionError::check(value, LengthRule::Exactly(1)).map_err(sub_err)?;
                    out.discovery_control = Some(value[0]);
                }
                Self::BOOT_SERVERS => {
                    out.boot_servers = parse_boot_servers(value).map_err(sub_err)?
                }
                Self::BOOT_MENU => out.menu = parse_menu(value).map_err(sub_err)?,
                Self::MENU_PROMPT => {
                    OptionError::check(value, LengthRule::AtLeast(1)).map_err(sub_err)?;
                    out.prompt = Some(MenuPrompt {
                        timeout: value[0],
                        text: utf8(&value[1..]).map_err(sub_err)?,
                    });
                }
                Self::BOOT_ITEM => {
                    OptionError::check(value, LengthRule::Exactly(4)).map_err(sub_err)?;
                    out.boot_item = Some(BootItem {
                        server_type: u16::from_be_bytes([value[0], value[1]]),
                        layer: u16::from_be_bytes([value[2], value[3]]),
                    });
                }
                _ => out.other.push(RawSubOption {
                    code,
                    data: value.to_vec(),
                }),
            }
        }
        Ok(out)
    }

    /// The option 43 value: sub-options 6, 8, 9, 10, 71, then the others, then the end
    /// sub-option. Sub-options with nothing to say are left out.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(16);
        let mut put = |code: u8, value: &[u8]| {
            let len = u8::try_from(value.len()).map_err(|_| EncodeError::SubOptionTooLong {
                code,
                len: value.len(),
            })?;
            out.push(code);
            out.push(len);
            out.extend_from_slice(value);
            Ok::<(), EncodeError>(())
        };
        if let Some(dc) = self.discovery_control {
            put(Self::DISCOVERY_CONTROL, &[dc])?;
        }
        if !self.boot_servers.is_empty() {
            let mut v = Vec::new();
            for s in &self.boot_servers {
                v.extend_from_slice(&s.server_type.to_be_bytes());
                let count =
                    u8::try_from(s.addresses.len()).map_err(|_| EncodeError::SubOptionTooLong {
                        code: Self::BOOT_SERVERS,
                        len: 3 + 4 * s.addresses.len(),
                    })?;
                v.push(count);
                for a in &s.addresses {
                    v.extend_from_slice(&a.octets());
                }
            }
            put(Self::BOOT_SERVERS, &v)?;
        }
        if !self.menu.is_empty() {
            let mut v = Vec::new();
            for item in &self.menu {
                v.extend_from_slice(&item.server_type.to_be_bytes());
                let text = item.description.as_bytes();
                let len = u8::try_from(text.len()).map_err(|_| EncodeError::SubOptionTooLong {
                    code: Self::BOOT_MENU,
                    len: 3 + text.len(),
                })?;
                v.push(len);
                v.extend_from_slice(text);
            }
            put(Self::BOOT_MENU, &v)?;
        }
        if let Some(p) = &self.prompt {
            let mut v = vec![p.timeout];
            v.extend_from_slice(p.text.as_bytes());
            put(Self::MENU_PROMPT, &v)?;
        }
        if let Some(item) = self.boot_item {
            let mut v = item.server_type.to_be_bytes().to_vec();
            v.extend_from_slice(&item.layer.to_be_bytes());
            put(Self::BOOT_ITEM, &v)?;
        }
        for raw in &self.other {
            put(raw.code, &raw.data)?;
        }
        out.push(code::END);
        Ok(out)
    }
}

fn parse_boot_servers(value: &[u8]) -> Result<Vec<BootServers>, OptionError> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let [t0, t1, count, tail @ ..] = rest else {
            return Err(OptionError::invalid(format!(
                "{} bytes left where a boot server entry (type, count) needs 3",
                rest.len()
            )));
        };
        let n = 4 * usize::from(*count);
        let addrs = tail.get(..n).ok_or_else(|| {
            OptionError::invalid(format!(
                "a boot server entry lists {count} addresses but only {} bytes remain",
                tail.len()
            ))
        })?;
        out.push(BootServers {
            server_type: u16::from_be_bytes([*t0, *t1]),
            addresses: addrs
                .chunks_exact(4)
                .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                .collect(),
        });
        rest = &tail[n..];
    }
    Ok(out)
}

fn parse_menu(value: &[u8]) -> Result<Vec<MenuItem>, OptionError> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let [t0, t1, len, tail @ ..] = rest else {
            return Err(OptionError::invalid(format!(
                "{} bytes left where a menu entry (type, length) needs 3",
                rest.len()
            )));
        };
        let n = usize::from(*len);
        let text = tail.get(..n).ok_or_else(|| {
            OptionError::invalid(format!(
                "a menu entry claims {len} bytes of text but only {} remain",
                tail.len()
            ))
        })?;
        out.push(MenuItem {
            server_type: u16::from_be_bytes([*t0, *t1]),
            description: utf8(text)?,
        });
        rest = &tail[n..];
    }
    Ok(out)
}

fn utf8(bytes: &[u8]) -> Result<String, OptionError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        OptionError::invalid(format!(
            "text {:?} is not UTF-8",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// Reads DHCPv6 option 60 (boot-file-param, RFC 5970): a list of parameters, each with a
/// 16-bit length.
pub fn parse_boot_file_params(data: &[u8]) -> Result<Vec<Vec<u8>>, OptionError> {
    parse_v6_list(data, "parameter")
}

/// The value of DHCPv6 option 60 (boot-file-param) for these parameters.
pub fn encode_boot_file_params<S: AsRef<[u8]>>(params: &[S]) -> Result<Vec<u8>, EncodeError> {
    encode_v6_list(code::v6::BOOT_FILE_PARAM, params.iter().map(AsRef::as_ref))
}

/// Reads a list of items each prefixed by a 16-bit length (DHCPv6 user class data, vendor
/// class data, boot-file parameters), insisting that the items fill the value exactly.
pub(crate) fn parse_v6_list(data: &[u8], what: &str) -> Result<Vec<Vec<u8>>, OptionError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let [l0, l1, tail @ ..] = rest else {
            return Err(OptionError::invalid(format!(
                "1 byte left where a {what} length needs 2"
            )));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let item = tail.get(..len).ok_or_else(|| {
            OptionError::invalid(format!(
                "a {what} claims {len} bytes but only {} remain",
                tail.len()
            ))
        })?;
        out.push(item.to_vec());
        rest = &tail[len..];
    }
    Ok(out)
}

/// Writes items each prefixed by a 16-bit length.
pub(crate) fn encode_v6_list<'a>(
    code: u16,
    items: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    for item in items {
        let len = u16::try_from(item.len()).map_err(|_| EncodeError::V6TooLong {
            code,
            len: item.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_options() {
        let r = RequestedOptions::from_list(&[0, 1, 63, 64, 255]);
        for c in [0, 1, 63, 64, 255] {
            assert!(r.contains(c) && r.wants(c), "{c}");
        }
        for c in [2, 62, 65, 128, 254] {
            assert!(!r.contains(c) && !r.wants(c), "{c}");
        }
        assert!(r.has_list());
        assert!(!RequestedOptions::ALL.contains(1) && RequestedOptions::ALL.wants(1));
        assert!(RequestedOptions::from_list(&[]).has_list());
        assert!(!RequestedOptions::from_list(&[]).wants(1));
    }

    #[test]
    fn architectures_whole_list() {
        assert_eq!(parse_architectures(&[0, 0]).unwrap(), [0]);
        assert_eq!(
            parse_architectures(&[0, 16, 0, 7, 0, 0]).unwrap(),
            [16, 7, 0]
        );
        for bad in [&[][..], &[7], &[0, 7, 0]] {
            let err = parse_architectures(bad).unwrap_err();
            assert!(matches!(err, OptionError::Length { .. }), "{bad:?}");
        }
    }

    #[test]
    fn ndi() {
        let n = Ndi::parse(&[1, 3, 0]).unwrap();
        assert!(n.is_undi());
        assert_eq!(n.to_string(), "type 1 version 3.0");
        assert_eq!(n.to_bytes(), [1, 3, 0]);
        assert!(Ndi::parse(&[1, 3]).is_err() && Ndi::parse(&[1, 3, 0, 0]).is_err());
    }

    #[test]
    fn machine_id() {
        let mut v = vec![0];
        v.extend([0xab; 16]);
        let id = MachineId::parse(&v).unwrap();
        assert_eq!(id.to_option().to_vec(), v);
        assert!(!id.is_nil() && MachineId::new([0; 16]).is_nil());
        v[0] = 1;
        assert_eq!(
            MachineId::parse(&v).unwrap_err().to_string(),
            "identifier type 1 where 0 (UUID) is the only type defined"
        );
        let mut duid = vec![0, 4];
        duid.extend([0xab; 16]);
        assert_eq!(MachineId::from_duid(&duid), Some(id));
        assert_eq!(MachineId::from_duid(&duid[..17]), None);
        assert_eq!(MachineId::from_duid(&[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]), None);
    }

    #[test]
    fn vendor_classes() {
        let v = VendorClass::parse(b"PXEClient:Arch:00000:UNDI:002001").unwrap();
        assert_eq!(v.kind(), VendorKind::Pxe);
        assert_eq!(v.architecture(), Some(0));
        assert_eq!(v.undi(), Some(UndiVersion { major: 2, minor: 1 }));
        let v = VendorClass::parse(b"PXEClient").unwrap();
        assert_eq!(
            (v.kind(), v.architecture(), v.undi()),
            (VendorKind::Pxe, None, None)
        );
        let v = VendorClass::parse(b"PXEClient:Arch:00011").unwrap();
        assert_eq!((v.architecture(), v.undi()), (Some(11), None));
        let v = VendorClass::parse(b"HTTPClient:Arch:00019:UNDI:003000\0").unwrap();
        assert_eq!((v.kind(), v.architecture()), (VendorKind::Http, Some(19)));
        assert_eq!(v.to_string(), "HTTPClient:Arch:00019:UNDI:003000");
        assert_eq!(v.as_bytes().last(), Some(&0));
        for other in [
            &b"MSFT 5.0"[..],
            b"pxeclient",
            b"dhcpcd-9.4.1:Linux",
            b"\xff\xfe",
        ] {
            let v = VendorClass::parse(other).unwrap();
            assert_eq!((v.kind(), v.architecture()), (VendorKind::Other, None));
        }
        for bad in [
            &b"PXEClient:Arch:7"[..],
            b"PXEClient:Arch:0000x",
            b"PXEClient:Arch:99999",
            b"PXEClient:Arch:00007:UNDI:0030",
            b"PXEClient:Arch:00007:UNDI:00300a",
            b"PXEClient:Arch:00007:UNDI:003000x",
            b"PXEClient:Arch:00007:",
            b"PXEClientX",
            b"HTTPClient:",
        ] {
            let err = VendorClass::parse(bad).unwrap_err();
            assert!(err.to_string().contains("expected"), "{bad:?}: {err}");
        }
        assert_eq!(
            VendorClass::parse(b"PXEClient:Arch:99999")
                .unwrap_err()
                .to_string(),
            "vendor class \"PXEClient:Arch:99999\": the architecture is larger than 65535; \
             expected PXEClient:Arch:NNNNN:UNDI:yyyzzz"
        );
        assert!(VendorClass::parse(b"").is_err());
    }

    #[test]
    fn user_classes() {
        assert_eq!(
            UserClass::parse(b"iPXE").unwrap(),
            UserClass::Raw(b"iPXE".to_vec())
        );
        assert_eq!(
            UserClass::parse(b"\x04iPXE\x03abc").unwrap(),
            UserClass::List(vec![b"iPXE".to_vec(), b"abc".to_vec()])
        );
        assert_eq!(
            UserClass::parse(b"\x04iPXE\x00").unwrap(),
            UserClass::List(vec![b"iPXE".to_vec(), vec![]])
        );
        // A length running past the end: one raw class.
        assert_eq!(
            UserClass::parse(b"\x05iPXE").unwrap(),
            UserClass::Raw(b"\x05iPXE".to_vec())
        );
        assert!(UserClass::parse(b"").is_err());
        let c = UserClass::parse(b"\x04iPXE\x03abc").unwrap();
        assert_eq!(c.classes().collect::<Vec<_>>(), [&b"iPXE"[..], b"abc"]);
        assert!(c.contains(b"abc") && !c.contains(b"ipxe"));
    }

    #[test]
    fn ipxe_features() {
        // What iPXE sends: bus id, version and feature flags.
        let f = IpxeFeatures::parse(&[0x13, 1, 1, 0x24, 1, 1, 0xeb, 3, 1, 21, 0]).unwrap();
        assert!(f.is_ipxe() && f.has(0xeb) && !f.has(0x18));
        let f = IpxeFeatures::parse(&[0x13, 1, 1, 0, 0x18, 1, 1, 255, 9, 9]).unwrap();
        assert!(f.is_ipxe());
        assert!(!IpxeFeatures::parse(&[0x13, 1, 1]).unwrap().is_ipxe());
        assert!(!IpxeFeatures::parse(&[0x24, 1, 1]).unwrap().is_ipxe());
        let err = IpxeFeatures::parse(&[0x13, 5, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sub-option 19 at byte 0 claims 5 bytes but only 1 remain"
        );
        assert!(IpxeFeatures::parse(&[0x13]).is_err());
    }

    #[test]
    fn pxe_vendor_options_round_trip() {
        let all = PxeVendorOptions {
            discovery_control: Some(7),
            boot_servers: vec![
                BootServers {
                    server_type: 0x8000,
                    addresses: vec![Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)],
                },
                BootServers {
                    server_type: 0,
                    addresses: vec![],
                },
            ],
            menu: vec![
                MenuItem {
                    server_type: 0x8000,
                    description: "MAAS".into(),
                },
                MenuItem {
                    server_type: 0,
                    description: String::new(),
                },
            ],
            prompt: Some(MenuPrompt {
                timeout: 5,
                text: "Press F8".into(),
            }),
            boot_item: Some(BootItem {
                server_type: 0x8000,
                layer: 0,
            }),
            other: vec![RawSubOption {
                code: 1,
                data: vec![224, 1, 1, 1],
            }],
        };
        let bytes = all.encode().unwrap();
        assert_eq!(bytes.last(), Some(&255));
        assert_eq!(PxeVendorOptions::parse(&bytes).unwrap(), all);
        assert_eq!(
            PxeVendorOptions::boot_file_only().encode().unwrap(),
            [6, 1, 8, 255]
        );
        assert_eq!(PxeVendorOptions::default().encode().unwrap(), [255]);
        // A client's boot item request, without the end sub-option.
        let item = PxeVendorOptions::parse(&[71, 4, 0x80, 0, 0, 0]).unwrap();
        assert_eq!(
            item.boot_item,
            Some(BootItem {
                server_type: 0x8000,
                layer: 0
            })
        );
    }

    #[test]
    fn pxe_vendor_options_refusals() {
        for (bad, why) in [
            (
                &[6, 2, 8, 8][..],
                "PXE sub-option 6: length 2 where exactly 1 bytes is required",
            ),
            (&[6, 1, 8, 6, 1, 8], "PXE sub-option 6 appears twice"),
            (
                &[8, 2, 0, 0],
                "PXE sub-option 8: 2 bytes left where a boot server entry",
            ),
            (
                &[8, 3, 0, 0, 1],
                "PXE sub-option 8: a boot server entry lists 1 addresses",
            ),
            (
                &[9, 3, 0, 0, 2],
                "PXE sub-option 9: a menu entry claims 2 bytes",
            ),
            (
                &[9, 4, 0, 0, 1, 0xff],
                "PXE sub-option 9: text \"\u{fffd}\" is not UTF-8",
            ),
            (&[10, 0], "PXE sub-option 10: length 0"),
            (&[71, 2, 0, 0], "PXE sub-option 71: length 2"),
            (&[6, 9, 8], "sub-option 6 at byte 0 claims 9 bytes"),
        ] {
            let err = PxeVendorOptions::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(why), "{bad:?}: {err}");
        }
        let long = PxeVendorOptions {
            menu: vec![MenuItem {
                server_type: 1,
                description: "x".repeat(300),
            }],
            ..PxeVendorOptions::default()
        };
        assert_eq!(
            long.encode().unwrap_err(),
            EncodeError::SubOptionTooLong { code: 9, len: 303 }
        );
    }

    #[test]
    fn boot_file_params() {
        let v = encode_boot_file_params(&["root=/dev/ram0", ""]).unwrap();
        assert_eq!(&v[..2], &[0, 14]);
        assert_eq!(
            parse_boot_file_params(&v).unwrap(),
            [b"root=/dev/ram0".to_vec(), vec![]]
        );
        assert!(parse_boot_file_params(&[0]).is_err());
        assert!(parse_boot_file_params(&[0, 3, 1]).is_err());
        assert_eq!(parse_boot_file_params(&[]).unwrap(), Vec::<Vec<u8>>::new());
    }
}
