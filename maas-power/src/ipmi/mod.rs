//! IPMI over LAN: RMCP+ (cipher suites 3 and 17) with an IPMI 1.5 fallback, Chassis Control,
//! Get Chassis Status and Set System Boot Options.
//!
//! Each driver call opens a session, sends its commands and closes the session, as
//! `ipmitool` does. Sessions run on one of two backends ([`Backend`]): the `ipmi-rs` crate
//! for cipher suite 3 ([`rs`], behind the [`guard`] that keeps it away from its panics), or
//! our own sans-IO session code ([`session`]) for suite 17, Kg, IPMI 1.5 and privileges below
//! ADMINISTRATOR. [`IpmiBlocking`] drives either with blocking calls; `Ipmi` (feature `tokio`)
//! drives the native one over tokio sockets, so thousands of BMCs can be queried concurrently
//! without a thread each, and `ipmi-rs` with `spawn_blocking` under a semaphore.

pub mod crypto;
pub mod guard;
pub mod rs;
pub mod session;
pub mod wire;

#[cfg(feature = "tokio")]
mod tokio;
#[cfg(feature = "tokio")]
pub use self::tokio::{DEFAULT_BLOCKING_LIMIT, Ipmi};

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::session::{Session, SessionConfig, SessionError, cmd};
use self::wire::Response;
use crate::driver::{BlockingPowerDriver, BootDevice, BootMode, BootPersistence, BootRequest};
use crate::params::IpmiParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The standard RMCP port.
pub const DEFAULT_PORT: u16 = 623;

/// Timing of the UDP exchanges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Wait this long for each answer before sending the datagram again.
    pub retransmit: Duration,
    /// Give up on the whole call after this long.
    pub deadline: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            retransmit: Duration::from_millis(700),
            deadline: Duration::from_secs(6),
        }
    }
}

/// Which implementation runs a driver's IPMI sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// `ipmi-rs` when it can do what the parameters ask (cipher suite 3, IPMI 2.0,
    /// ADMINISTRATOR, no Kg: see [`rs::limitation`]), the native session code otherwise; a
    /// BMC without RMCP+ falls back to the native IPMI 1.5 session.
    #[default]
    Auto,
    /// Always `ipmi-rs`; parameters it cannot honour are a configuration error. A privilege
    /// below ADMINISTRATOR is set with Set Session Privilege Level after an ADMINISTRATOR
    /// handshake, so the account needs ADMINISTRATOR rights.
    IpmiRs,
    /// Always the native session code (suites 3 and 17, Kg, IPMI 1.5, any privilege).
    Native,
}

/// The implementation that runs a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    IpmiRs,
    Native,
}

impl Backend {
    /// The implementation for `p`, or a configuration error if `IpmiRs` cannot serve it.
    pub(crate) fn resolve(self, p: &IpmiParams) -> Result<Resolved, PowerError> {
        match self {
            Self::Native => Ok(Resolved::Native),
            Self::Auto => Ok(match rs::limitation(p, true) {
                None => Resolved::IpmiRs,
                Some(_) => Resolved::Native,
            }),
            Self::IpmiRs => match rs::limitation(p, false) {
                None => Ok(Resolved::IpmiRs),
                Some(what) => Err(PowerError::Config(format!(
                    "the ipmi-rs backend cannot do {what}; use the native or auto backend"
                ))),
            },
        }
    }
}

/// Chassis Control commands (IPMI 2.0 section 28.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChassisControl {
    /// Power down.
    PowerDown = 0,
    /// Power up.
    PowerUp = 1,
    /// Power cycle.
    PowerCycle = 2,
    /// Hard reset.
    HardReset = 3,
    /// Pulse a diagnostic interrupt (NMI).
    Diagnostic = 4,
    /// Soft shutdown through ACPI.
    SoftShutdown = 5,
}

/// One IPMI command: network function, command and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Network function (request form).
    pub netfn: u8,
    /// Command number.
    pub cmd: u8,
    /// Request data.
    pub data: Vec<u8>,
    /// Completion codes to accept as "not supported, carry on" (optional parameters).
    pub optional: bool,
}

