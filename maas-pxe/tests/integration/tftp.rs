//! The TFTP server and client engines stepped against each other in virtual time (the
//! requests, windows and uploads are in `tftp_requests`, `tftp_windows` and `tftp_upload`).

use std::time::Duration;

use maas_pxe::tftp::{self, Event, Mode, ServerConfig};

use crate::tftp_sim::{Net, Outcome, config, pattern, transfer};

pub(crate) fn completed(o: &Outcome) -> tftp::Summary {
    match &o.event {
        Some(Event::Completed(s)) => *s,
        other => panic!("expected Completed, got {other:?} (client {:?})", o.client),
    }
}

#[test]
fn plain_rfc1350_transfer_sends_each_block_once() {
    let file = pattern(512 * 10 + 100);
    let o = transfer(
        &file,
        config(None, None, false),
        &ServerConfig::default(),
        Net::CLEAN,
        1,
    );
    assert_eq!(o.client, Ok(()));
    assert_eq!(o.data, file);
    let s = completed(&o);
    assert_eq!(s.packets, 11);
    assert_eq!(s.retransmitted, 0);
    assert_eq!(s.bytes, file.len() as u64);
    assert_eq!(o.server_sent, 11);
    assert_eq!(o.client_sent, 12, "RRQ and one ACK per block");
}

#[test]
fn exact_multiple_of_blksize_ends_with_empty_block() {
    let file = pattern(1024);
    let o = transfer(
        &file,
        config(None, None, false),
        &ServerConfig::default(),
        Net::CLEAN,
        1,
    );
    assert_eq!(o.data, file);
    assert_eq!(completed(&o).packets, 3);
    let empty = transfer(
        &[],
        config(None, None, false),
        &ServerConfig::default(),
        Net::CLEAN,
        1,
    );
    assert_eq!(empty.data, b"");
    assert_eq!(completed(&empty).packets, 1);
}

#[test]
fn options_blksize_window_tsize() {
    // The window asked for is granted (up to 4096 by default); a client that keeps up gets it
    // whole, one ACK per window.
    for (blksize, window, granted) in [
        (512, 1, 1),
        (1468, 4, 4),
        (8192, 16, 16),
        (1432, 64, 64),
        (65464, 8, 8),
        (1468, 5000, 4096),
    ] {
        let file = pattern(300_000);
        let o = transfer(
            &file,
            config(Some(blksize), Some(window), true),
            &ServerConfig::default(),
            Net::CLEAN,
            2,
        );
        assert_eq!(o.client, Ok(()), "blksize {blksize} window {window}");
        assert_eq!(o.data, file);
        let s = completed(&o);
        assert_eq!(s.blksize, blksize);
        assert_eq!(s.windowsize, granted);
        assert_eq!(s.retransmitted, 0);
        let blocks = file.len() as u64 / u64::from(blksize) + 1;
        assert_eq!(s.packets, blocks);
        // An OACK, then DATA: the client ACKs once per window (plus ACK 0 and the RRQ).
        assert_eq!(o.client_sent, 2 + blocks.div_ceil(u64::from(granted)));
    }
}

#[test]
fn server_caps_blksize_and_window() {
    let mut server = ServerConfig::default();
    server.max_blksize(1468).max_window(8);
    let file = pattern(100_000);
    let o = transfer(
        &file,
        config(Some(9000), Some(64), false),
        &server,
        Net::CLEAN,
        3,
    );
    assert_eq!(o.data, file);
    let s = completed(&o);
    assert_eq!((s.blksize, s.windowsize), (1468, 8));
    let o = transfer(
        &file,
        config(Some(8192), Some(64), false),
        &ServerConfig::default(),
        Net::CLEAN,
        3,
    );
    assert_eq!(completed(&o).windowsize, 64);
    // The window budget, when set, caps the window granted to what fits in that much of a
    // client's receive buffer: 8192-byte blocks take 16 KiB each there, 65464-byte 128 KiB.
    let budget = ServerConfig {
        window_budget: 160 << 10,
        ..ServerConfig::default()
    };
    for (blksize, granted) in [(1468, 64), (8192, 9), (65464, 1)] {
        let o = transfer(
            &file,
            config(Some(blksize), Some(64), false),
            &budget,
            Net::CLEAN,
            3,
        );
        assert_eq!(o.data, file);
        assert_eq!(completed(&o).windowsize, granted, "blksize {blksize}");
    }
    let mut mtu = ServerConfig::default();
    mtu.mtu(Some(1500));
    let o = transfer(&file, config(Some(9000), None, false), &mtu, Net::CLEAN, 3);
    assert_eq!(completed(&o).blksize, 1468);
}

