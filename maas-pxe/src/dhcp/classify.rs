//! What a booting client is, and which boot method it gets.

use dhcproto::v6::{self, OptionCode};
use maas_net::ip::Family;
use maas_net::{BootArchitecture, Mac, Subnet};

use super::boot::BootConfig;
use super::options::{
    IpxeFeatures, MachineId, Ndi, UserClass, VendorClass, VendorKind, code, parse_architectures,
};
use super::v4;

/// Where a client's architecture list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchSource {
    /// The client system architecture option (DHCPv4 93, DHCPv6 61).
    ClientArchitecture,
    /// The `:Arch:` field of a `PXEClient`/`HTTPClient` vendor class (no option 93 sent).
    VendorClass,
    /// The client named no architecture.
    None,
}

/// What a DHCP request says about the client's firmware.
///
/// Built from a decoded request with [`from_v4`](Self::from_v4) or
/// [`from_v6`](Self::from_v6); the fields are plain data so tests and other front ends can
/// fill them in directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootClient {
    /// The request's address family.
    pub family: Family,
    /// The client's architecture codes, in its order of preference: option 93's (61's)
    /// whole list, or the one in its vendor class.
    pub architectures: Vec<u16>,
    /// Where `architectures` came from.
    pub arch_source: ArchSource,
    /// The vendor class (option 60; for DHCPv6, the first item of option 16 that names a
    /// PXE or HTTP client, else its first item).
    pub vendor_class: Option<VendorClass>,
    /// The user class (option 77; DHCPv6 option 15).
    pub user_class: Option<UserClass>,
    /// The client is iPXE: user class `iPXE`, or (DHCPv4) iPXE feature indicators in option
    /// 175 announcing HTTP and bzImage or EFI support.
    pub ipxe: bool,
    /// The machine UUID (option 97; a DHCPv6 DUID-UUID).
    pub machine_id: Option<MachineId>,
    /// The network interface identifier (option 94; DHCPv6 option 62).
    pub ndi: Option<Ndi>,
    /// The client's Ethernet address (`chaddr`; for DHCPv6, from a DUID-LL or DUID-LLT).
    pub mac: Option<Mac>,
}

impl BootClient {
    /// What a DHCPv4 request says. The packet has been decoded strictly, so every option
    /// read here is well-formed.
    pub fn from_v4(packet: &v4::Packet) -> Self {
        let vendor_class = packet
            .option(code::VENDOR_CLASS)
            .and_then(|v| VendorClass::parse(v).ok());
        let user_class = packet
            .option(code::USER_CLASS)
            .and_then(|v| UserClass::parse(v).ok());
        let features_say_ipxe = packet
            .option(code::IPXE_ENCAPSULATED)
            .and_then(|v| IpxeFeatures::parse(v).ok())
            .is_some_and(|f| f.is_ipxe());
        let ipxe = features_say_ipxe
            || user_class
                .as_ref()
                .is_some_and(|u| u.contains(UserClass::IPXE));
        let listed = packet
            .option(code::CLIENT_ARCH)
            .and_then(|v| parse_architectures(v).ok());
        let (architectures, arch_source) = arch_list(listed, vendor_class.as_ref());
        Self {
            family: Family::V4,
            architectures,
            arch_source,
            vendor_class,
            user_class,
            ipxe,
            machine_id: packet
                .option(code::CLIENT_UUID)
                .and_then(|v| MachineId::parse(v).ok()),
            ndi: packet
                .option(code::CLIENT_NDI)
                .and_then(|v| Ndi::parse(v).ok()),
            mac: packet.mac(),
        }
    }

    /// What a DHCPv6 client message says (for a relayed message, pass
    /// [`v6::Packet::message`](super::v6::Packet::message)).
    pub fn from_v6(message: &v6::Message) -> Self {
        let opts = message.opts();
        let vendor_class = match opts.get(OptionCode::VendorClass) {
            Some(v6::DhcpOption::VendorClass(vc)) => {
                let parsed: Vec<VendorClass> = vc
                    .data
                    .iter()
                    .filter_map(|item| VendorClass::parse(item).ok())
                    .collect();
                let boot = parsed.iter().position(|v| v.kind() != VendorKind::Other);
                boot.or((!parsed.is_empty()).then_some(0))
                    .and_then(|i| parsed.into_iter().nth(i))
            }
            _ => None,
        };
        let user_class = match opts.get(OptionCode::UserClass) {
            Some(v6::DhcpOption::UserClass(uc)) => Some(UserClass::List(uc.data.clone())),
            _ => None,
        };
        let ipxe = user_class
            .as_ref()
            .is_some_and(|u| u.contains(UserClass::IPXE));
        let listed = match opts.get(OptionCode::ClientArchType) {
            Some(v6::DhcpOption::ClientArchType(list)) => {
                Some(list.iter().map(|a| a.0).collect::<Vec<u16>>())
            }
            _ => None,
        };
        let (architectures, arch_source) = arch_list(listed, vendor_class.as_ref());
        let duid = match opts.get(OptionCode::ClientId) {
            Some(v6::DhcpOption::ClientId(duid)) => Some(duid.as_slice()),
            _ => None,
        };
        Self {
            family: Family::V6,
            architectures,
            arch_source,
            vendor_class,
            user_class,
            ipxe,
            machine_id: duid.and_then(MachineId::from_duid),
            ndi: raw_v6(opts, code::v6::CLIENT_NII).and_then(|v| Ndi::parse(v).ok()),
            mac: duid.and_then(duid_mac),
        }
    }

