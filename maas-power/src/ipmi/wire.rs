//! IPMI over LAN wire formats: the RMCP header, IPMI 1.5 and 2.0 (RMCP+) session headers and
//! IPMI request/response messages. Parsing is checked and never panics.

/// The RMCP header of every IPMI datagram: version 6, no ack, class IPMI.
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// Session authentication type / format byte of IPMI 2.0 (RMCP+).
pub const AUTH_RMCP_PLUS: u8 = 0x06;
/// IPMI 1.5 authentication type: none.
pub const AUTH_NONE: u8 = 0x00;
/// IPMI 1.5 authentication type: MD5.
pub const AUTH_MD5: u8 = 0x02;
/// The BMC's slave address.
pub const BMC_ADDR: u8 = 0x20;
/// Our software id as requester.
pub const CONSOLE_ADDR: u8 = 0x81;

/// A datagram could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its headers or declared lengths.
    #[error("truncated IPMI datagram: {0}")]
    Truncated(&'static str),
    /// Not an RMCP IPMI datagram.
    #[error("not an RMCP IPMI datagram (header {0:02x?})")]
    NotIpmi([u8; 4]),
    /// An IPMI message checksum is wrong.
    #[error("IPMI message {0} checksum mismatch")]
    Checksum(&'static str),
    /// A field has a value the protocol does not allow.
    #[error("invalid IPMI datagram: {0}")]
    Invalid(&'static str),
}

/// RMCP+ payload types.
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP message 4.
    pub const RAKP4: u8 = 0x15;
}

/// A decoded IPMI LAN datagram (the payload still encrypted if it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// IPMI 1.5 session (also used for pre-session messages).
    V15 {
        /// Authentication type.
        auth_type: u8,
        /// Session sequence number.
        seq: u32,
        /// Session id.
        session_id: u32,
        /// The 16-byte auth code when `auth_type` is not none.
        auth_code: Option<[u8; 16]>,
        /// The IPMI message.
        message: &'a [u8],
    },
    /// IPMI 2.0 (RMCP+) session.
    V20 {
        /// Payload type (low 6 bits).
        payload_type: u8,
        /// The payload is encrypted.
        encrypted: bool,
        /// The packet carries an integrity trailer.
        authenticated: bool,
        /// Session id (the receiver's).
        session_id: u32,
        /// Session sequence number.
        seq: u32,
        /// The payload.
        payload: &'a [u8],
        /// What follows the payload (integrity pad, pad length, next header, auth code).
        trailer: &'a [u8],
        /// The bytes the integrity code covers (session header through next header), when
        /// `authenticated`, as the whole datagram minus RMCP header; split by the session.
        signed: &'a [u8],
    },
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one datagram.
pub fn parse(buf: &[u8]) -> Result<Datagram<'_>, WireError> {
    let Some(header) = buf.get(..4) else {
        return Err(WireError::Truncated("RMCP header"));
    };
    if header[0] != 0x06 || header[3] & 0x1f != 0x07 {
        return Err(WireError::NotIpmi([
            header[0], header[1], header[2], header[3],
        ]));
    }
    let rest = &buf[4..];
    let auth = *rest.first().ok_or(WireError::Truncated("session header"))?;
    if auth == AUTH_RMCP_PLUS {
        if rest.len() < 12 {
            return Err(WireError::Truncated("RMCP+ session header"));
        }
        let pt = rest[1];
        let session_id = u32_le(&rest[2..6]);
        let seq = u32_le(&rest[6..10]);
        let len = usize::from(u16::from_le_bytes([rest[10], rest[11]]));
        if pt & 0x3f == 0x02 {
            return Err(WireError::Invalid(
                "OEM explicit payloads are not supported",
            ));
        }
        let payload = rest
            .get(12..12 + len)
            .ok_or(WireError::Truncated("RMCP+ payload"))?;
        let trailer = &rest[12 + len..];
        Ok(Datagram::V20 {
            payload_type: pt & 0x3f,
            encrypted: pt & 0x80 != 0,
            authenticated: pt & 0x40 != 0,
            session_id,
            seq,
            payload,
            trailer,
            signed: rest,
        })
    } else {
        if rest.len() < 9 {
            return Err(WireError::Truncated("IPMI 1.5 session header"));
        }
        let seq = u32_le(&rest[1..5]);
        let session_id = u32_le(&rest[5..9]);
        let (auth_code, at) = if auth == AUTH_NONE {
            (None, 9)
        } else {
            let code = rest
                .get(9..25)
                .ok_or(WireError::Truncated("IPMI 1.5 auth code"))?;
            let mut c = [0u8; 16];
            c.copy_from_slice(code);
            (Some(c), 25)
        };
        let len = usize::from(*rest.get(at).ok_or(WireError::Truncated("message length"))?);
        let message = rest
            .get(at + 1..at + 1 + len)
            .ok_or(WireError::Truncated("IPMI 1.5 message"))?;
        Ok(Datagram::V15 {
            auth_type: auth,
            seq,
            session_id,
            auth_code,
            message,
        })
    }
}

