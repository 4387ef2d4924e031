//! Properties of whole transfers over any link, and windows built in one buffer or one read
//! matching packet-by-packet sending.

use std::time::{Duration, Instant};

use maas_pxe::tftp::{self, ErrorCode, Event, Packet, Response, ServerConfig};
use proptest::prelude::*;

use crate::tftp_requests::{Fixed, rrq, rrq_for, scratch_root};
use crate::tftp_sim::{CLIENT, Net, addr, config, pattern, transfer};

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Over any link, the client either gets exactly the file or reports a failure; the
    /// server never sends more than its retransmission budget allows.
    #[test]
    fn transfers_are_exact_or_fail(
        len in 0usize..40_000,
        blksize in prop_oneof![Just(None), (8u16..9000).prop_map(Some)],
        window in prop_oneof![Just(None), (1u16..40).prop_map(Some)],
        tsize in any::<bool>(),
        loss in 0.0f64..0.3,
        duplicate in 0.0f64..0.2,
        reorder in 0.0f64..1.0,
        jitter_us in 0u64..5000,
        seed in any::<u64>(),
    ) {
        let file = pattern(len);
        let net = Net { loss, duplicate, reorder, jitter: Duration::from_micros(jitter_us), delay: Duration::from_millis(1), rcvbuf: None };
        let server = ServerConfig::default();
        let o = transfer(&file, config(blksize, window, tsize), &server, net, seed);
        if o.client.is_ok() {
            prop_assert!(o.data == file);
        } else {
            prop_assert!(file.starts_with(&o.data));
        }
        let blocks = len as u64 / u64::from(blksize.unwrap_or(512).max(8)) + 1;
        let w = u64::from(window.unwrap_or(1));
        // Each block goes out at most once per try of each window that covers it.
        let bound = (blocks + 1) * w * u64::from(server.max_tries) * 2 + 10;
        prop_assert!(o.server_sent <= bound, "{} > {}", o.server_sent, bound);
        prop_assert!(o.elapsed < Duration::from_secs(3600));
    }

    /// Decoding never panics, and what decodes encodes to bytes that decode the same.
    #[test]
    fn decode_encode_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Packet::decode(&bytes) {
            let again = p.to_vec();
            prop_assert_eq!(Packet::decode(&again), Ok(p));
        }
    }

    /// The server fed arbitrary datagrams never panics, never sends data before ACK(0) when
    /// it sent an OACK, and never sends a packet larger than the block size allows.
    #[test]
    fn transfer_survives_arbitrary_packets(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..60),
        steps in proptest::collection::vec(0u64..3000, 0..60),
    ) {
        let now0 = Instant::now();
        let Response::Start(mut t) = tftp::respond(now0, &rrq(&[("blksize", "100"), ("windowsize", "3")]), addr(CLIENT), &Fixed(pattern(10_000)), &ServerConfig::default()) else {
            panic!()
        };
        let mut buf = Vec::new();
        let mut now = now0;
        let mut acked0 = false;
        for (i, p) in packets.iter().enumerate() {
            if p.len() == 4 && p[..2] == [0, 4] && p[2..] == [0, 0] { acked0 = true; }
            t.handle_datagram(now, p);
            now += Duration::from_millis(steps.get(i).copied().unwrap_or(0));
            t.handle_timeout(now);
            while t.poll_transmit(now, &mut buf) {
                prop_assert!(buf.len() <= 104);
                if !acked0 {
                    let is_data = matches!(Packet::decode(&buf), Ok(Packet::Data { .. }));
                    prop_assert!(!is_data, "data before ACK(0)");
                }
            }
        }
    }
}

#[test]
fn window_written_into_one_buffer_matches_packet_by_packet() {
    // The service writes a whole window at a fixed stride into one buffer; the datagrams must
    // be the ones poll_transmit gives, and a slot too small must leave the datagram pending.
    let now = Instant::now();
    let file = pattern(10_000);
    let provider = Fixed(file.clone());
    let config = ServerConfig::default();
    let request = rrq(&[("blksize", "1000"), ("windowsize", "8")]);
    let start = || match tftp::respond(now, &request, addr(CLIENT), &provider, &config) {
        Response::Start(t) => t,
        other => panic!("{other:?}"),
    };
    let (mut a, mut b) = (start(), start());
    let mut oack = Vec::new();
    assert!(a.poll_transmit(now, &mut oack));
    let mut small = [0u8; 16];
    assert_eq!(
        b.poll_transmit_into(now, &mut small),
        None,
        "slot too small"
    );
    assert_eq!(b.pending_datagrams(), 1, "the OACK is still pending");
    let mut slot = vec![0u8; b.max_datagram_len()];
    let n = b.poll_transmit_into(now, &mut slot).unwrap();
    assert_eq!(&slot[..n], &oack[..]);
    a.handle_datagram(now, &[0, 4, 0, 0]);
    b.handle_datagram(now, &[0, 4, 0, 0]);
    assert_eq!(b.pending_datagrams(), 8);
    let stride = b.max_datagram_len();
    let mut window = vec![0xAAu8; stride * 8];
    let mut lens = Vec::new();
    for i in 0..8 {
        lens.push(
            b.poll_transmit_into(now, &mut window[i * stride..(i + 1) * stride])
                .unwrap(),
        );
    }
    assert_eq!(b.pending_datagrams(), 0);
    let mut one = Vec::new();
    for (i, len) in lens.iter().enumerate() {
        assert!(a.poll_transmit(now, &mut one));
        assert_eq!(
            &window[i * stride..i * stride + len],
            &one[..],
            "datagram {i}"
        );
        assert_eq!(*len, 1004);
    }
    assert!(!a.poll_transmit(now, &mut one));
}

