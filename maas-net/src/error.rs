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
    /// An interface name MAAS refuses.
    #[error(
        "The interface name must be 1 to 15 characters long and can only contain alphanumeric \
         characters, hyphens ('-'), underscores ('_'), periods ('.'), and colons (':'). \
         Got {name:?}."
    )]
    InvalidInterfaceName {
        /// The refused name.
        name: String,
    },
    /// A host name that is not a DNS label.
    #[error(
        "Invalid hostname: {name:?}. A hostname is 1 to 63 letters, digits or '-', and does \
         not start or end with '-'."
    )]
    InvalidHostname {
        /// The refused name.
        name: String,
    },
    /// A domain name that is not a DNS name.
    #[error("Invalid domain name: {name:?}.")]
    InvalidDomain {
        /// The refused name.
        name: String,
    },
    /// A name that YAML 1.1 readers (cloud-init's PyYAML) would take for a number or boolean
    /// once rendered.
    #[error(
        "The {what} {name:?} would be read as a number or a boolean by YAML 1.1 readers such \
         as cloud-init; choose another."
    )]
    AmbiguousName {
        /// `interface name` or `domain`.
        what: &'static str,
        /// The refused name.
        name: String,
    },
    /// A second machine with the same host name.
    #[error("Machine with hostname {hostname:?} already exists.")]
    HostnameInUse {
        /// The host name in use.
        hostname: String,
    },
    /// Two interfaces of one machine with the same name.
    #[error("Node {machine} already has an interface named '{name}'.")]
    InterfaceNameInUse {
        /// The machine's host name.
        machine: String,
        /// The interface name.
        name: String,
    },
    /// A reference to an interface the machine does not have.
    #[error("Node {machine} has no interface named '{name}' (named as {role}).")]
    UnknownInterface {
        /// The machine's host name.
        machine: String,
        /// The name looked for.
        name: String,
        /// Where it was named: `a parent of bond0`, `boot_interface`...
        role: String,
    },
    /// A physical interface without a MAC address.
    #[error("mac_address: This field cannot be blank. {interface} is a physical interface.")]
    MacRequired {
        /// The interface.
        interface: String,
    },
    /// A physical interface's MAC address already used by another physical interface.
    #[error("This MAC address is already in use by {by}. ({mac} on {interface})")]
    MacInUse {
        /// The MAC address.
        mac: crate::Mac,
        /// The interface being checked.
        interface: String,
        /// The interface holding it, as `eth0 on node2`.
        by: String,
    },
    /// A rule about an interface's parents, with MAAS's sentence.
    #[error("{rule} ({interface})")]
    Parents {
        /// MAAS's sentence, such as `A physical interface cannot have parents.`
        rule: &'static str,
        /// The interface.
        interface: String,
    },
    /// Parents already taken by another bond or bridge.
    #[error("Interfaces already in-use: {}. ({interface})", parents.join(", "))]
    ParentsInUse {
        /// The interface being checked.
        interface: String,
        /// The parents it cannot have.
        parents: Vec<String>,
    },
    /// Interfaces whose parents lead back to themselves.
    #[error("Interface {interface} is its own ancestor through its parents.")]
    ParentCycle {
        /// One interface on the cycle.
        interface: String,
    },
    /// A rule about an interface's VLAN, with MAAS's sentence.
    #[error("{rule} ({interface} on {vlan})")]
    InterfaceVlan {
        /// MAAS's sentence, such as `All parents must belong to the same VLAN.`
        rule: &'static str,
        /// The interface.
        interface: String,
        /// Its VLAN, as `fabric-0 VID 100`, or `no VLAN`.
        vlan: String,
    },
    /// Two VLAN interfaces on one parent for one VLAN.
    #[error("A VLAN interface for VID {vid} already exists on {parent}: {existing}. ({interface})")]
    DuplicateVlanInterface {
        /// The interface being checked.
        interface: String,
        /// The shared parent.
        parent: String,
        /// The VID.
        vid: u16,
        /// The interface already there.
        existing: String,
    },
    /// A link on an interface that is a bond's parent.
    #[error("Cannot link interface({interface}) when interface is in a bond({bond}).")]
    LinkInBond {
        /// The interface.
        interface: String,
        /// The bond it belongs to.
        bond: String,
    },
    /// A rule about one link, with MAAS's sentence.
    #[error("{rule} ({interface}: {detail})")]
    Link {
        /// MAAS's sentence, such as `Interface is already set to DHCP.`
        rule: &'static str,
        /// The interface.
        interface: String,
        /// The link at fault, described.
        detail: String,
    },
    /// A link to a subnet that is not on its interface's VLAN.
    #[error(
        "Select a valid choice. That choice is not one of the available choices. Subnet {cidr} \
         is on {subnet_vlan}, not on {interface}'s VLAN ({vlan})."
    )]
    SubnetNotOnVlan {
        /// The interface.
        interface: String,
        /// The subnet.
        cidr: IpNet,
        /// The subnet's VLAN.
        subnet_vlan: String,
        /// The interface's VLAN, or `no VLAN`.
        vlan: String,
    },
    /// A static address outside its subnet.
    #[error("IP address is not in the given subnet '{cidr}'. ({ip} on {interface})")]
    IpOutsideSubnet {
        /// The interface.
        interface: String,
        /// The address.
        ip: IpAddr,
        /// The subnet.
        cidr: IpNet,
    },
    /// A static address inside a dynamic range.
    #[error("IP address is inside a dynamic range {start} to {end}. ({ip} on {interface})")]
    IpInDynamicRange {
        /// The interface.
        interface: String,
        /// The address.
        ip: IpAddr,
        /// Start of the dynamic range.
        start: IpAddr,
        /// End of the dynamic range.
        end: IpAddr,
    },
    /// An address already held by another link or by the address oracle.
    #[error("IP address is already in use. ({ip} on {interface} is held by {by})")]
    IpInUse {
        /// The interface.
        interface: String,
        /// The address.
        ip: IpAddr,
        /// Who holds it: `eth1 on node2`, or `the address manager`.
        by: String,
    },
    /// No free address left for a `static` or `auto` link.
    #[error("No more IPs available in subnet: {cidr}.")]
    SubnetExhausted {
        /// The subnet.
        cidr: IpNet,
    },
    /// A default-gateway link that cannot carry the default route.
    #[error("{reason} (gateway_link_ipv{family}: {interface})")]
    GatewayLink {
        /// 4 or 6.
        family: u8,
        /// The interface named.
        interface: String,
        /// Why not, with MAAS's sentence where it has one.
        reason: String,
    },
    /// A parameter value outside what MAAS accepts.
    #[error("{param}: {message} ({interface})")]
    InvalidParam {
        /// The parameter, as MAAS names it (`bond_num_grat_arp`).
        param: &'static str,
        /// What is wrong, such as `Ensure this value is less than or equal to 255.`
        message: String,
        /// The interface.
        interface: String,
    },
    /// A value that is not one of a parameter's choices.
    #[error(
        "'{value}' is not a valid {field}.  It should be one of: {}.",
        quoted(choices)
    )]
    InvalidChoice {
        /// The parameter (`bond_mode`).
        field: &'static str,
        /// The refused value.
        value: String,
        /// The accepted values.
        choices: Vec<&'static str>,
    },
    /// An attempt to delete a fabric that machines' interfaces are connected to.
    #[error(
        "Can't delete fabric {fabric}; the following interfaces are still connected: {}.",
        interfaces.join(", ")
    )]
    FabricHasInterfaces {
        /// The fabric's name.
        fabric: String,
        /// The interfaces, as `eth0 on node1`.
        interfaces: Vec<String>,
    },
    /// More routing tables asked for by source routing than Linux has free (1 to 252).
    #[error("Maximum number of routing tables exceeded.")]
    RoutingTablesExhausted,
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

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
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
