//! Errors of the network model.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::{IpRangeKind, Kind};

/// Why a change to the network model was refused.
///
/// Where MAAS has a message for a rule, the message starts with MAAS's sentence, so that
/// clients that know MAAS recognise it; the rest names the values at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id that names nothing.
    #[error("{} {id} does not exist.", kind.title())]
    NotFound {
        /// What kind of entity was looked for.
        kind: Kind,
        /// The id looked for.
        id: u32,
    },
    /// A reference by name (in a topology document) that names nothing.
    #[error("There is no {kind} named {name:?}.")]
    UnknownName {
        /// What kind of entity was looked for.
        kind: Kind,
        /// The name looked for.
        name: String,
    },
    /// A name that is not `^[\w-]+$`, or is longer than 256 characters.
    #[error("Invalid {kind} name: {name:?}. A name is 1 to 256 letters, digits, '_' or '-'.")]
    InvalidName {
        /// What kind of entity was named.
        kind: Kind,
        /// The refused name.
        name: String,
    },
    /// A name of the form `fabric-N` or `space-N` given to an entity whose id is not N.
    #[error(
        "Reserved {kind} name: {name:?}. Names of the form {kind}-N belong to the {kind} \
         whose id is N."
    )]
    ReservedName {
        /// What kind of entity was named.
        kind: Kind,
        /// The refused name.
        name: String,
    },
    /// A name already used by another entity of the same kind.
    #[error("{} with name {name:?} already exists.", kind.title())]
    NameInUse {
        /// What kind of entity was named.
        kind: Kind,
        /// The name in use.
        name: String,
    },
    /// An explicit id (in a topology document) already taken.
    #[error("{} id {id} is used twice.", kind.title())]
    IdInUse {
        /// What kind of entity the id is for.
        kind: Kind,
        /// The duplicated id.
        id: u32,
    },
    /// A VID outside 0..=4094.
    #[error("VID must be between 0 and 4094. Got {vid}.")]
    InvalidVid {
        /// The refused VID.
        vid: i64,
    },
    /// An MTU outside 552..=65535.
    #[error("MTU must be between 552 and 65535. Got {mtu}.")]
    InvalidMtu {
        /// The refused MTU.
        mtu: i64,
    },
    /// A second VLAN with the same VID on one fabric.
    #[error("A VLAN with VID {vid} already exists in fabric {fabric}.")]
    VidInUse {
        /// The fabric's name.
        fabric: String,
        /// The VID in use.
        vid: u16,
    },
    /// An attempt to delete the default fabric.
    #[error("This fabric is the default fabric, it cannot be deleted ({fabric}).")]
    DefaultFabric {
        /// The default fabric's name.
        fabric: String,
    },
    /// An attempt to delete a fabric that still holds subnets.
    #[error(
        "Can't delete fabric {fabric}; the following subnets are still present: {}.",
        list(subnets)
    )]
    FabricHasSubnets {
        /// The fabric's name.
        fabric: String,
        /// The subnets still on it.
        subnets: Vec<IpNet>,
    },
    /// An attempt to delete a fabric's untagged default VLAN.
    #[error("This VLAN is the default VLAN in the fabric, it cannot be deleted ({fabric} VID 0).")]
    DefaultVlan {
        /// The fabric's name.
        fabric: String,
    },
    /// An attempt to change the VID or the fabric of a fabric's default VLAN.
    #[error("The default VLAN of fabric {fabric} must keep VID 0 on that fabric.")]
    DefaultVlanFixed {
        /// The fabric's name.
        fabric: String,
    },
    /// A VLAN set to relay DHCP to itself.
    #[error("VLAN {vlan} cannot relay DHCP to itself.")]
    RelayToSelf {
        /// The VLAN, as `fabric VID n`.
        vlan: String,
    },
    /// A relay to a VLAN that itself relays.
    #[error(
        "VLAN {vlan} cannot relay DHCP to VLAN {target}: {target} itself relays DHCP to {onward}."
    )]
    RelayToRelay {
        /// The VLAN being changed.
        vlan: String,
        /// Its requested relay VLAN.
        target: String,
        /// Where the requested relay VLAN relays.
        onward: String,
    },
    /// A VLAN that others relay to, set to relay in turn.
    #[error("VLAN {vlan} cannot relay DHCP: VLAN {relayed_by} relays DHCP to it.")]
    RelayTargetRelays {
        /// The VLAN being changed.
        vlan: String,
        /// A VLAN that relays to it.
        relayed_by: String,
    },
    /// A subnet with prefix length 0.
    #[error("Prefix length must be greater than 0. Got {cidr}.")]
    PrefixZero {
        /// The refused network.
        cidr: IpNet,
    },
    /// A gateway outside the subnet (and not IPv6 link-local).
    #[error("Gateway IP must be within CIDR range. {gateway} is not in {cidr}.")]
    GatewayOutsideSubnet {
        /// The refused gateway.
        gateway: IpAddr,
        /// The subnet.
        cidr: IpNet,
    },
    /// A subnet that overlaps another.
    #[error("Subnet {cidr} would overlap with existing subnets. It overlaps {existing}.")]
    SubnetOverlap {
        /// The refused network.
        cidr: IpNet,
        /// One existing subnet it overlaps.
        existing: IpNet,
    },
    /// A gateway or DNS server of a subnet inside one of its dynamic ranges.
    #[error("The {role} {ip} is within the dynamic range from {start} to {end}.")]
    InDynamicRange {
        /// `gateway` or `DNS server`.
        role: &'static str,
        /// The address.
        ip: IpAddr,
        /// Start of the dynamic range.
        start: IpAddr,
        /// End of the dynamic range.
        end: IpAddr,
    },
    /// A boot architecture that is neither a MAAS boot-method name nor a known option-93 code.
    #[error("Unknown boot architecture {0}")]
    UnknownBootArchitecture(String),
    /// An attempt to delete or rename the default zone.
    #[error("This zone is the default zone, it cannot be {action} ({zone}).")]
    DefaultZone {
        /// The default zone's name.
        zone: String,
        /// `deleted` or `renamed`.
        action: &'static str,
    },
    /// A static route from a subnet to itself.
    #[error("Static route source and destination cannot be the same subnet ({subnet}).")]
    RouteToSelf {
        /// The subnet.
        subnet: IpNet,
    },
    /// A static route between subnets of different families.
    #[error("Static route source and destination must be the same IP version ({from} and {to}).")]
    RouteFamilyMismatch {
        /// The source subnet.
        from: IpNet,
        /// The destination subnet.
        to: IpNet,
    },
    /// A static route whose gateway is outside its source subnet.
    #[error(
        "Static route gateway_ip must be within the source subnet: {gateway} is not in {from}."
    )]
    RouteGatewayOutside {
        /// The gateway.
        gateway: IpAddr,
        /// The source subnet.
        from: IpNet,
    },
    /// A second static route with the same source, destination and gateway.
    #[error("A static route from {from} to {to} via {gateway} already exists.")]
    RouteExists {
        /// The source subnet.
        from: IpNet,
        /// The destination subnet.
        to: IpNet,
        /// The gateway.
        gateway: IpAddr,
    },
    /// A range whose ends are of different families.
    #[error("Start IP address and end IP address must be in the same address family.")]
    RangeFamilyMismatch,
    /// A range whose end comes before its start.
    #[error("End IP address must not be less than Start IP address.")]
    RangeEndBeforeStart,
    /// A range (partly) outside its subnet.
    #[error("{} must be within subnet: {cidr}.", outside.describe())]
    RangeOutsideSubnet {
        /// Which end is outside.
        outside: RangeEnds,
        /// The subnet.
        cidr: IpNet,
    },
    /// A range starting at the network address.
    #[error("Reserved network address cannot be included in IP range.")]
    RangeIncludesNetwork,
    /// An IPv4 range ending at the broadcast address.
    #[error("Broadcast address cannot be included in IP range.")]
    RangeIncludesBroadcast,
    /// An IPv6 dynamic range of fewer than 256 addresses.
    #[error("IPv6 dynamic range must be at least 256 addresses in size. Got {size}.")]
    Ipv6DynamicRangeTooSmall {
        /// The refused range's size.
        size: u128,
    },
    /// No address of the subnet is left for a new range of this kind.
    #[error("There is no room for any {kind} ranges on this subnet.")]
    NoRoomForRange {
        /// The kind of range asked for.
        kind: IpRangeKind,
    },
    /// A range that overlaps what it may not overlap.
    #[error("{}. {start}-{end} overlaps {with}.", conflict_sentence(*kind))]
    RangeConflict {
        /// The kind of range asked for.
        kind: IpRangeKind,
        /// Start of the requested range.
        start: IpAddr,
        /// End of the requested range.
        end: IpAddr,
        /// What it overlaps, for example `the reserved range 10.0.0.1-10.0.0.9`.
        with: String,
    },
    /// A dynamic range of an unmanaged subnet that is not inside a single reserved range.
    #[error(
        "In an unmanaged subnet a dynamic range must lie inside a reserved range; \
         {start}-{end} does not."
    )]
    DynamicOutsideReserved {
        /// Start of the dynamic range.
        start: IpAddr,
        /// End of the dynamic range.
        end: IpAddr,
    },
    /// A change to a subnet that one of its ranges or routes would no longer satisfy.
    #[error("The change would make the {what} invalid: {reason}")]
    WouldInvalidate {
        /// The range or route, described.
        what: String,
        /// Why it would become invalid.
        reason: Box<Self>,
    },
}

/// Which ends of a range lie outside its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeEnds {
    /// Both the start and the end.
    Both,
    /// Only the start.
    Start,
    /// Only the end.
    End,
}

impl RangeEnds {
    const fn describe(self) -> &'static str {
        match self {
            Self::Both => "IP addresses",
            Self::Start => "Start IP address",
            Self::End => "End IP address",
        }
    }
}

const fn conflict_sentence(kind: IpRangeKind) -> &'static str {
    match kind {
        IpRangeKind::Dynamic => {
            "Requested dynamic range conflicts with an existing IP address or range"
        }
        IpRangeKind::Reserved => "Requested reserved range conflicts with an existing range",
    }
}

fn list(items: &[IpNet]) -> impl fmt::Display + '_ {
    struct List<'a>(&'a [IpNet]);
    impl fmt::Display for List<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, item) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                item.fmt(f)?;
            }
            Ok(())
        }
    }
    List(items)
}
