//! Request checks: target, framing (request smuggling), size limits, loops and the headers
//! sent upstream. Does no I/O.
//!
//! The server parses requests with hyper and passes the head to [`check`]; [`parse_head`]
//! parses raw bytes with `httparse` under the same limits, for embedders with their own
//! transport and for fuzzing the whole path.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

use crate::acl::{Acl, Kind};
use crate::error::Refusal;

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The largest request head, request line included, in bytes.
    pub max_head_bytes: usize,
    /// The most header fields in one request.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Where a checked request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Tunnel or plain HTTP.
    pub kind: Kind,
    /// The host name or address literal, without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
    /// For HTTP, the absolute URI (normalised: no fragment, lower-case scheme and host).
    pub uri: Uri,
}

/// A request that passed the checks: where it goes and the fields to send there.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Where it goes.
    pub target: Target,
    /// The request fields for upstream: hop-by-hop fields, `Proxy-*` credentials and
    /// `X-Forwarded-For` removed, our `Via` appended.
    pub headers: HeaderMap,
}

/// The hop-by-hop fields (RFC 9110 section 7.6.1) never forwarded.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Checks a request head: the target form, the framing, our `Via` token for loops, and the
/// client's port and ACL rules. `via` is this proxy's pseudonym (e.g. `maas-proxy`).
pub fn check(
    acl: &Acl,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    via: &str,
) -> Result<Checked, Refusal> {
    check_framing(headers)?;
    check_loop(headers, via)?;
    let target = target(method, uri)?;
    acl.check_port(target.kind, target.port)?;
    if let Ok(ip) = target.host.parse::<std::net::IpAddr>() {
        acl.check_destination(ip)?;
    }
    let mut out = forward_headers(headers);
    let proto = match version {
        Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{proto} {via}")) {
        out.append(header::VIA, v);
    }
    Ok(Checked {
        target,
        headers: out,
    })
}

/// Refuses request smuggling: Transfer-Encoding together with Content-Length, a
/// Transfer-Encoding other than one final `chunked`, and repeated or non-numeric
/// Content-Length fields.
pub fn check_framing(headers: &HeaderMap) -> Result<(), Refusal> {
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err(Refusal::TransferEncodingAndLength);
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        if codings.len() != 1 || codings[0] != "chunked" {
            return Err(Refusal::BadTransferEncoding(codings.join(", ")));
        }
    }
    match cl.as_slice() {
        [] => Ok(()),
        [one] => {
            let s = one.to_str().map_err(|_| Refusal::BadContentLength)?;
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok() {
                Ok(())
            } else {
                Err(Refusal::BadContentLength)
            }
        }
        _ => Err(Refusal::BadContentLength),
    }
}

/// Refuses a request whose `Via` already names `via`.
pub fn check_loop(headers: &HeaderMap, via: &str) -> Result<(), Refusal> {
    for value in headers.get_all(header::VIA) {
        let text = String::from_utf8_lossy(value.as_bytes());
        for hop in text.split(',') {
            // received-protocol received-by [comment]
            let by = hop.split_whitespace().nth(1).unwrap_or_default();
            if by.eq_ignore_ascii_case(via) {
                return Err(Refusal::Loop(via.to_string()));
            }
        }
    }
    Ok(())
}

