//! Host names of discoveries by reverse DNS: the PTR query for an address, and the name in a
//! resolver's answer to it. Does no I/O: the discovery task sends the query to the resolver
//! `[discovery] reverse_dns` names (none: no lookups) and hands the answer back here.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Why an answer gives no name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RdnsError {
    /// The bytes are not a DNS message.
    #[error("not a DNS message: {0}")]
    Decode(String),
    /// A message, but not the answer to this query (another id, a query, another question).
    #[error("not the answer to the PTR query for {0}")]
    Unrelated(IpAddr),
    /// The resolver failed (SERVFAIL, REFUSED...); NXDOMAIN is no name, not an error.
    #[error("the resolver answered {0}")]
    Failed(ResponseCode),
}

/// The PTR query for `ip` (`d.c.b.a.in-addr.arpa.` or the `ip6.arpa.` name), with `id`.
pub(crate) fn query(ip: IpAddr, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from(ip), RecordType::PTR));
    // A message with one question and no records always encodes.
    message.to_vec().unwrap_or_default()
}

/// The host name in the answer `bytes` to [`query`]`(ip, id)`: the first PTR record for the
/// question, without its final dot; `None` when there is none (NXDOMAIN, no data).
pub(crate) fn answer(bytes: &[u8], id: u16, ip: IpAddr) -> Result<Option<String>, RdnsError> {
    let message = Message::from_vec(bytes).map_err(|e| RdnsError::Decode(e.to_string()))?;
    let asked = Name::from(ip);
    if message.metadata.id != id
        || message.metadata.message_type != MessageType::Response
        || !message.queries.iter().any(|q| q.name() == &asked)
    {
        return Err(RdnsError::Unrelated(ip));
    }
    match message.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(None),
        other => return Err(RdnsError::Failed(other)),
    }
    Ok(message
        .answers
        .iter()
        .filter(|r| r.name == asked)
        .find_map(|r| match &r.data {
            RData::PTR(ptr) => Some(ptr.0.to_utf8()),
            _ => None,
        })
        .map(|name| name.trim_end_matches('.').to_owned())
        .filter(|name| !name.is_empty()))
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::PTR;

    use super::*;

    fn reply(ip: IpAddr, id: u16, code: ResponseCode, target: Option<&str>) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.response_code = code;
        message.add_query(Query::query(Name::from(ip), RecordType::PTR));
        if let Some(t) = target {
            let data = RData::PTR(PTR(Name::from_ascii(t).unwrap()));
            message.add_answer(Record::from_rdata(Name::from(ip), 60, data));
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn queries_and_answers_round_trip() {
        let ip: IpAddr = "10.77.63.20".parse().unwrap();
        let q = Message::from_vec(&query(ip, 7)).unwrap();
        assert_eq!(q.queries[0].name().to_utf8(), "20.63.77.10.in-addr.arpa.");
        assert_eq!(q.queries[0].query_type(), RecordType::PTR);
        let good = reply(ip, 7, ResponseCode::NoError, Some("pdu1.lab.example."));
        assert_eq!(
            answer(&good, 7, ip).unwrap().as_deref(),
            Some("pdu1.lab.example")
        );
        let v6: IpAddr = "fd77:63::20".parse().unwrap();
        let good = reply(v6, 9, ResponseCode::NoError, Some("printer.lab."));
        assert_eq!(
            answer(&good, 9, v6).unwrap().as_deref(),
            Some("printer.lab")
        );
    }

    #[test]
    fn other_answers_give_no_name() {
        let ip: IpAddr = "10.77.63.20".parse().unwrap();
        let none = reply(ip, 7, ResponseCode::NXDomain, None);
        assert_eq!(answer(&none, 7, ip).unwrap(), None);
        let empty = reply(ip, 7, ResponseCode::NoError, None);
        assert_eq!(answer(&empty, 7, ip).unwrap(), None);
        let failed = reply(ip, 7, ResponseCode::ServFail, None);
        assert!(matches!(answer(&failed, 7, ip), Err(RdnsError::Failed(_))));
        let other_id = reply(ip, 8, ResponseCode::NoError, Some("x."));
        assert!(matches!(
            answer(&other_id, 7, ip),
            Err(RdnsError::Unrelated(_))
        ));
        let other_ip = reply(
            "10.77.63.21".parse().unwrap(),
            7,
            ResponseCode::NoError,
            Some("x."),
        );
        assert!(matches!(
            answer(&other_ip, 7, ip),
            Err(RdnsError::Unrelated(_))
        ));
        assert!(matches!(
            answer(&query(ip, 7), 7, ip),
            Err(RdnsError::Unrelated(_))
        ));
        assert!(matches!(
            answer(b"\x00\x07", 7, ip),
            Err(RdnsError::Decode(_))
        ));
    }

    /// The committed fuzz corpus of the answer parser (`fuzz/corpus/controller_rdns`) gives a
    /// name or an error, never a panic.
    #[test]
    fn the_fuzz_corpus_replays() {
        let seen = crate::tests::replay_corpus("controller_rdns", |path, bytes| {
            let named = answer(bytes, 7, "10.77.63.20".parse().unwrap());
            if path.ends_with("ptr-answer") {
                assert_eq!(named.unwrap().as_deref(), Some("pdu1.lab.example"));
            }
        });
        assert!(seen >= 3, "{seen} files");
    }
}
