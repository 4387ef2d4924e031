//! Asks the address manager about one subnet described on the command line.
//!
//! ```text
//! cargo run --example ipam -- next --cidr 10.77.0.0/29 --gateway 10.77.0.1 --count 3
//! cargo run --example ipam -- stats --cidr 10.77.0.0/24 --used 10.77.0.2
//! cargo run --example ipam -- check-range --kind dynamic 10.77.0.1-10.77.0.50 --cidr 10.77.0.0/24 --gateway 10.77.0.1
//! ```
//!
//! `next` prints the addresses automatic assignment would pick, one per line; `stats` prints the
//! subnet's statistics as JSON (with its ranges and MAAS's suggestions); `check-range` prints
//! `ok` when the range could be added to the subnet. A refused request prints MAAS's message on
//! stderr and exits with status 1; a command-line error prints the usage and exits with 2.
//!
//! The arguments are parsed by hand, to keep the example free of extra dependencies.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use maas_ipam::{AssignOptions, AutoRequest, Ipam, Requested, Timestamp};
use maas_net::{IpRange, IpRangeKind, Subnet, SubnetId, Topology};

const USAGE: &str = "\
Asks the address manager about one subnet described on the command line.

Usage:
  ipam next        --cidr CIDR [SUBNET FLAGS] [--exclude IP]... [--count N]
  ipam stats       --cidr CIDR [SUBNET FLAGS]
  ipam check-range --kind dynamic|reserved START-END --cidr CIDR [SUBNET FLAGS]
  ipam --help

Commands:
  next         Print the addresses automatic assignment would pick, one per line.
  stats        Print the subnet's statistics as JSON, with ranges and suggestions.
  check-range  Print \"ok\" if the range could be added to the subnet, else why not.

Subnet flags:
  --cidr CIDR           The subnet, e.g. 10.77.0.0/24 or fd77::/64 (required).
  --unmanaged           An unmanaged subnet: addresses come only from reserved ranges.
  --gateway IP          The subnet's gateway.
  --dns IP              A DNS server (repeatable).
  --reserved START-END  A reserved range (repeatable).
  --dynamic START-END   A dynamic range (repeatable).
  --used IP             An address already assigned (repeatable).

Flags of next:
  --exclude IP          An address not to pick this time (repeatable).
  --count N             How many addresses, 1 to 65536 (default 1).

Exit status: 0 on success, 1 when the request is refused, 2 on a command-line error.
";

/// The most addresses `next` lists: the answer is for a person to read.
const MAX_COUNT: usize = 65_536;

/// Records need a time; nothing this tool prints depends on it.
const NOW: Timestamp = Timestamp(0);

fn main() -> ExitCode {
    // `args_os`, not `args`: an argument that is not UTF-8 is a command-line error, not a
    // panic.
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let (code, stdout, stderr) = match args {
        Ok(args) => run(&args),
        Err(bad) => (
            2,
            String::new(),
            format!("error: argument {bad:?} is not valid UTF-8\n\n{USAGE}"),
        ),
    };
    // A closed pipe (`| head`) is not worth a panic: write errors are ignored.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    ExitCode::from(code)
}

/// Runs the tool on its arguments (without the program name): the exit status and what goes
/// to stdout and to stderr.
fn run<S: AsRef<str>>(args: &[S]) -> (u8, String, String) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if args.iter().any(|a| matches!(*a, "--help" | "-h")) {
        return (0, USAGE.to_owned(), String::new());
    }
    if args.is_empty() {
        return (2, String::new(), USAGE.to_owned());
    }
    match parse(&args).and_then(|cli| execute(&cli)) {
        Ok(out) => (0, out, String::new()),
        Err(Failure::Usage(msg)) => (2, String::new(), format!("error: {msg}\n\n{USAGE}")),
        Err(Failure::Refused(msg)) => (1, String::new(), format!("{msg}\n")),
    }
}

/// Why the tool stopped.
#[derive(Debug)]
enum Failure {
    /// The command line is malformed (exit status 2).
    Usage(String),
    /// The subnet, a range or the request is refused by the address manager (exit status 1).
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Next,
    Stats,
    CheckRange,
}

