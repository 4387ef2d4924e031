//! A PXE and HTTP-boot DHCP server for one subnet described on the command line.
//!
//! ```text
//! cargo run --example dhcpd --features dhcpd -- --interface eth1 \
//!     --subnet 10.77.0.0/24 --range 10.77.0.100-10.77.0.199 --gateway 10.77.0.1 \
//!     --tftp 10.77.0.1 --state /var/lib/dhcpd.redb
//! ```
//!
//! It serves until SIGINT or SIGTERM and prints one JSON object per line on stdout: first
//! `{"event":"listening",...}` once its sockets are open, then one line per request answered
//! or ignored (`offered`, `leased` with the boot decision, `refused`, `ignored`, ...), each
//! with the receiving `interface`, and `{"event":"stopped"}` at the end. With `--state`,
//! leases are kept in a crash-safe file and acknowledged only once committed; without it they
//! live in memory. A command-line error prints the usage on stderr and exits with status 2; a
//! failure to start (no such interface, port 67 taken, unreadable state) exits with 1.
//!
//! The arguments are parsed by hand, to keep the example free of extra dependencies.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;

use maas_ipam::{Durable, Ipam, RedbStore};
use maas_net::{IpRange, IpRangeKind, Subnet, SubnetId, Topology};
use maas_pxe::dhcp::server::{
    InterfaceConfig, Leases, Mode, Report, Server4, Server6, ServerConfig, ServiceConfig,
    ServiceHandle, serve4, serve6,
};
use maas_pxe::dhcp::{BootConfig, MAAS_HTTP_PORT};

const USAGE: &str = "\
A PXE and HTTP-boot DHCP server for one subnet.

Usage:
  dhcpd --interface IF --subnet CIDR --range START-END [OPTIONS]
  dhcpd --help

