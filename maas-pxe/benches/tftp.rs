//! The TFTP engine's per-block hot path: decoding an ACK, and the server turning ACKs into
//! DATA packets (a whole 1 MiB file, in memory, window by window) at several block sizes and
//! windows, against the client engine.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maas_pxe::tftp::{
    self, Client, ClientConfig, Content, FileProvider, Packet, ProviderError, Response,
    ServerConfig,
};

struct Memory(Content);

impl FileProvider for Memory {
    fn open(&self, _: &str, _: SocketAddr) -> Result<Content, ProviderError> {
        Ok(self.0.clone())
    }
}

fn decode(c: &mut Criterion) {
    let ack = [0u8, 4, 0x12, 0x34];
    let rrq =
        b"\x00\x01bootx64.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00";
    c.bench_function("tftp/decode/ack", |b| {
        b.iter(|| Packet::decode(black_box(&ack)))
    });
    c.bench_function("tftp/decode/rrq_edk2", |b| {
        b.iter(|| Packet::decode(black_box(&rrq[..])))
    });
}

/// Serves 1 MiB to the client engine, all in memory: per block, the server reads the block
/// into its packet buffer and the client copies it out; per window, one ACK each way.
fn transfer(c: &mut Criterion) {
    let file: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
    let provider = Memory(Content::from(file.clone()));
    let server: SocketAddr = "10.77.100.1:69".parse().unwrap();
    let client_addr: SocketAddr = "10.77.100.2:40000".parse().unwrap();
    let tid: SocketAddr = "10.77.100.1:50000".parse().unwrap();
    let config = ServerConfig::default();
    let mut group = c.benchmark_group("tftp/transfer_1MiB");
    group.throughput(Throughput::Bytes(file.len() as u64));
    for (blksize, window) in [(512u16, 1u16), (1468, 16), (8192, 16), (65464, 64)] {
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{blksize}x{window}")),
            &(blksize, window),
            |b, &(blksize, window)| {
                b.iter(|| {
                    let now = Instant::now();
                    let mut cc = ClientConfig::default();
                    cc.blksize(blksize).windowsize(window);
                    let mut client = Client::new(now, server, "f", cc);
                    let (_, rrq) = client.poll_transmit().unwrap();
                    let Response::Start(mut t) =
                        tftp::respond(now, &rrq, client_addr, &provider, &config)
                    else {
                        panic!("refused")
                    };
                    let mut buf = Vec::with_capacity(65536);
                    let mut received = 0usize;
                    while !client.is_finished() {
                        while t.poll_transmit(now, &mut buf) {
                            client.handle_datagram(now, tid, &buf);
                        }
                        received += client.take_data().len();
                        while let Some((_, ack)) = client.poll_transmit() {
                            t.handle_datagram(now, &ack);
                        }
                    }
                    assert_eq!(received, 1 << 20);
                })
            },
        );
    }
    // A client whose receive buffer holds 14 datagrams of a 64-block window: the first
    // window's tail is lost, the server's timeout narrows the bursts (9 blocks and a probe at
    // 8192 within the default loss budget), and every later burst is acknowledged at once.
    group.bench_function("8192x64_rcvbuf14", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut cc = ClientConfig::default();
            cc.blksize(8192).windowsize(64);
            let mut client = Client::new(now, server, "f", cc);
            let (_, rrq) = client.poll_transmit().unwrap();
            let Response::Start(mut t) = tftp::respond(now, &rrq, client_addr, &provider, &config)
            else {
                panic!("refused")
            };
            let mut buf = Vec::with_capacity(65536);
            let mut received = 0usize;
            let mut later = now;
            while !client.is_finished() {
                let mut burst = 0;
                while t.poll_transmit(later, &mut buf) {
                    burst += 1;
                    if burst <= 14 {
                        client.handle_datagram(later, tid, &buf);
                    }
                }
                received += client.take_data().len();
                let mut acked = false;
                while let Some((_, ack)) = client.poll_transmit() {
                    t.handle_datagram(later, &ack);
                    acked = true;
                }
                if !acked && !client.is_finished() {
                    later = t.poll_timeout().unwrap();
                    t.handle_timeout(later);
                }
            }
            assert_eq!(received, 1 << 20);
        })
    });
    group.finish();
}

/// The server side alone, from a real 4 MiB file at 1468 x 64 (the ACK for each window's last
/// block fed back at once): DATA written packet by packet (one `pread` each), a window at a
/// time (one `preadv`), or only described for a gathering send (no read, no copy).
fn window_from_file(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("maas-tftp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("f.bin"), &file).unwrap();
    let root = tftp::RootDir::new(&dir).unwrap();
    let client_addr: SocketAddr = "10.77.100.2:40000".parse().unwrap();
    let rrq = b"\x00\x01f.bin\x00octet\x00blksize\x001468\x00windowsize\x0064\x00";
    let config = ServerConfig::default();
    let start = || {
        let now = Instant::now();
        let Response::Start(mut t) = tftp::respond(now, rrq, client_addr, &root, &config) else {
            panic!("refused")
        };
        let mut oack = Vec::new();
        assert!(t.poll_transmit(now, &mut oack));
        t.handle_datagram(now, &[0, 4, 0, 0]);
        (t, now)
    };
    let ack = |t: &mut tftp::Transfer, now, block: u16| {
        t.handle_datagram(now, &Packet::Ack { block }.to_vec());
    };
    let block_of = |d: &[u8]| u16::from_be_bytes([d[2], d[3]]);
    let mut group = c.benchmark_group("tftp/window_from_file_4MiB");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("packet_by_packet", |b| {
        b.iter(|| {
            let (mut t, now) = start();
            let mut buf = vec![0u8; t.max_datagram_len()];
            while !t.is_finished() {
                let mut last = None;
                while let Some(n) = t.poll_transmit_into(now, &mut buf) {
                    last = Some(block_of(&buf[..n]));
                }
                ack(&mut t, now, last.unwrap());
            }
        })
    });
    group.bench_function("window_preadv", |b| {
        b.iter(|| {
            let (mut t, now) = start();
            let stride = t.max_datagram_len();
            let (mut out, mut lens) = (vec![0u8; stride * 64], Vec::new());
            while !t.is_finished() {
                t.poll_transmit_batch(now, &mut out, stride, &mut lens);
                let i = lens.len() - 1;
                ack(&mut t, now, block_of(&out[i * stride..]));
            }
        })
    });
    group.bench_function("described_only", |b| {
        b.iter(|| {
            let (mut t, now) = start();
            let mut blocks = Vec::new();
            while !t.is_finished() {
                t.poll_transmit_blocks(64, &mut blocks);
                let last = blocks.last().unwrap().header;
                ack(&mut t, now, u16::from_be_bytes([last[2], last[3]]));
            }
        })
    });
    group.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, decode, transfer, window_from_file);
criterion_main!(benches);