/// Encodes an IPMI 1.5 datagram around `message`.
pub fn emit_v15(
    auth_type: u8,
    seq: u32,
    session_id: u32,
    auth_code: Option<&[u8; 16]>,
    message: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(30 + message.len());
    out.extend_from_slice(&RMCP_HEADER);
    out.push(auth_type);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&session_id.to_le_bytes());
    if let Some(code) = auth_code {
        out.extend_from_slice(code);
    }
    // Message length is one byte: IPMI messages on LAN are far shorter than 255 bytes.
    out.push(u8::try_from(message.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(message);
    out
}

/// Encodes the RMCP+ header and payload (no trailer): `RMCP | 0x06 | type | id | seq | len | payload`.
pub fn emit_v20_head(
    payload_type: u8,
    encrypted: bool,
    authenticated: bool,
    session_id: u32,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + payload.len());
    out.extend_from_slice(&RMCP_HEADER);
    out.push(AUTH_RMCP_PLUS);
    out.push(
        payload_type & 0x3f
            | if encrypted { 0x80 } else { 0 }
            | if authenticated { 0x40 } else { 0 },
    );
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Encodes an IPMI request message to the BMC.
pub fn emit_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(7 + data.len());
    m.push(BMC_ADDR);
    m.push(netfn << 2);
    m.push(checksum(&m[..2]));
    m.push(CONSOLE_ADDR);
    m.push((rq_seq & 0x3f) << 2);
    m.push(cmd);
    m.extend_from_slice(data);
    let c = checksum(&m[3..]);
    m.push(c);
    m
}

/// An IPMI response message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Network function (odd: the response form).
    pub netfn: u8,
    /// Command.
    pub cmd: u8,
    /// The requester's sequence number it answers.
    pub rq_seq: u8,
    /// Completion code (0 = success).
    pub completion: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

/// Decodes an IPMI response message, checking both checksums.
pub fn parse_response(m: &[u8]) -> Result<Response, WireError> {
    if m.len() < 8 {
        return Err(WireError::Truncated("IPMI response message"));
    }
    if checksum(&m[..2]) != m[2] {
        return Err(WireError::Checksum("header"));
    }
    let last = m.len() - 1;
    if checksum(&m[3..last]) != m[last] {
        return Err(WireError::Checksum("body"));
    }
    let netfn = m[1] >> 2;
    if netfn & 1 == 0 {
        return Err(WireError::Invalid(
            "a request where a response was expected",
        ));
    }
    Ok(Response {
        netfn,
        cmd: m[5],
        rq_seq: m[4] >> 2,
        completion: m[6],
        data: m[7..last].to_vec(),
    })
}

/// Encodes a response message (for tests and fuzzing round trips).
pub fn emit_response(r: &Response) -> Vec<u8> {
    let mut m = vec![CONSOLE_ADDR, r.netfn << 2];
    m.push(checksum(&m[..2]));
    m.push(BMC_ADDR);
    m.push((r.rq_seq & 0x3f) << 2);
    m.push(r.cmd);
    m.push(r.completion);
    m.extend_from_slice(&r.data);
    let c = checksum(&m[3..]);
    m.push(c);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksums() {
        // Get Channel Authentication Capabilities, as ipmitool sends it.
        let m = emit_request(0x06, 0x38, 0, &[0x8e, 0x04]);
        assert_eq!(m, [0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5]);
    }

    #[test]
    fn response_round_trip() {
        let r = Response {
            netfn: 0x01,
            cmd: 0x01,
            rq_seq: 5,
            completion: 0,
            data: vec![0x01, 0x00, 0x00],
        };
        assert_eq!(parse_response(&emit_response(&r)).unwrap(), r);
    }

    #[test]
    fn v15_round_trip() {
        let msg = emit_request(0x06, 0x38, 1, &[0x0e, 0x04]);
        let d = emit_v15(AUTH_MD5, 7, 0x1234, Some(&[9; 16]), &msg);
        match parse(&d).unwrap() {
            Datagram::V15 {
                auth_type,
                seq,
                session_id,
                auth_code,
                message,
            } => {
                assert_eq!((auth_type, seq, session_id), (AUTH_MD5, 7, 0x1234));
                assert_eq!(auth_code, Some([9; 16]));
                assert_eq!(message, &msg[..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncations_are_errors() {
        let d = emit_v20_head(payload::IPMI, false, false, 1, 2, &[1, 2, 3, 4]);
        for n in 0..d.len() {
            assert!(parse(&d[..n]).is_err(), "prefix {n}");
        }
        assert!(parse(&d).is_ok());
    }
}
