//! A sans-IO IPMI LAN client session: the RMCP+ handshake (Get Channel Authentication
//! Capabilities, Open Session, RAKP 1-4, Set Session Privilege Level) for cipher suites 3 and
//! 17, the IPMI 1.5 MD5 handshake as a fallback, then authenticated and encrypted requests.
//!
//! Call order: [`Session::poll_transmit`] gives the datagram to send (send it again if no
//! answer comes, it is safe to repeat); feed every datagram received to
//! [`Session::handle_datagram`] until [`Session::is_established`]; then
//! [`Session::request`] and [`Session::handle_response`] for each command; finally
//! [`Session::close`]. The session does no I/O and reads no clock.

use rand::RngCore;

use super::crypto::{Rakp, SessionKeys, key_bytes, md5_auth_code};
use super::wire::{self, AUTH_MD5, AUTH_NONE, Datagram, Response, payload};
use crate::params::{CipherSuite, IpmiVersion, Privilege};

/// Network functions and commands used here.
pub mod cmd {
    /// App network function.
    pub const NETFN_APP: u8 = 0x06;
    /// Chassis network function.
    pub const NETFN_CHASSIS: u8 = 0x00;
    /// Get Channel Authentication Capabilities.
    pub const GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
    /// Get Session Challenge (IPMI 1.5).
    pub const GET_SESSION_CHALLENGE: u8 = 0x39;
    /// Activate Session (IPMI 1.5).
    pub const ACTIVATE_SESSION: u8 = 0x3a;
    /// Set Session Privilege Level.
    pub const SET_SESSION_PRIVILEGE: u8 = 0x3b;
    /// Close Session.
    pub const CLOSE_SESSION: u8 = 0x3c;
    /// Get Chassis Status.
    pub const GET_CHASSIS_STATUS: u8 = 0x01;
    /// Chassis Control.
    pub const CHASSIS_CONTROL: u8 = 0x02;
    /// Set System Boot Options.
    pub const SET_BOOT_OPTIONS: u8 = 0x08;
    /// Get System Boot Options.
    pub const GET_BOOT_OPTIONS: u8 = 0x09;
}

/// How a session attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The BMC refused our credentials, Kg or privilege.
    #[error("{0}")]
    Auth(String),
    /// The BMC does not offer what we need (cipher suite, IPMI version).
    #[error("{0}")]
    Unsupported(String),
    /// The BMC answered a command with a non-zero completion code.
    #[error("completion code {code:#04x} ({})", completion_text(*code))]
    Completion {
        /// The code.
        code: u8,
    },
    /// The BMC's datagram is malformed or fails its integrity check.
    #[error("{0}")]
    Protocol(String),
}

/// A person-readable name for an IPMI completion code.
pub fn completion_text(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc2 => "invalid command for LUN",
        0xc3 => "timeout",
        0xc4 => "out of space",
        0xc5 => "reservation cancelled",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for sensor or record type",
        0xce => "command response could not be provided",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0x80 => "parameter not supported",
        0x81 => "invalid user name or parameter locked",
        0x82 => "null user name not enabled",
        _ => "unspecified error",
    }
}

pub(crate) fn rakp_status_error(stage: &str, status: u8) -> SessionError {
    let text = match status {
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session id",
        0x04 | 0x05 | 0x06 | 0x07 | 0x10 | 0x11 => {
            return SessionError::Unsupported(format!(
                "{stage}: the BMC does not support the requested cipher suite (status {status:#04x})"
            ));
        }
        0x09..=0x0b => "unauthorized role or privilege level",
        0x0c | 0x0d => "unauthorized user name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value (wrong password or Kg)",
        0x12 => "illegal parameter",
        _ => "unspecified error",
    };
    match status {
        0x09..=0x0f => SessionError::Auth(format!("{stage}: {text} (status {status:#04x})")),
        _ => SessionError::Protocol(format!("{stage}: {text} (status {status:#04x})")),
    }
}

