//! A machine's network interfaces: physical, VLAN, bond and bridge, with MAAS's parameters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Link, Mac, VlanId};

/// A network interface of a machine.
///
/// Parents are named, not numbered: a VLAN interface has one parent, a bond and a bridge one
/// or more; a physical interface has none. Interface names are unique within a machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The name the deployed system gives the interface (`eth0`, `bond0`, `eth0.100`): 1 to 15
    /// letters, digits, `-`, `_`, `.` or `:`.
    pub name: String,
    /// What kind of interface it is, with the bond or bridge parameters.
    pub kind: InterfaceKind,
    /// The hardware address. Required for a physical interface and unique among physical
    /// interfaces; a bond or bridge without one takes its first parent's, a VLAN interface
    /// always has its parent's.
    pub mac: Option<Mac>,
    /// The VLAN the interface is connected to; `None` for a disconnected interface (rendered
    /// as optional, so that boot does not wait for it).
    pub vlan: Option<VlanId>,
    /// The parents' names.
    pub parents: Vec<String>,
    /// Whether a physical interface is configured at all. A VLAN interface is enabled when its
    /// parent is, a bond or bridge when any parent is (as MAAS has it); their own flag is kept
    /// but not used.
    pub enabled: bool,
    /// MTU; `None` for the VLAN's (1500 on no VLAN). A parent is rendered with at least the
    /// largest MTU of its children.
    pub mtu: Option<u32>,
    /// Whether the interface accepts IPv6 router advertisements (`accept-ra`); `None` leaves
    /// the system's default.
    pub accept_ra: Option<bool>,
    /// Links to subnets of the interface's VLAN.
    pub links: Vec<Link>,
}

impl Interface {
    /// A physical interface on a VLAN, enabled, without links.
    pub fn physical(name: impl Into<String>, mac: Mac, vlan: Option<VlanId>) -> Self {
        Self::new(name, InterfaceKind::Physical, Some(mac), vlan, Vec::new())
    }

    /// A VLAN interface on `parent`, connected to the tagged `vlan`.
    pub fn vlan(name: impl Into<String>, parent: impl Into<String>, vlan: VlanId) -> Self {
        Self::new(
            name,
            InterfaceKind::Vlan,
            None,
            Some(vlan),
            vec![parent.into()],
        )
    }

    /// A bond of `parents` with MAAS's default parameters, on `vlan` (its parents' VLAN).
    pub fn bond<S: Into<String>>(
        name: impl Into<String>,
        parents: impl IntoIterator<Item = S>,
        vlan: Option<VlanId>,
        params: BondParams,
    ) -> Self {
        let parents = parents.into_iter().map(Into::into).collect();
        Self::new(name, InterfaceKind::Bond(params), None, vlan, parents)
    }

    /// A bridge over `parents`, on `vlan`.
    pub fn bridge<S: Into<String>>(
        name: impl Into<String>,
        parents: impl IntoIterator<Item = S>,
        vlan: Option<VlanId>,
        params: BridgeParams,
    ) -> Self {
        let parents = parents.into_iter().map(Into::into).collect();
        Self::new(name, InterfaceKind::Bridge(params), None, vlan, parents)
    }

    fn new(
        name: impl Into<String>,
        kind: InterfaceKind,
        mac: Option<Mac>,
        vlan: Option<VlanId>,
        parents: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            mac,
            vlan,
            parents,
            enabled: true,
            mtu: None,
            accept_ra: None,
            links: Vec::new(),
        }
    }

    /// The interface with one more link.
    #[must_use]
    pub fn with_link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// The interface with this MTU.
    #[must_use]
    pub fn with_mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// The interface's type as MAAS names it: `physical`, `vlan`, `bond` or `bridge`.
    pub const fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// The kind of an [`Interface`], with the parameters that only that kind has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum InterfaceKind {
    /// A network card, matched by its MAC address.
    Physical,
    /// An 802.1Q VLAN on one parent; the VID is the interface's VLAN's.
    Vlan,
    /// A bond (link aggregation) of physical interfaces.
    Bond(BondParams),
    /// A bridge over other interfaces.
    Bridge(BridgeParams),
}

impl InterfaceKind {
    /// The type as MAAS names it: `physical`, `vlan`, `bond` or `bridge`.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Physical => "physical",
            Self::Vlan => "vlan",
            Self::Bond(_) => "bond",
            Self::Bridge(_) => "bridge",
        }
    }
}

