//! One DHCP lease's log line (the fields the controller logs for each lease), formatted by
//! tracing-subscriber's JSON format with flattened events (what the controller used) and by
//! [`JsonLines`] (what it uses), written to a sink.

use std::hint::black_box;
use std::io;

use criterion::{Criterion, criterion_group, criterion_main};
use maas_controller::logging::JsonLines;

/// A `detail` of the size and shape of a lease line's (the event as JSON).
const DETAIL: &str = r#"{"event":"leased","client":{"mac":"52:54:00:12:34:56"},"mac":"52:54:00:12:34:56","ip":"10.77.16.9","hostname":null,"boot":null,"lease_secs":3600,"renewal":false}"#;

fn lease_line() {
    let ip = std::net::Ipv4Addr::new(10, 77, 16, 9);
    tracing::info!(
        event = "leased",
        source = "dhcp",
        interface = "vsrv",
        ip = %ip,
        detail = %black_box(DETAIL)
    );
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lease_log_line");
    group.throughput(criterion::Throughput::Elements(1));
    let tracing_json = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(io::sink)
        .finish();
    tracing::subscriber::with_default(tracing_json, || {
        group.bench_function("tracing_subscriber_json", |b| b.iter(lease_line));
    });
    let ours = tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_writer(io::sink)
        .finish();
    tracing::subscriber::with_default(ours, || {
        group.bench_function("json_lines", |b| b.iter(lease_line));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