/// A client whose receive buffer holds fewer datagrams than the window it asked for: each
/// full window loses its tail. The first loss narrows that transfer's bursts to what the client
/// showed it holds, each burst ended by its last block again, which the client acknowledges at
/// once: the transfer completes with at most one server timeout and never waits for the
/// client's, and keeps the window it was granted.
#[test]
fn small_receive_buffer_with_a_large_window() {
    for (seed, (blksize, window, rcvbuf)) in [
        (8192u16, 64u16, 14usize),
        (65464, 64, 2),
        (1468, 512, 90),
        (1468, 256, 70),
    ]
    .into_iter()
    .enumerate()
    {
        let net = Net {
            rcvbuf: Some(rcvbuf),
            ..Net::CLEAN
        };
        let file = pattern(2_000_000);
        let mut client = config(Some(blksize), Some(window), true);
        // A client slow to give up, as atftp (5 s): only its count of timeouts is checked.
        client.retransmit = Duration::from_secs(5);
        let o = transfer(&file, client, &ServerConfig::default(), net, seed as u64);
        let what = format!("blksize {blksize} window {window} rcvbuf {rcvbuf}");
        assert_eq!(o.client, Ok(()), "{what}");
        assert!(o.data == file, "{what}: corrupted");
        let s = completed(&o);
        assert_eq!(s.windowsize, window, "{what}");
        let blocks = file.len() as u64 / u64::from(blksize) + 1;
        // The first window's lost tail costs the server one timeout (nothing tells it
        // sooner); once narrowed, every burst is answered: no more timeouts on either side
        // (the client's, 5 s, would show as virtual time).
        assert!(s.timeouts <= 1, "{what}: {} timeouts", s.timeouts);
        assert!(s.burst < window, "{what}: the bursts were not narrowed");
        assert!(
            o.elapsed < Duration::from_secs(5),
            "{what}: {:?}",
            o.elapsed
        );
        // What is sent again stays within a burst's probe per burst and the first window.
        assert!(
            s.packets <= 2 * blocks + u64::from(window) + 10,
            "{what}: {} packets for {blocks} blocks",
            s.packets
        );
    }
}

#[test]
fn block_numbers_roll_over_past_65535() {
    // 65535 blocks of 512 bytes and more: the block number wraps to 0.
    let file = pattern(512 * 70_000 + 3);
    for window in [1u16, 16] {
        let o = transfer(
            &file,
            config(Some(512), Some(window), true),
            &ServerConfig::default(),
            Net::CLEAN,
            4,
        );
        assert_eq!(o.client, Ok(()));
        assert!(o.data == file, "rolled-over file differs (window {window})");
        assert_eq!(completed(&o).packets, 70_001);
    }
}

#[test]
fn netascii_is_converted_both_ways() {
    let text = b"DEFAULT local\nLABEL local\r\n  LOCALBOOT 0\n".repeat(100);
    let mut c = config(Some(512), None, true);
    c.mode(Mode::Netascii);
    let o = transfer(&text, c, &ServerConfig::default(), Net::CLEAN, 5);
    assert_eq!(o.client, Ok(()));
    assert_eq!(o.data, text);
    let s = completed(&o);
    let lf = text.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert_eq!(s.bytes, (text.len() + lf) as u64, "the wire carries CR LF");
}

#[test]
fn lossy_reordering_duplicating_link() {
    let net = Net {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        jitter: Duration::from_millis(3),
        delay: Duration::from_millis(1),
        rcvbuf: None,
    };
    for (seed, (blksize, window)) in [(512, 1), (1468, 4), (1468, 16), (8192, 64)]
        .into_iter()
        .enumerate()
    {
        let file = pattern(400_000);
        let o = transfer(
            &file,
            config(Some(blksize), Some(window), true),
            &ServerConfig::default(),
            net,
            seed as u64 + 10,
        );
        assert_eq!(o.client, Ok(()), "blksize {blksize} window {window}");
        assert!(
            o.data == file,
            "corrupted at blksize {blksize} window {window}"
        );
        let blocks = file.len() as u64 / u64::from(blksize) + 1;
        // Retransmissions stay proportionate to the loss and to the window a gap makes the
        // server resend (no doubling storm).
        eprintln!(
            "blksize {blksize} window {window}: {} packets for {blocks} blocks",
            o.server_sent
        );
        assert!(
            o.server_sent < blocks * (3 + u64::from(window) / 8) + 50,
            "{} packets for {blocks} blocks",
            o.server_sent
        );
    }
}

#[test]
fn duplicated_packets_do_not_double_traffic() {
    // Every datagram delivered twice: the classic Sorcerer's Apprentice set-up.
    let net = Net {
        duplicate: 1.0,
        ..Net::CLEAN
    };
    let file = pattern(512 * 200);
    let o = transfer(
        &file,
        config(None, None, false),
        &ServerConfig::default(),
        net,
        6,
    );
    assert_eq!(o.data, file);
    let s = completed(&o);
    assert_eq!(s.retransmitted, 0, "duplicate ACKs caused resends: {s:?}");
    assert_eq!(s.packets, 201);
}
