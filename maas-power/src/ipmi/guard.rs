//! The guard between `ipmi-rs` and a BMC: a sans-IO filter that sees every datagram of an
//! `ipmi-rs` RMCP+ session and lets a BMC's datagram through only when `ipmi-rs` can take
//! it without reaching one of its panics.
//!
//! `ipmi-rs` 0.6 owns its UDP socket, so the driver points it at a relay on the loopback
//! interface and the relay asks this guard about every datagram. What `ipmi-rs` would do
//! with a BMC's datagram, and what the guard does instead:
//!
//! - an ASF pong whose length byte claims 16 bytes of data but carries fewer: `ipmi-rs`
//!   slices out of bounds. The guard refuses truncated pongs.
//! - an Open Session Response choosing other algorithms than cipher suite 3's (a BMC may
//!   answer with HMAC-SHA256 integrity, HMAC-MD5, MD5-128 or xRC4): `ipmi-rs` accepts them
//!   and later reaches `todo!()` when it signs, checks or encrypts. The guard refuses any
//!   choice other than RAKP-HMAC-SHA1, HMAC-SHA1-96 and AES-CBC-128.
//! - a RAKP message 4 datagram that is not a well-formed unauthenticated RMCP+ datagram:
//!   `ipmi-rs` unwraps its decoding. The guard lets through only exact ones.
//! - an encrypted response whose payload is not an IV followed by whole AES blocks:
//!   `ipmi-rs` unwraps the decryption once the integrity check passed. The guard refuses
//!   such lengths before `ipmi-rs` checks anything.
//! - a Get Channel Authentication Capabilities answer without IPMI 2.0: `ipmi-rs` would
//!   fall back to its IPMI 1.5 session, which fails against real BMCs (it rejects the
//!   Activate Session answer's auth code). The guard stops there with [`Verdict::NoRmcpPlus`]
//!   and the driver uses its own IPMI 1.5 session.
//!
//! The guard also records what `ipmi-rs` hides: the BMC's session id (for Close Session)
//! and the RMCP+ status code of a refused handshake (for an error a person can act on).

use super::wire::{self, Datagram, payload};

/// What the relay does with a datagram from the BMC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to `ipmi-rs`: it is the answer it waits for, in a form it handles.
    Forward,
    /// Ignore it (not an answer to the pending request: a late duplicate, a stray).
    Drop,
    /// Stop the session: `ipmi-rs` must not see this; the reason is for the error.
    Refuse(String),
    /// The BMC has no RMCP+: use the driver's own IPMI 1.5 session instead.
    NoRmcpPlus,
}

/// The answer the guard waits for, set by the last datagram `ipmi-rs` sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing was sent yet, or the last datagram needs no answer.
    Nothing,
    /// An ASF pong to the presence ping.
    Pong,
    /// An IPMI 1.5-format answer (Get Channel Authentication Capabilities before a session).
    V15 {
        /// The request was Get Channel Authentication Capabilities.
        caps: bool,
    },
    /// RMCP+ Open Session Response.
    OpenSession,
    /// RAKP message 2.
    Rakp2,
    /// RAKP message 4.
    Rakp4,
    /// An authenticated, encrypted IPMI response inside the session.
    InSession,
}

/// The RMCP+ stage whose status code the BMC refused, and the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// "Open Session", "RAKP 2" or "RAKP 4".
    pub stage: &'static str,
    /// The RMCP+ status code.
    pub status: u8,
}

/// The guard of one `ipmi-rs` session; see the module documentation.
#[derive(Clone, Debug)]
pub struct Guard {
    expect: Expect,
    bmc_session_id: Option<u32>,
    refusal: Option<Refusal>,
}

impl Default for Guard {
    fn default() -> Self {
        Self::new()
    }
}

const ASF_CLASS: u8 = 0x06;
const IPMI_CLASS: u8 = 0x07;
const ASF_IANA: [u8; 4] = 4542u32.to_be_bytes();
/// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128: cipher suite 3, what `ipmi-rs` asks for.
const SUITE3: [u8; 3] = [0x01, 0x01, 0x01];

impl Guard {
    /// A guard for a new session.
    pub fn new() -> Self {
        Self {
            expect: Expect::Nothing,
            bmc_session_id: None,
            refusal: None,
        }
    }

    /// The answer being waited for.
    pub fn expect(&self) -> Expect {
        self.expect
    }

    /// The BMC's session id, once its Open Session Response was seen.
    pub fn bmc_session_id(&self) -> Option<u32> {
        self.bmc_session_id
    }