/// A bond's parameters, by MAAS's names (`bond_mode`, `bond_miimon`...), with MAAS's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BondParams {
    /// `bond_mode`, default `balance-rr`.
    pub mode: BondMode,
    /// `bond_miimon`: link monitoring interval in milliseconds, default 100.
    pub miimon: u32,
    /// `bond_downdelay`: milliseconds before a failed link is disabled, default 0.
    pub downdelay: u32,
    /// `bond_updelay`: milliseconds before a recovered link is used, default 0.
    pub updelay: u32,
    /// `bond_lacp_rate`, default `fast`; rendered only for 802.3ad.
    pub lacp_rate: LacpRate,
    /// `bond_xmit_hash_policy`, default `layer2`.
    pub xmit_hash_policy: XmitHashPolicy,
    /// `bond_num_grat_arp`: gratuitous ARPs (and unsolicited IPv6 neighbour advertisements)
    /// after a failover, 0 to 255, default 1; rendered only for active-backup.
    pub num_grat_arp: u8,
}

impl Default for BondParams {
    fn default() -> Self {
        Self {
            mode: BondMode::BalanceRr,
            miimon: 100,
            downdelay: 0,
            updelay: 0,
            lacp_rate: LacpRate::Fast,
            xmit_hash_policy: XmitHashPolicy::Layer2,
            num_grat_arp: 1,
        }
    }
}

impl BondParams {
    /// MAAS's defaults with this mode.
    pub fn with_mode(mode: BondMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }
}

/// A bridge's parameters, by MAAS's names (`bridge_type`, `bridge_stp`, `bridge_fd`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeParams {
    /// `bridge_type`: a Linux bridge (default) or Open vSwitch.
    pub kind: BridgeType,
    /// `bridge_stp`: spanning tree, default off.
    pub stp: bool,
    /// `bridge_fd`: forward delay in seconds, default 15.
    pub fd: u32,
}

impl Default for BridgeParams {
    fn default() -> Self {
        Self {
            kind: BridgeType::Standard,
            stp: false,
            fd: 15,
        }
    }
}

/// Declares a closed set of names MAAS accepts for a parameter, parsed with MAAS's
/// "is not a valid" message.
macro_rules! choices {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value, in MAAS's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The value as MAAS and the kernel spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| Error::InvalidChoice {
                        field: $field,
                        value: s.chars().take(64).collect(),
                        choices: Self::ALL.iter().map(|v| v.as_str()).collect(),
                    })
            }
        }
    };
}

choices! {
    /// How a bond spreads traffic over its links (`bond_mode`).
    BondMode, "bond_mode" {
        /// Round robin.
        BalanceRr = "balance-rr",
        /// One active link, the others standing by.
        ActiveBackup = "active-backup",
        /// By transmit hash.
        BalanceXor = "balance-xor",
        /// Every frame on every link.
        Broadcast = "broadcast",
        /// IEEE 802.3ad dynamic link aggregation (LACP).
        Ieee8023ad = "802.3ad",
        /// Adaptive transmit load balancing.
        BalanceTlb = "balance-tlb",
        /// Adaptive load balancing.
        BalanceAlb = "balance-alb",
    }
}

choices! {
    /// How often an 802.3ad partner is asked for LACPDUs (`bond_lacp_rate`).
    LacpRate, "bond_lacp_rate" {
        /// Every second.
        Fast = "fast",
        /// Every 30 seconds.
        Slow = "slow",
    }
}

choices! {
    /// Which header fields pick a bond's link (`bond_xmit_hash_policy`).
    XmitHashPolicy, "bond_xmit_hash_policy" {
        /// MAC addresses.
        Layer2 = "layer2",
        /// MAC and IP addresses.
        Layer2And3 = "layer2+3",
        /// IP addresses and ports.
        Layer3And4 = "layer3+4",
        /// Inner MAC and IP addresses of encapsulated traffic.
        Encap2And3 = "encap2+3",
        /// Inner IP addresses and ports of encapsulated traffic.
        Encap3And4 = "encap3+4",
    }
}

choices! {
    /// The software that implements a bridge (`bridge_type`).
    BridgeType, "bridge_type" {
        /// A Linux bridge.
        Standard = "standard",
        /// An Open vSwitch bridge.
        Ovs = "ovs",
    }
}
