//! The `ipmi-rs` backend: RMCP+ sessions with cipher suite 3 by the `ipmi-rs` crate, our
//! chassis and boot-option commands as `ipmi-rs` [`IpmiCommand`]s, and a relay with the
//! [`Guard`] between `ipmi-rs` and the BMC.
//!
//! `ipmi-rs` 0.6 calls block, own their socket, wait for each answer once (no
//! retransmission) with a fixed receive timeout, and panic on some answers a BMC may send
//! (see [`guard`](super::guard)). So `ipmi-rs` talks to a relay on `[::1]`; the relay sends
//! every datagram on to the BMC, sends it again every retransmission interval until the
//! answer comes, hands `ipmi-rs` only the answers the guard lets through, and ends `ipmi-rs`'s
//! wait at the call's deadline. `ipmi-rs`'s own receive timeout is set past the deadline.
//!
//! What `ipmi-rs` cannot do, and why the driver uses its own session code then
//! ([`limitation`]): cipher suite 17 (its HMAC-SHA256 RAKP and integrity are `todo!()`), a
//! Kg key (it has no way to pass one), an IPMI 1.5 session that interoperates (it refuses the
//! Activate Session answers of `ipmi_sim`), a maximum privilege other than ADMINISTRATOR (its
//! RAKP 1 always asks for ADMINISTRATOR, so an account limited to OPERATOR cannot log in;
//! a lower level is set afterwards with Set Session Privilege Level) and user names that are
//! not ASCII (it would silently send an empty one).

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipmi_rs::IpmiError;
use ipmi_rs::connection::{CompletionErrorCode, IpmiCommand, Message, NetFn};
use ipmi_rs::rmcp::{
    ActivationError, Rmcp, RmcpIpmiError, RmcpIpmiReceiveError, V2_0ActivationError,
};

use super::guard::{Guard, POISON, Verdict};
use super::session::{SessionError, cmd};
use super::wire::Response;
use super::{Command, Timing, session_error};
use crate::PowerError;
use crate::params::{CipherSuite, IpmiParams, IpmiVersion, Privilege};

/// Why `ipmi-rs` cannot serve `p`, or `None` if it can. With `strict_privilege`, a
/// privilege other than ADMINISTRATOR is one of the reasons (the automatic choice); without
/// it, a lower privilege is reached with Set Session Privilege Level after an ADMINISTRATOR
/// handshake (the account then needs ADMINISTRATOR rights).
pub fn limitation(p: &IpmiParams, strict_privilege: bool) -> Option<&'static str> {
    if p.cipher_suite_id != CipherSuite::Suite3 {
        return Some("cipher suite 17 (ipmi-rs has no HMAC-SHA256 RAKP or integrity)");
    }
    if p.power_driver == IpmiVersion::Lan15 {
        return Some("IPMI 1.5 (the ipmi-rs 1.5 session does not interoperate)");
    }
    if !p.k_g.is_empty() {
        return Some("a Kg key (ipmi-rs cannot pass one)");
    }
    if !p.power_user.bytes().all(|b| b.is_ascii() && b != 0) {
        return Some("a user name that is not ASCII");
    }
    if strict_privilege && p.privilege_level != Privilege::Admin {
        return Some(
            "a maximum privilege below ADMINISTRATOR (ipmi-rs always asks for ADMINISTRATOR)",
        );
    }
    None
}

/// A command's failure as `ipmi-rs` reports it to [`IpmiCommand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// A non-zero completion code, with the response data.
    Completion(u8, Vec<u8>),
    /// The response data is too short for the command.
    Short,
}

/// The completion code byte of `c`.
pub fn completion_byte(c: CompletionErrorCode) -> u8 {
    use CompletionErrorCode as C;
    match c {
        C::NodeBusy => 0xc0,
        C::InvalidCommand => 0xc1,
        C::InvalidCommandForLun => 0xc2,
        C::ProcessingTimeout => 0xc3,
        C::OutOfSpace => 0xc4,
        C::ReservationCancelledOrInvalidId => 0xc5,
        C::RequestDataTruncated => 0xc6,
        C::RequestDataLenInvalid => 0xc7,
        C::RequestDataLengthLimitExceeded => 0xc8,
        C::ParameterOutOfRange => 0xc9,
        C::CannotReturnNumOfRequestedBytes => 0xca,
        C::RequestedDatapointNotPresent => 0xcb,
        C::InvalidDataFieldInRequest => 0xcc,
        C::CommandIllegalForSensorOrRecord => 0xcd,
        // 0xd0-0xd2 (SDR or firmware update, initializing) are folded into their group by
        // ipmi-rs, whose reason type is not public.
        C::ResponseUnavailable { .. } => 0xce,
        C::CannotExecuteDuplicateRequest => 0xcf,
        C::DestinationUnavailable => 0xd3,
        C::InsufficientPrivilege => 0xd4,
        C::CannotExecuteCommandInCurrentState => 0xd5,
        C::SubFunctionDisabled => 0xd6,
        C::Unspecified => 0xff,
        C::Oem(v) | C::CommandSpecific(v) | C::Reserved(v) => v,
    }
}