Options:
  --interface IF        Serve on this interface (repeatable; at least one).
  --subnet CIDR         The IPv4 subnet served, e.g. 10.77.0.0/24 (required).
  --range START-END     The dynamic range leased from (required).
  --gateway IP          The subnet's gateway (option 3).
  --dns IP              A DNS server (option 6; repeatable).
  --domain NAME         The domain name (option 15).
  --tftp IP             The TFTP server (next-server, options 66 and 150); default: this server.
  --http-boot URL       The base URL of HTTP boot files and the iPXE script, in place of
                        http://{server}:5248/ ({server} is replaced by this server's address).
  --proxy-dhcp          ProxyDHCP: answer booting clients with boot information only, on
                        ports 67 and 4011; another server hands out addresses.
  --lease-secs N        Lease time in seconds (default 3600).
  --conflict-check      Ping an address before offering it.
  --no-rapid-commit     Ignore rapid commit (option 80) in DISCOVERs.
  --state FILE          Keep leases in this file (crash-safe; ACK only after commit).
  --commit-delay MS     With --state, under load, gather leases for up to MS milliseconds
                        per disk sync (default 3; 0: sync as soon as one is queued).
  --journal-kib N       With --state, the journal's size in KiB (default 4096): each sync
                        appends to it, and a full journal is written into FILE at once
                        (0: no journal, each sync writes FILE's tables).
  --threads N           Runtime threads (default 1: one thread keeps up with tens of
                        thousands of datagrams a second; more add wake-ups, not speed).
  --v6                  Serve DHCPv6 as well (needs --subnet6 and --range6).
  --subnet6 CIDR        The IPv6 subnet served.
  --range6 START-END    Its dynamic range (at least 256 addresses).

Output: one JSON object per line on stdout, starting with {\"event\":\"listening\",...}.
Exit status: 0 after SIGINT/SIGTERM, 1 when the server cannot start, 2 on a command-line error.
";

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let options = match args.map_err(|bad| format!("argument {bad:?} is not valid UTF-8")) {
        Ok(args) if args.iter().any(|a| a == "--help" || a == "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(args) => parse(&args),
        Err(e) => Err(e),
    };
    let options = match options {
        Ok(options) => options,
        Err(message) => {
            eprint!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(options)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            emit(&serde_json::json!({ "event": "failed", "error": message }));
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    interfaces: Vec<String>,
    subnet: ipnet::IpNet,
    range: (IpAddr, IpAddr),
    gateway: Option<IpAddr>,
    dns: Vec<IpAddr>,
    domain: Option<String>,
    tftp: Option<Ipv4Addr>,
    http_boot: Option<String>,
    proxy: bool,
    lease_secs: u32,
    conflict_check: bool,
    rapid_commit: bool,
    state: Option<String>,
    commit_delay_ms: u64,
    journal_kib: u64,
    threads: usize,
    v6: Option<(ipnet::IpNet, (IpAddr, IpAddr))>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut interfaces = Vec::new();
    let (mut subnet, mut range, mut gateway, mut dns) = (None, None, None, Vec::new());
    let (mut domain, mut tftp, mut http_boot, mut state) = (None, None, None, None);
    let (mut proxy, mut conflict_check, mut rapid_commit, mut v6) = (false, false, true, false);
    let (mut subnet6, mut range6) = (None, None);
    let mut lease_secs = 3600;
    let mut commit_delay_ms = 3;
    let mut journal_kib = RedbStore::DEFAULT_JOURNAL_BYTES / 1024;
    let mut threads = 1;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--interface" => interfaces.push(value()?),
            "--subnet" => subnet = Some(parse_cidr(flag, &value()?)?),
            "--range" => range = Some(parse_range(flag, &value()?)?),
            "--gateway" => gateway = Some(parse_value::<IpAddr>(flag, &value()?)?),
            "--dns" => dns.push(parse_value::<IpAddr>(flag, &value()?)?),
            "--domain" => domain = Some(value()?),
            "--tftp" => tftp = Some(parse_value::<Ipv4Addr>(flag, &value()?)?),
            "--http-boot" => {
                let url = value()?;
                if !url.contains("://") {
                    return Err(format!("--http-boot {url:?} is not a URL"));
                }
                http_boot = Some(url);
            }
            "--proxy-dhcp" => proxy = true,
            "--lease-secs" => lease_secs = parse_value::<u32>(flag, &value()?)?,
            "--conflict-check" => conflict_check = true,
            "--no-rapid-commit" => rapid_commit = false,
            "--state" => state = Some(value()?),
            "--commit-delay" => {
                commit_delay_ms = parse_value::<u64>(flag, &value()?)?;
                if commit_delay_ms > 1000 {
                    return Err(format!("--commit-delay {commit_delay_ms} is over 1000 ms"));
                }
            }
            "--journal-kib" => {
                journal_kib = parse_value::<u64>(flag, &value()?)?;
                if journal_kib > 1 << 20 {
                    return Err(format!("--journal-kib {journal_kib} is over 1 GiB"));
                }
            }
            "--threads" => {
                threads = parse_value::<usize>(flag, &value()?)?;
                if !(1..=1024).contains(&threads) {
                    return Err(format!("--threads {threads} is not between 1 and 1024"));
                }
            }
            "--v6" => v6 = true,
            "--subnet6" => subnet6 = Some(parse_cidr(flag, &value()?)?),
            "--range6" => range6 = Some(parse_range(flag, &value()?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if interfaces.is_empty() {
        return Err("--interface is required".into());
    }
    let subnet = subnet.ok_or("--subnet is required")?;
    let range = range.ok_or("--range is required")?;
    if !subnet.addr().is_ipv4() || !range.0.is_ipv4() {
        return Err("--subnet and --range are IPv4 (use --subnet6 and --range6 for IPv6)".into());
    }
    let v6 = match (v6, subnet6, range6) {
        (true, Some(subnet6), Some(range6)) => {
            if !subnet6.addr().is_ipv6() || !range6.0.is_ipv6() {
                return Err("--subnet6 and --range6 are IPv6".into());
            }
            Some((subnet6, range6))
        }
        (true, _, _) => return Err("--v6 needs --subnet6 and --range6".into()),
        (false, None, None) => None,
        (false, _, _) => return Err("--subnet6 and --range6 need --v6".into()),
    };
    Ok(Options {
        interfaces,
        subnet,
        range,
        gateway,
        dns,
        domain,
        tftp,
        http_boot,
        proxy,
        lease_secs,
        conflict_check,
        rapid_commit,
        state,
        commit_delay_ms,
        journal_kib,
        threads,
        v6,
    })
}

fn parse_value<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| format!("{flag} {text:?} is not valid: {e}"))
}

fn parse_cidr(flag: &str, text: &str) -> Result<ipnet::IpNet, String> {
    parse_value(flag, text)
}

fn parse_range(flag: &str, text: &str) -> Result<(IpAddr, IpAddr), String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("{flag} {text:?} is not START-END"))?;
    let (start, end) = (parse_value(flag, start)?, parse_value(flag, end)?);
    match (start, end) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Ok((start, end)),
        _ => Err(format!("{flag} {text:?} mixes IPv4 and IPv6")),
    }
}

/// The default fabric's untagged VLAN with DHCP on, the subnets and their dynamic ranges.
fn topology(options: &Options) -> Result<(Topology, Vec<SubnetId>), String> {
    let mut topology = Topology::new();
    let fabric = topology
        .fabrics()
        .next()
        .map(|(id, _)| id)
        .ok_or("the topology has no default fabric")?;
    let vlan = topology
        .default_vlan(fabric)
        .ok_or("the default fabric has no untagged VLAN")?;
    topology
        .update_vlan(vlan, |v| v.dhcp_on = true)
        .map_err(|e| e.to_string())?;
    let mut subnets = Vec::new();
    let v4 = (
        options.subnet,
        options.range,
        options.gateway,
        &options.dns[..],
    );
    let v6 = options.v6.map(|(cidr, range)| (cidr, range, None, &[][..]));
    for (cidr, (start, end), gateway, dns) in std::iter::once(v4).chain(v6) {
        let subnet = Subnet {
            gateway_ip: gateway,
            dns_servers: dns.to_vec(),
            ..Subnet::new(cidr, vlan)
        };
        let id = topology
            .create_subnet(subnet)
            .map_err(|e| format!("subnet {cidr}: {e}"))?;
        topology
            .create_ip_range(IpRange::new(id, start, end, IpRangeKind::Dynamic))
            .map_err(|e| format!("range {start}-{end}: {e}"))?;
        subnets.push(id);
    }
    Ok((topology, subnets))
}

fn server_config(options: &Options) -> ServerConfig {
    let mut boot = BootConfig {
        tftp_server: options.tftp,
        ..BootConfig::default()
    };
    if let Some(base) = &options.http_boot {
        let base = if base.ends_with('/') {
            base.clone()
        } else {
            format!("{base}/")
        };
        let maas = format!("http://{{server}}:{MAAS_HTTP_PORT}/");
        for method in boot.methods.values_mut() {
            for text in std::iter::once(&mut method.file).chain(method.path_prefix.as_mut()) {
                if let Some(rest) = text.strip_prefix(&maas) {
                    *text = format!("{base}{rest}");
                }
            }
        }
    }
    ServerConfig {
        mode: if options.proxy {
            Mode::Proxy
        } else {
            Mode::Authoritative
        },
        lease_secs: options.lease_secs,
        rapid_commit: options.rapid_commit,
        conflict_check: options.conflict_check,
        domain: options.domain.clone(),
        boot,
        ..ServerConfig::default()
    }
}

async fn run(options: Options) -> Result<(), String> {
    let (topology, _) = topology(&options)?;
    let config = server_config(&options);
    match &options.state {
        Some(path) => {
            let store = RedbStore::open_with_journal(path, options.journal_kib * 1024)
                .map_err(|e| format!("state {path}: {e}"))?;
            let durable = Durable::with_topology(store, topology.clone())
                .map_err(|e| format!("state {path}: {e}"))?;
            durable.set_commit_delay(std::time::Duration::from_millis(options.commit_delay_ms));
            // A state file keeps the network it was created with; leases of another network
            // would not match this one's subnets.
            if durable.read(|ipam| ipam.topology().to_doc()) != topology.to_doc() {
                return Err(format!(
                    "state {path} holds another network than --subnet/--range describe: \
                     use the same flags, or another file"
                ));
            }
            serve(&options, config, topology, Arc::new(durable)).await
        }
        None => {
            let ipam = std::sync::Mutex::new(Ipam::new(topology.clone()));
            serve(&options, config, topology, Arc::new(ipam)).await
        }
    }
}

async fn serve<L: Leases + 'static>(
    options: &Options,
    config: ServerConfig,
    topology: Topology,
    leases: Arc<L>,
) -> Result<(), String> {
    let interfaces: Vec<InterfaceConfig> = options
        .interfaces
        .iter()
        .map(|name| {
            let mut interface = InterfaceConfig::new(name.clone());
            interface.pxe_port(options.proxy);
            interface
        })
        .collect();
    let mut service = ServiceConfig::default();

    let server4 = Server4::new(config.clone(), topology.clone(), leases.clone())
        .map_err(|e| e.to_string())?;
    let v4 = serve4(Arc::new(server4), &interfaces, &service, report)
        .await
        .map_err(|e| format!("cannot serve DHCPv4: {e}"))?;
    let mut handles: Vec<ServiceHandle> = vec![v4];
    if options.v6.is_some() {
        // A stable server DUID (DUID-LL of the first interface), so clients keep renewing
        // with it across restarts; a random one if the interface has no Ethernet address.
        let duid = interfaces
            .first()
            .and_then(|i| maas_pxe::dhcp::server::Duid::from_interface(&i.name).ok());
        let config = ServerConfig { duid, ..config };
        let server6 = Server6::new(config, topology, leases).map_err(|e| e.to_string())?;
        // Expiry runs once, on the DHCPv4 side: both servers share the leases.
        service.expire_every(None);
        let v6 = serve6(Arc::new(server6), &interfaces, &service, report)
            .await
            .map_err(|e| format!("cannot serve DHCPv6: {e}"))?;
        handles.push(v6);
    }
    emit(&serde_json::json!({
        "event": "listening",
        "interfaces": handles[0].interfaces(),
        "interfaces6": handles.get(1).map(ServiceHandle::interfaces),
        "subnet": options.subnet,
        "range": format!("{}-{}", options.range.0, options.range.1),
        "subnet6": options.v6.map(|(cidr, _)| cidr),
        "mode": if options.proxy { "proxy" } else { "authoritative" },
        "durable": options.state.is_some(),
        "threads": options.threads,
    }));

    let flusher = tokio::spawn(async {
        let mut every = tokio::time::interval(Log::FLUSH_EVERY);
        loop {
            every.tick().await;
            LOG.flush();
        }
    });
    let signal = wait_for_signal().await;
    flusher.abort();
    drop(handles);
    emit(&serde_json::json!({ "event": "stopped", "signal": signal }));
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names it.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// One JSON line per report, buffered: see [`Log`].
fn report(report: &Report<'_>) {
    /// An engine event with the interface it came from, serialised in one pass.
    #[derive(serde::Serialize)]
    struct Line<'a, E: serde::Serialize> {
        #[serde(flatten)]
        event: &'a E,
        interface: &'a str,
    }
    match report {
        Report::Event { interface, event } => LOG.write(&Line { event, interface }),
        Report::Error { interface, error } => LOG.write(&serde_json::json!({
            "event": "error",
            "interface": interface,
            "error": error.to_string(),
        })),
        Report::Expired { count } => {
            LOG.write(&serde_json::json!({ "event": "expired", "count": count }));
        }
        _ => {}
    }
}