impl Command {
    /// Whether USER privilege is enough (Get commands): no Set Session Privilege Level then.
    pub fn read_only(&self) -> bool {
        self.netfn == cmd::NETFN_CHASSIS
            && matches!(self.cmd, cmd::GET_CHASSIS_STATUS | cmd::GET_BOOT_OPTIONS)
    }

    /// Get Chassis Status.
    pub fn chassis_status() -> Self {
        Self {
            netfn: cmd::NETFN_CHASSIS,
            cmd: cmd::GET_CHASSIS_STATUS,
            data: Vec::new(),
            optional: false,
        }
    }

    /// Chassis Control.
    pub fn chassis_control(c: ChassisControl) -> Self {
        Self {
            netfn: cmd::NETFN_CHASSIS,
            cmd: cmd::CHASSIS_CONTROL,
            data: vec![c as u8],
            optional: false,
        }
    }

    /// Set System Boot Options for `boot`: parameter 3 (keep the boot-flag valid bit past
    /// the 60-second timeout, so a slow power-on still sees it) then parameter 5 (boot flags).
    pub fn boot_options(boot: BootRequest) -> Vec<Self> {
        let device = match boot.device {
            BootDevice::None => 0x00,
            BootDevice::Pxe => 0x01,
            BootDevice::Disk => 0x02,
            BootDevice::Cdrom => 0x05,
            BootDevice::BiosSetup => 0x06,
        };
        let mut flags = 0x80;
        if boot.persistence == BootPersistence::Persistent {
            flags |= 0x40;
        }
        if boot.mode == BootMode::Efi {
            flags |= 0x20;
        }
        vec![
            Self {
                netfn: cmd::NETFN_CHASSIS,
                cmd: cmd::SET_BOOT_OPTIONS,
                data: vec![0x03, 0x01],
                optional: true,
            },
            Self {
                netfn: cmd::NETFN_CHASSIS,
                cmd: cmd::SET_BOOT_OPTIONS,
                data: vec![0x05, flags, device << 2, 0, 0, 0],
                optional: false,
            },
        ]
    }

    /// Get System Boot Options parameter 5 (boot flags).
    pub fn get_boot_flags() -> Self {
        Self {
            netfn: cmd::NETFN_CHASSIS,
            cmd: cmd::GET_BOOT_OPTIONS,
            data: vec![0x05, 0, 0],
            optional: false,
        }
    }
}

/// The power state in a Get Chassis Status response.
pub fn parse_chassis_status(bmc: &str, r: &Response) -> Result<PowerState, PowerError> {
    let b = r
        .data
        .first()
        .ok_or_else(|| PowerError::protocol(bmc, "empty Get Chassis Status response"))?;
    Ok(if b & 1 != 0 {
        PowerState::On
    } else {
        PowerState::Off
    })
}

/// Boot flags read back from a BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootFlags {
    /// The boot-flag valid bit: the BMC will apply the flags at the next boot.
    pub valid: bool,
    /// The device, persistence and firmware mode.
    pub request: BootRequest,
}

/// The boot flags in a Get System Boot Options (parameter 5) response.
pub fn parse_boot_flags(bmc: &str, r: &Response) -> Result<BootFlags, PowerError> {
    let d = &r.data;
    if d.len() < 4 || d[1] & 0x7f != 0x05 {
        return Err(PowerError::protocol(bmc, "malformed boot flags response"));
    }
    let device = match (d[3] >> 2) & 0x0f {
        0x01 => BootDevice::Pxe,
        0x02 => BootDevice::Disk,
        0x05 => BootDevice::Cdrom,
        0x06 => BootDevice::BiosSetup,
        _ => BootDevice::None,
    };
    Ok(BootFlags {
        valid: d[2] & 0x80 != 0,
        request: BootRequest {
            device,
            persistence: if d[2] & 0x40 != 0 {
                BootPersistence::Persistent
            } else {
                BootPersistence::Once
            },
            mode: if d[2] & 0x20 != 0 {
                BootMode::Efi
            } else {
                BootMode::Legacy
            },
        },
    })
}