impl From<Command> for Message {
    fn from(c: Command) -> Self {
        Self::new_request(NetFn::from(c.netfn), c.cmd, c.data)
    }
}

/// Our chassis, boot-option and session commands on `ipmi-rs`: the response data (after
/// the completion code) as a [`Response`] with completion 0; a failure's code in the error.
impl IpmiCommand for Command {
    type Output = Vec<u8>;
    type Error = CommandError;

    fn handle_completion_code(code: CompletionErrorCode, data: &[u8]) -> Option<CommandError> {
        Some(CommandError::Completion(
            completion_byte(code),
            data.to_vec(),
        ))
    }

    fn parse_success_response(data: &[u8]) -> Result<Vec<u8>, CommandError> {
        Ok(data.to_vec())
    }
}

impl Command {
    /// Set Session Privilege Level.
    pub fn set_session_privilege(p: Privilege) -> Self {
        Self {
            netfn: cmd::NETFN_APP,
            cmd: cmd::SET_SESSION_PRIVILEGE,
            data: vec![p.code()],
            optional: false,
        }
    }

    /// Close Session of the BMC's session `id`.
    pub fn close_session(id: u32) -> Self {
        Self {
            netfn: cmd::NETFN_APP,
            cmd: cmd::CLOSE_SESSION,
            data: id.to_le_bytes().to_vec(),
            optional: false,
        }
    }
}

/// What the relay found, shared with the session.
#[derive(Debug, Default)]
pub(crate) struct RelayState {
    pub(crate) guard: Guard,
    /// Why the relay stopped the session (the guard refused, the deadline passed).
    pub(crate) failure: Option<PowerError>,
    /// The BMC has no RMCP+ (use the IPMI 1.5 session of the native backend).
    pub(crate) no_rmcp_plus: bool,
}

pub(crate) type Shared = Arc<Mutex<RelayState>>;

pub(crate) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, RelayState> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of a session on `ipmi-rs`.
pub(crate) enum Outcome {
    /// The commands' responses (or the first error).
    Done(Result<Vec<Response>, PowerError>),
    /// The BMC speaks only IPMI 1.5: run the call on the native backend.
    NoRmcpPlus,
    /// `ipmi-rs` cannot run here (no IPv6 loopback for it and the relay): the error, for
    /// the forced backend; the automatic choice runs the call on the native backend.
    Unavailable(PowerError),
}

fn io_error(bmc: &str, e: &std::io::Error, timing: Timing) -> PowerError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => PowerError::Timeout {
            bmc: bmc.to_owned(),
            after: timing.deadline,
        },
        // ipmi-rs lends its error out: a copy keeps the kind and the message.
        _ => PowerError::connection(bmc, std::io::Error::new(e.kind(), e.to_string())),
    }
}

fn receive_error(bmc: &str, e: &RmcpIpmiReceiveError, timing: Timing) -> PowerError {
    match e {
        RmcpIpmiReceiveError::Io(io) => io_error(bmc, io, timing),
        other => PowerError::protocol(bmc, format!("undecodable answer: {other:?}")),
    }
}

fn activation_error(bmc: &str, e: &ActivationError, timing: Timing) -> PowerError {
    use V2_0ActivationError as V2;
    match e {
        ActivationError::BindSocket(io)
        | ActivationError::PingSend(io)
        | ActivationError::PongReceive(io) => io_error(bmc, io, timing),
        ActivationError::IpmiNotSupported => {
            PowerError::unsupported(bmc, "IPMI (the BMC's ASF pong does not list it)")
        }
        ActivationError::NoSupportedIpmiLANVersions => {
            PowerError::unsupported(bmc, "IPMI over LAN (neither 1.5 nor 2.0 offered)")
        }
        ActivationError::GetChannelAuthenticationCapabilities(e) => {
            command_error(bmc, "Get Channel Authentication Capabilities", e, timing)
        }
        ActivationError::V2_0(V2::ServerAuthenticationFailed) => PowerError::auth(
            bmc,
            "RAKP 2: the BMC's key exchange code does not match (wrong user name or password)",
        ),
        ActivationError::V2_0(V2::RakpMessage4InvalidIntegrityCheckValue) => PowerError::auth(
            bmc,
            "RAKP 4: the BMC's integrity check value does not match",
        ),
        ActivationError::V2_0(
            V2::OpenSessionResponseReceive(r)
            | V2::RakpMessage2Receive(r)
            | V2::RakpMessage4Receive(r),
        ) => receive_error(bmc, r, timing),
        ActivationError::V2_0(V2::Io(io)) => io_error(bmc, io, timing),
        other => PowerError::protocol(bmc, format!("RMCP+ session setup failed: {other:?}")),
    }
}

