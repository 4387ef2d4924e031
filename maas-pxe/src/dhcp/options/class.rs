//! What a client says it is: the vendor class (DHCPv4 60, DHCPv6 16), the user class (77,
//! DHCPv6 15) and iPXE's feature indicators (175).

use std::fmt;

use super::SubOptions;
use crate::dhcp::error::{LengthRule, OptionError};

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