pub(crate) fn session_error(bmc: &str, what: &str, e: SessionError) -> PowerError {
    match e {
        SessionError::Auth(reason) => PowerError::auth(bmc, reason),
        SessionError::Unsupported(reason) => PowerError::unsupported(bmc, reason),
        SessionError::Completion { code: 0xd4 } => PowerError::auth(
            bmc,
            format!("{what}: insufficient privilege level (try privilege_level ADMIN)"),
        ),
        SessionError::Completion { code: 0xc1 } => PowerError::unsupported(bmc, what),
        SessionError::Completion { code } => PowerError::Refused {
            bmc: bmc.to_owned(),
            request: what.to_owned(),
            reason: format!(
                "completion code {code:#04x} ({})",
                session::completion_text(code)
            ),
        },
        SessionError::Protocol(reason) => PowerError::protocol(bmc, reason),
    }
}

pub(crate) fn session_config(p: &IpmiParams) -> Result<SessionConfig, PowerError> {
    if p.power_user.len() > 16 {
        return Err(PowerError::Config(
            "power_user is longer than 16 bytes".into(),
        ));
    }
    if p.power_pass.expose().len() > 20 {
        return Err(PowerError::Config(
            "power_pass is longer than 20 bytes".into(),
        ));
    }
    Ok(SessionConfig {
        user: p.power_user.clone(),
        password: p.power_pass.clone(),
        kg: p.k_g.clone(),
        suite: p.cipher_suite_id,
        privilege: p.privilege_level,
        version: p.power_driver,
        raise_privilege: true,
    })
}

/// Splits `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address.
pub fn split_host_port(address: &str, default_port: u16) -> Result<(String, u16), PowerError> {
    let bad = || {
        PowerError::Config(format!(
            "power_address {address:?} is not HOST or HOST:PORT"
        ))
    };
    if address.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
        }
        _ => Ok((address.to_owned(), default_port)),
    }
}

pub(crate) fn no_rmcp_plus(bmc: &str) -> PowerError {
    PowerError::unsupported(
        bmc,
        "RMCP+ (the BMC offers IPMI 1.5 only, which the ipmi-rs backend does not do)",
    )
}

/// What a whole call needs: the commands' responses, in order.
type Answers = Vec<Response>;

/// Feeds one datagram to the session; `true` when the exchange is complete.
type Handler<'a> = dyn FnMut(&mut Session, &[u8]) -> Result<bool, PowerError> + 'a;

/// The IPMI driver with blocking calls (std UDP socket, no runtime).
#[derive(Debug, Clone)]
pub struct IpmiBlocking {
    params: IpmiParams,
    timing: Timing,
    backend: Backend,
}

impl IpmiBlocking {
    /// A driver for the BMC in `params`.
    pub fn new(params: IpmiParams) -> Result<Self, PowerError> {
        session_config(&params)?;
        split_host_port(&params.power_address, DEFAULT_PORT)?;
        Backend::Auto.resolve(&params)?;
        Ok(Self {
            params,
            timing: Timing::default(),
            backend: Backend::Auto,
        })
    }

    /// Sets the retransmission interval and the deadline of each call.
    pub fn set_timing(&mut self, timing: Timing) -> &mut Self {
        self.timing = timing;
        self
    }

    /// Chooses the implementation of the sessions; an error if `backend` cannot serve
    /// this driver's parameters.
    pub fn set_backend(&mut self, backend: Backend) -> Result<&mut Self, PowerError> {
        backend.resolve(&self.params)?;
        self.backend = backend;
        Ok(self)
    }

    fn bmc(&self) -> &str {
        &self.params.power_address
    }