fn command_error<E: std::fmt::Debug>(
    bmc: &str,
    what: &str,
    e: &IpmiError<RmcpIpmiError, E>,
    timing: Timing,
) -> PowerError {
    match e {
        IpmiError::Connection(RmcpIpmiError::Receive(r)) => receive_error(bmc, r, timing),
        IpmiError::Failed {
            completion_code, ..
        } => session_error(
            bmc,
            what,
            SessionError::Completion {
                code: completion_byte(*completion_code),
            },
        ),
        other => PowerError::protocol(bmc, format!("{what}: {other:?}")),
    }
}

/// Runs `commands` in one `ipmi-rs` session through the relay at `relay` (blocking).
pub(crate) fn run_session(
    relay: SocketAddr,
    p: &IpmiParams,
    timing: Timing,
    commands: &[Command],
    shared: &Shared,
) -> Outcome {
    let bmc = p.power_address.as_str();
    // The relay ends every wait at the deadline; this receive timeout is only a backstop.
    let mut rmcp = match Rmcp::new(relay, timing.deadline + Duration::from_secs(2)) {
        Ok(r) => r,
        Err(e) => return Outcome::Done(Err(PowerError::connection(bmc, e))),
    };
    // The relay's verdict, if it stopped the session, explains an `ipmi-rs` error best.
    let relayed = |e: PowerError| {
        let mut s = lock(shared);
        if s.no_rmcp_plus {
            return None;
        }
        if let Some(r) = s.guard.refusal() {
            let stage = r.stage;
            return Some(session_error(
                bmc,
                stage,
                super::session::rakp_status_error(stage, r.status),
            ));
        }
        Some(s.failure.take().unwrap_or(e))
    };
    let activated = rmcp.activate(
        true,
        Some(&p.power_user),
        Some(p.power_pass.expose().as_bytes()),
    );
    if let Err(e) = activated {
        return match relayed(activation_error(bmc, &e, timing)) {
            Some(err) => Outcome::Done(Err(err)),
            None => Outcome::NoRmcpPlus,
        };
    }
    let mut ipmi = ipmi_rs::Ipmi::new(rmcp);
    let mut prefix = Vec::new();
    if commands.iter().any(|c| !c.read_only()) {
        prefix.push(Command::set_session_privilege(p.privilege_level));
    }
    let mut answers = Vec::with_capacity(commands.len());
    let mut result = Ok(());
    let mut session_alive = true;
    for (i, c) in prefix.iter().chain(commands).enumerate() {
        let what = if i < prefix.len() {
            "Set Session Privilege Level".to_owned()
        } else {
            format!("command {:#04x}/{:#04x}", c.netfn, c.cmd)
        };
        let (completion, data) = match ipmi.send_recv(c.clone()) {
            Ok(data) => (0, data),
            Err(IpmiError::Command {
                error: CommandError::Completion(code, data),
                ..
            }) => (code, data),
            Err(e) => {
                session_alive = matches!(
                    e,
                    IpmiError::Command { .. } | IpmiError::UnexpectedResponse { .. }
                );
                result = Err(relayed(command_error(bmc, &what, &e, timing))
                    .unwrap_or_else(|| PowerError::protocol(bmc, "session lost")));
                break;
            }
        };
        if completion != 0 && !(c.optional && matches!(completion, 0x80 | 0xc1 | 0xcc)) {
            result = Err(session_error(
                bmc,
                &what,
                SessionError::Completion { code: completion },
            ));
            break;
        }
        if i >= prefix.len() {
            answers.push(Response {
                netfn: c.netfn | 1,
                cmd: c.cmd,
                rq_seq: 0,
                completion,
                data,
            });
        }
    }
    let id = lock(shared).guard.bmc_session_id();
    if session_alive && let Some(id) = id {
        // Best effort, as ipmitool: the BMC drops idle sessions on its own.
        let _ = ipmi.send_recv(Command::close_session(id));
    }
    Outcome::Done(result.map(|()| answers))
}

/// Binds the relay's two sockets: one for `ipmi-rs` on `[::1]`, one connected to the BMC.
pub(crate) fn relay_sockets(
    bmc: &str,
    target: SocketAddr,
) -> Result<(UdpSocket, UdpSocket), PowerError> {
    // ipmi-rs binds its own socket to `[::]`, so it and the relay need IPv6 loopback.
    let local = UdpSocket::bind("[::1]:0").map_err(|e| {
        PowerError::connection(bmc, format!("the ipmi-rs backend needs IPv6 loopback: {e}"))
    })?;
    let out_addr: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let out = UdpSocket::bind(out_addr).map_err(|e| PowerError::connection(bmc, e))?;
    out.connect(target)
        .map_err(|e| PowerError::connection(bmc, e))?;
    Ok((local, out))
}