/// What a session needs to know.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// User name (at most 16 bytes).
    pub user: String,
    /// Password.
    pub password: crate::Secret,
    /// Kg (empty: the password).
    pub kg: crate::Secret,
    /// Cipher suite for RMCP+.
    pub suite: CipherSuite,
    /// Privilege to request.
    pub privilege: Privilege,
    /// IPMI 2.0 with 1.5 fallback, or 1.5 only.
    pub version: IpmiVersion,
    /// Send Set Session Privilege Level after the handshake. Sessions start at USER
    /// privilege, which reads status; chassis control and boot options need the raise.
    pub raise_privilege: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Caps,
    OpenSession,
    Rakp1,
    Rakp3,
    Challenge,
    Activate,
    SetPrivilege,
    Established,
    Closed,
}

/// One IPMI LAN session with a BMC; see the module docs for the call order.
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    v15: bool,
    console_id: u32,
    bmc_id: u32,
    rm: [u8; 16],
    rc: [u8; 16],
    guid: [u8; 16],
    keys: Option<SessionKeys>,
    challenge: [u8; 16],
    seq_out: u32,
    rq_seq: u8,
    tag: u8,
    pending: Option<(u8, u8, u8)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("v15", &self.v15)
            .field("bmc_id", &self.bmc_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session; random numbers come from the thread RNG.
    pub fn new(cfg: SessionConfig) -> Self {
        let mut rng = rand::rng();
        let mut rm = [0u8; 16];
        rng.fill_bytes(&mut rm);
        let console_id = rng.next_u32() | 1;
        Self::with_random(cfg, console_id, rm)
    }

    /// A new session with given random values (for known-answer tests).
    pub fn with_random(cfg: SessionConfig, console_id: u32, rm: [u8; 16]) -> Self {
        let v15 = cfg.version == IpmiVersion::Lan15;
        Self {
            cfg,
            phase: Phase::Caps,
            v15,
            console_id,
            bmc_id: 0,
            rm,
            rc: [0; 16],
            guid: [0; 16],
            keys: None,
            challenge: [0; 16],
            seq_out: 0,
            rq_seq: 0,
            tag: 0,
            pending: None,
        }
    }

    /// Whether the handshake is done and commands may be sent.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Whether the session fell back to (or was configured for) IPMI 1.5.
    pub fn is_v15(&self) -> bool {
        self.v15
    }

    fn after_handshake(&self) -> Phase {
        if self.cfg.raise_privilege {
            Phase::SetPrivilege
        } else {
            Phase::Established
        }
    }

    fn role(&self) -> u8 {
        self.cfg.privilege.code() | 0x10
    }

    fn user16(&self) -> [u8; 16] {
        let mut u = [0u8; 16];
        let b = self.cfg.user.as_bytes();
        let n = b.len().min(16);
        u[..n].copy_from_slice(&b[..n]);
        u
    }

    fn user_bytes(&self) -> &[u8] {
        let b = self.cfg.user.as_bytes();
        &b[..b.len().min(16)]
    }

    /// The handshake datagram to send now, or `None` once established (or closed).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let pre = |netfn, c, data: &[u8]| {
            wire::emit_v15(
                AUTH_NONE,
                0,
                0,
                None,
                &wire::emit_request(netfn, c, 0, data),
            )
        };
        match self.phase {
            Phase::Caps => {
                let channel = if self.v15 { 0x0e } else { 0x8e };
                Some(pre(
                    cmd::NETFN_APP,
                    cmd::GET_CHANNEL_AUTH_CAPS,
                    &[channel, self.cfg.privilege.code()],
                ))
            }
            Phase::OpenSession => {
                let a = self.cfg.suite.algorithms();
                let mut p = vec![self.tag, self.cfg.privilege.code(), 0, 0];
                p.extend_from_slice(&self.console_id.to_le_bytes());
                p.extend_from_slice(&[0, 0, 0, 8, a.auth, 0, 0, 0]);
                p.extend_from_slice(&[1, 0, 0, 8, a.integrity, 0, 0, 0]);
                p.extend_from_slice(&[2, 0, 0, 8, a.confidentiality, 0, 0, 0]);
                Some(wire::emit_v20_head(
                    payload::OPEN_SESSION_REQUEST,
                    false,
                    false,
                    0,
                    0,
                    &p,
                ))
            }
            Phase::Rakp1 => {
                let mut p = vec![self.tag, 0, 0, 0];
                p.extend_from_slice(&self.bmc_id.to_le_bytes());
                p.extend_from_slice(&self.rm);
                p.extend_from_slice(&[self.role(), 0, 0]);
                let user = self.user_bytes().to_vec();
                p.push(u8::try_from(user.len()).unwrap_or(16));
                p.extend_from_slice(&user);
                Some(wire::emit_v20_head(payload::RAKP1, false, false, 0, 0, &p))
            }
            Phase::Rakp3 => {
                let kuid = key_bytes(self.cfg.password.expose());
                let kg = key_bytes(self.cfg.kg.expose());
                let code = self.rakp(&kuid, &kg).rakp3_auth_code();
                let mut p = vec![self.tag, 0, 0, 0];
                p.extend_from_slice(&self.bmc_id.to_le_bytes());
                p.extend_from_slice(&code);
                Some(wire::emit_v20_head(payload::RAKP3, false, false, 0, 0, &p))
            }
            Phase::Challenge => {
                let mut data = vec![AUTH_MD5];
                data.extend_from_slice(&self.user16());
                Some(pre(cmd::NETFN_APP, cmd::GET_SESSION_CHALLENGE, &data))
            }
            Phase::Activate => {
                let mut data = vec![AUTH_MD5, self.cfg.privilege.code()];
                data.extend_from_slice(&self.challenge);
                data.extend_from_slice(&self.console_id.to_le_bytes());
                let msg = wire::emit_request(cmd::NETFN_APP, cmd::ACTIVATE_SESSION, 0, &data);
                let code = md5_auth_code(self.cfg.password.expose(), self.bmc_id, &msg, 0);
                Some(wire::emit_v15(AUTH_MD5, 0, self.bmc_id, Some(&code), &msg))
            }
            Phase::SetPrivilege => {
                if self.pending.is_none() {
                    let p = [self.cfg.privilege.code()];
                    let d = self.request(cmd::NETFN_APP, cmd::SET_SESSION_PRIVILEGE, &p);
                    return Some(d);
                }
                None
            }
            Phase::Established | Phase::Closed => None,
        }
    }

    fn rakp<'k>(&'k self, kuid: &'k [u8], kg: &'k [u8]) -> Rakp<'k> {
        Rakp {
            suite: self.cfg.suite,
            kuid,
            kg,
            console_id: self.console_id,
            bmc_id: self.bmc_id,
            rm: self.rm,
            rc: self.rc,
            guid: self.guid,
            role: self.role(),
            user: self.user_bytes(),
        }
    }

    /// Feeds a datagram received during the handshake. `Ok(true)` if it advanced the
    /// handshake (call [`Session::poll_transmit`] again), `Ok(false)` if it was not for us.
    pub fn handle_datagram(&mut self, buf: &[u8]) -> Result<bool, SessionError> {
        let d = wire::parse(buf).map_err(|e| SessionError::Protocol(e.to_string()))?;
        match (self.phase, d) {
            (Phase::Caps, Datagram::V15 { message, .. }) => {
                let r = pre_response(message, cmd::GET_CHANNEL_AUTH_CAPS)?;
                if r.data.len() < 8 {
                    return Err(SessionError::Protocol(
                        "short Get Channel Authentication Capabilities response".into(),
                    ));
                }
                let extended = r.data[1] & 0x80 != 0;
                let v20 = extended && r.data[3] & 0x02 != 0;
                let md5 = r.data[1] & 0x04 != 0;
                if !self.v15 && !v20 {
                    self.v15 = true;
                }
                if self.v15 {
                    if !md5 {
                        return Err(SessionError::Unsupported(
                            "the BMC offers neither RMCP+ nor IPMI 1.5 MD5 authentication".into(),
                        ));
                    }
                    self.phase = Phase::Challenge;
                } else {
                    self.phase = Phase::OpenSession;
                }
                Ok(true)
            }
            (
                Phase::OpenSession,
                Datagram::V20 {
                    payload_type: payload::OPEN_SESSION_RESPONSE,
                    payload: p,
                    ..
                },
            ) => {
                if p.len() < 2 || p[0] != self.tag {
                    return Ok(false);
                }
                if p[1] != 0 {
                    return Err(rakp_status_error("Open Session", p[1]));
                }
                if p.len() < 36 || u32_le(&p[4..8]) != self.console_id {
                    return Err(SessionError::Protocol(
                        "malformed Open Session Response".into(),
                    ));
                }
                self.bmc_id = u32_le(&p[8..12]);
                let a = self.cfg.suite.algorithms();
                if p[16] != a.auth || p[24] != a.integrity || p[32] != a.confidentiality {
                    return Err(SessionError::Unsupported(format!(
                        "the BMC chose other algorithms than cipher suite {}",
                        self.cfg.suite.id()
                    )));
                }
                self.tag = self.tag.wrapping_add(1);
                self.phase = Phase::Rakp1;
                Ok(true)
            }
            (
                Phase::Rakp1,
                Datagram::V20 {
                    payload_type: payload::RAKP2,
                    payload: p,
                    ..
                },
            ) => {
                if p.len() < 2 || p[0] != self.tag {
                    return Ok(false);
                }
                if p[1] != 0 {
                    return Err(rakp_status_error("RAKP 2", p[1]));
                }
                let n = self.cfg.suite.hash_len();
                if p.len() < 40 + n || u32_le(&p[4..8]) != self.console_id {
                    return Err(SessionError::Protocol("malformed RAKP 2".into()));
                }
                self.rc.copy_from_slice(&p[8..24]);
                self.guid.copy_from_slice(&p[24..40]);
                let kuid = key_bytes(self.cfg.password.expose());
                let kg = key_bytes(self.cfg.kg.expose());
                if self.rakp(&kuid, &kg).rakp2_auth_code() != p[40..40 + n] {
                    return Err(SessionError::Auth(
                        "RAKP 2: the BMC's key exchange code does not match: wrong password".into(),
                    ));
                }
                self.tag = self.tag.wrapping_add(1);
                self.phase = Phase::Rakp3;
                Ok(true)
            }
            (
                Phase::Rakp3,
                Datagram::V20 {
                    payload_type: payload::RAKP4,
                    payload: p,
                    ..
                },
            ) => {
                if p.len() < 2 || p[0] != self.tag {
                    return Ok(false);
                }
                if p[1] != 0 {
                    return Err(rakp_status_error("RAKP 4", p[1]));
                }
                let n = self.cfg.suite.icv_len();
                if p.len() < 8 + n || u32_le(&p[4..8]) != self.console_id {
                    return Err(SessionError::Protocol("malformed RAKP 4".into()));
                }
                let kuid = key_bytes(self.cfg.password.expose());
                let kg = key_bytes(self.cfg.kg.expose());
                let rakp = self.rakp(&kuid, &kg);
                let sik = rakp.sik();
                if rakp.rakp4_icv(&sik) != p[8..8 + n] {
                    return Err(SessionError::Auth(
                        "RAKP 4: integrity check value does not match: wrong Kg".into(),
                    ));
                }
                self.keys = Some(SessionKeys::derive(self.cfg.suite, &sik));
                self.seq_out = 1;
                self.phase = self.after_handshake();
                Ok(true)
            }
            (Phase::Challenge, Datagram::V15 { message, .. }) => {
                let r = pre_response(message, cmd::GET_SESSION_CHALLENGE)?;
                if r.data.len() < 20 {
                    return Err(SessionError::Protocol(
                        "short Get Session Challenge response".into(),
                    ));
                }
                self.bmc_id = u32_le(&r.data[..4]);
                self.challenge.copy_from_slice(&r.data[4..20]);
                self.phase = Phase::Activate;
                Ok(true)
            }
            (Phase::Activate, Datagram::V15 { message, .. }) => {
                let r = pre_response(message, cmd::ACTIVATE_SESSION)?;
                if r.data.len() < 10 {
                    return Err(SessionError::Protocol(
                        "short Activate Session response".into(),
                    ));
                }
                self.bmc_id = u32_le(&r.data[1..5]);
                self.seq_out = u32_le(&r.data[5..9]).max(1);
                self.phase = self.after_handshake();
                Ok(true)
            }
            (Phase::SetPrivilege, _) => match self.handle_response(buf)? {
                None => Ok(false),
                Some(r) if r.completion == 0 => {
                    self.phase = Phase::Established;
                    Ok(true)
                }
                Some(r) => Err(SessionError::Auth(format!(
                    "Set Session Privilege Level {:?} refused: {}",
                    self.cfg.privilege,
                    completion_text(r.completion)
                ))),
            },
            _ => Ok(false),
        }
    }

    /// A request datagram for `netfn`/`cmd` in the session (after the handshake).
    pub fn request(&mut self, netfn: u8, command: u8, data: &[u8]) -> Vec<u8> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        self.pending = Some((netfn | 1, command, self.rq_seq));
        let msg = wire::emit_request(netfn, command, self.rq_seq, data);
        let seq = self.seq_out;
        self.seq_out = self.seq_out.wrapping_add(1).max(1);
        if self.v15 {
            let code = md5_auth_code(self.cfg.password.expose(), self.bmc_id, &msg, seq);
            return wire::emit_v15(AUTH_MD5, seq, self.bmc_id, Some(&code), &msg);
        }
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let mut iv = [0u8; 16];
        rand::rng().fill_bytes(&mut iv);
        let body = keys.encrypt(iv, &msg);
        let mut d = wire::emit_v20_head(payload::IPMI, true, true, self.bmc_id, seq, &body);
        let pad = (4 - (d.len() - 4 + 2) % 4) % 4;
        d.extend(std::iter::repeat_n(0xff, pad));
        d.push(u8::try_from(pad).unwrap_or(0));
        d.push(0x07);
        let code = keys.integrity(&d[4..]);
        d.extend_from_slice(&code);
        d
    }

    /// Checks and decodes a response to the pending request. `Ok(None)` if the datagram is
    /// not the answer to it (a late duplicate, another session's).
    pub fn handle_response(&mut self, buf: &[u8]) -> Result<Option<Response>, SessionError> {
        let Some((netfn, command, rq_seq)) = self.pending else {
            return Ok(None);
        };
        let d = wire::parse(buf).map_err(|e| SessionError::Protocol(e.to_string()))?;
        let message = match d {
            Datagram::V15 {
                message,
                session_id,
                auth_type,
                auth_code,
                seq,
            } => {
                if !self.v15 {
                    return Ok(None);
                }
                if auth_type == AUTH_MD5 {
                    let want = md5_auth_code(self.cfg.password.expose(), session_id, message, seq);
                    if auth_code != Some(want) {
                        return Err(SessionError::Protocol(
                            "response MD5 auth code does not match".into(),
                        ));
                    }
                }
                message.to_vec()
            }
            Datagram::V20 {
                payload_type: payload::IPMI,
                encrypted,
                authenticated,
                session_id,
                payload,
                trailer,
                signed,
                ..
            } => {
                let Some(keys) = &self.keys else {
                    return Ok(None);
                };
                if session_id != self.console_id {
                    return Ok(None);
                }
                if !authenticated {
                    return Err(SessionError::Protocol(
                        "unauthenticated response in session".into(),
                    ));
                }
                let n = self.cfg.suite.icv_len();
                if trailer.len() < n + 2 {
                    return Err(SessionError::Protocol("short integrity trailer".into()));
                }
                let (covered, code) = signed.split_at(signed.len() - n);
                if keys.integrity(covered) != code {
                    return Err(SessionError::Protocol(
                        "response integrity check failed".into(),
                    ));
                }
                if encrypted {
                    keys.decrypt(payload).ok_or_else(|| {
                        SessionError::Protocol("response payload does not decrypt".into())
                    })?
                } else {
                    payload.to_vec()
                }
            }
            Datagram::V20 { .. } => return Ok(None),
        };
        let r =
            wire::parse_response(&message).map_err(|e| SessionError::Protocol(e.to_string()))?;
        if r.netfn != netfn || r.cmd != command || r.rq_seq != rq_seq {
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(r))
    }

    /// The Close Session request (send it once; the answer does not matter).
    pub fn close(&mut self) -> Option<Vec<u8>> {
        if self.phase != Phase::Established {
            return None;
        }
        let id = self.bmc_id.to_le_bytes();
        let d = self.request(cmd::NETFN_APP, cmd::CLOSE_SESSION, &id);
        self.phase = Phase::Closed;
        Some(d)
    }
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn pre_response(message: &[u8], command: u8) -> Result<Response, SessionError> {
    let r = wire::parse_response(message).map_err(|e| SessionError::Protocol(e.to_string()))?;
    if r.cmd != command {
        return Err(SessionError::Protocol(format!(
            "expected a response to command {command:#04x}, got {:#04x}",
            r.cmd
        )));
    }
    match r.completion {
        0 => Ok(r),
        0x81 | 0x82 | 0x86 => Err(SessionError::Auth(format!(
            "command {command:#04x}: {}",
            completion_text(r.completion)
        ))),
        code => Err(SessionError::Completion { code }),
    }
}