/// The target of a proxy request: `CONNECT host:port`, or an absolute `http://` URI.
pub fn target(method: &Method, uri: &Uri) -> Result<Target, Refusal> {
    let bad = || Refusal::BadTarget(uri.to_string());
    if method == Method::CONNECT {
        let auth = uri.authority().ok_or_else(bad)?;
        if uri.scheme().is_some() || auth.as_str().contains('@') {
            return Err(bad());
        }
        let port = auth.port_u16().ok_or_else(bad)?;
        return Ok(Target {
            kind: Kind::Connect,
            host: host_of(auth.host()).ok_or_else(bad)?,
            port,
            uri: uri.clone(),
        });
    }
    if method == Method::TRACE || method.as_str().is_empty() {
        return Err(Refusal::Method(method.to_string()));
    }
    if uri.scheme_str().map(str::to_ascii_lowercase).as_deref() != Some("http") {
        return Err(bad());
    }
    let auth = uri.authority().ok_or_else(bad)?;
    if auth.as_str().contains('@') {
        return Err(bad());
    }
    let host = host_of(auth.host()).ok_or_else(bad)?;
    let port = auth.port_u16().unwrap_or(80);
    // Already in normal form (the usual case): kept as it is, without a copy.
    let canonical_port = auth
        .port()
        .is_none_or(|p| port != 80 && !p.as_str().starts_with('0'));
    if uri.scheme_str() == Some("http")
        && canonical_port
        && !auth.host().bytes().any(|b| b.is_ascii_uppercase())
        && uri
            .path_and_query()
            .is_some_and(|p| p.as_str().starts_with('/'))
    {
        return Ok(Target {
            kind: Kind::Http,
            host,
            port,
            uri: uri.clone(),
        });
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let text = if port == 80 {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}:{port}{path}")
    };
    let uri = text.parse::<Uri>().map_err(|_| bad())?;
    Ok(Target {
        kind: Kind::Http,
        host,
        port,
        uri,
    })
}

fn host_of(host: &str) -> Option<String> {
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if h.is_empty()
        || h.bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'/' || b == b'\\')
    {
        None
    } else {
        Some(h)
    }
}

/// The fields to send upstream: hop-by-hop fields (and those `Connection` names), proxy
/// credentials and `X-Forwarded-For` removed.
pub fn forward_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    strip_hop_by_hop(&mut out);
    out.remove(HeaderName::from_static("x-forwarded-for"));
    out
}

/// [`HOP_BY_HOP`] as header names (no name parsing per request).
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes the hop-by-hop fields, and every field a `Connection` field names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let proxy_connection = &HOP_BY_HOP_NAMES[1];
    if headers.contains_key(header::CONNECTION) || headers.contains_key(proxy_connection) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .chain(headers.get_all(proxy_connection).iter())
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP_NAMES {
        headers.remove(name);
    }
}

/// A request head parsed from bytes.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The fields.
    pub headers: HeaderMap,
    /// The head's length in bytes (where the body starts).
    pub len: usize,
}

/// Parses a request head from `bytes` under `limits`. `Ok(None)`: incomplete, read more (an
/// incomplete head already longer than the limit is refused).
pub fn parse_head(bytes: &[u8], limits: &Limits) -> Result<Option<Head>, Refusal> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut fields);
    let status = match req.parse(bytes) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::HeadersTooLarge(limits.max_head_bytes));
        }
        Err(e) => return Err(Refusal::Malformed(e.to_string())),
    };
    let len = match status {
        httparse::Status::Complete(len) if len <= limits.max_head_bytes => len,
        httparse::Status::Partial if bytes.len() <= limits.max_head_bytes => return Ok(None),
        _ => return Err(Refusal::HeadersTooLarge(limits.max_head_bytes)),
    };
    let malformed = |what: &str| Refusal::Malformed(what.to_string());
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| malformed("method"))?;
    let uri = req
        .path
        .unwrap_or_default()
        .parse::<Uri>()
        .map_err(|_| malformed("request target"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for f in req.headers.iter() {
        let name =
            HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| malformed("field name"))?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| malformed("field value"))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        method,
        uri,
        version,
        headers,
        len,
    }))
}

/// Watches the raw bytes a client sends on one connection and checks the framing of every
/// request head in them, before an HTTP library normalises it away (hyper, for one, drops
/// `Content-Length` when `Transfer-Encoding` is present, which hides a smuggling attempt).
/// Does no I/O: feed it what was read, then ask about request `n` of the connection.
///
/// It follows bodies framed by `Content-Length`; after a chunked body or a CONNECT it stops
/// looking (a chunked request's framing is already unambiguous to the parser, and a tunnel
/// carries no more requests).
#[derive(Debug, Clone)]
pub struct FramingScanner {
    state: ScanState,
    max_head: usize,
    heads: u64,
    refusals: Vec<(u64, Refusal)>,
}

