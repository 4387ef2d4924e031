//! Building answers: the header of a reply, lease times, the network options of a subnet and
//! the boot options of a classified client, for a [`Reply`] or a dhcproto [`Message`] (and
//! DHCPv6 options) that the server engine then completes and sends.
//!
//! # Which options go in
//!
//! The client's parameter request list (option 55) decides, as in Kea: an option is included
//! when the client asked for it, or when it is one a reply always carries. A client that sends
//! no list gets everything the server has for it (as ISC dhcpd does).
//!
//! Always sent, asked for or not:
//! - 53 (message type), 54 (server identifier), and the echoes RFC 6842 and RFC 3046 require:
//!   61 (client identifier) and 82 (relay agent information);
//! - 51, 58, 59 (lease time, T1 = 1/2 and T2 = 7/8 of it) when there is a lease;
//! - 1 (subnet mask);
//! - the boot answer's header fields: `siaddr` (next server) and `file`;
//! - 60 (`PXEClient` or `HTTPClient`) and 43 (PXE vendor options) for boot clients: firmware
//!   ignores offers without the class it announced, and ROMs do not always ask for 43;
//! - 209 and 211 when configured, and 210 when the method forces it: PXELINUX reads the ROM's
//!   answer, and ROMs never ask for PXELINUX options;
//! - 67 when the boot file does not fit the 128-byte `file` field.
//!
//! Sent when asked for: 3 (routers), 6 (DNS servers), 15 (domain name), 26 (MTU, and only when
//! it is not 1500), 66 (TFTP server name), 67 (boot file), 119 (domain search), 150 (TFTP server
//! address), 210 (path prefix, unforced).
//!
//! Values longer than 255 bytes are split into consecutive options of the same code (RFC
//! 3396) by [`v4::encode`].
//!
//! DHCPv6 answers carry 59 (boot-file URL), 60 (boot-file parameters, when configured) and 16
//! (the vendor class) for every boot client: the URL is the whole answer there.

use std::net::{IpAddr, Ipv4Addr};

use dhcproto::v4::{Message, MessageType};
use dhcproto::v6;
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use maas_net::{BootArchitecture, DEFAULT_MTU, Subnet};

use super::boot::{BootConfig, expand, server_text};
use super::classify::Classification;
use super::error::ConfigError;
use super::options::{RequestedOptions, VendorClass, code, encode_boot_file_params};
use super::v4::{self, Reply};

/// The IANA enterprise number for Intel, which UEFI firmware puts in its DHCPv6 vendor class.
pub const VENDOR_CLASS_ENTERPRISE: u32 = 343;

/// Where the reply builders put options: a [`Reply`] (raw values, the fast path) or a
/// dhcproto [`Message`] (typed values, for callers that build one).
pub trait ReplyOptions {
    /// Sets option `code` to `value`, replacing an earlier value.
    fn set_option(&mut self, code: u8, value: &[u8]);
    /// Sets the next server (`siaddr`).
    fn set_next_server(&mut self, server: Ipv4Addr);
    /// Sets the `file` header field; `false` when `file` does not fit its 128 bytes.
    fn set_boot_file(&mut self, file: &[u8]) -> bool;
}

impl ReplyOptions for Reply {
    fn set_option(&mut self, code: u8, value: &[u8]) {
        self.set(code, value);
    }

    fn set_next_server(&mut self, server: Ipv4Addr) {
        self.set_siaddr(server);
    }

    fn set_boot_file(&mut self, file: &[u8]) -> bool {
        self.set_file(file)
    }
}

impl ReplyOptions for Message {
    fn set_option(&mut self, code: u8, value: &[u8]) {
        let opt = v4::typed(code, value, &mut Vec::new());
        self.opts_mut().insert(opt);
    }

    fn set_next_server(&mut self, server: Ipv4Addr) {
        self.set_siaddr(server);
    }

    fn set_boot_file(&mut self, file: &[u8]) -> bool {
        if file.len() > 128 || file.contains(&0) {
            return false;
        }
        self.set_fname(file);
        true
    }
}