    /// The status code with which the BMC refused the handshake, if it did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }

    /// Notes a datagram `ipmi-rs` sends to the BMC. `Err` if it is not one the guard knows
    /// (it is then not sent).
    pub fn outbound(&mut self, d: &[u8]) -> Result<(), String> {
        let class = d.get(3).map(|c| c & 0x7f);
        self.expect = match (class, d.get(4)) {
            (Some(ASF_CLASS), _) => Expect::Pong,
            (Some(IPMI_CLASS), Some(&wire::AUTH_RMCP_PLUS)) => {
                let pt = d.get(5).map_or(0xff, |p| p & 0x3f);
                match pt {
                    payload::OPEN_SESSION_REQUEST => Expect::OpenSession,
                    payload::RAKP1 => Expect::Rakp2,
                    // A RAKP 3 with a non-zero status tells the BMC we give up: no answer.
                    payload::RAKP3 if d.get(17).is_some_and(|s| *s != 0) => Expect::Nothing,
                    payload::RAKP3 => Expect::Rakp4,
                    payload::IPMI => Expect::InSession,
                    _ => return Err(format!("unexpected RMCP+ payload type {pt:#04x}")),
                }
            }
            (Some(IPMI_CLASS), Some(_)) => {
                let caps = matches!(wire::parse(d), Ok(Datagram::V15 { message, .. })
                    if message.get(5) == Some(&super::session::cmd::GET_CHANNEL_AUTH_CAPS));
                Expect::V15 { caps }
            }
            _ => return Err("a datagram that is neither ASF nor IPMI".into()),
        };
        Ok(())
    }

    /// Judges a datagram from the BMC against the pending request.
    pub fn inbound(&mut self, d: &[u8]) -> Verdict {
        if d.len() < 4 || d[0] != 0x06 {
            return Verdict::Drop;
        }
        let class = d[3] & 0x7f;
        let verdict = match self.expect {
            Expect::Nothing => Verdict::Drop,
            Expect::Pong => pong(d, class),
            _ if class != IPMI_CLASS => Verdict::Drop,
            Expect::V15 { caps } => self.v15(d, caps),
            Expect::OpenSession => self.open_session(d),
            Expect::Rakp2 => self.handshake(d, payload::RAKP2, "RAKP 2", 1),
            Expect::Rakp4 => self.handshake(d, payload::RAKP4, "RAKP 4", 1),
            Expect::InSession => in_session(d),
        };
        if verdict == Verdict::Forward {
            self.expect = Expect::Nothing;
        }
        verdict
    }

    fn v15(&mut self, d: &[u8], caps: bool) -> Verdict {
        let Ok(Datagram::V15 { message, .. }) = wire::parse(d) else {
            return Verdict::Drop;
        };
        let Ok(r) = wire::parse_response(message) else {
            return Verdict::Refuse("malformed IPMI 1.5 response".into());
        };
        if caps && r.completion == 0 {
            let v2 = r.data.len() >= 8 && r.data[1] & 0x80 != 0 && r.data[3] & 0x02 != 0;
            if !v2 {
                return Verdict::NoRmcpPlus;
            }
        }
        Verdict::Forward
    }

    /// An unauthenticated RMCP+ handshake datagram of type `want`, exactly as long as its
    /// length field says (what `ipmi-rs` decodes without a key).
    fn handshake(&mut self, d: &[u8], want: u8, stage: &'static str, status_at: usize) -> Verdict {
        let Some((pt, p)) = plain_rmcp_plus(d) else {
            return Verdict::Drop;
        };
        if pt != want {
            return Verdict::Drop;
        }
        let Some(p) = p else {
            return Verdict::Refuse(format!("malformed {stage} datagram"));
        };
        if let Some(&status) = p.get(status_at)
            && status != 0
        {
            self.refusal = Some(Refusal { stage, status });
        }
        Verdict::Forward
    }

    fn open_session(&mut self, d: &[u8]) -> Verdict {
        let v = self.handshake(d, payload::OPEN_SESSION_RESPONSE, "Open Session", 1);
        if v != Verdict::Forward || self.refusal.is_some() {
            return v;
        }
        let Some((_, Some(p))) = plain_rmcp_plus(d) else {
            return Verdict::Refuse("malformed Open Session Response".into());
        };
        if p.len() != 36 {
            return Verdict::Refuse("malformed Open Session Response".into());
        }
        let chosen = [p[16], p[24], p[32]];
        let records = [(12, 0x00), (20, 0x01), (28, 0x02)];
        if chosen != SUITE3
            || records
                .iter()
                .any(|&(at, ty)| p[at] != ty || p[at + 3] != 8)
        {
            return Verdict::Refuse(format!(
                "the BMC chose algorithms other than cipher suite 3's (authentication \
                 {:#04x}, integrity {:#04x}, confidentiality {:#04x})",
                chosen[0], chosen[1], chosen[2]
            ));
        }
        self.bmc_session_id = Some(u32::from_le_bytes([p[8], p[9], p[10], p[11]]));
        Verdict::Forward
    }
}

