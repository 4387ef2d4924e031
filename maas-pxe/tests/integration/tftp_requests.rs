//! Requests the server refuses or answers without amplifying: no DATA before the first
//! ACK, error codes, edk2's size probe, providers (generated, layered) and the root
//! directory's defences.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use maas_pxe::tftp::{
    self, ClientConfig, ErrorCode, Event, FileProvider, Generated, Layered, MachineFile, MachineId,
    Mode, Options, Packet, ProviderError, Request, Response, RootDir, ServerConfig,
};

use crate::tftp::completed;
use crate::tftp_sim::{self, CLIENT, Net, addr, config, pattern, transfer};

pub(crate) fn rrq(options: &[(&str, &str)]) -> Vec<u8> {
    rrq_for("boot.bin", options)
}

/// A fresh directory for a test's files, and a `RootDir` serving it.
pub(crate) fn scratch_root(tag: &str) -> (PathBuf, RootDir) {
    let dir = std::env::temp_dir().join(format!("maas-tftp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = RootDir::new(&dir).unwrap();
    (dir, root)
}

pub(crate) fn rrq_for(filename: &str, options: &[(&str, &str)]) -> Vec<u8> {
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

pub(crate) struct Fixed(pub(crate) Vec<u8>);
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
