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
    group.finish();
}

criterion_group!(benches, decode, transfer);
criterion_main!(benches);
