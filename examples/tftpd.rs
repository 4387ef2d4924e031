//! A TFTP server for network boot, serving one directory.
//!
//! ```text
//! cargo run --release --example tftpd --features tftpd -- --root /srv/tftp --listen 0.0.0.0:69
//! ```
//!
//! It serves until SIGINT or SIGTERM and prints one JSON object per line on stdout: first
//! `{"event":"listening",...}`, then one line per transfer that ends (`completed`, `aborted`
//! by the client, `timed_out`, `failed`) with its peer, file, bytes, block size, window,
//! retransmissions and duration, and at the end `{"event":"stopped","metrics":{...}}`. A
//! command-line error prints the usage on stderr and exits with status 2; a failure to start
//! (the port taken, no such root) exits with 1.
//!
//! The arguments are parsed by hand, to keep the example free of extra dependencies.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use maas_pxe::tftp::service::{Service, ServiceConfig};
use maas_pxe::tftp::{RootDir, WriteConfig};

const USAGE: &str = "\
A TFTP server for network boot (RFC 1350, 2347, 2348, 2349, 7440).

Usage:
  tftpd --root DIR --listen ADDR:PORT [OPTIONS]
  tftpd --help

Options:
  --root DIR            Serve files under DIR (nothing outside it, whatever the name).
  --listen ADDR:PORT    Where requests arrive (default 0.0.0.0:69).
  --max-blksize N       The largest block size granted (8-65464, default 65464).
  --mtu N               Cap the block size so DATA fits in one packet of this MTU.
  --max-window N        The largest window granted (1-32768, default 4096).
  --window-budget N     Cap the window granted to what fills N bytes of a client's receive
                        buffer (default 0: no cap beyond --max-window).
  --loss-budget N       Once a client loses blocks, bursts to it fill at most N bytes of its
                        receive buffer (default 163840).
  --single-port         Serve every transfer from the listening port.
  --lanes N             Threads of their own for read transfers (default: one per core less
                        one; 0: none, they run on the --threads runtime).
  --ack-spin-us N       How long a transfer alone on its lane polls for the next ACK before
                        sleeping (default 50; 0: never).
  --max-sessions N      Transfers at once (default 10000).
  --max-per-client N    Transfers at once from one address (default 128).
  --rate N              New requests per second accepted from one address (default 200).
  --burst N             Requests one address may send in a burst (default 400).
  --initial-timeout-ms N  The first retransmission timeout (default 1000).
  --max-tries N         Sends of a packet before giving up on a client (default 6).
  --quiet               Print only the first and last lines, not one per transfer.
  --threads N           Worker threads (default: one per core; 1: a single-threaded runtime).
  --allow-write DIR     Accept uploads (write requests) into DIR (default: refused).
  --allow-overwrite     With --allow-write: an upload may replace an existing file.
  --max-upload N        With --allow-write: the largest upload in bytes (default 64 MiB).

Output: one JSON object per line on stdout, starting with {\"event\":\"listening\",...}.
";

struct Args {
    root: String,
    config: ServiceConfig,
    quiet: bool,
    threads: Option<usize>,
}

fn parse_args(args: Vec<String>) -> Result<Args, String> {
    let mut args = args.into_iter();
    let mut root = None;
    let mut config = ServiceConfig::default();
    let mut quiet = false;
    let mut threads = None;
    fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag} {v:?} is not a valid number"))
    }
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => root = Some(value()?),
            "--listen" => {
                let v = value()?;
                config.listen = v
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("--listen {v:?} is not an ADDR:PORT"))?;
            }
            "--max-blksize" => {
                let n: u16 = number(&flag, &value()?)?;
                if !(8..=65464).contains(&n) {
                    return Err(format!("--max-blksize {n} is not between 8 and 65464"));
                }
                config.server.max_blksize(n);
            }
            "--mtu" => {
                let n: u16 = number(&flag, &value()?)?;
                if n < 576 {
                    return Err(format!("--mtu {n} is below 576"));
                }
                config.server.mtu(Some(n));
            }
            "--max-window" => {
                let n: u16 = number(&flag, &value()?)?;
                if !(1..=32768).contains(&n) {
                    return Err(format!("--max-window {n} is not between 1 and 32768"));
                }
                config.server.max_window(n);
            }
            "--window-budget" => {
                config.server.window_budget = number(&flag, &value()?)?;
            }
            "--loss-budget" => {
                config.server.loss_budget = number(&flag, &value()?)?;
            }
            "--single-port" => config.single_port = true,
            "--lanes" => config.lanes = Some(number(&flag, &value()?)?),
            "--ack-spin-us" => config.ack_spin_us = number(&flag, &value()?)?,
            "--max-sessions" => config.max_sessions = number(&flag, &value()?)?,
            "--max-per-client" => config.max_sessions_per_client = number(&flag, &value()?)?,
            "--rate" => config.requests_per_second = number(&flag, &value()?)?,
            "--burst" => config.request_burst = number(&flag, &value()?)?,
            "--quiet" => quiet = true,
            "--initial-timeout-ms" => {
                let n: u64 = number(&flag, &value()?)?;
                config
                    .server
                    .initial_timeout(std::time::Duration::from_millis(n.max(1)));
            }
            "--max-tries" => {
                let n: u32 = number(&flag, &value()?)?;
                config.server.max_tries(n);
            }
            "--allow-write" => {
                config.write.get_or_insert_with(WriteConfig::default).dir = value()?.into();
            }
            "--allow-overwrite" => {
                config
                    .write
                    .get_or_insert_with(WriteConfig::default)
                    .overwrite = true;
            }
            "--max-upload" => {
                let n: u64 = number(&flag, &value()?)?;
                config
                    .write
                    .get_or_insert_with(WriteConfig::default)
                    .max_size = n;
            }
            "--threads" => {
                let n: usize = number(&flag, &value()?)?;
                if !(1..=1024).contains(&n) {
                    return Err(format!("--threads {n} is not between 1 and 1024"));
                }
                threads = Some(n);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let root = root.ok_or("--root is required")?;
    if config
        .write
        .as_ref()
        .is_some_and(|w| w.dir.as_os_str().is_empty())
    {
        return Err("--allow-overwrite and --max-upload need --allow-write DIR".into());
    }
    Ok(Args {
        root,
        config,
        quiet,
        threads,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tftpd: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // One thread: a current-thread runtime, where a transfer's wake-up never crosses threads.
    let mut runtime = if args.threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = args.threads.filter(|&n| n > 1) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tftpd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftpd: {e}");
            ExitCode::from(1)
        }
    }
}

fn line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn serve(args: Args) -> Result<(), String> {
    let root = RootDir::new(&args.root).map_err(|e| format!("root {:?}: {e}", args.root))?;
    let mut service = Service::bind(args.config.clone(), Arc::new(root))
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.config.listen))?;
    if !args.quiet {
        service.on_event(|record| {
            let mut v = serde_json::to_value(record).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("event".into(), record.outcome.into());
            }
            line(&v);
        });
    }
    let metrics = service.metrics();
    let local = service.local_addr().map_err(|e| e.to_string())?;
    line(&serde_json::json!({
        "event": "listening",
        "listen": local.to_string(),
        "root": args.root,
        "single_port": args.config.single_port,
        "max_blksize": args.config.server.max_blksize,
        "max_window": args.config.server.max_window,
        "window_budget": args.config.server.window_budget,
        "loss_budget": args.config.server.loss_budget,
        "write": args.config.write.as_ref().map(|w| w.dir.display().to_string()),
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = service.run() => r.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    };
    line(&serde_json::json!({"event": "stopped", "metrics": metrics.snapshot()}));
    result
}