/// Starts a reply to `request`: a BOOTREPLY with the request's transaction id, flags, relay
/// address and hardware address, message type `kind`, server identifier `server_id`, and the
/// client identifier (61) and relay agent information (82) echoed byte for byte. `ciaddr` is
/// copied into an ACK. The engine sets `yiaddr` and adds the rest; [`Reply::to_packet`] gives
/// the dhcproto form when wanted.
///
/// ```
/// use dhcproto::v4::{DhcpOption, MessageType};
/// use maas_pxe::dhcp::{reply_to, v4};
/// # let mut msg = dhcproto::v4::Message::new_with_id(9, [0; 4].into(), [0; 4].into(), [0; 4].into(), [0; 4].into(), &[2, 0, 0, 0, 0, 1]);
/// # msg.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
/// # let request = v4::decode(&v4::encode_to_vec(&msg)?)?;
/// let offer = reply_to(&request, MessageType::Offer, "10.77.0.1".parse()?);
/// assert_eq!(offer.xid(), request.xid());
/// assert_eq!(offer.get(53), Some(&[2][..]));
/// assert_eq!(offer.get(54), Some(&[10, 77, 0, 1][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reply_to(request: &v4::Packet, kind: MessageType, server_id: Ipv4Addr) -> Reply {
    let mut reply = Reply::for_request(request);
    if kind == MessageType::Ack {
        reply.set_ciaddr(request.ciaddr());
    }
    reply.set(code::MESSAGE_TYPE, &[kind.into()]);
    reply.set(code::SERVER_ID, &server_id.octets());
    for echoed in [code::CLIENT_ID, code::RELAY_AGENT_INFO] {
        if let Some(value) = request.option(echoed) {
            reply.set(echoed, value);
        }
    }
    reply
}

/// Lease time (option 51) with renewal (T1, option 58) at half of it and rebinding (T2,
/// option 59) at seven eighths, as RFC 2131 suggests. An infinite lease (`u32::MAX`) has
/// neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseTimes {
    /// Seconds.
    pub lease: u32,
    /// Seconds until the client renews.
    pub renewal: Option<u32>,
    /// Seconds until the client rebinds.
    pub rebinding: Option<u32>,
}

impl LeaseTimes {
    /// The times for a lease of `lease` seconds.
    ///
    /// ```
    /// let t = maas_pxe::dhcp::LeaseTimes::new(3600);
    /// assert_eq!((t.renewal, t.rebinding), (Some(1800), Some(3150)));
    /// ```
    pub const fn new(lease: u32) -> Self {
        if lease == u32::MAX {
            return Self {
                lease,
                renewal: None,
                rebinding: None,
            };
        }
        Self {
            lease,
            renewal: Some(lease / 2),
            rebinding: Some((lease as u64 * 7 / 8) as u32),
        }
    }

    /// Adds options 51, 58 and 59 to `reply` (always sent).
    pub fn apply<R: ReplyOptions + ?Sized>(&self, reply: &mut R) {
        reply.set_option(code::LEASE_TIME, &self.lease.to_be_bytes());
        if let Some(t1) = self.renewal {
            reply.set_option(code::RENEWAL_TIME, &t1.to_be_bytes());
        }
        if let Some(t2) = self.rebinding {
            reply.set_option(code::REBINDING_TIME, &t2.to_be_bytes());
        }
    }
}

/// The network configuration a client gets for its subnet: options 1, 3, 6, 15, 26 and 119.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetworkOptions {
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain_name: Option<String>,
    /// Option 119.
    pub domain_search: Vec<Name>,
    /// Option 26, set only when the MTU is not 1500.
    pub mtu: Option<u16>,
}

