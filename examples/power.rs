//! Power a machine through its BMC and print the resulting state.
//!
//! ```text
//! cargo run --features power-cli --example power -- --driver ipmi|redfish|wol|webhook \
//!     --address HOST[:PORT]|URL [--user U] [--password P] [--cipher-suite 3|17] \
//!     [--privilege user|operator|admin] [--ipmi-1.5] [--system-id ID] [--insecure] \
//!     [--session] [--no-etag] [--mac MAC] [--on-uri URI --off-uri URI --query-uri URI --token T] \
//!     [--ipmi-backend auto|ipmi-rs|native] \
//!     [--deadline SECS] [--poll-ms MS] [--timeout SECS] [--attempts N] status|on|off|soft-off|cycle|reset|pxe
//! ```
//!
//! `--ipmi-backend` picks the implementation of IPMI sessions: `auto` (the default) uses
//! `ipmi-rs` for cipher suite 3 at ADMINISTRATOR privilege without Kg and the native session
//! code otherwise; `ipmi-rs` and `native` force one.
//!
//! Actions are confirmed by polling the BMC until it reports the new state; the state is
//! printed, or the error with exit status 1.
//!
//! `power --many FILE [--concurrency N] status` queries every BMC of FILE (a JSON array of
//! driver parameters with MAAS's names, `power_type` first) through the power manager and
//! prints one line per BMC, then the wall time and queries per second on stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use maas::power::manager::{ManagerConfig, PowerManager};
use maas::power::params::{
    CipherSuite, IpmiParams, IpmiVersion, Privilege, RedfishAuth, RedfishParams, WebhookParams,
    WolParams,
};
use maas::power::{Action, BootRequest, PowerDriver, PowerError, ipmi, redfish, webhook, wol};

const USAGE: &str = "usage: power --driver ipmi|redfish|wol|webhook --address HOST[:PORT]|URL \
[--user U] [--password P] [--cipher-suite 3|17] [--privilege user|operator|admin] [--ipmi-1.5] \
[--system-id ID] [--insecure] [--session] [--no-etag] [--mac MAC] [--on-uri URI] [--off-uri URI] [--query-uri URI] \
[--token T] [--ipmi-backend auto|ipmi-rs|native] [--deadline SECS] [--poll-ms MS] [--timeout SECS] [--attempts N] status|on|off|soft-off|cycle|reset|pxe";

#[derive(Default)]
struct Options {
    driver: String,
    address: String,
    user: String,
    password: String,
    suite: Option<u8>,
    privilege: Option<String>,
    v15: bool,
    system_id: String,
    insecure: bool,
    session: bool,
    no_etag: bool,
    mac: String,
    on_uri: String,
    off_uri: String,
    query_uri: String,
    token: String,
    deadline: u64,
    poll_ms: Option<u64>,
    timeout: Option<u64>,
    attempts: Option<u32>,
    many: Option<String>,
    concurrency: usize,
    backend: ipmi::Backend,
    action: String,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        deadline: 60,
        concurrency: 256,
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--driver" => o.driver = value()?,
            "--address" => o.address = value()?,
            "--user" => o.user = value()?,
            "--password" => o.password = value()?,
            "--cipher-suite" => {
                o.suite = Some(value()?.parse().map_err(|_| "--cipher-suite is a number")?)
            }
            "--privilege" => o.privilege = Some(value()?),
            "--ipmi-1.5" => o.v15 = true,
            "--system-id" => o.system_id = value()?,
            "--insecure" => o.insecure = true,
            "--session" => o.session = true,
            "--no-etag" => o.no_etag = true,
            "--mac" => o.mac = value()?,
            "--on-uri" => o.on_uri = value()?,
            "--off-uri" => o.off_uri = value()?,
            "--query-uri" => o.query_uri = value()?,
            "--token" => o.token = value()?,
            "--ipmi-backend" => {
                o.backend = match value()?.as_str() {
                    "auto" => ipmi::Backend::Auto,
                    "ipmi-rs" => ipmi::Backend::IpmiRs,
                    "native" => ipmi::Backend::Native,
                    b => return Err(format!("unknown IPMI backend {b} (auto, ipmi-rs, native)")),
                }
            }
            "--deadline" => o.deadline = value()?.parse().map_err(|_| "--deadline is seconds")?,
            "--poll-ms" => {
                o.poll_ms = Some(value()?.parse().map_err(|_| "--poll-ms is milliseconds")?)
            }
            "--timeout" => o.timeout = Some(value()?.parse().map_err(|_| "--timeout is seconds")?),
            "--many" => o.many = Some(value()?),
            "--concurrency" => {
                o.concurrency = value()?.parse().map_err(|_| "--concurrency is a number")?
            }
            "--attempts" => {
                o.attempts = Some(value()?.parse().map_err(|_| "--attempts is a number")?)
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if o.action.is_empty() => o.action = s.to_owned(),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if o.many.is_none() && o.driver.is_empty() || o.action.is_empty() {
        return Err("--driver and an action are required".into());
    }
    Ok(o)
}

fn driver(o: &Options) -> Result<Arc<dyn PowerDriver>, PowerError> {
    Ok(match o.driver.as_str() {
        "ipmi" => {
            let suite = match o.suite {
                None => CipherSuite::Suite3,
                Some(n) => CipherSuite::from_id(n).ok_or_else(|| {
                    PowerError::Config(format!("cipher suite {n} is not supported (3 or 17)"))
                })?,
            };
            let privilege = match o
                .privilege
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("operator") => Privilege::Operator,
                Some("admin" | "administrator") => Privilege::Admin,
                Some("user") => Privilege::User,
                Some(p) => return Err(PowerError::Config(format!("unknown privilege {p}"))),
            };
            let mut driver = ipmi::Ipmi::new(IpmiParams {
                power_address: o.address.clone(),
                power_user: o.user.clone(),
                power_pass: o.password.clone().into(),
                power_driver: if o.v15 {
                    IpmiVersion::Lan15
                } else {
                    IpmiVersion::Lan20
                },
                cipher_suite_id: suite,
                privilege_level: privilege,
                ..IpmiParams::default()
            })?;
            driver.set_backend(o.backend)?;
            if let Some(t) = o.timeout {
                driver.set_timing(ipmi::Timing {
                    deadline: Duration::from_secs(t),
                    ..ipmi::Timing::default()
                });
            }
            Arc::new(driver)
        }
        "redfish" => Arc::new(redfish::Redfish::with_timeout(
            RedfishParams {
                power_address: o.address.clone(),
                power_user: o.user.clone(),
                power_pass: o.password.clone().into(),
                node_id: o.system_id.clone(),
                power_verify_ssl: !o.insecure,
                use_etag: !o.no_etag,
                auth: if o.session {
                    RedfishAuth::Session
                } else {
                    RedfishAuth::Basic
                },
                ..RedfishParams::default()
            },
            Duration::from_secs(o.timeout.unwrap_or(20)),
        )?),
        "wol" => Arc::new(wol::Wol::new(&WolParams {
            mac_address: o.mac.clone(),
            power_address: (!o.address.is_empty()).then(|| o.address.clone()),
        })?),
        "webhook" => Arc::new(webhook::Webhook::new(WebhookParams {
            power_on_uri: o.on_uri.clone(),
            power_off_uri: o.off_uri.clone(),
            power_query_uri: o.query_uri.clone(),
            power_user: o.user.clone(),
            power_pass: o.password.clone().into(),
            power_token: o.token.clone().into(),
            power_verify_ssl: !o.insecure,
            ..WebhookParams::default()
        })?),
        d => return Err(PowerError::Config(format!("unknown driver {d}"))),
    })
}