/// Writes a lifecycle line (started, failed, stopped) at once.
fn emit(value: &serde_json::Value) {
    LOG.write(value);
    LOG.flush();
}

/// The JSON lines on stdout. Under load a write and a flush per event cost more than the
/// event's DHCP work, so lines collect in memory and go out in one write when 64 KiB have
/// gathered or [`Log::FLUSH_EVERY`] has passed (a task calls [`Log::flush`]), and lifecycle
/// lines go out at once.
struct Log {
    buffer: std::sync::Mutex<Vec<u8>>,
}

static LOG: Log = Log {
    buffer: std::sync::Mutex::new(Vec::new()),
};

impl Log {
    const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
    const HIGH_WATER: usize = 64 << 10;

    fn write(&self, line: &impl serde::Serialize) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if serde_json::to_writer(&mut *buffer, line).is_ok() {
            buffer.push(b'\n');
        }
        if buffer.len() >= Self::HIGH_WATER {
            Self::write_out(&mut buffer);
        }
    }

    fn flush(&self) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if !buffer.is_empty() {
            Self::write_out(&mut buffer);
        }
    }

    fn write_out(buffer: &mut Vec<u8>) {
        let mut out = std::io::stdout().lock();
        // A closed pipe is not worth a panic: the server goes on serving.
        let _ = out.write_all(buffer);
        let _ = out.flush();
        buffer.clear();
    }
}