#[derive(Debug, Clone)]
enum ScanState {
    Head(Vec<u8>),
    Body(u64),
    Off,
}

impl FramingScanner {
    /// A scanner for heads up to `limits.max_head_bytes`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            state: ScanState::Head(Vec::new()),
            max_head: limits.max_head_bytes,
            heads: 0,
            refusals: Vec::new(),
        }
    }

    /// Feeds bytes read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                ScanState::Off => return,
                ScanState::Body(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = ScanState::Head(Vec::new());
                    }
                }
                ScanState::Head(buf) => {
                    // Leading empty lines between requests are allowed (RFC 9112 2.2).
                    if buf.is_empty() {
                        let skip = bytes
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    // The usual case: a whole head in one read, scanned where it lies.
                    if buf.is_empty()
                        && let Some(end) = head_end(bytes, 0)
                    {
                        let (head, rest) = bytes.split_at(end);
                        bytes = rest;
                        self.state = self.after_head(head);
                        continue;
                    }
                    let from = buf.len().saturating_sub(3);
                    buf.extend_from_slice(bytes);
                    let Some(end) = head_end(buf, from) else {
                        if buf.len() > self.max_head {
                            self.state = ScanState::Off;
                        }
                        return;
                    };
                    let rest = buf.len() - end;
                    bytes = &bytes[bytes.len() - rest..];
                    let head = std::mem::take(buf);
                    self.state = self.after_head(&head[..end]);
                }
            }
        }
    }

    /// What follows a complete head.
    fn after_head(&mut self, head: &[u8]) -> ScanState {
        let index = self.heads;
        self.heads += 1;
        let next = || ScanState::Head(Vec::new());
        // No framing field named anywhere (no such name even as a substring) and not a
        // tunnel: nothing to check, and no body follows.
        if !head.starts_with(b"CONNECT")
            && !contains_ignore_case(head, b"content-length")
            && !contains_ignore_case(head, b"transfer-encoding")
        {
            return next();
        }
        match framing_fields(head) {
            Some((connect, fields)) => match check_framing(&fields) {
                Err(r) => {
                    self.refusals.push((index, r));
                    ScanState::Off
                }
                Ok(()) if connect || fields.contains_key(header::TRANSFER_ENCODING) => {
                    ScanState::Off
                }
                Ok(()) => match fields
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    Some(n) if n > 0 => ScanState::Body(n),
                    _ => next(),
                },
            },
            // The HTTP parser answers malformed heads itself.
            None => ScanState::Off,
        }
    }

    /// The refusal for request `index` (0-based) of the connection, if its framing was bad.
    pub fn refusal(&mut self, index: u64) -> Option<Refusal> {
        let at = self.refusals.iter().position(|(i, _)| *i == index)?;
        Some(self.refusals.swap_remove(at).1)
    }
}

/// Where the head in `buf` ends (just past its empty line), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// Whether `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|i| {
            hay[i].to_ascii_lowercase() == first
                && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        })
}

/// Whether a complete head is a CONNECT, and its framing fields (Transfer-Encoding and
/// Content-Length, every instance); `None` when it does not parse.
fn framing_fields(head: &[u8]) -> Option<(bool, HeaderMap)> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let connect = req.method == Some("CONNECT");
    let mut out = HeaderMap::new();
    for f in req.headers.iter() {
        let name = if f.name.eq_ignore_ascii_case("transfer-encoding") {
            header::TRANSFER_ENCODING
        } else if f.name.eq_ignore_ascii_case("content-length") {
            header::CONTENT_LENGTH
        } else {
            continue;
        };
        out.append(name, HeaderValue::from_bytes(f.value).ok()?);
    }
    Some((connect, out))
}