/// The relay on std sockets, in its own thread: forwards until `ipmi-rs` is done (an empty
/// datagram on `local` from the session's thread) or the deadline passes.
pub(crate) fn relay_blocking(
    bmc: &str,
    local: &UdpSocket,
    out: &UdpSocket,
    timing: Timing,
    deadline: Instant,
    shared: &Shared,
) {
    let mut buf = [0u8; 1024];
    let mut client: Option<SocketAddr> = None;
    // Bounded: past the deadline plus the backstop, nothing waits any more.
    let hard_stop = deadline + Duration::from_secs(3);
    loop {
        // Wait for `ipmi-rs`.
        let now = Instant::now();
        if now >= hard_stop {
            return;
        }
        let _ = local.set_read_timeout(Some(hard_stop - now));
        let Ok((n, from)) = local.recv_from(&mut buf) else {
            return;
        };
        if n == 0 {
            return;
        }
        if client.is_some_and(|c| c != from) {
            continue;
        }
        client = Some(from);
        let request = buf[..n].to_vec();
        if let Err(reason) = lock(shared).guard.outbound(&request) {
            stop(local, from, shared, PowerError::protocol(bmc, reason));
            continue;
        }
        if lock(shared).guard.expect() == super::guard::Expect::Nothing {
            let _ = out.send(&request);
            continue;
        }
        // Drop what a retransmission left behind before asking again.
        let _ = out.set_nonblocking(true);
        while out.recv(&mut buf).is_ok() {}
        let _ = out.set_nonblocking(false);
        // Send (again every retransmit interval) until the guard has an answer.
        'answer: loop {
            if Instant::now() >= deadline {
                stop(
                    local,
                    from,
                    shared,
                    PowerError::Timeout {
                        bmc: bmc.to_owned(),
                        after: timing.deadline,
                    },
                );
                break;
            }
            if let Err(e) = out.send(&request)
                && e.kind() != std::io::ErrorKind::ConnectionRefused
            {
                stop(local, from, shared, PowerError::connection(bmc, e));
                break;
            }
            let resend = (Instant::now() + timing.retransmit).min(deadline);
            loop {
                let now = Instant::now();
                if now >= resend {
                    break;
                }
                let _ = out.set_read_timeout(Some((resend - now).max(Duration::from_millis(1))));
                let n = match out.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        std::thread::sleep(Duration::from_millis(50).min(resend - now));
                        continue;
                    }
                    Err(_) => continue,
                };
                let verdict = lock(shared).guard.inbound(&buf[..n]);
                match verdict {
                    Verdict::Forward => {
                        let _ = local.send_to(&buf[..n], from);
                        break 'answer;
                    }
                    Verdict::Drop => {}
                    Verdict::Refuse(reason) => {
                        stop(local, from, shared, PowerError::protocol(bmc, reason));
                        break 'answer;
                    }
                    Verdict::NoRmcpPlus => {
                        lock(shared).no_rmcp_plus = true;
                        let _ = local.send_to(&POISON, from);
                        break 'answer;
                    }
                }
            }
        }
    }
}

/// Records why the session stops and ends `ipmi-rs`'s wait.
fn stop(local: &UdpSocket, to: SocketAddr, shared: &Shared, why: PowerError) {
    let mut s = lock(shared);
    if s.failure.is_none() {
        s.failure = Some(why);
    }
    drop(s);
    let _ = local.send_to(&POISON, to);
}

/// One call on the `ipmi-rs` backend, blocking: the relay in a scoped thread, the session
/// in this one.
pub(crate) fn exchange_blocking(
    p: &IpmiParams,
    timing: Timing,
    target: SocketAddr,
    commands: &[Command],
) -> Result<Outcome, PowerError> {
    let bmc = p.power_address.as_str();
    let (local, out) = match relay_sockets(bmc, target) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Unavailable(e)),
    };
    let relay_addr = local
        .local_addr()
        .map_err(|e| PowerError::connection(bmc, e))?;
    let shared: Shared = Arc::default();
    let deadline = Instant::now() + timing.deadline;
    Ok(std::thread::scope(|s| {
        s.spawn(|| relay_blocking(bmc, &local, &out, timing, deadline, &shared));
        let outcome = run_session(relay_addr, p, timing, commands, &shared);
        // Wake the relay so it ends now.
        if let Ok(waker) = UdpSocket::bind("[::1]:0") {
            let _ = waker.send_to(&[], relay_addr);
        }
        outcome
    }))
}
