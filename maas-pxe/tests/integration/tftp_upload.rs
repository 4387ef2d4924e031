//! Uploads (write requests): windows, gaps, limits, netascii and the upload directory.

use std::time::{Duration, Instant};

use maas_pxe::tftp::{
    self, ErrorCode, Event, FileProvider, Mode, Options, Packet, ProviderError, Receive, Request,
    RootDir, ServerConfig, UploadDir,
};
use proptest::prelude::*;

use crate::tftp_sim::{CLIENT, addr, pattern};

fn wrq(options: &[(&str, &str)], mode: Mode) -> Request {
    let mut o = Options::new();
    for (k, v) in options {
        o.set(k, v);
    }
    Request {
        filename: "up.bin".into(),
        mode,
        options: o,
    }
}

fn data_packet(block: u64, file: &[u8], blksize: usize) -> Vec<u8> {
    let start = ((block - 1) as usize * blksize).min(file.len());
    let end = (start + blksize).min(file.len());
    Packet::Data {
        block: block as u16,
        data: &file[start..end],
    }
    .to_vec()
}

/// A windowed sender over a link that drops the packets `drop` picks: sends from the block
/// after the last ACK, a window at a time, and again on silence. Returns what the receiver
/// handed over and the ACKs it sent.
fn upload(
    file: &[u8],
    blksize: u16,
    window: u16,
    drop: &dyn Fn(usize) -> bool,
) -> (Vec<u8>, usize) {
    let mut now = Instant::now();
    let blk = blksize.to_string();
    let win = window.to_string();
    let request = wrq(&[("blksize", &blk), ("windowsize", &win)], Mode::Octet);
    let mut r = Receive::new(
        now,
        &request,
        addr(CLIENT),
        &ServerConfig::default(),
        1 << 30,
    )
    .expect("accepted");
    let blocks = file.len() as u64 / u64::from(blksize) + 1;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut acked = 0u64;
    let mut acks = 0;
    let mut sent = 0usize;
    assert!(r.poll_transmit(&mut buf), "the OACK");
    assert!(matches!(Packet::decode(&buf), Ok(Packet::Oack(_))));
    let mut completed = false;
    for _round in 0..100_000 {
        // Done when the receiver has the last block (its final ACK may be lost: the sender
        // would give up on it, the upload is whole anyway).
        if acked >= blocks || completed {
            break;
        }
        let mut progress = false;
        for block in acked + 1..=(acked + u64::from(window)).min(blocks) {
            sent += 1;
            if drop(sent) {
                continue;
            }
            r.handle_datagram(now, &data_packet(block, file, usize::from(blksize)));
            out.extend(r.take_data());
            match r.poll_event() {
                Some(Event::Completed(_)) => completed = true,
                None => {}
                Some(other) => panic!("upload ended with {other:?}"),
            }
            while r.poll_transmit(&mut buf) {
                acks += 1;
                sent += 1;
                if drop(sent) {
                    continue;
                }
                if let Ok(Packet::Ack { block: b }) = Packet::decode(&buf) {
                    let b = acked + u64::from(b.wrapping_sub(acked as u16));
                    if b > acked && b <= blocks {
                        acked = b;
                        progress = true;
                    }
                }
            }
        }
        if !progress {
            // Silence: the receiver's timer resends its last ACK (which the link may drop).
            now += Duration::from_secs(5);
            r.handle_timeout(now);
            while r.poll_transmit(&mut buf) {
                acks += 1;
                sent += 1;
                if drop(sent) {
                    continue;
                }
                if let Ok(Packet::Ack { block: b }) = Packet::decode(&buf) {
                    let b = acked + u64::from(b.wrapping_sub(acked as u16));
                    if b > acked && b <= blocks {
                        acked = b;
                    }
                }
            }
            match r.poll_event() {
                None => {}
                Some(other) => panic!("upload ended with {other:?}"),
            }
        }
    }
    assert!(completed, "the upload did not finish");
    (out, acks)
}

#[test]
fn upload_in_windows_arrives_whole() {
    let file = pattern(100_000);
    let (got, acks) = upload(&file, 1000, 8, &|_| false);
    assert_eq!(got, file);
    // One ACK per window of 8 (101 blocks: 13 windows), nothing more.
    assert_eq!(acks, 13);
}

#[test]
fn upload_gap_is_acknowledged_once() {
    let now = Instant::now();
    let file = pattern(8 * 512);
    let request = wrq(&[("windowsize", "4")], Mode::Octet);
    let mut r = Receive::new(
        now,
        &request,
        addr(CLIENT),
        &ServerConfig::default(),
        1 << 20,
    )
    .unwrap();
    let mut buf = Vec::new();
    assert!(r.poll_transmit(&mut buf));
    r.handle_datagram(now, &data_packet(1, &file, 512));
    // Block 2 lost: 3 and 4 get one ACK of block 1 between them.
    r.handle_datagram(now, &data_packet(3, &file, 512));
    assert!(r.poll_transmit(&mut buf));
    assert_eq!(Packet::decode(&buf).unwrap(), Packet::Ack { block: 1 });
    r.handle_datagram(now, &data_packet(4, &file, 512));
    assert!(!r.poll_transmit(&mut buf), "one ACK per gap");
    assert_eq!(r.take_data(), &file[..512]);
}

