//! The TFTP service and client adapters on loopback sockets: large windows in segmented sends,
//! streaming into a writer, and a writer that fails.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maas_pxe::tftp::service::{
    Metrics, MetricsSnapshot, Service, ServiceConfig, fetch, fetch_chunks, fetch_to,
};
use maas_pxe::tftp::{ClientConfig, ClientError, RootDir};

use crate::tftp_sim::pattern;

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    dir: std::path::PathBuf,
}

/// A service on 127.0.0.1 serving `files` from a fresh directory, with `window_budget`.
async fn serve(tag: &str, files: &[(&str, &[u8])], window_budget: u32) -> Server {
    serve_with(tag, files, window_budget, false).await
}

async fn serve_with(
    tag: &str,
    files: &[(&str, &[u8])],
    window_budget: u32,
    single_port: bool,
) -> Server {
    let dir = std::env::temp_dir().join(format!("maas-tftp-svc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let mut config = ServiceConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        single_port,
        ..ServiceConfig::default()
    };
    config.server.max_window(1024);
    config.server.window_budget = window_budget;
    let service = Service::bind(config, Arc::new(RootDir::new(&dir).unwrap()))
        .await
        .unwrap();
    let addr = service.local_addr().unwrap();
    let metrics = service.metrics();
    tokio::spawn(service.run());
    Server { addr, metrics, dir }
}

/// The service's counters once `done` holds (the server takes the last datagram after the
/// client has returned); fails after 3 s.
async fn settled(metrics: &Metrics, done: impl Fn(&MetricsSnapshot) -> bool) -> MetricsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = metrics.snapshot();
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not settle: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn large_windows_stream_into_a_writer() {
    runtime().block_on(async {
        // 3 MiB + 5 bytes: windows of 512 blocks of 1468 (segmented sends of 44), and the
        // last short block.
        let file = pattern((3 << 20) + 5);
        let s = serve("stream", &[("big.bin", &file)], 0).await;
        let mut config = ClientConfig::default();
        config.blksize(1468).windowsize(512).tsize(true);
        let mut out = Vec::new();
        let n = fetch_to(s.addr, "big.bin", config.clone(), &mut out)
            .await
            .unwrap();
        assert_eq!(n, file.len() as u64);
        assert!(out == file, "the file arrived changed");
        // The same through `fetch`.
        assert!(fetch(s.addr, "big.bin", config.clone()).await.unwrap() == file);
        // And as owned chunks of at least 1 MiB (the last shorter), each buffer handed back
        // and given out again.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut handed_back = 0;
        let n = fetch_chunks(s.addr, "big.bin", config, 1 << 20, |c| {
            chunks.push(c.clone());
            handed_back += 1;
            Ok(c)
        })
        .await
        .unwrap();
        assert_eq!(n, file.len() as u64);
        assert!(chunks.concat() == file, "the chunks arrived changed");
        let (last, full) = chunks.split_last().unwrap();
        assert!(
            full.iter().all(|c| c.len() >= 1 << 20),
            "a chunk under 1 MiB"
        );
        assert!(!last.is_empty() && handed_back == chunks.len());
        let m = settled(&s.metrics, |m| m.completed == 3).await;
        assert_eq!((m.failed, m.aborted, m.timed_out), (0, 0, 0));
        std::fs::remove_dir_all(&s.dir).unwrap();
    });
}

#[test]
fn single_port_mode_sends_large_windows_to_each_client() {
    runtime().block_on(async {
        // From the shared listening socket: segmented sends and `sendmmsg` addressed to the
        // client, from the mapping (3 MiB) and from the read path (64 KiB), two at once.
        let big = pattern((3 << 20) + 1);
        let small = pattern(65_536);
        let s = serve_with(
            "single",
            &[("big.bin", &big), ("small.bin", &small)],
            0,
            true,
        )
        .await;
        let mut config = ClientConfig::default();
        config.blksize(1468).windowsize(256);
        let (a, b) = tokio::join!(
            fetch(s.addr, "big.bin", config.clone()),
            fetch(s.addr, "small.bin", config)
        );
        assert!(
            a.unwrap() == big && b.unwrap() == small,
            "a file arrived changed"
        );
        let m = settled(&s.metrics, |m| m.completed == 2).await;
        assert_eq!((m.failed, m.aborted, m.timed_out), (0, 0, 0));
        std::fs::remove_dir_all(&s.dir).unwrap();
    });
}

/// A writer that fails once it has taken `room` bytes.
struct Full {
    room: usize,
    taken: usize,
}

impl io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken + buf.len() > self.room {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no room"));
        }
        self.taken += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_ends_the_transfer_on_both_sides() {
    runtime().block_on(async {
        let file = pattern(1 << 20);
        let s = serve("full", &[("big.bin", &file)], 160 << 10).await;
        let mut config = ClientConfig::default();
        config.blksize(1468).windowsize(16);
        let mut out = Full {
            room: 100_000,
            taken: 0,
        };
        let err = fetch_to(s.addr, "big.bin", config, &mut out)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Io(e) if e.kind() == io::ErrorKind::StorageFull),
            "{err:?}"
        );
        assert!(out.taken <= 100_000);
        // A store that fails ends the transfer the same way.
        let mut config = ClientConfig::default();
        config.blksize(1468).windowsize(16);
        let err = fetch_chunks(s.addr, "big.bin", config, 64 << 10, |_| {
            Err(io::Error::new(io::ErrorKind::StorageFull, "no room"))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::Io(e) if e.kind() == io::ErrorKind::StorageFull),
            "{err:?}"
        );
        // The server was told (ERROR 3) and ends the transfer as aborted, not by timing out
        // (which would take seconds more than this wait allows).
        let m = settled(&s.metrics, |m| m.aborted == 2).await;
        assert_eq!((m.completed, m.timed_out, m.active), (0, 0, 0));
        std::fs::remove_dir_all(&s.dir).unwrap();
    });
}