impl NetworkOptions {
    /// The options of an IPv4 subnet on a VLAN with this MTU: its mask, its gateway as the
    /// router, its IPv4 DNS servers. An IPv6 subnet gives only the MTU.
    ///
    /// ```
    /// use maas_net::{Subnet, VlanId};
    /// use maas_pxe::dhcp::NetworkOptions;
    ///
    /// let subnet = Subnet {
    ///     gateway_ip: Some("10.77.0.1".parse()?),
    ///     ..Subnet::new("10.77.0.0/24".parse()?, VlanId::new(0))
    /// };
    /// let mut net = NetworkOptions::for_subnet(&subnet, 9000);
    /// net.set_domain("maas")?.set_search(["maas", "example.com"])?;
    /// assert_eq!(net.subnet_mask, Some("255.255.255.0".parse()?));
    /// assert_eq!(net.mtu, Some(9000));
    /// assert!(net.set_domain("bad..name").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_subnet(subnet: &Subnet, mtu: u32) -> Self {
        let mut out = Self {
            mtu: (mtu != DEFAULT_MTU).then(|| u16::try_from(mtu).unwrap_or(u16::MAX)),
            ..Self::default()
        };
        if let ipnet::IpNet::V4(net) = subnet.cidr {
            out.subnet_mask = Some(net.netmask());
            if let Some(IpAddr::V4(gw)) = subnet.gateway_ip {
                out.routers.push(gw);
            }
            out.dns_servers = subnet
                .dns_servers
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect();
        }
        out
    }

    /// Sets the domain name (option 15), refusing names that are not valid DNS names.
    pub fn set_domain(&mut self, name: &str) -> Result<&mut Self, ConfigError> {
        dns_name(name)?;
        self.domain_name = Some(name.trim_end_matches('.').to_string());
        Ok(self)
    }

    /// Sets the domain search list (option 119), refusing names that are not valid DNS
    /// names.
    pub fn set_search<I, S>(&mut self, names: I) -> Result<&mut Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.domain_search = names
            .into_iter()
            .map(|n| dns_name(n.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Adds the options to `reply`: 1 always, the others when wanted and set.
    pub fn apply<R: ReplyOptions + ?Sized>(&self, reply: &mut R, requested: &RequestedOptions) {
        if let Some(mask) = self.subnet_mask {
            reply.set_option(code::SUBNET_MASK, &mask.octets());
        }
        let addresses =
            |list: &[Ipv4Addr]| list.iter().flat_map(|a| a.octets()).collect::<Vec<u8>>();
        if requested.wants(code::ROUTER) && !self.routers.is_empty() {
            reply.set_option(code::ROUTER, &addresses(&self.routers));
        }
        if requested.wants(code::DNS_SERVERS) && !self.dns_servers.is_empty() {
            reply.set_option(code::DNS_SERVERS, &addresses(&self.dns_servers));
        }
        if requested.wants(code::DOMAIN_NAME)
            && let Some(domain) = &self.domain_name
        {
            reply.set_option(code::DOMAIN_NAME, domain.as_bytes());
        }
        if requested.wants(code::DOMAIN_SEARCH)
            && !self.domain_search.is_empty()
            && let Some(names) = encode_names(&self.domain_search)
        {
            reply.set_option(code::DOMAIN_SEARCH, &names);
        }
        if requested.wants(code::MTU)
            && let Some(mtu) = self.mtu
        {
            reply.set_option(code::MTU, &mtu.to_be_bytes());
        }
    }
}

/// Names in RFC 1035 wire form, later names pointing back at suffixes already written (RFC
/// 3397 allows the compression).
pub fn encode_names(names: &[Name]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32 * names.len());
    let mut encoder = BinEncoder::new(&mut out);
    for name in names {
        name.emit(&mut encoder).ok()?;
    }
    Some(out)
}