#[test]
fn upload_limits_and_final_ack_repeated() {
    let now = Instant::now();
    let config = ServerConfig::default();
    // A tsize above the limit is refused before anything is received.
    let big = wrq(&[("tsize", "5000")], Mode::Octet);
    let refusal = Receive::new(now, &big, addr(CLIENT), &config, 4000).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::DiskFull);
    // Without tsize, the block that crosses the limit ends the upload with error 3.
    let plain = wrq(&[], Mode::Octet);
    let mut r = Receive::new(now, &plain, addr(CLIENT), &config, 1000).unwrap();
    let file = pattern(1500);
    let mut buf = Vec::new();
    assert!(r.poll_transmit(&mut buf));
    assert_eq!(Packet::decode(&buf).unwrap(), Packet::Ack { block: 0 });
    r.handle_datagram(now, &data_packet(1, &file, 512));
    assert!(r.poll_transmit(&mut buf));
    r.handle_datagram(now, &data_packet(2, &file, 512));
    assert!(r.poll_transmit(&mut buf));
    assert!(matches!(
        Packet::decode(&buf),
        Ok(Packet::Error {
            code: ErrorCode::DiskFull,
            ..
        })
    ));
    assert!(matches!(r.poll_event(), Some(Event::Failed { .. })));
    assert!(r.is_finished());
    assert_eq!(r.take_data().len(), 512);
    // A short file: its final DATA sent again gets the final ACK again while dallying.
    let mut r = Receive::new(now, &plain, addr(CLIENT), &config, 1000).unwrap();
    assert!(r.poll_transmit(&mut buf));
    r.handle_datagram(now, &data_packet(1, b"tiny", 512));
    assert!(r.poll_transmit(&mut buf));
    assert_eq!(Packet::decode(&buf).unwrap(), Packet::Ack { block: 1 });
    assert!(matches!(r.poll_event(), Some(Event::Completed(_))));
    r.handle_datagram(now, &data_packet(1, b"tiny", 512));
    assert!(r.poll_transmit(&mut buf), "final ACK again");
    r.handle_timeout(now + Duration::from_secs(60));
    assert!(r.is_finished());
    assert_eq!(r.take_data(), b"tiny");
}

#[test]
fn upload_netascii_is_converted() {
    let now = Instant::now();
    let text = b"a\nb\r\nc\rd".repeat(200);
    let wire = tftp::netascii::encode(&text);
    let request = wrq(&[], Mode::Netascii);
    let mut r = Receive::new(
        now,
        &request,
        addr(CLIENT),
        &ServerConfig::default(),
        1 << 20,
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let blocks = wire.len() / 512 + 1;
    for b in 1..=blocks as u64 {
        r.handle_datagram(now, &data_packet(b, &wire, 512));
        got.extend(r.take_data());
        while r.poll_transmit(&mut buf) {}
    }
    assert_eq!(got, text);
}

#[test]
fn upload_dir_stores_complete_files_only() {
    let dir = std::env::temp_dir().join(format!("maas-tftp-upload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("old"), b"old").unwrap();
    let uploads = UploadDir::new(&dir, false).unwrap();
    for name in [
        "../x",
        "/../../etc/passwd",
        "sub/../../x",
        "a\\b",
        "",
        "nodir/x",
    ] {
        assert!(uploads.create(name).is_err(), "{name:?} accepted");
    }
    assert!(matches!(
        uploads.create("old"),
        Err(ProviderError::Exists(_))
    ));
    std::os::unix::fs::symlink("/tmp", dir.join("out")).unwrap();
    assert!(
        uploads.create("out/x").is_err(),
        "through a link out of the root"
    );
    let mut f = uploads.create("sub/new").unwrap();
    f.write(b"half").unwrap();
    assert!(!dir.join("sub/new").exists(), "visible before complete");
    // Nor can the temporary file be read by its own name from a root over the same directory.
    let tmp = std::fs::read_dir(dir.join("sub"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let tmp = format!("sub/{}", tmp.to_string_lossy());
    let reads = RootDir::new(&dir).unwrap();
    assert!(
        matches!(
            reads.open(&tmp, addr(CLIENT)),
            Err(ProviderError::Refused { .. })
        ),
        "{tmp} readable"
    );
    drop(f);
    assert_eq!(
        std::fs::read_dir(dir.join("sub")).unwrap().count(),
        0,
        "temp file left"
    );
    let mut f = uploads.create("sub/new").unwrap();
    f.write(b"whole").unwrap();
    f.commit().unwrap();
    assert_eq!(std::fs::read(dir.join("sub/new")).unwrap(), b"whole");
    assert_eq!(std::fs::read_dir(dir.join("sub")).unwrap().count(), 1);
    let replace = UploadDir::new(&dir, true).unwrap();
    let mut f = replace.create("old").unwrap();
    f.write(b"new").unwrap();
    f.commit().unwrap();
    assert_eq!(std::fs::read(dir.join("old")).unwrap(), b"new");
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever packets a lossy link drops, an upload that ends has exactly the file.
    #[test]
    fn upload_survives_any_loss(
        len in 0usize..20_000,
        blksize in prop::sample::select(vec![8u16, 100, 512, 1468]),
        window in 1u16..8,
        seed in any::<u64>(),
    ) {
        let file = pattern(len);
        let drop = |n: usize| {
            let x = (n as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> 59) == 0 // about 1 in 32
        };
        let (got, _) = upload(&file, blksize, window, &drop);
        prop_assert_eq!(got, file);
    }
}
