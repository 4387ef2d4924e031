//! Benchmarks of the per-request work of a cache hit, without I/O: the request checks (the
//! framing scan of the raw head, the client ACL, the target and the fields sent upstream), and
//! the freshness decision for a stored response, by the policy crate and by the remembered
//! fresh answer that stands in for it while nothing it decides on changed.
//!
//! Run with `cargo bench -p maas-proxy --bench hot_paths`; `-- --test` runs every bench once.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Version};
use maas_proxy::acl::{Acl, AclConfig};
use maas_proxy::policy::{self, FreshHit, Lookup};
use maas_proxy::request::{self, FramingScanner, Limits};

/// What apt sends for a package through a proxy.
const HEAD: &[u8] = b"GET http://archive.ubuntu.com/ubuntu/pool/main/b/bash/bash_5.2.21-2ubuntu4_amd64.deb HTTP/1.1\r\n\
Host: archive.ubuntu.com\r\n\
User-Agent: Debian APT-HTTP/1.3 (2.7.14build2)\r\n\
Accept: text/*\r\n\r\n";

fn acl() -> Acl {
    Acl::new(&AclConfig {
        allow: vec![
            "10.77.180.0/24".parse().expect("a CIDR"),
            "fd77:180::/64".parse().expect("a CIDR"),
        ],
        ..AclConfig::default()
    })
}

fn request_checks(c: &mut Criterion) {
    let acl = acl();
    let limits = Limits::default();
    let client: IpAddr = "10.77.180.20".parse().expect("an address");
    let head = request::parse_head(HEAD, &limits)
        .expect("a valid head")
        .expect("a complete head");
    let mut g = c.benchmark_group("request");
    g.bench_function("framing scan of one head", |b| {
        let mut scanner = FramingScanner::new(&limits);
        let mut i = 0;
        b.iter(|| {
            scanner.feed(black_box(HEAD));
            let r = scanner.refusal(i);
            i += 1;
            r
        });
    });
    g.bench_function("client ACL", |b| {
        b.iter(|| acl.check_client(black_box(client)))
    });
    g.bench_function("check (target, loop, fields)", |b| {
        b.iter(|| {
            request::check(
                &acl,
                black_box(&head.method),
                black_box(&head.uri),
                Version::HTTP_11,
                black_box(&head.headers),
                "maas-proxy",
            )
        })
    });
    g.finish();
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn freshness(c: &mut Criterion) {
    let req = Request::get("http://archive.ubuntu.com/ubuntu/pool/main/b/bash/bash_5.2_amd64.deb")
        .header("host", "archive.ubuntu.com")
        .header("user-agent", "Debian APT-HTTP/1.3 (2.7.14build2)")
        .body(())
        .expect("a request")
        .into_parts()
        .0;
    let res = Response::builder()
        .header("date", "Tue, 14 Nov 2023 22:13:20 GMT")
        .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")
        .header("etag", "\"5f3e-60d0a8b1c4d80\"")
        .header("content-type", "application/vnd.debian.binary-package")
        .header("content-length", "1482876")
        .header("accept-ranges", "bytes")
        .header("server", "Apache")
        .body(())
        .expect("a response")
        .into_parts()
        .0;
    let stored = policy::new_policy(&req, &res, t(0)).expect("storable");
    let Lookup::Fresh(head) = policy::lookup(&stored, &req, t(10)) else {
        panic!("fresh")
    };
    let hit = FreshHit::new(&stored, &req, &head, t(10)).expect("a fast answer");
    let mut g = c.benchmark_group("hit freshness");
    g.bench_function("policy crate (before_request)", |b| {
        b.iter(|| policy::lookup(black_box(&stored), black_box(&req), t(20)))
    });
    g.bench_function("remembered fresh answer", |b| {
        b.iter(|| hit.answer(black_box(&req), t(20)))
    });
    g.finish();
}

criterion_group!(benches, request_checks, freshness);
criterion_main!(benches);