#[test]
fn window_read_from_a_file_in_one_call_matches_packet_by_packet() {
    // poll_transmit_batch reads a window's blocks with one vectored read; from a real file,
    // for sizes around block boundaries, in batches smaller and larger than the window, and
    // again after a lost window, its datagrams must be the ones poll_transmit gives.
    let now = Instant::now();
    let (dir, root) = scratch_root("batch");
    let config = ServerConfig::default();
    for (i, len) in [0usize, 1, 511, 512, 513, 512 * 3, 512 * 7 + 5, 40_000]
        .into_iter()
        .enumerate()
    {
        let name = format!("f{i}.bin");
        let file = pattern(len);
        std::fs::write(dir.join(&name), &file).unwrap();
        for slots in [1usize, 3, 8] {
            let request = rrq_for(&name, &[("windowsize", "4")]);
            let start = || match tftp::respond(now, &request, addr(CLIENT), &root, &config) {
                Response::Start(t) => t,
                other => panic!("{other:?}"),
            };
            let (mut a, mut b) = (start(), start());
            let (mut one, mut out, mut lens) = (Vec::new(), Vec::new(), Vec::new());
            let mut acked = 0u64;
            let mut timed_out = false;
            loop {
                let mut expected = Vec::new();
                while a.poll_transmit(now, &mut one) {
                    expected.push(one.clone());
                }
                let mut got = Vec::new();
                loop {
                    let stride = b.max_datagram_len();
                    out.resize(stride * slots, 0);
                    b.poll_transmit_batch(now, &mut out, stride, &mut lens);
                    if lens.is_empty() {
                        break;
                    }
                    for (k, n) in lens.iter().enumerate() {
                        got.push(out[k * stride..k * stride + n].to_vec());
                    }
                }
                assert_eq!(got, expected, "len {len}, {slots} slots, after ack {acked}");
                if a.is_finished() {
                    assert!(b.is_finished());
                    break;
                }
                // Lose the first window once (both time out and resend it), then ACK what
                // was sent.
                if !timed_out && acked > 0 {
                    timed_out = true;
                    let later = now + Duration::from_secs(5);
                    a.handle_timeout(later);
                    b.handle_timeout(later);
                    continue;
                }
                let last = expected
                    .iter()
                    .filter_map(|d| match Packet::decode(d) {
                        Ok(Packet::Data { block, .. }) => Some(block),
                        _ => None,
                    })
                    .next_back()
                    .unwrap_or(0);
                let ack = Packet::Ack { block: last }.to_vec();
                a.handle_datagram(now, &ack);
                b.handle_datagram(now, &ack);
                acked += 1;
                assert!(acked < 1_000, "no end");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_shrinks_mid_transfer_ends_with_an_error() {
    // Short reads before the length the transfer was sized with mean the file changed: the
    // client gets an ERROR instead of a short block it would take for the end of the file.
    let now = Instant::now();
    let (dir, root) = scratch_root("shrink");
    for batch in [false, true] {
        std::fs::write(dir.join("f.bin"), pattern(3000)).unwrap();
        let request = rrq_for("f.bin", &[]);
        let Response::Start(mut t) =
            tftp::respond(now, &request, addr(CLIENT), &root, &ServerConfig::default())
        else {
            panic!("refused")
        };
        let mut one = Vec::new();
        assert!(t.poll_transmit(now, &mut one));
        assert_eq!(one.len(), 516);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("f.bin"))
            .unwrap()
            .set_len(700)
            .unwrap();
        t.handle_datagram(now, &[0, 4, 0, 1]);
        let sent = if batch {
            let stride = t.max_datagram_len();
            let (mut out, mut lens) = (vec![0u8; stride * 2], Vec::new());
            t.poll_transmit_batch(now, &mut out, stride, &mut lens);
            assert_eq!(lens.len(), 1);
            out[..lens[0]].to_vec()
        } else {
            assert!(t.poll_transmit(now, &mut one));
            one.clone()
        };
        assert_eq!(
            Packet::decode(&sent).unwrap(),
            Packet::Error {
                code: ErrorCode::Undefined,
                message: "File changed during transfer".into()
            }
        );
        assert!(t.is_finished());
        assert!(matches!(t.poll_event(), Some(Event::Failed { .. })));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