/// A domain name as a fully qualified DNS name.
fn dns_name(name: &str) -> Result<Name, ConfigError> {
    let refuse = |reason: String| ConfigError::DomainName {
        name: name.to_string(),
        reason,
    };
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    if trimmed.split('.').any(str::is_empty) {
        return Err(refuse("it has an empty label".into()));
    }
    let mut n = Name::from_ascii(trimmed).map_err(|e| refuse(e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// The boot answer for one client, with every template filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// The boot method answered.
    pub architecture: BootArchitecture,
    /// The boot file: a TFTP path or a URL (`file` field, option 67).
    pub boot_file: String,
    /// The TFTP server (`siaddr`, option 150); iPXE scripts use it as `${next-server}`.
    pub next_server: Option<Ipv4Addr>,
    /// Option 66, when configured; otherwise option 66 names `next_server`.
    pub tftp_server_name: Option<String>,
    /// Option 60: `PXEClient` or `HTTPClient`.
    pub vendor_class: Option<&'static str>,
    /// Option 43, encoded.
    pub vendor_options: Option<Vec<u8>>,
    /// Option 210.
    pub path_prefix: Option<String>,
    /// Send option 210 unasked.
    pub force_path_prefix: bool,
    /// Option 209.
    pub config_file: Option<String>,
    /// Option 211.
    pub reboot_time: Option<u32>,
    /// DHCPv6 option 60.
    pub boot_file_params: Vec<String>,
    /// The server the answer names (`{server}` in the templates).
    pub server: IpAddr,
}

/// The boot answer for a classified client from a server at `server`, or `None` when the
/// client gets no boot answer (see [`Classification::choice`]).
///
/// The subnet has already had its say: [`BootConfig::classify`] honours its disabled boot
/// architectures.
///
/// ```
/// use maas_net::{Subnet, VlanId};
/// use maas_pxe::dhcp::{ArchSource, BootClient, BootConfig, build_boot_options};
///
/// let client = BootClient {
///     family: maas_net::ip::Family::V4,
///     architectures: vec![0],
///     arch_source: ArchSource::ClientArchitecture,
///     vendor_class: None, user_class: None, ipxe: false, machine_id: None, ndi: None, mac: None,
/// };
/// let config = BootConfig::default();
/// let subnet = Subnet::new("10.77.0.0/24".parse()?, VlanId::new(0));
/// let boot = build_boot_options(&config.classify(client, &subnet), &config, "10.77.0.1".parse()?).unwrap();
/// assert_eq!(boot.boot_file, "lpxelinux.0");
/// assert_eq!(boot.path_prefix.as_deref(), Some("http://10.77.0.1:5248/"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn build_boot_options(
    classification: &Classification,
    config: &BootConfig,
    server: IpAddr,
) -> Option<BootOptions> {
    build(classification, config, server, false)
}

/// The boot answer of a ProxyDHCP server (PXE 2.1, on ports 67 and 4011, for networks whose
/// addresses come from another DHCP server): as [`build_boot_options`], but PXE clients always
/// get vendor class `PXEClient` and the configured `proxy_vendor_options` (where boot servers,
/// a menu and a prompt can be offered). The engine adds no lease or network options.
pub fn build_proxy_boot_options(
    classification: &Classification,
    config: &BootConfig,
    server: IpAddr,
) -> Option<BootOptions> {
    build(classification, config, server, true)
}

fn build(
    classification: &Classification,
    config: &BootConfig,
    server: IpAddr,
    proxy: bool,
) -> Option<BootOptions> {
    let architecture = classification.architecture()?;
    let method = config.methods.get(&architecture)?;
    let templated = [
        Some(&method.file),
        method.path_prefix.as_ref(),
        method.config_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(&method.params)
    .any(|t| t.contains('{'));
    let host = if templated {
        server_text(server)
    } else {
        String::new()
    };
    let boot_file = expand(&method.file, &host);
    let path_prefix = method.path_prefix.as_ref().map(|p| expand(p, &host));
    let next_server = config.tftp_server.or(match server {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let client = &classification.client;
    let vendor = if proxy {
        &config.proxy_vendor_options
    } else {
        &config.pxe_vendor_options
    };
    let (vendor_class, vendor_options) = if method.http_client {
        (Some(VendorClass::HTTP_CLIENT), None)
    } else if client.is_pxe_client() && (proxy || *vendor != Default::default()) {
        match vendor.encode() {
            Ok(bytes) => (Some(VendorClass::PXE_CLIENT), Some(bytes)),
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    Some(BootOptions {
        architecture,
        boot_file,
        next_server,
        tftp_server_name: config.tftp_server_name.clone(),
        vendor_class,
        vendor_options,
        path_prefix,
        force_path_prefix: method.force_path_prefix,
        config_file: method.config_file.as_ref().map(|c| expand(c, &host)),
        reboot_time: method.reboot_time,
        boot_file_params: method.params.iter().map(|p| expand(p, &host)).collect(),
        server,
    })
}

impl BootOptions {
    /// Adds the boot answer to a DHCPv4 reply; see the [module documentation](self) for
    /// which options go in.
    pub fn apply_v4<R: ReplyOptions + ?Sized>(&self, reply: &mut R, requested: &RequestedOptions) {
        if let Some(next) = self.next_server {
            reply.set_next_server(next);
        }
        let file = self.boot_file.as_bytes();
        let in_header = reply.set_boot_file(file);
        if !in_header || requested.wants(code::BOOT_FILE) {
            reply.set_option(code::BOOT_FILE, file);
        }
        if requested.wants(code::TFTP_SERVER_NAME) {
            match (&self.tftp_server_name, self.next_server) {
                (Some(name), _) => reply.set_option(code::TFTP_SERVER_NAME, name.as_bytes()),
                (None, Some(next)) => {
                    reply.set_option(code::TFTP_SERVER_NAME, next.to_string().as_bytes());
                }
                (None, None) => {}
            }
        }
        if requested.wants(code::TFTP_SERVER_ADDRESS)
            && let Some(next) = self.next_server
        {
            reply.set_option(code::TFTP_SERVER_ADDRESS, &next.octets());
        }
        if let Some(class) = self.vendor_class {
            reply.set_option(code::VENDOR_CLASS, class.as_bytes());
        }
        if let Some(vendor) = &self.vendor_options {
            reply.set_option(code::VENDOR_OPTIONS, vendor);
        }
        if let Some(file) = &self.config_file {
            reply.set_option(code::PXELINUX_CONFIG_FILE, file.as_bytes());
        }
        if let Some(prefix) = &self.path_prefix
            && (self.force_path_prefix || requested.wants(code::PXELINUX_PATH_PREFIX))
        {
            reply.set_option(code::PXELINUX_PATH_PREFIX, prefix.as_bytes());
        }
        if let Some(secs) = self.reboot_time {
            reply.set_option(code::PXELINUX_REBOOT_TIME, &secs.to_be_bytes());
        }
    }

    /// The boot file as a URL (DHCPv6 option 59): the file itself when it is one, otherwise
    /// `tftp://server/` followed by a relative path prefix and the file.
    pub fn boot_file_url(&self) -> String {
        if self.boot_file.contains("://") {
            return self.boot_file.clone();
        }
        let relative = self.path_prefix.as_deref().filter(|p| !p.contains("://"));
        format!(
            "tftp://{}/{}{}",
            server_text(self.server),
            relative.unwrap_or(""),
            self.boot_file
        )
    }

    /// The DHCPv6 options of the boot answer: 59, 60 when there are parameters, and 16 with
    /// the vendor class. Encode the message with [`v6::encode_message`](super::v6::encode_message),
    /// which writes option 16's length correctly.
    pub fn v6_options(&self) -> Vec<v6::DhcpOption> {
        let raw =
            |c: u16, data: Vec<u8>| v6::DhcpOption::Unknown(v6::UnknownOption::new(c.into(), data));
        let mut out = vec![raw(
            code::v6::BOOT_FILE_URL,
            self.boot_file_url().into_bytes(),
        )];
        if !self.boot_file_params.is_empty()
            && let Ok(value) = encode_boot_file_params(&self.boot_file_params)
        {
            out.push(raw(code::v6::BOOT_FILE_PARAM, value));
        }
        if let Some(class) = self.vendor_class {
            out.push(v6::DhcpOption::VendorClass(v6::VendorClass {
                num: VENDOR_CLASS_ENTERPRISE,
                data: vec![class.as_bytes().to_vec()],
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_times() {
        assert_eq!(
            LeaseTimes::new(600),
            LeaseTimes {
                lease: 600,
                renewal: Some(300),
                rebinding: Some(525)
            }
        );
        let big = LeaseTimes::new(u32::MAX - 1);
        assert_eq!(
            big.rebinding,
            Some(((u64::from(u32::MAX) - 1) * 7 / 8) as u32)
        );
        assert_eq!(LeaseTimes::new(u32::MAX).renewal, None);
        let mut m = Message::default();
        LeaseTimes::new(u32::MAX).apply(&mut m);
        assert_eq!(m.opts().len(), 1);
    }

    #[test]
    fn domain_names() {
        assert!(dns_name("maas").unwrap().is_fqdn());
        assert!(dns_name("maas.").is_ok());
        for bad in ["", ".", "a..b", &"x".repeat(64)] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            dns_name("a..b").unwrap_err().to_string(),
            "\"a..b\" is not a valid domain name: it has an empty label"
        );
    }
}