#[test]
fn a_file_cut_short_under_a_mapped_transfer_ends_it_cleanly() {
    // A long file is sent straight from a memory mapping. If it is truncated in place during
    // the transfer, the kernel cannot read the mapping: the service must notice (no fault),
    // tell the client with an ERROR rather than end the file early, and count a failure.
    runtime().block_on(async {
        let file = pattern(2 << 20);
        let s = serve("cut", &[("big.bin", &file)], 160 << 10).await;
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rrq = maas_pxe::tftp::Packet::Rrq(maas_pxe::tftp::Request {
            filename: "big.bin".into(),
            mode: maas_pxe::tftp::Mode::Octet,
            options: maas_pxe::tftp::Options::new(),
        })
        .to_vec();
        client.send_to(&rrq, s.addr).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let recv = async |buf: &mut Vec<u8>| {
            tokio::time::timeout(Duration::from_secs(3), client.recv_from(buf))
                .await
                .expect("no answer")
                .unwrap()
        };
        let (n, tid) = recv(&mut buf).await;
        assert_eq!(&buf[..4], &[0, 3, 0, 1]);
        assert!(buf[4..n] == file[..512]);
        // Cut the file to nothing, in place, then ask for block 2.
        std::fs::OpenOptions::new()
            .write(true)
            .open(s.dir.join("big.bin"))
            .unwrap()
            .set_len(0)
            .unwrap();
        client.send_to(&[0, 4, 0, 1], tid).await.unwrap();
        let (n, _) = recv(&mut buf).await;
        assert_eq!(
            maas_pxe::tftp::Packet::decode(&buf[..n]).unwrap(),
            maas_pxe::tftp::Packet::Error {
                code: maas_pxe::tftp::ErrorCode::Undefined,
                message: "File changed during transfer".into()
            }
        );
        let m = settled(&s.metrics, |m| m.failed == 1).await;
        assert_eq!((m.completed, m.timed_out, m.active), (0, 0, 0));
        std::fs::remove_dir_all(&s.dir).unwrap();
    });
}

/// Transfers on lanes and without them (`lanes: Some(0)`), lock-step and windowed: each file
/// arrives whole, and each record names the lane that ran it, or none.
#[test]
fn transfers_run_on_lanes_or_on_the_callers_runtime() {
    runtime().block_on(async {
        let file = pattern((1 << 20) + 77);
        let dir = std::env::temp_dir().join(format!("maas-tftp-svc-lanes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.bin"), &file).unwrap();
        for lanes in [None, Some(0), Some(2)] {
            let config = ServiceConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                lanes,
                ..ServiceConfig::default()
            };
            let mut service = Service::bind(config, Arc::new(RootDir::new(&dir).unwrap()))
                .await
                .unwrap();
            let records = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = Arc::clone(&records);
            service.on_event(move |r| sink.lock().unwrap().push(r.lane));
            let (addr, metrics) = (service.local_addr().unwrap(), service.metrics());
            let task = tokio::spawn(service.run());
            for window in [1, 16] {
                let mut client = ClientConfig::default();
                client.blksize(1468).windowsize(window);
                assert!(fetch(addr, "f.bin", client).await.unwrap() == file);
            }
            settled(&metrics, |m| m.completed == 2).await;
            let lanes_used = records.lock().unwrap().clone();
            let expected = match lanes {
                Some(n) => n > 0,
                None => std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            };
            assert_eq!(lanes_used.len(), 2);
            assert!(
                lanes_used.iter().all(|l| l.is_some() == expected),
                "lanes {lanes:?}: {lanes_used:?}"
            );
            task.abort();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