/// The parsed command line.
#[derive(Debug)]
struct Cli {
    command: Command,
    /// Kept as text: it is parsed where the subnet is built, so that its type need not be
    /// named here.
    cidr: String,
    unmanaged: bool,
    gateway: Option<IpAddr>,
    dns: Vec<IpAddr>,
    reserved: Vec<(IpAddr, IpAddr)>,
    dynamic: Vec<(IpAddr, IpAddr)>,
    used: Vec<IpAddr>,
    exclude: Vec<IpAddr>,
    count: usize,
    /// `check-range` only.
    check: Option<(IpRangeKind, (IpAddr, IpAddr))>,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

fn parse(args: &[&str]) -> Result<Cli, Failure> {
    let mut positional: Vec<&str> = Vec::new();
    let mut cidr = None;
    let mut unmanaged = false;
    let mut gateway = None;
    let mut dns = Vec::new();
    let mut reserved = Vec::new();
    let mut dynamic = Vec::new();
    let mut used = Vec::new();
    let mut exclude = Vec::new();
    let mut count = None;
    let mut kind = None;

    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") || arg == "--" {
            positional.push(arg);
            continue;
        }
        // `--flag value` or `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (arg, None),
        };
        if flag == "--unmanaged" {
            if inline.is_some() {
                return Err(usage("--unmanaged takes no value"));
            }
            unmanaged = true;
            continue;
        }
        if !matches!(
            flag,
            "--cidr"
                | "--gateway"
                | "--dns"
                | "--reserved"
                | "--dynamic"
                | "--used"
                | "--exclude"
                | "--count"
                | "--kind"
        ) {
            return Err(usage(format!("unknown flag {flag}")));
        }
        let Some(value) = inline.or_else(|| it.next()) else {
            return Err(usage(format!("{flag} needs a value")));
        };
        match flag {
            "--cidr" => set_once(&mut cidr, flag, value.to_owned())?,
            "--gateway" => set_once(&mut gateway, flag, parse_ip(flag, value)?)?,
            "--dns" => dns.push(parse_ip(flag, value)?),
            "--reserved" => reserved.push(parse_range(flag, value)?),
            "--dynamic" => dynamic.push(parse_range(flag, value)?),
            "--used" => used.push(parse_ip(flag, value)?),
            "--exclude" => exclude.push(parse_ip(flag, value)?),
            "--count" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| {
                        usage(format!(
                            "--count {value}: expected a whole number from 1 to {MAX_COUNT}"
                        ))
                    })?;
                set_once(&mut count, flag, n)?;
            }
            _ => {
                let k = match value {
                    "dynamic" => IpRangeKind::Dynamic,
                    "reserved" => IpRangeKind::Reserved,
                    _ => {
                        return Err(usage(format!(
                            "--kind {value}: expected dynamic or reserved"
                        )));
                    }
                };
                set_once(&mut kind, flag, k)?;
            }
        }
    }

    let (command, rest) = match positional.split_first() {
        Some((first, rest)) => (*first, rest),
        None => return Err(usage("no command given: next, stats or check-range")),
    };
    let command = match command {
        "next" => Command::Next,
        "stats" => Command::Stats,
        "check-range" => Command::CheckRange,
        other => return Err(usage(format!("unknown command {other:?}"))),
    };
    let check = if command == Command::CheckRange {
        let [range] = rest else {
            return Err(usage("check-range needs exactly one range START-END"));
        };
        let Some(kind) = kind else {
            return Err(usage("check-range needs --kind dynamic or --kind reserved"));
        };
        Some((kind, parse_range("the range", range)?))
    } else {
        if let Some(extra) = rest.first() {
            return Err(usage(format!("unexpected argument {extra:?}")));
        }
        if kind.is_some() {
            return Err(usage("--kind applies only to check-range"));
        }
        None
    };
    if command != Command::Next {
        if count.is_some() {
            return Err(usage("--count applies only to next"));
        }
        if !exclude.is_empty() {
            return Err(usage("--exclude applies only to next"));
        }
    }
    let Some(cidr) = cidr else {
        return Err(usage("--cidr is required"));
    };
    Ok(Cli {
        command,
        cidr,
        unmanaged,
        gateway,
        dns,
        reserved,
        dynamic,
        used,
        exclude,
        count: count.unwrap_or(1),
        check,
    })
}