/// Parses and checks in one step: what the fuzz target drives.
pub fn parse_and_check(
    bytes: &[u8],
    limits: &Limits,
    acl: &Acl,
    client: std::net::IpAddr,
    via: &str,
) -> Result<Option<Checked>, Refusal> {
    acl.check_client(client)?;
    let Some(head) = parse_head(bytes, limits)? else {
        return Ok(None);
    };
    check(
        acl,
        &head.method,
        &head.uri,
        head.version,
        &head.headers,
        via,
    )
    .map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::acl::AclConfig;
    use proptest::prelude::*;

    fn acl() -> Acl {
        Acl::new(&AclConfig {
            allow: vec!["10.77.180.0/24".parse().unwrap()],
            ..AclConfig::default()
        })
    }

    fn run(raw: &str) -> Result<Option<Checked>, Refusal> {
        parse_and_check(
            raw.as_bytes(),
            &Limits::default(),
            &acl(),
            "10.77.180.5".parse().unwrap(),
            "maas-proxy",
        )
    }

    #[test]
    fn absolute_get_is_forwarded_with_via_and_without_hop_by_hop() {
        let c = run("GET http://Example.COM/a?b HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.target.host, "example.com");
        assert_eq!(c.target.port, 80);
        assert_eq!(c.target.uri, "http://example.com/a?b");
        for gone in [
            "connection",
            "x-secret",
            "proxy-authorization",
            "x-forwarded-for",
        ] {
            assert!(!c.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(c.headers["accept"], "*/*");
        assert_eq!(c.headers["via"], "1.1 maas-proxy");
    }

    #[test]
    fn smuggling_is_refused() {
        assert_eq!(
            run("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n").unwrap_err(),
            Refusal::TransferEncodingAndLength
        );
        assert!(matches!(
            run("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(Refusal::BadTransferEncoding(_))
        ));
        assert!(matches!(
            run(
                "POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Err(Refusal::BadTransferEncoding(_))
        ));
        assert_eq!(
            run("POST http://e.com/ HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n")
                .unwrap_err(),
            Refusal::BadContentLength
        );
        assert_eq!(
            run("POST http://e.com/ HTTP/1.1\r\nContent-Length: +4\r\n\r\n").unwrap_err(),
            Refusal::BadContentLength
        );
        assert!(
            run("POST http://e.com/ HTTP/1.1\r\nContent-Length: 4\r\n\r\n")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn loops_targets_ports_and_sizes() {
        assert_eq!(
            run("GET http://e.com/ HTTP/1.1\r\nVia: 1.1 other, 1.1 maas-proxy (x)\r\n\r\n")
                .unwrap_err(),
            Refusal::Loop("maas-proxy".into())
        );
        assert!(run("GET http://e.com/ HTTP/1.1\r\nVia: 1.1 maas-proxy-2\r\n\r\n").is_ok());
        assert!(matches!(
            run("GET /local HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            run("GET https://e.com/ HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadTarget(_))
        ));
        assert!(matches!(
            run("GET http://u:p@e.com/ HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadTarget(_))
        ));
        assert_eq!(
            run("GET http://e.com:22/ HTTP/1.1\r\n\r\n").unwrap_err(),
            Refusal::UnsafePort(22)
        );
        assert_eq!(
            run("CONNECT e.com:22 HTTP/1.1\r\n\r\n").unwrap_err(),
            Refusal::ConnectPort(22)
        );
        assert_eq!(
            run("CONNECT e.com:443 HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .target
                .kind,
            Kind::Connect
        );
        assert!(matches!(
            run("GET http://127.0.0.1:8080/ HTTP/1.1\r\n\r\n"),
            Err(Refusal::DeniedDestination(_))
        ));
        assert!(matches!(
            run("GET http://[::ffff:127.0.0.1]:8080/ HTTP/1.1\r\n\r\n"),
            Err(Refusal::DeniedDestination(_))
        ));
        assert!(matches!(
            run("TRACE http://e.com/ HTTP/1.1\r\n\r\n"),
            Err(Refusal::Method(_))
        ));
        let big = format!(
            "GET http://e.com/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        assert!(matches!(run(&big), Err(Refusal::HeadersTooLarge(_))));
        let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(matches!(
            run(&format!("GET http://e.com/ HTTP/1.1\r\n{many}\r\n")),
            Err(Refusal::HeadersTooLarge(_))
        ));
        assert!(
            run("GET http://e.com/ HTTP/1.1\r\nHost: e")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            parse_and_check(
                b"GET http://e.com/ HTTP/1.1\r\n\r\n",
                &Limits::default(),
                &acl(),
                "192.0.2.1".parse().unwrap(),
                "maas-proxy"
            )
            .unwrap_err(),
            Refusal::ClientNotAllowed("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn scanner_sees_what_the_parser_hides() {
        let mut s = FramingScanner::new(&Limits::default());
        let good = b"POST http://e.com/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let bad = b"GET http://e.com/ HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut all = good.to_vec();
        all.extend_from_slice(b"\r\n");
        all.extend_from_slice(bad);
        for chunk in all.chunks(7) {
            s.feed(chunk);
        }
        assert_eq!(s.refusal(0), None);
        assert_eq!(s.refusal(1), Some(Refusal::TransferEncodingAndLength));
        assert_eq!(s.refusal(1), None);
    }

    #[test]
    fn hop_by_hop_names_are_the_listed_ones() {
        let names: Vec<&str> = HOP_BY_HOP_NAMES.iter().map(HeaderName::as_str).collect();
        assert_eq!(names, HOP_BY_HOP);
    }

    proptest! {
        /// Skipping the parse of heads that name no framing field changes no verdict.
        #[test]
        fn scanner_verdicts_match_a_full_parse(
            fields in proptest::collection::vec(prop_oneof![
                Just("Content-Length: 0"),
                Just("content-length: 3"),
                Just("CONTENT-LENGTH: 3"),
                Just("Content-Length: x"),
                Just("Transfer-Encoding: chunked"),
                Just("transfer-encoding: gzip"),
                Just("TrAnSfEr-EnCoDiNg: chunked"),
                Just("X-Content-Length-Note: 1"),
                Just("Host: e.com"),
                Just("Accept: */*"),
            ], 0..5),
            method in prop_oneof![Just("GET"), Just("POST"), Just("CONNECT")],
        ) {
            let mut head = format!("{method} http://e.com/ HTTP/1.1\r\n");
            for f in &fields {
                head.push_str(f);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            let expected = framing_fields(head.as_bytes())
                .and_then(|(_, f)| check_framing(&f).err());
            let mut s = FramingScanner::new(&Limits::default());
            s.feed(head.as_bytes());
            prop_assert_eq!(s.refusal(0), expected);
        }

        #[test]
        fn scanner_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let mut s = FramingScanner::new(&Limits::default());
            let cut = cut.min(bytes.len());
            s.feed(&bytes[..cut]);
            s.feed(&bytes[cut..]);
            let _ = s.refusal(0);
        }

        #[test]
        fn never_panics_and_never_forwards_smuggling(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = parse_and_check(&bytes, &Limits::default(), &acl(), "127.0.0.1".parse().unwrap(), "maas-proxy");
            if let Ok(Some(c)) = r {
                prop_assert!(!c.headers.contains_key("transfer-encoding") || !c.headers.contains_key("content-length"));
                prop_assert!(!c.headers.contains_key("x-forwarded-for"));
            }
        }

        #[test]
        fn any_path_under_http_is_a_normalised_absolute_uri(path in "/[a-zA-Z0-9/._~-]{0,40}", port in 1025u16..) {
            let t = target(&Method::GET, &format!("http://mirror.example:{port}{path}").parse().unwrap()).unwrap();
            prop_assert_eq!(t.port, port);
            prop_assert_eq!(t.uri.path(), if path.is_empty() { "/" } else { path.as_str() });
        }
    }
}