/// An ASF pong with all 16 bytes of its data.
fn pong(d: &[u8], class: u8) -> Verdict {
    if class != ASF_CLASS {
        return Verdict::Drop;
    }
    let a = &d[4..];
    if a.len() < 8 || a[..4] != ASF_IANA || a[4] != 0x40 {
        return Verdict::Drop;
    }
    if a[6] != 0 || a[7] != 0x10 || a.len() < 8 + 16 {
        return Verdict::Refuse("malformed ASF pong".into());
    }
    Verdict::Forward
}

/// The payload type and, when the datagram is an exact unauthenticated one, its payload.
fn plain_rmcp_plus(d: &[u8]) -> Option<(u8, Option<&[u8]>)> {
    let rest = d.get(4..)?;
    if rest.len() < 12 || rest[0] != wire::AUTH_RMCP_PLUS {
        return None;
    }
    let pt = rest[1];
    let len = usize::from(u16::from_le_bytes([rest[10], rest[11]]));
    let exact = pt & 0xc0 == 0 && rest.len() == 12 + len;
    Some((pt & 0x3f, exact.then(|| &rest[12..])))
}

/// An authenticated, encrypted IPMI message whose payload is an IV and whole AES blocks.
fn in_session(d: &[u8]) -> Verdict {
    let Some(rest) = d.get(4..) else {
        return Verdict::Drop;
    };
    if rest.len() < 12 || rest[0] != wire::AUTH_RMCP_PLUS {
        return Verdict::Drop;
    }
    let pt = rest[1];
    if pt & 0x3f != payload::IPMI {
        return Verdict::Drop;
    }
    if pt & 0xc0 != 0xc0 {
        return Verdict::Refuse("an unauthenticated or unencrypted response in the session".into());
    }
    let len = usize::from(u16::from_le_bytes([rest[10], rest[11]]));
    if len < 32 || len % 16 != 0 || rest.len() < 12 + len {
        return Verdict::Refuse(format!(
            "an encrypted payload of {len} bytes is not an IV and whole AES blocks"
        ));
    }
    Verdict::Forward
}

