//! The option values a booting client sends and a boot server answers with, parsed and
//! built: client architectures (DHCPv4 93, DHCPv6 61), the network interface identifier (94,
//! 62), the machine UUID (97, DUID-UUID), vendor and user classes (60, 77, 175; DHCPv6 16, 15),
//! PXE vendor sub-options (43), the parameter request list (55) and DHCPv6 boot-file
//! parameters (60).
//!
//! Every parser takes the option's value (the bytes after code and length, already
//! concatenated as RFC 3396 says) and either returns the whole value or an [`OptionError`];
//! none of them stops early and returns part of a list.

mod class;
mod pxe;
#[cfg(test)]
mod tests;

use std::fmt;

use super::error::{EncodeError, LengthRule, OptionError};

pub use class::{IpxeFeatures, UndiVersion, UserClass, VendorClass, VendorKind};
pub use pxe::{BootItem, BootServers, MenuItem, MenuPrompt, PxeVendorOptions, RawSubOption};

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