    /// Whether the vendor class names PXE firmware (`PXEClient`).
    pub fn is_pxe_client(&self) -> bool {
        self.vendor_kind() == Some(VendorKind::Pxe)
    }

    /// Whether the vendor class names UEFI HTTP boot (`HTTPClient`).
    pub fn is_http_client(&self) -> bool {
        self.vendor_kind() == Some(VendorKind::Http)
    }

    fn vendor_kind(&self) -> Option<VendorKind> {
        self.vendor_class.as_ref().map(VendorClass::kind)
    }
}

fn arch_list(listed: Option<Vec<u16>>, vendor: Option<&VendorClass>) -> (Vec<u16>, ArchSource) {
    match (listed, vendor.and_then(VendorClass::architecture)) {
        (Some(list), _) => (list, ArchSource::ClientArchitecture),
        (None, Some(arch)) => (vec![arch], ArchSource::VendorClass),
        (None, None) => (Vec::new(), ArchSource::None),
    }
}

/// The raw value of a DHCPv6 option dhcproto does not type.
pub(crate) fn raw_v6(opts: &v6::DhcpOptions, code: u16) -> Option<&[u8]> {
    opts.iter().find_map(|o| match o {
        v6::DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data()),
        _ => None,
    })
}

/// The Ethernet address in a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1.
fn duid_mac(duid: &[u8]) -> Option<Mac> {
    let ([0, 1, 0, 1, _, _, _, _, mac @ ..] | [0, 3, 0, 1, mac @ ..]) = duid else {
        return None;
    };
    Mac::try_from(mac).ok()
}

/// What the table and the subnet say about one boot method for one client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Serve,
    Disabled,
    Loops,
    Absent,
}

/// Why a client gets no boot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoBoot {
    /// Every boot method the client could use is disabled on its subnet.
    #[error("every boot method the client can use is disabled on its subnet: {}", names(.disabled))]
    Disabled {
        /// The disabled methods the client asked for, in its order.
        disabled: Vec<BootArchitecture>,
    },
    /// The client is iPXE, and the only boot files it could get are iPXE builds, which it
    /// would load for ever.
    #[error("the client is iPXE and the only boot files for it load iPXE again: {}", names(.looping))]
    IpxeLoop {
        /// The methods refused.
        looping: Vec<BootArchitecture>,
    },
    /// The client names architectures, none of which the table serves, and there is no
    /// fallback.
    #[error("no boot method serves client architectures {codes:?} and there is no fallback")]
    Unsupported {
        /// The architecture codes the client sent.
        codes: Vec<u16>,
    },
    /// The client names no architecture and there is no fallback.
    #[error("the client names no architecture and there is no fallback")]
    NoArchitecture,
    /// The server was told this client boots from its local disk (a deployed machine): it
    /// gets an address and no boot file, so its firmware moves on to the next boot device.
    #[error("the client boots from its local disk")]
    LocalDisk,
}

fn names(list: &[BootArchitecture]) -> String {
    list.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// A client with the boot method chosen for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// What the client said.
    pub client: BootClient,
    /// The boot method chosen, or why there is none.
    pub choice: Result<BootArchitecture, NoBoot>,
}

impl Classification {
    /// The boot method chosen, if any.
    pub fn architecture(&self) -> Option<BootArchitecture> {
        self.choice.as_ref().ok().copied()
    }

    /// Whether the client is iPXE.
    pub fn is_ipxe(&self) -> bool {
        self.client.ipxe
    }

    /// Whether the client is UEFI HTTP boot.
    pub fn is_http_client(&self) -> bool {
        self.client.is_http_client()
    }
}