/// The one-byte datagram the relay sends `ipmi-rs` to end its wait at once: too short for
/// an RMCP header, it fails every receive of `ipmi-rs` cleanly.
pub const POISON: [u8; 1] = [0];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::wire::{RMCP_HEADER, emit_v20_head};

    fn ping() -> Vec<u8> {
        let mut d = vec![0x06, 0x00, 0xff, 0x06];
        d.extend_from_slice(&ASF_IANA);
        d.extend_from_slice(&[0x80, 0xc8, 0x00, 0x00]);
        d
    }

    fn pong_bytes(data_len: usize) -> Vec<u8> {
        let mut d = vec![0x06, 0x00, 0xff, 0x06];
        d.extend_from_slice(&ASF_IANA);
        d.extend_from_slice(&[0x40, 0xc8, 0x00, 0x10]);
        d.extend(std::iter::repeat_n(0x81, data_len));
        d
    }

    fn open_response(algorithms: [u8; 3]) -> Vec<u8> {
        let mut p = vec![0, 0, 4, 0, 1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11];
        for (ty, a) in algorithms.iter().enumerate() {
            p.extend_from_slice(&[u8::try_from(ty).unwrap(), 0, 0, 8, *a, 0, 0, 0]);
        }
        emit_v20_head(payload::OPEN_SESSION_RESPONSE, false, false, 0, 0, &p)
    }

    fn open_request() -> Vec<u8> {
        emit_v20_head(payload::OPEN_SESSION_REQUEST, false, false, 0, 0, &[0; 32])
    }

    #[test]
    fn truncated_pong_is_refused() {
        let mut g = Guard::new();
        g.outbound(&ping()).unwrap();
        for n in 0..16 {
            assert!(
                matches!(g.inbound(&pong_bytes(n)), Verdict::Refuse(_)),
                "{n}"
            );
        }
        assert_eq!(g.inbound(&pong_bytes(16)), Verdict::Forward);
    }

    #[test]
    fn only_suite_3_algorithms_pass() {
        for bad in [
            [1, 4, 1],
            [3, 1, 1],
            [1, 1, 2],
            [1, 2, 1],
            [1, 1, 0],
            [0, 0, 0],
        ] {
            let mut g = Guard::new();
            g.outbound(&open_request()).unwrap();
            assert!(
                matches!(g.inbound(&open_response(bad)), Verdict::Refuse(_)),
                "{bad:?}"
            );
        }
        let mut g = Guard::new();
        g.outbound(&open_request()).unwrap();
        assert_eq!(g.inbound(&open_response(SUITE3)), Verdict::Forward);
        assert_eq!(g.bmc_session_id(), Some(0x1122_3344));
        // A second answer to the same request is a duplicate.
        assert_eq!(g.inbound(&open_response(SUITE3)), Verdict::Drop);
    }

    #[test]
    fn refused_handshake_status_is_recorded() {
        let mut g = Guard::new();
        g.outbound(&open_request()).unwrap();
        let d = emit_v20_head(
            payload::OPEN_SESSION_RESPONSE,
            false,
            false,
            0,
            0,
            &[0, 0x11],
        );
        assert_eq!(g.inbound(&d), Verdict::Forward);
        assert_eq!(
            g.refusal(),
            Some(Refusal {
                stage: "Open Session",
                status: 0x11
            })
        );
    }

    #[test]
    fn rakp4_must_be_exact() {
        let rakp3 = emit_v20_head(payload::RAKP3, false, false, 0, 0, &[0; 28]);
        let good = emit_v20_head(payload::RAKP4, false, false, 0, 0, &[0; 20]);
        let mut g = Guard::new();
        g.outbound(&rakp3).unwrap();
        // Authenticated bit, extra trailing bytes, a short length field: refused.
        let mut authed = good.clone();
        authed[5] |= 0x40;
        assert!(matches!(g.inbound(&authed), Verdict::Refuse(_)));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(g.inbound(&long), Verdict::Refuse(_)));
        assert_eq!(g.inbound(&good[..15]), Verdict::Drop);
        assert_eq!(g.inbound(&good), Verdict::Forward);
        // A RAKP 3 that reports failure expects no answer.
        let mut failed = rakp3.clone();
        failed[17] = 0x0f;
        g.outbound(&failed).unwrap();
        assert_eq!(g.expect(), Expect::Nothing);
    }

    #[test]
    fn encrypted_payload_must_be_whole_blocks() {
        let request = emit_v20_head(payload::IPMI, true, true, 1, 1, &[0; 32]);
        for (len, ok) in [
            (32, true),
            (48, true),
            (33, false),
            (16, false),
            (40, false),
        ] {
            let mut g = Guard::new();
            g.outbound(&request).unwrap();
            let mut d = emit_v20_head(payload::IPMI, true, true, 1, 1, &vec![0; len]);
            d.extend_from_slice(&[0xff, 0xff, 0x02, 0x07]);
            d.extend_from_slice(&[0; 12]);
            assert_eq!(g.inbound(&d) == Verdict::Forward, ok, "{len}");
        }
    }

    #[test]
    fn caps_without_ipmi_2_hands_over_to_ipmi_15() {
        let req = wire::emit_v15(
            0,
            0,
            0,
            None,
            &wire::emit_request(0x06, 0x38, 0, &[0x0e, 0x04]),
        );
        let answer = |data: Vec<u8>| {
            let r = wire::Response {
                netfn: 0x07,
                cmd: 0x38,
                rq_seq: 0,
                completion: 0,
                data,
            };
            wire::emit_v15(0, 0, 0, None, &wire::emit_response(&r))
        };
        let mut g = Guard::new();
        g.outbound(&req).unwrap();
        assert_eq!(g.expect(), Expect::V15 { caps: true });
        assert_eq!(
            g.inbound(&answer(vec![1, 0x04, 0, 0, 0, 0, 0, 0])),
            Verdict::NoRmcpPlus
        );
        assert_eq!(
            g.inbound(&answer(vec![1, 0x84, 0, 0x03, 0, 0, 0, 0])),
            Verdict::Forward
        );
    }

    #[test]
    fn poison_is_not_an_rmcp_datagram() {
        assert!(POISON.len() < RMCP_HEADER.len());
        assert!(wire::parse(&POISON).is_err());
    }
}