fn set_once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), Failure> {
    if slot.is_some() {
        return Err(usage(format!("{flag} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_ip(what: &str, text: &str) -> Result<IpAddr, Failure> {
    text.parse()
        .map_err(|_| usage(format!("{what} {text}: not an IP address")))
}

/// `START-END`. IPv6 addresses are written with ':' and never with '-', so the single '-'
/// splits the two ends in either family.
fn parse_range(what: &str, text: &str) -> Result<(IpAddr, IpAddr), Failure> {
    let malformed = || {
        usage(format!(
            "{what} {text}: expected START-END, e.g. 10.77.0.10-10.77.0.20"
        ))
    };
    let (start, end) = text.split_once('-').ok_or_else(malformed)?;
    match (start.parse(), end.parse()) {
        (Ok(start), Ok(end)) => Ok((start, end)),
        _ => Err(malformed()),
    }
}

/// The subnet and its ranges in a topology of their own, with the `--used` addresses recorded.
fn build(cli: &Cli) -> Result<(Ipam, SubnetId), Failure> {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .ok_or_else(|| Failure::Refused("the default fabric has no VLAN".to_owned()))?;
    let cidr = cli.cidr.parse().map_err(|_| {
        usage(format!(
            "--cidr {}: not a CIDR such as 10.77.0.0/24",
            cli.cidr
        ))
    })?;
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: cli.gateway,
            dns_servers: cli.dns.clone(),
            managed: !cli.unmanaged,
            ..Subnet::new(cidr, vlan)
        })
        .map_err(|e| Failure::Refused(e.to_string()))?;
    // Reserved ranges first: in an unmanaged subnet a dynamic range must lie in one.
    let ranges = (cli
        .reserved
        .iter()
        .map(|r| ("--reserved", IpRangeKind::Reserved, r)))
    .chain(
        cli.dynamic
            .iter()
            .map(|r| ("--dynamic", IpRangeKind::Dynamic, r)),
    );
    for (flag, kind, &(start, end)) in ranges {
        topo.create_ip_range(IpRange::new(subnet, start, end, kind))
            .map_err(|e| Failure::Refused(format!("{flag} {start}-{end}: {e}")))?;
    }
    let mut ipam = Ipam::new(topo);
    // A `--used` address is recorded as USER_RESERVED, checked as MAAS checks an address asked
    // for by a user (reserved ranges allowed). The strict check is deliberate: an address that
    // cannot be assigned (the gateway, a DNS server, one in a dynamic range, outside the
    // subnet, given twice) is refused naming the flag, rather than recorded as a DISCOVERED
    // address, which automatic assignment may still hand out when nothing else is free and
    // which does not keep dynamic ranges away.
    let options = AssignOptions {
        allow_reserved: true,
        ..AssignOptions::default()
    };
    for &ip in &cli.used {
        ipam.assign(ip, Requested::UserReserved, &options, NOW)
            .map_err(|e| Failure::Refused(format!("--used {ip}: {e}")))?;
    }
    Ok((ipam, subnet))
}

fn execute(cli: &Cli) -> Result<String, Failure> {
    let (mut ipam, subnet) = build(cli)?;
    let refused = |e: maas_ipam::Error| Failure::Refused(e.to_string());
    match cli.command {
        Command::Next => {
            let request = AutoRequest {
                exclude: cli.exclude.clone(),
                ..AutoRequest::new().count(cli.count)
            };
            let picked = ipam.next_addresses(subnet, &request).map_err(refused)?;
            Ok(picked.iter().map(|ip| format!("{ip}\n")).collect())
        }
        Command::Stats => {
            let stats = ipam.statistics(subnet, true, true).map_err(refused)?;
            let json = serde_json::to_string_pretty(&stats)
                .map_err(|e| Failure::Refused(format!("cannot write the statistics: {e}")))?;
            Ok(json + "\n")
        }
        Command::CheckRange => {
            let Some((kind, (start, end))) = cli.check else {
                return Err(usage("check-range needs a range"));
            };
            ipam.create_ip_range(IpRange::new(subnet, start, end, kind))
                .map_err(refused)?;
            Ok("ok\n".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(out: &str) -> Vec<&str> {
        out.lines().collect()
    }

    /// Runs the tool and expects success.
    fn ok(args: &[&str]) -> String {
        let (code, out, err) = run(args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        out
    }

    /// Runs the tool and expects a refusal: the message.
    fn refused(args: &[&str]) -> String {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
        err
    }

    /// MAAS's AUTO cases, each with its answer, in a managed subnet.
    const NEXT_CASES: [(&[&str], &[&str]); 4] = [
        (&["--cidr", "10.77.0.0/30"], &["10.77.0.1"]),
        (
            &["--cidr", "10.77.0.0/30", "--gateway", "10.77.0.1"],
            &["10.77.0.2"],
        ),
        (
            &[
                "--cidr",
                "10.77.0.0/29",
                "--exclude",
                "10.77.0.3",
                "--count",
                "6",
            ],
            &[
                "10.77.0.1",
                "10.77.0.2",
                "10.77.0.4",
                "10.77.0.5",
                "10.77.0.6",
            ],
        ),
        (
            &["--cidr", "10.77.0.0/29", "--used", "10.77.0.4"],
            &["10.77.0.5"],
        ),
    ];

    const FULL: &[&str] = &[
        "--cidr",
        "10.77.0.0/30",
        "--gateway",
        "10.77.0.1",
        "--dns",
        "10.77.0.2",
    ];

    /// The usable addresses of the subnets above, as an unmanaged subnet's reserved range.
    fn unmanaged(args: &[&'static str]) -> Vec<&'static str> {
        let whole = if args.contains(&"10.77.0.0/30") {
            "10.77.0.1-10.77.0.2"
        } else {
            "10.77.0.1-10.77.0.6"
        };
        let mut v = args.to_vec();
        v.extend(["--unmanaged", "--reserved", whole]);
        v
    }

    #[test]
    fn next_follows_maas() {
        for (args, want) in NEXT_CASES {
            let mut full = vec!["next"];
            full.extend(args);
            assert_eq!(lines(&ok(&full)), want, "{full:?}");
        }
        let mut full = vec!["next"];
        full.extend(FULL);
        assert_eq!(
            refused(&full),
            "No more IPs available in subnet: 10.77.0.0/30.\n"
        );
    }

    #[test]
    fn an_unmanaged_subnet_reserved_throughout_answers_the_same() {
        for (args, want) in NEXT_CASES {
            let mut full = vec!["next"];
            full.extend(unmanaged(args));
            assert_eq!(lines(&ok(&full)), want, "{full:?}");
        }
        let mut full = vec!["next"];
        full.extend(unmanaged(FULL));
        assert_eq!(
            refused(&full),
            "No more IPs available in subnet: 10.77.0.0/30.\n"
        );
    }

    #[test]
    fn stats_prints_maas_statistics() {
        let out = ok(&[
            "stats",
            "--cidr",
            "10.77.0.0/24",
            "--used",
            "10.77.0.2",
            "--used",
            "10.77.0.4",
            "--used",
            "10.77.0.6",
            "--used",
            "10.77.0.8",
        ]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["num_available"], 250);
        assert_eq!(json["largest_available"], 246);
        assert_eq!(json["num_unavailable"], 4);
        assert_eq!(json["total_addresses"], 254);
        assert_eq!(json["usage_string"], "2%");
        assert_eq!(json["available_string"], "98%");
        assert_eq!(json["first_address"], "10.77.0.1");
        assert!(json["ranges"].is_array());
        assert!(json.get("suggested_gateway").is_some());
    }

    #[test]
    fn check_range_gives_maas_messages() {
        let dynamic = [
            "check-range",
            "--kind",
            "dynamic",
            "10.77.0.1-10.77.0.50",
            "--cidr",
            "10.77.0.0/24",
            "--gateway",
            "10.77.0.1",
        ];
        assert!(refused(&dynamic).starts_with(
            "Requested dynamic range conflicts with an existing IP address or range."
        ),);
        // A reserved range may cover the gateway.
        let mut reserved = dynamic;
        reserved[2] = "reserved";
        assert_eq!(ok(&reserved), "ok\n");

        let v6 = [
            "check-range",
            "--kind",
            "dynamic",
            "fd77::10-fd77::20",
            "--cidr",
            "fd77::/64",
        ];
        assert!(
            refused(&v6).starts_with("IPv6 dynamic range must be at least 256 addresses in size.")
        );

        // The --used addresses keep dynamic ranges away.
        let used = [
            "check-range",
            "--kind=dynamic",
            "10.77.0.100-10.77.0.199",
            "--cidr=10.77.0.0/24",
            "--used=10.77.0.150",
        ];
        assert!(refused(&used).contains("the assigned address 10.77.0.150"));

        // No room left once the gateway and the other range take everything.
        let full = [
            "check-range",
            "--kind",
            "dynamic",
            "10.77.0.2-10.77.0.2",
            "--cidr",
            "10.77.0.0/30",
            "--gateway",
            "10.77.0.1",
            "--reserved",
            "10.77.0.2-10.77.0.2",
        ];
        assert_eq!(
            refused(&full),
            "There is no room for any dynamic ranges on this subnet.\n"
        );
    }

    #[test]
    fn a_topology_the_flags_contradict_is_refused() {
        assert_eq!(
            refused(&["next", "--cidr", "10.77.0.0/24", "--gateway", "10.78.0.1"]),
            "Gateway IP must be within CIDR range. 10.78.0.1 is not in 10.77.0.0/24.\n"
        );
        let err = refused(&[
            "next",
            "--cidr",
            "10.77.0.0/24",
            "--gateway",
            "10.77.0.1",
            "--dynamic",
            "10.77.0.1-10.77.0.9",
        ]);
        assert!(err.starts_with("--dynamic 10.77.0.1-10.77.0.9: Requested dynamic range"));
        assert!(refused(&["next", "--cidr", "10.0.0.0/0"]).contains("Prefix length"));
        let err = refused(
            &["next", "--cidr", "10.77.0.0/24", "--gateway", "10.77.0.1"]
                .into_iter()
                .chain(["--used", "10.77.0.1"])
                .collect::<Vec<_>>(),
        );
        assert!(err.starts_with("--used 10.77.0.1: "), "{err}");
        assert!(err.contains("gateway"), "{err}");
    }

    #[test]
    fn bad_syntax_prints_the_usage() {
        for args in [
            &[][..],
            &["next"],
            &["frobnicate", "--cidr", "10.77.0.0/24"],
            &["next", "--cidr"],
            &["next", "--cidr", "10.77.0.0"],
            &["next", "--cidr", "10.77.0.0/24", "--gateway", "nope"],
            &["next", "--cidr", "10.77.0.0/24", "--count", "0"],
            &["next", "--cidr", "10.77.0.0/24", "--count", "-1"],
            &["next", "--cidr", "10.77.0.0/24", "--reserved", "10.77.0.5"],
            &["next", "--cidr", "10.77.0.0/24", "--reserved", "10.77.0.5-"],
            &["next", "--cidr", "10.77.0.0/24", "--bogus"],
            &["next", "--cidr", "10.77.0.0/24", "--unmanaged=yes"],
            &["next", "--cidr", "10.77.0.0/24", "--cidr", "10.78.0.0/24"],
            &["stats", "--cidr", "10.77.0.0/24", "--count", "2"],
            &[
                "check-range",
                "--cidr",
                "10.77.0.0/24",
                "10.77.0.5-10.77.0.9",
            ],
            &[
                "check-range",
                "--kind",
                "static",
                "--cidr",
                "10.77.0.0/24",
                "10.77.0.5-10.77.0.9",
            ],
            &["check-range", "--kind", "dynamic", "--cidr", "10.77.0.0/24"],
        ] {
            let (code, out, err) = run(args);
            assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
            assert!(err.contains("Usage:"), "{args:?}: {err}");
        }
        let (code, out, err) = run(&["next", "--help"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.contains("Usage:"));
    }

    #[test]
    fn ipv6_works_too() {
        // In a /64, ::1 to ::ffff:ffff are kept for the router and friends.
        assert_eq!(
            lines(&ok(&["next", "--cidr", "fd77::/64", "--count", "2"])),
            ["fd77::1:0:0", "fd77::1:0:1"]
        );
    }
}
