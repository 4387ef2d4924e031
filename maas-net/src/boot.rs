//! Network-boot architectures, as a subnet names them in `disabled_boot_architectures`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A MAAS boot method: the kind of firmware a booting machine runs, identified on the wire by
/// its DHCP client-architecture code (option 93, RFC 4578 and the IANA registry) or, for iPXE,
/// by its user class.
///
/// A subnet may disable some of them (`Subnet::disabled_boot_architectures`). They are written
/// by MAAS's method name (`uefi_amd64_tftp`) or by architecture code, as MAAS's `00:07` octet
/// pair or a plain number (`7`, `0x0007`); either way the name is kept.
///
/// ```
/// use maas_net::BootArchitecture;
///
/// let a: BootArchitecture = "00:0B".parse()?;
/// assert_eq!(a, BootArchitecture::UefiArm64Tftp);
/// assert_eq!(a.name(), "uefi_arm64_tftp");
/// assert_eq!("7".parse::<BootArchitecture>()?, BootArchitecture::UefiAmd64Tftp);
/// assert!("windows".parse::<BootArchitecture>().is_err());
/// # Ok::<(), maas_net::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BootArchitecture {
    /// x86 BIOS PXE (architecture 0).
    Pxe,
    /// x86-64 UEFI over TFTP (architecture 7).
    UefiAmd64Tftp,
    /// UEFI byte code over TFTP (architecture 9), answered with the x86-64 loader as MAAS does.
    UefiEbcTftp,
    /// x86-64 UEFI HTTP boot (architecture 16).
    UefiAmd64Http,
    /// ARM64 UEFI over TFTP (architecture 11).
    UefiArm64Tftp,
    /// ARM64 UEFI HTTP boot (architecture 19).
    UefiArm64Http,
    /// PowerPC 64 little-endian Open Firmware (architecture 12).
    OpenFirmwarePpc64el,
    /// PowerNV, OPAL/petitboot (architecture 14).
    Powernv,
    /// IBM Z, s390x (architecture 31).
    S390x,
    /// IBM Z DPM partition (architecture 32).
    S390xPartition,
    /// iPXE, recognised by its user class rather than an architecture code.
    Ipxe,
}

impl BootArchitecture {
    /// Every boot architecture, in MAAS's order.
    pub const ALL: [Self; 11] = [
        Self::Pxe,
        Self::UefiAmd64Tftp,
        Self::UefiEbcTftp,
        Self::UefiAmd64Http,
        Self::UefiArm64Tftp,
        Self::UefiArm64Http,
        Self::OpenFirmwarePpc64el,
        Self::Powernv,
        Self::S390x,
        Self::S390xPartition,
        Self::Ipxe,
    ];

    /// MAAS's name for the boot method.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pxe => "pxe",
            Self::UefiAmd64Tftp => "uefi_amd64_tftp",
            Self::UefiEbcTftp => "uefi_ebc_tftp",
            Self::UefiAmd64Http => "uefi_amd64_http",
            Self::UefiArm64Tftp => "uefi_arm64_tftp",
            Self::UefiArm64Http => "uefi_arm64_http",
            Self::OpenFirmwarePpc64el => "open-firmware_ppc64el",
            Self::Powernv => "powernv",
            Self::S390x => "s390x",
            Self::S390xPartition => "s390x_partition",
            Self::Ipxe => "ipxe",
        }
    }

    /// The DHCP client-architecture code (option 93 / DHCPv6 option 61) that selects this
    /// method; `None` for iPXE, which is told apart by its user class.
    pub const fn arch_code(self) -> Option<u16> {
        match self {
            Self::Pxe => Some(0),
            Self::UefiAmd64Tftp => Some(7),
            Self::UefiEbcTftp => Some(9),
            Self::UefiAmd64Http => Some(16),
            Self::UefiArm64Tftp => Some(11),
            Self::UefiArm64Http => Some(19),
            Self::OpenFirmwarePpc64el => Some(12),
            Self::Powernv => Some(14),
            Self::S390x => Some(31),
            Self::S390xPartition => Some(32),
            Self::Ipxe => None,
        }
    }

    /// The method selected by a client-architecture code, if MAAS has one for it.
    pub fn from_arch_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.arch_code() == Some(code))
    }

    /// The method with this MAAS name (exact, lower case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Reads a method name, an octet pair `00:07`, or a number in decimal or `0x` hex.
impl FromStr for BootArchitecture {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || crate::Error::UnknownBootArchitecture(s.chars().take(64).collect());
        if let Some(found) = Self::from_name(s) {
            return Ok(found);
        }
        let code = if let Some((hi, lo)) = s.split_once(':') {
            let byte = |t: &str| {
                (t.len() == 2)
                    .then(|| u8::from_str_radix(t, 16).ok())
                    .flatten()
            };
            byte(hi)
                .zip(byte(lo))
                .map(|(hi, lo)| u16::from_be_bytes([hi, lo]))
        } else if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            u16::from_str_radix(hex, 16).ok()
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        };
        code.and_then(Self::from_arch_code).ok_or_else(unknown)
    }
}

impl fmt::Display for BootArchitecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for BootArchitecture {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for BootArchitecture {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for a in BootArchitecture::ALL {
            assert_eq!(a.name().parse::<BootArchitecture>(), Ok(a));
            if let Some(code) = a.arch_code() {
                assert_eq!(BootArchitecture::from_arch_code(code), Some(a));
                assert_eq!(code.to_string().parse::<BootArchitecture>(), Ok(a));
                let [hi, lo] = code.to_be_bytes();
                assert_eq!(
                    format!("{hi:02x}:{lo:02x}").parse::<BootArchitecture>(),
                    Ok(a)
                );
                assert_eq!(
                    format!("{hi:02X}:{lo:02X}").parse::<BootArchitecture>(),
                    Ok(a)
                );
                assert_eq!(format!("0x{code:04x}").parse::<BootArchitecture>(), Ok(a));
            }
        }
    }

    #[test]
    fn unknown_architectures_are_refused_by_name() {
        for s in [
            "windows", "", "00:08", "0:7", "99", "0xzz", "PXE", "00:07:00", "65536",
        ] {
            let err = s.parse::<BootArchitecture>().unwrap_err();
            assert_eq!(err.to_string(), format!("Unknown boot architecture {s}"));
        }
    }

    #[test]
    fn serde_keeps_the_name() {
        let json = serde_json::to_string(&BootArchitecture::UefiAmd64Http).unwrap();
        assert_eq!(json, "\"uefi_amd64_http\"");
        let back: BootArchitecture = serde_json::from_str("\"00:10\"").unwrap();
        assert_eq!(back, BootArchitecture::UefiAmd64Http);
        assert!(serde_json::from_str::<BootArchitecture>("\"bogus\"").is_err());
    }
}