    /// Opens a session, runs `commands`, closes the session.
    pub fn exchange(&self, commands: &[Command]) -> Result<Answers, PowerError> {
        let bmc = self.bmc();
        let (host, port) = split_host_port(bmc, DEFAULT_PORT)?;
        let target: SocketAddr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| PowerError::connection(bmc, e))?
            .next()
            .ok_or_else(|| PowerError::connection(bmc, "the name has no address"))?;
        if self.backend.resolve(&self.params)? == Resolved::IpmiRs {
            match rs::exchange_blocking(&self.params, self.timing, target, commands)? {
                rs::Outcome::Done(r) => return r,
                rs::Outcome::NoRmcpPlus | rs::Outcome::Unavailable(_)
                    if self.backend == Backend::Auto => {}
                rs::Outcome::NoRmcpPlus => return Err(no_rmcp_plus(bmc)),
                rs::Outcome::Unavailable(e) => return Err(e),
            }
        }
        self.exchange_native(target, commands)
    }

    fn exchange_native(
        &self,
        target: SocketAddr,
        commands: &[Command],
    ) -> Result<Answers, PowerError> {
        let bmc = self.bmc();
        let local: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(local).map_err(|e| PowerError::connection(bmc, e))?;
        sock.connect(target)
            .map_err(|e| PowerError::connection(bmc, e))?;
        let deadline = Instant::now() + self.timing.deadline;
        let mut cfg = session_config(&self.params)?;
        cfg.raise_privilege = commands.iter().any(|c| !c.read_only());
        let mut s = Session::new(cfg);
        let mut buf = [0u8; 1024];
        let mut exchange =
            |dgram: Vec<u8>, s: &mut Session, handle: &mut Handler<'_>| -> Result<(), PowerError> {
                loop {
                    sock.send(&dgram)
                        .map_err(|e| PowerError::connection(bmc, e))?;
                    let resend = Instant::now() + self.timing.retransmit;
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            return Err(PowerError::Timeout {
                                bmc: bmc.to_owned(),
                                after: self.timing.deadline,
                            });
                        }
                        if now >= resend {
                            break;
                        }
                        let wait = resend.min(deadline) - now;
                        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                            .map_err(|e| PowerError::connection(bmc, e))?;
                        match sock.recv(&mut buf) {
                            Ok(n) => {
                                if handle(s, &buf[..n])? {
                                    return Ok(());
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket:
                            // keep waiting until the deadline, the BMC may be starting.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                std::thread::sleep(Duration::from_millis(50).min(wait));
                            }
                            Err(e) => return Err(PowerError::connection(bmc, e)),
                        }
                    }
                }
            };
        while let Some(d) = s.poll_transmit() {
            exchange(d, &mut s, &mut |s, b| {
                s.handle_datagram(b)
                    .map_err(|e| session_error(bmc, "session setup", e))
            })?;
        }
        let mut answers = Vec::with_capacity(commands.len());
        let mut result = Ok(());
        for c in commands {
            let d = s.request(c.netfn, c.cmd, &c.data);
            let mut got = None;
            let r = exchange(d, &mut s, &mut |s, b| match s.handle_response(b) {
                Ok(Some(r)) => {
                    got = Some(r);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(session_error(bmc, "response", e)),
            });
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            let Some(r) = got else { break };
            if r.completion != 0 && !(c.optional && matches!(r.completion, 0x80 | 0xc1 | 0xcc)) {
                result = Err(session_error(
                    bmc,
                    &format!("command {:#04x}/{:#04x}", c.netfn, c.cmd),
                    SessionError::Completion { code: r.completion },
                ));
                break;
            }
            answers.push(r);
        }
        if let Some(close) = s.close() {
            // Best effort: the BMC drops idle sessions on its own.
            let _ = sock.send(&close);
        }
        result.map(|()| answers)
    }

    fn control(&self, c: ChassisControl) -> Result<(), PowerError> {
        self.exchange(&[Command::chassis_control(c)]).map(|_| ())
    }

    /// Reads the boot flags back.
    pub fn boot_flags(&self) -> Result<BootFlags, PowerError> {
        let a = self.exchange(&[Command::get_boot_flags()])?;
        parse_boot_flags(self.bmc(), &a[0])
    }
}

impl BlockingPowerDriver for IpmiBlocking {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn power_on(&self) -> Result<(), PowerError> {
        self.control(ChassisControl::PowerUp)
    }