impl BootConfig {
    /// Chooses the boot method for `client` on `subnet`.
    ///
    /// 1. An iPXE client gets the `ipxe` method (an HTTP script) when the table has it and
    ///    the subnet does not disable it.
    /// 2. Otherwise the first architecture in the client's list that the table serves and
    ///    the subnet does not disable wins. Methods whose file loads iPXE are skipped for an
    ///    iPXE client.
    /// 3. A client whose architectures the table does not know (or who names none) gets the
    ///    fallback method for its family, if it is served and not disabled.
    ///
    /// A client whose usable methods are all disabled gets no answer, never the fallback.
    ///
    /// ```
    /// use maas_net::{BootArchitecture, Subnet, VlanId};
    /// use maas_pxe::dhcp::{ArchSource, BootClient, BootConfig};
    ///
    /// let mut client = BootClient {
    ///     family: maas_net::ip::Family::V4,
    ///     architectures: vec![16, 7],
    ///     arch_source: ArchSource::ClientArchitecture,
    ///     vendor_class: None,
    ///     user_class: None,
    ///     ipxe: false,
    ///     machine_id: None,
    ///     ndi: None,
    ///     mac: None,
    /// };
    /// let mut subnet = Subnet::new("10.77.0.0/24".parse()?, VlanId::new(0));
    /// let config = BootConfig::default();
    /// assert_eq!(config.classify(client.clone(), &subnet).architecture(), Some(BootArchitecture::UefiAmd64Http));
    ///
    /// subnet.disabled_boot_architectures = vec![BootArchitecture::UefiAmd64Http];
    /// assert_eq!(config.classify(client.clone(), &subnet).architecture(), Some(BootArchitecture::UefiAmd64Tftp));
    ///
    /// client.ipxe = true;
    /// assert_eq!(config.classify(client, &subnet).architecture(), Some(BootArchitecture::Ipxe));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classify(&self, client: BootClient, subnet: &Subnet) -> Classification {
        let choice = self.choose(&client, &subnet.disabled_boot_architectures);
        Classification { client, choice }
    }

    /// [`classify`](Self::classify) with the disabled methods given directly.
    pub fn choose(
        &self,
        client: &BootClient,
        disabled: &[BootArchitecture],
    ) -> Result<BootArchitecture, NoBoot> {
        let verdict = |arch: BootArchitecture| match self.methods.get(&arch) {
            None => Verdict::Absent,
            Some(_) if disabled.contains(&arch) => Verdict::Disabled,
            Some(method) if client.ipxe && method.loads_ipxe => Verdict::Loops,
            Some(_) => Verdict::Serve,
        };
        let mut off = Vec::new();
        let mut looping = Vec::new();
        let mut known = false;
        let ipxe = client.ipxe.then_some(BootArchitecture::Ipxe);
        let listed = client
            .architectures
            .iter()
            .filter_map(|&code| BootArchitecture::from_arch_code(code));
        for (arch, from_list) in ipxe
            .map(|a| (a, false))
            .into_iter()
            .chain(listed.map(|a| (a, true)))
        {
            let v = verdict(arch);
            known |= from_list && v != Verdict::Absent;
            match v {
                Verdict::Serve => return Ok(arch),
                Verdict::Disabled if from_list => off.push(arch),
                Verdict::Loops => looping.push(arch),
                _ => {}
            }
        }
        let fallback = match client.family {
            Family::V4 => self.fallback,
            Family::V6 => self.fallback_v6,
        };
        if let Some(arch) = fallback.filter(|_| !known) {
            match verdict(arch) {
                Verdict::Serve => return Ok(arch),
                Verdict::Disabled => off.push(arch),
                Verdict::Loops => looping.push(arch),
                Verdict::Absent => {}
            }
        }
        if !off.is_empty() {
            return Err(NoBoot::Disabled { disabled: off });
        }
        if !looping.is_empty() {
            return Err(NoBoot::IpxeLoop { looping });
        }
        if client.architectures.is_empty() {
            Err(NoBoot::NoArchitecture)
        } else {
            Err(NoBoot::Unsupported {
                codes: client.architectures.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::boot::BootMethod;

    fn client(architectures: &[u16]) -> BootClient {
        BootClient {
            family: Family::V4,
            architectures: architectures.to_vec(),
            arch_source: ArchSource::ClientArchitecture,
            vendor_class: None,
            user_class: None,
            ipxe: false,
            machine_id: None,
            ndi: None,
            mac: None,
        }
    }

    fn choose(c: &BootClient, disabled: &[BootArchitecture]) -> Result<BootArchitecture, NoBoot> {
        BootConfig::default().choose(c, disabled)
    }

    use BootArchitecture as A;

    #[test]
    fn every_architecture_of_the_table() {
        for (code, arch) in [
            (0, A::Pxe),
            (7, A::UefiAmd64Tftp),
            (9, A::UefiEbcTftp),
            (11, A::UefiArm64Tftp),
            (12, A::OpenFirmwarePpc64el),
            (14, A::Powernv),
            (16, A::UefiAmd64Http),
            (19, A::UefiArm64Http),
            (31, A::S390x),
            (32, A::S390xPartition),
        ] {
            assert_eq!(choose(&client(&[code]), &[]), Ok(arch), "{code}");
        }
    }

    #[test]
    fn first_served_and_enabled_architecture_wins() {
        assert_eq!(
            choose(&client(&[6, 7]), &[]),
            Ok(A::UefiAmd64Tftp),
            "6 is not served"
        );
        assert_eq!(
            choose(&client(&[16, 7]), &[A::UefiAmd64Http]),
            Ok(A::UefiAmd64Tftp)
        );
        assert_eq!(choose(&client(&[7, 16]), &[]), Ok(A::UefiAmd64Tftp));
    }

    #[test]
    fn disabled_methods_get_no_answer() {
        assert_eq!(
            choose(&client(&[7]), &[A::UefiAmd64Tftp]),
            Err(NoBoot::Disabled {
                disabled: vec![A::UefiAmd64Tftp]
            })
        );
        assert_eq!(
            choose(&client(&[]), &[A::Pxe]),
            Err(NoBoot::Disabled {
                disabled: vec![A::Pxe]
            })
        );
        let err = choose(&client(&[7, 9]), &[A::UefiAmd64Tftp, A::UefiEbcTftp]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "every boot method the client can use is disabled on its subnet: uefi_amd64_tftp, \
             uefi_ebc_tftp"
        );
    }

    #[test]
    fn fallback() {
        assert_eq!(choose(&client(&[]), &[]), Ok(A::Pxe));
        assert_eq!(
            choose(&client(&[6, 0x1b]), &[]),
            Ok(A::Pxe),
            "unknown codes: MAAS's else"
        );
        let mut config = BootConfig {
            fallback: None,
            ..BootConfig::default()
        };
        assert_eq!(
            config.choose(&client(&[]), &[]),
            Err(NoBoot::NoArchitecture)
        );
        assert_eq!(
            config.choose(&client(&[6]), &[]),
            Err(NoBoot::Unsupported { codes: vec![6] })
        );
        let mut v6 = client(&[]);
        v6.family = Family::V6;
        assert_eq!(choose(&v6, &[]), Err(NoBoot::NoArchitecture));
        config.fallback_v6 = Some(A::UefiAmd64Tftp);
        assert_eq!(config.choose(&v6, &[]), Ok(A::UefiAmd64Tftp));
    }

    #[test]
    fn ipxe_gets_the_script_and_never_itself() {
        let mut c = client(&[0]);
        c.ipxe = true;
        assert_eq!(choose(&c, &[]), Ok(A::Ipxe));
        assert_eq!(
            choose(&c, &[A::Ipxe]),
            Ok(A::Pxe),
            "ipxe disabled: by architecture"
        );

        let mut config = BootConfig::default();
        config.methods.insert(
            A::Pxe,
            BootMethod {
                loads_ipxe: true,
                ..BootMethod::file("undionly.kpxe")
            },
        );
        assert_eq!(config.choose(&c, &[]), Ok(A::Ipxe));
        assert_eq!(
            config.choose(&c, &[A::Ipxe]),
            Err(NoBoot::IpxeLoop {
                looping: vec![A::Pxe]
            })
        );
        // A plain BIOS client still gets the iPXE build.
        assert_eq!(config.choose(&client(&[0]), &[]), Ok(A::Pxe));
    }

    #[test]
    fn duid_addresses() {
        let mac = Some(Mac::new([0x52, 0x54, 0, 0x77, 2, 0x30]));
        assert_eq!(duid_mac(&[0, 3, 0, 1, 0x52, 0x54, 0, 0x77, 2, 0x30]), mac);
        assert_eq!(
            duid_mac(&[0, 1, 0, 1, 9, 9, 9, 9, 0x52, 0x54, 0, 0x77, 2, 0x30]),
            mac
        );
        assert_eq!(duid_mac(&[0, 3, 0, 6, 0x52, 0x54, 0, 0x77, 2, 0x30]), None);
        assert_eq!(duid_mac(&[0, 3, 0, 1, 1]), None);
    }
}
