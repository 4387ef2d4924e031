//! The DNS request path on hickory-server: each request answered from the current
//! [`Snapshot`] (read without a lock), zone transfers for allowed clients over TCP, and
//! queries outside the served zones forwarded for clients that may recurse.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use ipnet::IpNet;

use super::zone::{Outcome, Snapshot};

/// How long a forwarder has to answer before the next is tried.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// The most records in one message of a zone transfer.
const TRANSFER_CHUNK: usize = 100;
/// The largest UDP answer offered to clients that use EDNS (the DNS flag day's figure).
const MAX_UDP_PAYLOAD: u16 = 1232;

/// Answers requests from the snapshot it is given.
pub(crate) struct Handler {
    /// The current DNS data, swapped whole when the state changes.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    /// Clients allowed a zone transfer.
    pub(crate) allow_transfer: Vec<IpNet>,
    /// Where queries outside the served zones go.
    pub(crate) forwarders: Vec<SocketAddr>,
}

/// The records and header of an answer before encoding.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    /// A zone transfer (sent in several messages when large).
    transfer: bool,
}

impl Reply {
    fn error(request: &Metadata, code: ResponseCode) -> Self {
        let mut metadata = Metadata::response_from_request(request);
        metadata.response_code = code;
        Self {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            transfer: false,
        }
    }
}

impl Handler {
    /// What to send for `request`.
    async fn reply(&self, request: &Request) -> Reply {
        let meta = &request.metadata;
        if meta.message_type != MessageType::Query || meta.op_code != OpCode::Query {
            return Reply::error(meta, ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::error(meta, ResponseCode::FormErr);
        };
        let client = request.src().ip();
        let name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        let snapshot = self.snapshot.load_full();
        if qtype == RecordType::AXFR || qtype == RecordType::IXFR {
            let allowed = request.protocol() == Protocol::Tcp
                && self.allow_transfer.iter().any(|n| n.contains(&client));
            let zone = if allowed {
                snapshot.transfer(&name)
            } else {
                None
            };
            return match zone {
                Some(records) => {
                    let mut reply = Reply::error(meta, ResponseCode::NoError);
                    reply.metadata.authoritative = true;
                    reply.answers = records;
                    reply.transfer = true;
                    reply
                }
                None => Reply::error(meta, ResponseCode::Refused),
            };
        }
        match snapshot.answer(&name, qtype, client, meta.recursion_desired) {
            Outcome::Answer {
                code,
                answers,
                authorities,
            } => {
                let mut reply = Reply::error(meta, code);
                reply.metadata.authoritative = true;
                reply.answers = answers;
                reply.authorities = authorities;
                reply
            }
            Outcome::Refused => Reply::error(meta, ResponseCode::Refused),
            Outcome::Forward => match forward(&self.forwarders, request.as_slice()).await {
                Some(upstream) => {
                    let mut metadata = upstream.metadata;
                    metadata.id = meta.id;
                    metadata.authoritative = false;
                    metadata.recursion_available = true;
                    Reply {
                        metadata,
                        answers: upstream.answers,
                        authorities: upstream.authorities,
                        additionals: upstream.additionals,
                        transfer: false,
                    }
                }
                None => Reply::error(meta, ResponseCode::ServFail),
            },
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        // Answer with EDNS when asked with it, offering at most the client's size; the
        // encoder truncates a UDP answer beyond it (512 without EDNS) and sets TC.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().min(MAX_UDP_PAYLOAD));
            ours
        });
        let respond = || {
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(edns) = &edns {
                builder.edns(edns);
            }
            builder
        };
        // A zone transfer goes in several messages of at most TRANSFER_CHUNK records (a
        // message holds at most 64 KiB); the last one's information is returned.
        if reply.transfer && reply.answers.len() > TRANSFER_CHUNK {
            let mut last = None;
            for chunk in reply.answers.chunks(TRANSFER_CHUNK) {
                let response = respond().build(
                    reply.metadata,
                    chunk.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                match response_handle.send_response(response).await {
                    Ok(info) => last = Some(info),
                    Err(e) => {
                        tracing::debug!(event = "dns_send_failed", error = %e);
                        break;
                    }
                }
            }
            if let Some(info) = last {
                return info;
            }
        }
        let response = respond().build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(event = "dns_send_failed", error = %e);
                let mut header = hickory_proto::op::Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: Default::default(),
                };
                header.metadata.response_code = ResponseCode::ServFail;
                header.into()
            }
        }
    }
}

/// The first forwarder's answer to `query` (the client's own bytes), over UDP.
async fn forward(forwarders: &[SocketAddr], query: &[u8]) -> Option<Message> {
    let sent = Message::from_vec(query).ok()?;
    for server in forwarders {
        let bind: SocketAddr = match server.ip() {
            IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if socket.send_to(query, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65_535];
        let got = tokio::time::timeout(FORWARD_TIMEOUT, async {
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.ok()?;
                if from != *server {
                    continue;
                }
                match Message::from_vec(&buf[..n]) {
                    Ok(m) if m.metadata.id == sent.metadata.id => return Some(m),
                    _ => continue,
                }
            }
        })
        .await;
        if let Ok(Some(message)) = got {
            return Some(message);
        }
    }
    None
}
