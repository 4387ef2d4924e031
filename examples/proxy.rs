//! The caching forward proxy for provisioned machines.
//!
//! ```text
//! cargo run --release --example proxy --features proxy-server -- --listen 10.77.180.1:3128 \
//!     --allow 10.77.180.0/24 --deny 10.77.181.0/24 --cache-dir /var/cache/maas-proxy \
//!     --cache-size 10000000000 [--upstream http://user:pass@parent:3128]
//! ```
//!
//! Clients from the `--allow` networks (and loopback) may use it; everyone else gets 403.
//! Destinations in the `--deny` networks are refused, besides loopback, link-local and
//! multicast (`--no-default-deny` drops those defaults, for a proxy in front of a local test
//! origin). `--listen` may be given several times: it listens on every address. It prints
//! `{"event":"listening","addr":...,"addrs":[...]}` on stdout once it accepts connections
//! (`addr` is the first of `addrs`), serves until SIGINT or SIGTERM, then prints `{"event":"stopped","metrics":{...}}`. A
//! command-line error prints the usage and exits with 2; a failure to start exits with 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use maas::proxy::acl::{AclConfig, default_denied};
use maas::proxy::server::{Proxy, ProxyConfig};

const USAGE: &str = "\
A caching forward HTTP proxy for provisioned machines.

Usage:
  proxy --listen ADDR:PORT --allow CIDR... --cache-dir DIR [OPTIONS]

Options:
  --listen ADDR:PORT     Where to listen (repeatable; default 127.0.0.1:3128).
  --allow CIDR           A client network allowed besides loopback (repeatable).
  --deny CIDR            A destination network refused (repeatable; the controller's own and
                         the BMC networks belong here).
  --no-default-deny      Do not refuse loopback, link-local and multicast destinations.
  --cache-dir DIR        The cache directory (required).
  --cache-size BYTES     The most bytes kept on disk (default 10 GiB).
  --memory-size BYTES    The most bytes of small objects kept in memory (default 256 MiB).
  --upstream URL         A parent proxy, http://[user:password@]host:port.
  --name NAME            The name in this proxy's Via token (default maas-proxy); proxies
                         chained to each other need different names.
  --header-timeout SECS  How long a client may take to send a request head (default 30).
  --max-connections N    The most client connections at once (default 4096).
  --threads N            Serving threads, each with its own single-threaded runtime
                         (default: one per core).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (config, listen, threads) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("proxy: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(config, listen, threads))
}

/// One single-threaded runtime per serving thread: a connection and its tasks stay on the
/// thread that accepted it (no wake-ups across threads on the hot path).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn run(config: ProxyConfig, listen: Vec<SocketAddr>, threads: usize) -> ExitCode {
    let proxy = match Proxy::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let mut serving = tokio::task::JoinSet::new();
    let mut addrs = Vec::with_capacity(listen.len());
    for addr in listen {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proxy: listening on {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        addrs.push(
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        );
        // The other serving threads accept on the same socket.
        let listener = match spread(&proxy, listener, threads) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proxy: {e}");
                return ExitCode::from(1);
            }
        };
        let proxy = proxy.clone();
        serving.spawn(async move { proxy.serve(listener).await });
    }
    let listening = serde_json::json!({
        "event": "listening",
        "addr": addrs.first(),
        "addrs": addrs,
    });
    println!("{listening}");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("proxy: {e}");
            return ExitCode::from(1);
        }
    };
    let code = tokio::select! {
        r = serving.join_next() => match r {
            Some(Ok(Err(e))) => {
                eprintln!("proxy: {e}");
                ExitCode::from(1)
            }
            Some(Err(e)) => {
                eprintln!("proxy: {e}");
                ExitCode::from(1)
            }
            Some(Ok(Ok(()))) | None => ExitCode::SUCCESS,
        },
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = term.recv() => ExitCode::SUCCESS,
    };
    let metrics = serde_json::to_string(&proxy.metrics()).unwrap_or_default();
    println!("{{\"event\":\"stopped\",\"metrics\":{metrics}}}");
    code
}

/// The configuration, every `--listen` address (the default one if none), and `--threads`.
fn parse(args: &[String]) -> Result<(ProxyConfig, Vec<SocketAddr>, Option<usize>), String> {
    let mut config = ProxyConfig::default();
    let mut listen = Vec::new();
    let mut acl = AclConfig::default();
    let mut deny: Vec<ipnet::IpNet> = Vec::new();
    let mut default_deny = true;
    let mut cache_dir = None;
    let mut threads = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen.push(
                value()?
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen: {e}"))?,
            ),
            "--allow" => acl
                .allow
                .push(value()?.parse().map_err(|e| format!("--allow: {e}"))?),
            "--deny" => deny.push(value()?.parse().map_err(|e| format!("--deny: {e}"))?),
            "--no-default-deny" => default_deny = false,
            "--cache-dir" => cache_dir = Some(value()?.into()),
            "--cache-size" => config.store.max_bytes = number(flag, value()?)?,
            "--memory-size" => config.store.memory_bytes = number(flag, value()?)?,
            "--upstream" => config.upstream = Some(value()?.clone()),
            "--name" => config.via = value()?.clone(),
            "--header-timeout" => {
                config.header_timeout = Duration::from_secs(number(flag, value()?)?)
            }
            "--max-connections" => {
                config.max_connections =
                    usize::try_from(number(flag, value()?)?).map_err(|e| e.to_string())?
            }
            "--threads" => {
                threads = Some(usize::try_from(number(flag, value()?)?).map_err(|e| e.to_string())?)
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    acl.deny = if default_deny {
        default_denied()
    } else {
        Vec::new()
    };
    acl.deny.extend(deny);
    config.acl = acl;
    config.store.dir = cache_dir.ok_or("--cache-dir is required")?;
    match listen.first() {
        Some(first) => config.listen = *first,
        None => listen.push(config.listen),
    }
    Ok((config, listen, threads))
}

/// Starts `threads - 1` more serving threads on clones of `listener`; gives back the listener
/// for this thread.
fn spread(
    proxy: &Proxy,
    listener: tokio::net::TcpListener,
    threads: usize,
) -> std::io::Result<tokio::net::TcpListener> {
    let std_listener = listener.into_std()?;
    for i in 1..threads {
        let clone = std_listener.try_clone()?;
        let proxy = proxy.clone();
        let rt = runtime()?;
        std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(clone) {
                        Ok(l) => {
                            if let Err(e) = proxy.serve(l).await {
                                eprintln!("proxy: {e}");
                            }
                        }
                        Err(e) => eprintln!("proxy: {e}"),
                    }
                });
            })?;
    }
    tokio::net::TcpListener::from_std(std_listener)
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number"))
}
