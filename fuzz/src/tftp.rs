//! The properties the TFTP fuzz targets check.
//!
//! `check_tftp_decode`: a datagram decodes strictly or not at all, and what decodes encodes
//! to bytes that decode to the same packet.
//!
//! `check_tftp_transfer`: the server's transfer engine and the client engine, fed arbitrary
//! datagrams and arbitrary passing of time, never panic, never send DATA before the client
//! proved its address when an OACK was sent, never send a packet larger than the block size
//! allows, and always end (a bounded number of sends once the input stops). The first input
//! byte chooses the request's options; then each record is a length byte, a time-step byte
//! (milliseconds x 16) and that many datagram bytes. The same records then go to the upload
//! engine ([`Receive`]), which must answer each with at most one packet, hand over no more
//! than its size limit, and end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use maas_pxe::tftp::{
    self, Client, ClientConfig, Content, FileProvider, Options, Packet, ProviderError, Receive,
    Request, Response, ServerConfig,
};

/// See the module documentation.
pub fn check_tftp_decode(data: &[u8]) {
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    let bytes = packet.to_vec();
    let again = Packet::decode(&bytes).expect("an encoded packet decodes");
    assert_eq!(again, packet, "decode, encode, decode");
}

struct Pattern;

impl FileProvider for Pattern {
    fn open(&self, path: &str, _: SocketAddr) -> Result<Content, ProviderError> {
        let len = path.len() * 997;
        Ok((0..len).map(|i| i as u8).collect::<Vec<u8>>().into())
    }
}

/// See the module documentation.
pub fn check_tftp_transfer(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let client_addr: SocketAddr = "10.77.100.2:40000".parse().expect("address");
    let server_addr: SocketAddr = "10.77.100.1:69".parse().expect("address");
    let tid: SocketAddr = "10.77.100.1:50000".parse().expect("address");
    let mut options = Options::new();
    let blksize: u16 = [512, 8, 100, 1468][usize::from(setup & 3)];
    if setup & 4 != 0 {
        options.set("blksize", blksize);
    }
    if setup & 8 != 0 {
        options.set("windowsize", 1 + (setup >> 4));
    }
    if setup & 16 != 0 {
        options.set("tsize", 0);
    }
    let with_options = !options.is_empty();
    let request = Packet::Rrq(Request {
        filename: "boot/file.bin".into(),
        mode: if setup & 64 != 0 {
            tftp::Mode::Netascii
        } else {
            tftp::Mode::Octet
        },
        options,
    })
    .to_vec();
    let start = Instant::now();
    let mut now = start;
    let config = ServerConfig::default();
    let Response::Start(mut t) = tftp::respond(now, &request, client_addr, &Pattern, &config)
    else {
        panic!("a valid request is refused");
    };
    let granted = if with_options { t.blksize() } else { 512 };
    let mut client_config = ClientConfig::default();
    client_config.blksize(blksize).windowsize(4).tsize(true);
    let mut client = Client::new(now, server_addr, "boot/file.bin", client_config);
    let mut proved = !with_options;
    let mut buf = Vec::new();
    let mut lens = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(rest[0]).min(rest.len() - 2);
        now += Duration::from_millis(u64::from(rest[1]) * 16);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if datagram == [0, 4, 0, 0] {
            proved = true;
        }
        t.handle_datagram(now, datagram);
        t.handle_timeout(now);
        client.handle_datagram(now, tid, datagram);
        client.handle_timeout(now);
        // One datagram at a time, or (setup bit 7) in batches of three as the service does.
        let mut sent = Vec::new();
        if setup & 128 == 0 {
            while t.poll_transmit(now, &mut buf) {
                sent.push(buf.clone());
            }
        } else {
            loop {
                let stride = t.max_datagram_len();
                buf.resize(stride * 3, 0);
                t.poll_transmit_batch(now, &mut buf, stride, &mut lens);
                if lens.is_empty() {
                    break;
                }
                for (i, n) in lens.iter().enumerate() {
                    sent.push(buf[i * stride..i * stride + n].to_vec());
                }
            }
        }
        for d in &sent {
            assert!(d.len() <= 4 + usize::from(granted).max(512));
            if !proved {
                assert!(
                    !matches!(Packet::decode(d), Ok(Packet::Data { .. })),
                    "DATA before ACK(0)"
                );
            }
        }
        while client.poll_transmit().is_some() {}
        let _ = client.take_data();
    }
    // Once input stops, both sides end within a bounded number of timeouts.
    for _ in 0..64 {
        while t.poll_transmit(now, &mut buf) {}
        match t.poll_timeout() {
            Some(at) => {
                now = at.max(now);
                t.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(t.poll_timeout().is_none(), "the transfer never ends");
    let _ = t.poll_event();
    check_tftp_receive(setup, data.get(1..).unwrap_or_default());
}

/// The upload engine fed the same records: it never panics, answers each datagram with at
/// most one packet (no amplification), hands over no more than the size limit, and ends.
fn check_tftp_receive(setup: u8, mut rest: &[u8]) {
    let client_addr: SocketAddr = "10.77.100.2:40000".parse().expect("address");
    let mut options = Options::new();
    if setup & 4 != 0 {
        options.set("blksize", [512u16, 8, 100, 1468][usize::from(setup & 3)]);
    }
    if setup & 8 != 0 {
        options.set("windowsize", 1 + (setup >> 4));
    }
    let request = Request {
        filename: "upload.bin".into(),
        mode: if setup & 64 != 0 {
            tftp::Mode::Netascii
        } else {
            tftp::Mode::Octet
        },
        options,
    };
    let mut now = Instant::now();
    let max_size = 3000;
    let Ok(mut r) = Receive::new(
        now,
        &request,
        client_addr,
        &ServerConfig::default(),
        max_size,
    ) else {
        panic!("a valid write request is refused");
    };
    let mut buf = Vec::new();
    let mut taken = 0usize;
    while r.poll_transmit(&mut buf) {}
    while rest.len() >= 2 {
        let len = usize::from(rest[0]).min(rest.len() - 2);
        now += Duration::from_millis(u64::from(rest[1]) * 16);
        let datagram = &rest[2..2 + len];
        rest = &rest[2 + len..];
        r.handle_datagram(now, datagram);
        r.handle_timeout(now);
        let mut sent = 0;
        while r.poll_transmit(&mut buf) {
            sent += 1;
            assert!(
                matches!(
                    Packet::decode(&buf),
                    Ok(Packet::Ack { .. } | Packet::Oack(_) | Packet::Error { .. })
                ),
                "an upload sends only ACK, OACK or ERROR"
            );
        }
        assert!(sent <= 1, "{sent} packets for one datagram");
        taken += r.take_data().len();
        // Netascii may turn CR NUL into one byte, never grow the data.
        assert!(
            taken as u64 <= max_size,
            "more than the size limit handed over"
        );
    }
    for _ in 0..64 {
        while r.poll_transmit(&mut buf) {}
        match r.poll_timeout() {
            Some(at) => {
                now = at.max(now);
                r.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(r.poll_timeout().is_none(), "the upload never ends");
}
