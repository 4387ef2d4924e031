//! Passive discovery on one interface, with an optional active scan, printing one JSON object
//! per line.
//!
//! ```text
//! cargo run --example discover --features discover -- --interface eth1 \
//!     [--scan 10.77.130.0/24] [--rate 200] [--duration 30] [--promiscuous]
//! ```
//!
//! Output: `{"event":"LISTENING",...}` once the capture is open, then one line per discovery
//! event (`NEW`, `REFRESHED`, `MOVED`, `FLIP_FLOP`, `CONFLICT`, `HOSTNAME`, with ip, mac,
//! previous_mac, vid, hostname, interface, first_seen, last_seen). With `--scan`, one
//! `SCAN_ANSWER` line per address that answered and a `SCAN_DONE` summary when the scan is
//! over. It runs for `--duration` seconds, or until SIGINT/SIGTERM, and ends with
//! `{"event":"STOPPED"}`. A command-line error prints the usage and exits with 2; a capture
//! that cannot be opened (no such interface, no CAP_NET_RAW) exits with 1.
//!
//! The arguments are parsed by hand, to keep the example free of extra dependencies.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use maas_discovery::scan::Scan;
use maas_discovery::watch::{Report, WatchConfig, Watcher};
use serde_json::json;
use tokio::time::Instant;

const USAGE: &str = "\
Passive ARP/NDP/mDNS discovery on one interface, with an optional active scan.

Usage:
  discover --interface IF [--scan CIDR] [--rate PPS] [--duration SECS] [--promiscuous]

Options:
  --interface IF     Capture on this interface (required).
  --scan CIDR        ARP-probe every address of this subnet (IPv4), or send duplicate
                     address solicitations to every address of a small IPv6 prefix.
  --rate PPS         Probes per second of the scan (default 200).
  --duration SECS    Stop after this many seconds (default: until SIGINT/SIGTERM).
  --promiscuous      Put the interface in promiscuous mode.
  --refresh SECS     Report REFRESHED at most once per SECS per address (default 600).
  --conflict-window SECS
                     Two MACs on one address within SECS conflict (default 10).
";

struct Args {
    interface: String,
    scan: Option<ipnet::IpNet>,
    rate: u32,
    duration: Option<Duration>,
    promiscuous: bool,
    refresh: u64,
    conflict_window: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        interface: String::new(),
        scan: None,
        rate: 200,
        duration: None,
        promiscuous: false,
        refresh: 600,
        conflict_window: 10,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--interface" => out.interface = value("--interface")?,
            "--scan" => {
                let v = value("--scan")?;
                out.scan = Some(v.parse().map_err(|e| format!("--scan {v}: {e}"))?);
            }
            "--rate" => {
                let v = value("--rate")?;
                out.rate = v.parse().map_err(|e| format!("--rate {v}: {e}"))?;
            }
            "--duration" => {
                let v = value("--duration")?;
                let secs: f64 = v.parse().map_err(|e| format!("--duration {v}: {e}"))?;
                out.duration = Some(
                    Duration::try_from_secs_f64(secs)
                        .map_err(|e| format!("--duration {v}: {e}"))?,
                );
            }
            "--refresh" => {
                let v = value("--refresh")?;
                out.refresh = v.parse().map_err(|e| format!("--refresh {v}: {e}"))?;
            }
            "--conflict-window" => {
                let v = value("--conflict-window")?;
                out.conflict_window = v
                    .parse()
                    .map_err(|e| format!("--conflict-window {v}: {e}"))?;
            }
            "--promiscuous" => out.promiscuous = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.interface.is_empty() {
        return Err("--interface is required".into());
    }
    Ok(out)
}

fn emit(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("discover: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("discover: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("discover: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = WatchConfig::new(&args.interface);
    config.promiscuous(args.promiscuous).scan_rate(args.rate);
    config
        .observer
        .refresh_interval_secs(args.refresh)
        .conflict_window_secs(args.conflict_window);
    if let Some(net) = args.scan {
        config.scan_targets(move || vec![net]);
    }
    let scan_config = config.scan.clone();
    let mut watcher = Watcher::open(config).map_err(|e| e.to_string())?;
    let mac = watcher.capture().mac();
    if let Some(net) = args.scan {
        // Refuse a subnet that cannot be scanned before listening, not after.
        let mut sc = scan_config;
        sc.source_mac = mac;
        Scan::subnet(sc, net).map_err(|e| e.to_string())?;
        watcher.scan_now();
    }
    emit(&json!({
        "event": "LISTENING",
        "interface": args.interface,
        "mac": mac,
        "scan": args.scan.map(|n| n.to_string()),
    }));
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        e = watcher.run(report) => return Err(format!("receiving on {}: {e}", args.interface)),
        () = until_deadline => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    emit(&json!({"event": "STOPPED", "neighbours": watcher.observer().len()}));
    Ok(())
}

fn report(report: Report) {
    match report {
        Report::Neighbour(event) => emit(&serde_json::to_value(&event).unwrap_or_default()),
        Report::ScanDone(summary) => {
            for answer in &summary.answers {
                let mut line = serde_json::to_value(answer).unwrap_or_default();
                line["event"] = json!("SCAN_ANSWER");
                emit(&line);
            }
            emit(&json!({
                "event": "SCAN_DONE",
                "targets": summary.targets,
                "answered": summary.answers.len(),
                "sent": summary.sent,
            }));
        }
        Report::SendFailed { error, .. } => eprintln!("discover: sending a probe: {error}"),
        Report::BadFrame(e) => eprintln!("discover: ignored a frame: {e}"),
        Report::ScanFailed { subnet, error } => eprintln!("discover: scanning {subnet}: {error}"),
        _ => {}
    }
}
