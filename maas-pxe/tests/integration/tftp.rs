//! The TFTP server and client engines stepped against each other in virtual time, the
//! no-amplification rules, and the root directory's defences.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use maas_pxe::tftp::{
    self, ClientConfig, ErrorCode, Event, FileProvider, Generated, Layered, MachineFile, MachineId,
    Mode, Options, Packet, ProviderError, Receive, Request, Response, RootDir, ServerConfig,
    UploadDir,
};
use proptest::prelude::*;

use crate::tftp_sim::{self, CLIENT, Net, Outcome, addr, config, pattern, transfer};

fn completed(o: &Outcome) -> tftp::Summary {
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

fn rrq(options: &[(&str, &str)]) -> Vec<u8> {
    rrq_for("boot.bin", options)
}

/// A fresh directory for a test's files, and a `RootDir` serving it.
fn scratch_root(tag: &str) -> (PathBuf, RootDir) {
    let dir = std::env::temp_dir().join(format!("maas-tftp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = RootDir::new(&dir).unwrap();
    (dir, root)
}

fn rrq_for(filename: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut o = Options::new();
    for (n, v) in options {
        o.set(n, v);
    }
    Packet::Rrq(Request {
        filename: filename.into(),
        mode: Mode::Octet,
        options: o,
    })
    .to_vec()
}

struct Fixed(Vec<u8>);
impl FileProvider for Fixed {
    fn open(&self, _: &str, _: SocketAddr) -> Result<tftp::Content, ProviderError> {
        Ok(self.0.clone().into())
    }
}

/// Everything a server sends to a client that never answers, until it gives up.
fn sent_to_silent_client(request: &[u8]) -> Vec<Vec<u8>> {
    let now0 = Instant::now();
    let config = ServerConfig::default();
    let Response::Start(mut t) = tftp::respond(
        now0,
        request,
        addr(CLIENT),
        &Fixed(pattern(1 << 20)),
        &config,
    ) else {
        panic!("refused")
    };
    let mut sent = Vec::new();
    let mut buf = Vec::new();
    let mut now = now0;
    for _ in 0..1000 {
        while t.poll_transmit(now, &mut buf) {
            sent.push(buf.clone());
        }
        match t.poll_timeout() {
            Some(at) => {
                now = at;
                t.handle_timeout(now);
            }
            None => break,
        }
    }
    assert!(matches!(t.poll_event(), Some(Event::TimedOut(_))));
    assert!(
        now - now0 < Duration::from_secs(60),
        "gave up after {:?}",
        now - now0
    );
    sent
}

#[test]
fn no_amplification_before_ack0() {
    let sent = sent_to_silent_client(&rrq(&[
        ("blksize", "65464"),
        ("windowsize", "64"),
        ("tsize", "0"),
    ]));
    let max_tries = ServerConfig::default().max_tries as usize;
    assert_eq!(sent.len(), max_tries);
    for p in &sent {
        assert!(matches!(Packet::decode(p), Ok(Packet::Oack(_))), "{p:?}");
        assert!(p.len() < 64);
    }
}

#[test]
fn no_amplification_without_options() {
    let sent = sent_to_silent_client(&rrq(&[]));
    assert_eq!(sent.len(), ServerConfig::default().max_tries as usize);
    for p in &sent {
        assert!(
            matches!(Packet::decode(p), Ok(Packet::Data { block: 1, data }) if data.len() == 512)
        );
    }
}

#[test]
fn unknown_options_only_mean_no_oack() {
    let sent = sent_to_silent_client(&rrq(&[("multicast", ""), ("rollover", "0")]));
    assert!(matches!(
        Packet::decode(&sent[0]),
        Ok(Packet::Data { block: 1, .. })
    ));
}

fn refusal(request: &[u8], provider: &dyn FileProvider) -> (ErrorCode, String) {
    match tftp::respond(
        Instant::now(),
        request,
        addr(CLIENT),
        provider,
        &ServerConfig::default(),
    ) {
        Response::Refuse(r) => {
            let mut v = Vec::new();
            r.encode(&mut v);
            assert!(matches!(Packet::decode(&v), Ok(Packet::Error { .. })));
            (r.code, r.message)
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn errors_carry_the_right_codes() {
    let f = Fixed(vec![1, 2, 3]);
    for bad in [
        [("blksize", "7")],
        [("blksize", "x")],
        [("windowsize", "0")],
        [("timeout", "0")],
        [("timeout", "256")],
        [("tsize", "-1")],
    ] {
        assert_eq!(
            refusal(&rrq(&bad), &f).0,
            ErrorCode::OptionRefused,
            "{bad:?}"
        );
    }
    let wrq = Packet::Wrq(Request {
        filename: "x".into(),
        mode: Mode::Octet,
        options: Options::new(),
    })
    .to_vec();
    assert_eq!(refusal(&wrq, &f).0, ErrorCode::AccessViolation);
    assert_eq!(
        refusal(b"\x00\x01f\x00mail\x00", &f).0,
        ErrorCode::IllegalOperation
    );
    assert_eq!(
        refusal(b"\x00\x01unterminated", &f).0,
        ErrorCode::IllegalOperation
    );
    let none = Layered::new();
    assert_eq!(refusal(&rrq(&[]), &none).0, ErrorCode::FileNotFound);
    // Not requests: never answered.
    for stray in [
        &b"\x00\x04\x00\x01"[..],
        b"\x00\x05\x00\x01x\x00",
        b"\x00\x03\x00\x01abc",
        b"",
        b"\x07",
    ] {
        assert!(matches!(
            tftp::respond(
                Instant::now(),
                stray,
                addr(CLIENT),
                &f,
                &ServerConfig::default()
            ),
            Response::Ignore
        ));
    }
}

#[test]
fn edk2_tsize_then_abort_then_fetch() {
    // edk2 asks for tsize, aborts with error 8 after the OACK, then asks again without tsize.
    let now = Instant::now();
    let file = pattern(70_000);
    let provider = Fixed(file.clone());
    let config = ServerConfig::default();
    let first = rrq(&[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")]);
    let Response::Start(mut t) = tftp::respond(now, &first, addr(CLIENT), &provider, &config)
    else {
        panic!()
    };
    let mut buf = Vec::new();
    assert!(t.poll_transmit(now, &mut buf));
    let Ok(Packet::Oack(o)) = Packet::decode(&buf) else {
        panic!()
    };
    assert_eq!(o.get("tsize"), Some("70000"));
    assert!(!t.poll_transmit(now, &mut buf), "no data before ACK(0)");
    let mut abort = Vec::new();
    tftp::wire::encode_error(ErrorCode::OptionRefused, "tsize only", &mut abort);
    t.handle_datagram(now, &abort);
    assert!(
        !t.poll_transmit(now, &mut buf),
        "nothing answers a client's error"
    );
    assert!(t.is_finished());
    assert!(matches!(
        t.poll_event(),
        Some(Event::Aborted {
            code: ErrorCode::OptionRefused,
            ..
        })
    ));
    assert_eq!(t.poll_timeout(), None);
    // The second request completes.
    let mut c = config_edk2();
    c.tsize(false);
    let o = transfer(&file, c, &config, Net::CLEAN, 7);
    assert_eq!(o.data, file);
    completed(&o);
}

fn config_edk2() -> ClientConfig {
    config(Some(1468), Some(4), true)
}

#[test]
fn client_abort_ends_the_transfer_quietly() {
    let o = {
        let now = Instant::now();
        let mut client = tftp::Client::new(now, addr(tftp_sim::SERVER), "f", config_edk2());
        client.poll_transmit();
        client.abort(ErrorCode::OptionRefused, "enough");
        let (_, bytes) = client.poll_transmit().unwrap();
        Packet::decode(&bytes).map(|p| matches!(p, Packet::Error { .. }))
    };
    assert_eq!(o, Ok(true));
}

#[test]
fn generated_and_layered_providers() {
    let mac: maas_net::Mac = "52:54:00:77:00:10".parse().unwrap();
    let generated = Generated::new(move |file: &MachineFile, _| match file {
        MachineFile::Pxelinux(MachineId::Mac(m)) if *m == mac => Some(b"DEFAULT maas\n".to_vec()),
        MachineFile::Grub(MachineId::Uuid(u)) if u == "8a3e1c2b-1111-2222-3333-444455556666" => {
            Some(b"set default=0\n".to_vec())
        }
        _ => None,
    });
    let root = TempRoot::new("layered");
    std::fs::create_dir_all(root.path().join("pxelinux.cfg")).unwrap();
    std::fs::write(root.path().join("pxelinux.cfg/default"), b"DEFAULT local\n").unwrap();
    let layered = Layered::new()
        .with(generated)
        .with(RootDir::new(root.path()).unwrap());
    let read = |name: &str| {
        layered
            .open(name, addr(CLIENT))
            .map(|c| c.read_all().unwrap())
    };
    assert_eq!(
        read("pxelinux.cfg/01-52-54-00-77-00-10").unwrap(),
        b"DEFAULT maas\n"
    );
    assert_eq!(
        read("grub/grub.cfg-8A3E1C2B-1111-2222-3333-444455556666").unwrap(),
        b"set default=0\n"
    );
    assert_eq!(read("pxelinux.cfg/default").unwrap(), b"DEFAULT local\n");
    assert!(matches!(
        read("pxelinux.cfg/01-52-54-00-77-00-11"),
        Err(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        read("../etc/passwd"),
        Err(ProviderError::Refused { .. })
    ));
}

/// A scratch directory removed on drop.
pub(crate) struct TempRoot(PathBuf);

impl TempRoot {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "maas-pxe-tftp-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn root_directory_cannot_be_escaped() {
    let base = TempRoot::new("escape");
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("ok.bin"), b"fine").unwrap();
    std::fs::write(root.join("sub/inner.bin"), b"inner").unwrap();
    std::fs::write(base.path().join("secret"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(base.path().join("secret"), root.join("link-out")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("sub/rel-out")).unwrap();
    std::os::unix::fs::symlink(base.path(), root.join("dir-out")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("ok.bin", root.join("link-in")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    let provider = RootDir::new(&root).unwrap();
    let secret_path = base.path().join("secret");
    let long_component = "a".repeat(300);
    let long_path = format!("{}/x", "d/".repeat(400));
    let attempts: Vec<String> = vec![
        "../secret".into(),
        "sub/../../secret".into(),
        "sub/../ok.bin".into(),
        "..".into(),
        "./../secret".into(),
        "..\\secret".into(),
        "sub\\..\\..\\secret".into(),
        "\\etc\\passwd".into(),
        "/etc/passwd".into(),
        "//etc/passwd".into(),
        secret_path.display().to_string(),
        "/../secret".into(),
        "ok.bin\0../secret".into(),
        "link-out".into(),
        "sub/rel-out".into(),
        "dir-out/secret".into(),
        "etc-link/passwd".into(),
        "zero".into(),
        "/dev/zero".into(),
        "sub".into(),
        "".into(),
        "/".into(),
        long_component,
        long_path,
        "ok.bin\n".into(),
        "%2e%2e/secret".into(),
        "sub/./../../secret".into(),
    ];
    assert!(attempts.len() >= 20);
    for name in &attempts {
        match provider.open(name, addr(CLIENT)) {
            Ok(c) => panic!(
                "{name:?} was served: {:?}",
                String::from_utf8_lossy(&c.read_all().unwrap())
            ),
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        ProviderError::Refused { .. } | ProviderError::NotFound(_)
                    ),
                    "{name:?}: {e}"
                );
                // Whatever the answer, the client learns nothing of the host's paths.
                assert!(!e.client_message().contains('/'));
            }
        }
    }
    // And through the whole server: an ERROR, never data.
    for name in &attempts {
        let mut request = b"\x00\x01".to_vec();
        request.extend(name.bytes());
        request.extend(b"\x00octet\x00");
        match tftp::respond(
            Instant::now(),
            &request,
            addr(CLIENT),
            &provider,
            &ServerConfig::default(),
        ) {
            Response::Refuse(r) => assert!(matches!(
                r.code,
                ErrorCode::AccessViolation | ErrorCode::FileNotFound | ErrorCode::IllegalOperation
            )),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    // What is inside is served, also through a link that stays inside.
    let read = |n: &str| provider.open(n, addr(CLIENT)).unwrap().read_all().unwrap();
    assert_eq!(read("ok.bin"), b"fine");
    assert_eq!(read("/ok.bin"), b"fine");
    assert_eq!(read("sub/inner.bin"), b"inner");
    assert_eq!(read("link-in"), b"fine");
}

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
