//! PXE vendor sub-options (DHCPv4 option 43): boot servers, menu, prompt and boot item, parsed
//! and encoded.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{SubOptions, code};
use crate::dhcp::error::{EncodeError, LengthRule, OptionError};

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