async fn run_many(o: &Options, file: &str) -> Result<String, PowerError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| PowerError::Config(format!("cannot read {file}: {e}")))?;
    let list: Vec<maas::power::params::DriverParams> =
        serde_json::from_str(&text).map_err(|e| PowerError::Config(format!("{file}: {e}")))?;
    let mut cfg = ManagerConfig::default();
    cfg.max_concurrent_queries(o.concurrency);
    if let Some(n) = o.attempts {
        cfg.attempts(n);
    }
    let manager = Arc::new(PowerManager::new(cfg));
    // ipmi-rs sessions block a thread each: at most as many as queries in flight.
    let blocking = Arc::new(tokio::sync::Semaphore::new(o.concurrency.max(1)));
    // One HTTP client (connection pool, TLS roots) for every Redfish BMC.
    let http = redfish::HttpClients::new(Duration::from_secs(o.timeout.unwrap_or(20)))?;
    let mut ids = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let id = format!("bmc{i}");
        let driver: Arc<dyn PowerDriver> = match p {
            maas::power::params::DriverParams::Ipmi(ip) => {
                let mut d = ipmi::Ipmi::new(ip.clone())?;
                d.set_backend(o.backend)?;
                d.set_blocking_limit(blocking.clone());
                Arc::new(d)
            }
            maas::power::params::DriverParams::Redfish(rp) => {
                Arc::new(redfish::Redfish::with_clients(rp.clone(), &http)?)
            }
            p => maas::power::build(p)?,
        };
        manager.insert(id.clone(), driver);
        ids.push(id);
    }
    let t0 = std::time::Instant::now();
    let results = manager.query_many(ids).await;
    let took = t0.elapsed();
    let mut failed = 0;
    for (id, r) in &results {
        match r {
            Ok(o) => println!("{id} {}", o.state),
            Err(e) => {
                failed += 1;
                println!("{id} error {e}");
            }
        }
    }
    eprintln!(
        "{} queries ({failed} failed) in {:.3} s: {:.0} queries/s with at most {} in flight",
        results.len(),
        took.as_secs_f64(),
        results.len() as f64 / took.as_secs_f64(),
        o.concurrency
    );
    if failed > 0 {
        return Err(PowerError::Config(format!("{failed} queries failed")));
    }
    Ok(format!(
        "{} queries in {:.3} s",
        results.len(),
        took.as_secs_f64()
    ))
}

async fn run(o: &Options) -> Result<String, PowerError> {
    if let Some(file) = &o.many {
        return run_many(o, file).await;
    }
    let mut cfg = ManagerConfig::default();
    cfg.confirm_deadline(Duration::from_secs(o.deadline));
    if let Some(ms) = o.poll_ms {
        // A fixed confirmation poll interval instead of the 0.5-5 s back-off.
        let every = Duration::from_millis(ms.max(50));
        cfg.poll = maas::power::manager::Backoff::new(every, every);
    }
    if let Some(n) = o.attempts {
        cfg.attempts(n);
    }
    let manager = PowerManager::new(cfg);
    manager.insert("machine", driver(o)?);
    let action = match o.action.as_str() {
        "status" => return Ok(manager.query("machine").await?.state.to_string()),
        "pxe" => {
            manager
                .set_boot_device("machine", BootRequest::pxe_once())
                .await?;
            return Ok("boot device set to pxe (once)".into());
        }
        "on" => Action::On,
        "off" => Action::Off,
        "soft-off" => Action::SoftOff,
        "cycle" => Action::Cycle,
        "reset" => Action::Reset,
        a => return Err(PowerError::Config(format!("unknown action {a}"))),
    };
    Ok(manager.perform("machine", action).await?.state.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("power: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("power: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&o)) {
        Ok(state) => {
            println!("{state}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("power: {e}");
            ExitCode::FAILURE
        }
    }
}