    fn power_off(&self, mode: OffMode) -> Result<(), PowerError> {
        self.control(match mode {
            OffMode::Hard => ChassisControl::PowerDown,
            OffMode::Soft => ChassisControl::SoftShutdown,
        })
    }

    fn power_cycle(&self) -> Result<(), PowerError> {
        // A cycle of a machine that is off does nothing on many BMCs: turn it on instead.
        match self.power_query()? {
            PowerState::Off => self.control(ChassisControl::PowerUp),
            _ => self.control(ChassisControl::PowerCycle),
        }
    }

    fn power_reset(&self) -> Result<(), PowerError> {
        self.control(ChassisControl::HardReset)
    }

    fn power_query(&self) -> Result<PowerState, PowerError> {
        let a = self.exchange(&[Command::chassis_status()])?;
        parse_chassis_status(self.bmc(), &a[0])
    }

    fn set_boot_device(&self, boot: BootRequest) -> Result<(), PowerError> {
        self.exchange(&Command::boot_options(boot)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::params::{CipherSuite, IpmiVersion, Privilege};
    use proptest::prelude::*;

    proptest! {
        /// No parameter combination sends ipmi-rs down a path it cannot take (suite 17's
        /// `todo!()`, a Kg it would ignore, its IPMI 1.5 session, a user name it would blank):
        /// the automatic choice picks it only for what it does, the forced one refuses the rest.
        #[test]
        fn ipmi_rs_only_gets_what_it_can_do(
            suite17 in any::<bool>(),
            v15 in any::<bool>(),
            kg in "[a-z]{0,2}",
            privilege in 0u8..3,
            user in "[a-zé\0]{0,4}",
        ) {
            let p = IpmiParams {
                power_address: "10.77.160.9".into(),
                power_user: user.clone(),
                cipher_suite_id: if suite17 { CipherSuite::Suite17 } else { CipherSuite::Suite3 },
                power_driver: if v15 { IpmiVersion::Lan15 } else { IpmiVersion::Lan20 },
                k_g: kg.clone().into(),
                privilege_level: [Privilege::User, Privilege::Operator, Privilege::Admin]
                    [usize::from(privilege)],
                ..IpmiParams::default()
            };
            let can = !suite17 && !v15 && kg.is_empty()
                && user.bytes().all(|b| b.is_ascii() && b != 0);
            let auto = Backend::Auto.resolve(&p).unwrap();
            prop_assert_eq!(auto == Resolved::IpmiRs, can && p.privilege_level == Privilege::Admin);
            prop_assert_eq!(Backend::IpmiRs.resolve(&p).is_ok(), can);
            prop_assert_eq!(Backend::Native.resolve(&p).unwrap(), Resolved::Native);
        }
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("10.77.160.1", 623).unwrap(),
            ("10.77.160.1".into(), 623)
        );
        assert_eq!(
            split_host_port("bmc:9623", 623).unwrap(),
            ("bmc".into(), 9623)
        );
        assert_eq!(
            split_host_port("[fd77:160::1]:700", 623).unwrap(),
            ("fd77:160::1".into(), 700)
        );
        assert_eq!(
            split_host_port("fd77:160::1", 623).unwrap(),
            ("fd77:160::1".into(), 623)
        );
        assert!(split_host_port("bmc:x", 623).is_err());
        assert!(split_host_port("", 623).is_err());
    }

    #[test]
    fn boot_flags_encoding() {
        let c = Command::boot_options(BootRequest {
            device: BootDevice::Pxe,
            persistence: BootPersistence::Once,
            mode: BootMode::Efi,
        });
        assert_eq!(c[1].data, [0x05, 0xa0, 0x04, 0, 0, 0]);
        let r = Response {
            netfn: 1,
            cmd: cmd::GET_BOOT_OPTIONS,
            rq_seq: 1,
            completion: 0,
            data: vec![0x01, 0x05, 0xa0, 0x04, 0, 0, 0],
        };
        let b = parse_boot_flags("t", &r).unwrap();
        assert!(b.valid);
        assert_eq!(
            (b.request.device, b.request.mode),
            (BootDevice::Pxe, BootMode::Efi)
        );
    }
}
