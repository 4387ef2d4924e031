//! Kill -9: every lease acknowledged by a process that is then killed outright is in the store
//! when it is reopened.
//!
//! The test re-runs its own binary as a child (the `crash_child` entry, selected by an
//! environment variable) that leases addresses as fast as it can through [`Durable`] on a
//! [`RedbStore`] (or, with the `postgres` feature, a `PgStore` on a throwaway PostgreSQL
//! server), from two threads: one pipelining many tickets, one calling `apply`. After each
//! lease is durable the child prints `ACK <ip> <mac>`. The parent reads those lines, kills the
//! child with SIGKILL at a random moment, reopens the store and checks every acknowledged lease
//! is there, held by its client, with no address held twice, and that the rebuilt manager
//! offers none of the held addresses to a new client. It does this 20 times on one store
//! (redb), 10 times on one database (PostgreSQL).
//!
//! The random choices come from a seed printed at the start; set `MAAS_IPAM_CRASH_SEED` to
//! replay one.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use maas_ipam::{
    AddressKind, ClientKey, Durable, Ipam, LeaseState, RedbStore, Store, Ticket, Timestamp,
};
use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId, Topology};

#[cfg(feature = "postgres")]
#[path = "integration/store/pg_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg_server;

/// Set in the child's environment: the store, as [`Place::to_env`] writes it. Its presence
/// selects child mode.
const CHILD_ENV: &str = "MAAS_IPAM_CRASH_CHILD";
/// Set in the child's environment: the run number, which goes into the client MACs.
const RUN_ENV: &str = "MAAS_IPAM_CRASH_RUN";
/// The seed of the whole test (parent), or of one child.
const SEED_ENV: &str = "MAAS_IPAM_CRASH_SEED";

/// Child processes killed, one after the other, on the same store.
const RUNS: u8 = 20;

/// Where the child keeps its leases.
enum Place {
    /// A redb file.
    Redb(PathBuf),
    /// A PostgreSQL database, by URL.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Place {
    fn to_env(&self) -> String {
        match self {
            Self::Redb(path) => format!("redb:{}", path.display()),
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => format!("postgres:{url}"),
        }
    }

    fn from_env(value: &str) -> Self {
        if let Some(path) = value.strip_prefix("redb:") {
            return Self::Redb(PathBuf::from(path));
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = value.strip_prefix("postgres:") {
            return Self::Postgres(url.to_owned());
        }
        panic!("{CHILD_ENV}={value} names no store this build has")
    }
}
/// The longest one run may last, from spawning the child to killing it.
const RUN_LIMIT: Duration = Duration::from_secs(3);
/// The longest the parent lets a child lease after its first acknowledgement.
const MAX_KILL_DELAY_MS: u64 = 1_500;
/// The most leases the parent waits for before it kills a child.
const MAX_KILL_AFTER_ACKS: u64 = 1_500;
/// The most leases a child makes per thread. With two threads and [`RUNS`] runs, the leases
/// fit in the dynamic range, 10.77.1.0-10.77.254.254.
const CHILD_LEASES_PER_THREAD: u32 = 1_200;
/// A child gives up on being killed after this long and exits.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// How long a lease lasts: much longer than the test.
const LEASE_SECS: u64 = 86_400;
/// How long an offer is held.
const OFFER_SECS: u64 = 30;

/// xorshift64*: small, deterministic, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A directory of its own under the system's temporary directory, removed on drop (also when
/// the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("maas-ipam-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is killed and reaped on drop, so a failing test leaves none behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cidr() -> IpNet {
    "10.77.0.0/16".parse().expect("a valid CIDR")
}

/// 10.77.0.0/16 with its gateway at .0.1 and a dynamic range over most of it.
fn topology() -> Topology {
    let mut topo = Topology::new();
    let vlan = topo
        .default_vlan(Topology::DEFAULT_FABRIC)
        .expect("the default fabric has its untagged VLAN");
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some("10.77.0.1".parse().expect("an address")),
            ..Subnet::new(cidr(), vlan)
        })
        .expect("an empty topology takes the subnet");
    topo.create_ip_range(IpRange::new(
        subnet,
        "10.77.1.0".parse().expect("an address"),
        "10.77.254.254".parse().expect("an address"),
        IpRangeKind::Dynamic,
    ))
    .expect("the range fits the subnet");
    topo
}

fn subnet_of(ipam: &Ipam) -> SubnetId {
    ipam.topology()
        .subnet_by_cidr(cidr())
        .expect("the stored topology has the subnet")
}

/// The MAC of lease `n` of `thread` in `run`: locally administered, unique in the test.
fn mac(run: u8, thread: u8, n: u32) -> Mac {
    let [_, a, b, c] = n.to_be_bytes();
    Mac::from([0x02, run, thread, a, b, c])
}

/// DHCPDISCOVER then DHCPREQUEST, as one operation.
fn lease(ipam: &mut Ipam, subnet: SubnetId, mac: Mac) -> Result<IpAddr, maas_ipam::Error> {
    let client = ClientKey::Mac(mac);
    let now = Timestamp::now();
    let ip = ipam.dhcp_offer(subnet, &client, now, OFFER_SECS)?;
    ipam.dhcp_request(ip, &client, now, LEASE_SECS)?;
    Ok(ip)
}

fn ack(ip: IpAddr, mac: Mac) {
    let mut out = std::io::stdout().lock();
    // One write of one short line: a pipe never splits it.
    let line = format!("ACK {ip} {mac}\n");
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        // The parent is gone.
        std::process::exit(3);
    }
}

/// The child: leases until killed. Runs only when the parent asks for it.
#[test]
fn crash_child() {
    let Ok(place) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    let run = u8::try_from(var(RUN_ENV)).expect("the run number fits a byte");
    let rng = Rng::new(var(SEED_ENV));
    match Place::from_env(&place) {
        Place::Redb(path) => {
            lease_until_killed(RedbStore::open(path).expect("open the store"), run, rng);
        }
        #[cfg(feature = "postgres")]
        Place::Postgres(url) => {
            let store = maas_ipam::PgStore::connect(&url).expect("connect to the store");
            lease_until_killed(store, run, rng);
        }
    }
}

/// The child's work on its store: two threads leasing, each lease acknowledged on stdout once
/// durable.
fn lease_until_killed<S: Store>(store: S, run: u8, mut rng: Rng) {
    let started = Instant::now();
    let ipam = Durable::with_topology(store, topology()).expect("load the store");
    let subnet = ipam.read(subnet_of);
    // Whatever the harness printed so far ends here.
    println!();

    std::thread::scope(|scope| {
        // One thread pipelines: up to `window` tickets in flight, acknowledged in order.
        let window = 1 + usize::try_from(rng.below(64)).expect("small");
        let ipam = &ipam;
        scope.spawn(move || {
            let mut in_flight: VecDeque<(Ticket, IpAddr, Mac)> = VecDeque::new();
            for n in 0..CHILD_LEASES_PER_THREAD {
                let mac = mac(run, 0, n);
                let (ip, ticket) = ipam
                    .submit(|ipam| lease(ipam, subnet, mac))
                    .expect("lease (pipelined)");
                in_flight.push_back((ticket, ip, mac));
                while in_flight.len() >= window {
                    let Some((ticket, ip, mac)) = in_flight.pop_front() else {
                        break;
                    };
                    ipam.wait(ticket).expect("commit");
                    ack(ip, mac);
                }
            }
            for (ticket, ip, mac) in in_flight {
                ipam.wait(ticket).expect("commit");
                ack(ip, mac);
            }
        });
        // The other calls `apply`, one lease at a time.
        scope.spawn(move || {
            for n in 0..CHILD_LEASES_PER_THREAD {
                let mac = mac(run, 1, n);
                let ip = ipam
                    .apply(|ipam| lease(ipam, subnet, mac))
                    .expect("lease (apply)");
                ack(ip, mac);
            }
        });
    });
    // Everything is leased; wait to be killed, but not forever.
    while started.elapsed() < CHILD_LIFETIME {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What one child acknowledged, read from its standard output.
fn parse_ack(line: &str) -> Option<(IpAddr, Mac)> {
    let mut words = line.strip_prefix("ACK ")?.split(' ');
    let ip = words.next()?.parse().ok()?;
    let mac = words.next()?.parse().ok()?;
    words.next().is_none().then_some((ip, mac))
}

/// Runs one child until it is killed; returns what it acknowledged.
fn run_child(place: &Place, run: u8, rng: &mut Rng) -> Vec<(IpAddr, Mac)> {
    let kill_after_acks = 1 + rng.below(MAX_KILL_AFTER_ACKS);
    let kill_delay = Duration::from_millis(rng.below(MAX_KILL_DELAY_MS));
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = ChildGuard(
        Command::new(exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, place.to_env())
            .env(RUN_ENV, run.to_string())
            .env(SEED_ENV, rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child"),
    );
    let stdout = child.0.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = mpsc::channel();
    // Reads until the child's end of the pipe closes, which killing it does.
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut short by the kill is not an acknowledgement.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if let Some(ack) = parse_ack(line.trim_end()) {
                        let _ = tx.send(ack);
                    }
                }
            }
        }
    });

    let spawned = Instant::now();
    let mut deadline = spawned + RUN_LIMIT;
    let mut acks = Vec::new();
    while (acks.len() as u64) < kill_after_acks {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => {
                if acks.is_empty() {
                    deadline = deadline.min(Instant::now() + kill_delay);
                }
                acks.push(ack);
            }
            Err(_) => break,
        }
    }
    child.0.kill().expect("kill the child");
    let status = child.0.wait().expect("reap the child");
    reader.join().expect("the reader thread ends");
    // Lines the child wrote before it died were acknowledgements too.
    acks.extend(rx.try_iter());
    assert!(
        status.success() || status.code().is_none(),
        "run {run}: the child failed on its own ({status}) after {} acknowledgements",
        acks.len()
    );
    acks
}

/// Reopens the store after a kill and checks it against everything acknowledged so far.
fn check_store(place: &Place, acked: &HashMap<IpAddr, Mac>, run: u8) {
    match place {
        Place::Redb(path) => check_reopened(
            RedbStore::open(path).expect("reopen the store after the kill"),
            acked,
            run,
        ),
        #[cfg(feature = "postgres")]
        Place::Postgres(url) => check_reopened(
            maas_ipam::PgStore::connect(url).expect("connect to the store after the kill"),
            acked,
            run,
        ),
    }
}

fn check_reopened<S: Store>(mut store: S, acked: &HashMap<IpAddr, Mac>, run: u8) {
    let snapshot = store.load().expect("read the store");
    let mut held = HashMap::new();
    for record in &snapshot.records {
        if record.kind != AddressKind::Discovered {
            assert!(
                held.insert(record.ip, record).is_none(),
                "run {run}: {} is held by two records",
                record.ip
            );
        }
    }
    for (ip, mac) in acked {
        let record = held.get(ip).unwrap_or_else(|| {
            panic!("run {run}: the acknowledged lease of {ip} to {mac} is lost")
        });
        let lease = record
            .lease
            .as_ref()
            .unwrap_or_else(|| panic!("run {run}: {ip} is held without its lease"));
        assert_eq!(
            (&lease.client, lease.state),
            (&ClientKey::Mac(*mac), LeaseState::Bound),
            "run {run}: {ip}"
        );
    }

    // The manager rebuilt from the store knows every held address.
    let ipam = Durable::open(store).expect("rebuild the manager from the store");
    ipam.read(|ipam| {
        for (ip, mac) in acked {
            let client = ipam
                .record(*ip)
                .and_then(|r| r.lease.as_ref())
                .map(|l| &l.client);
            assert_eq!(client, Some(&ClientKey::Mac(*mac)), "run {run}: {ip}");
        }
    });
    let subnet = ipam.read(subnet_of);
    let newcomer = ClientKey::Mac(Mac::from([0x02, 0xff, run, 0, 0, 0]));
    let offered = ipam
        .apply(|ipam| ipam.dhcp_offer(subnet, &newcomer, Timestamp::now(), OFFER_SECS))
        .expect("offer to a new client");
    assert!(
        !held.contains_key(&offered),
        "run {run}: {offered} is offered to a new client while it is held"
    );
}

#[cfg(unix)]
#[test]
fn acknowledged_leases_survive_kill_9() {
    let dir = TempDir::new("crash");
    kill_children(&Place::Redb(dir.0.join("ipam.redb")), RUNS);
}

#[cfg(all(unix, feature = "postgres"))]
#[test]
fn acknowledged_leases_survive_kill_9_postgres() {
    let Some(server) = pg_server::PgServer::start() else {
        return;
    };
    kill_children(&Place::Postgres(server.create_database()), RUNS / 2);
}

/// `runs` children killed one after the other on the store at `place`, each followed by a
/// check of everything acknowledged so far.
fn kill_children(place: &Place, runs: u8) {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{SEED_ENV}={seed}");
    let mut rng = Rng::new(seed);

    let mut acked: HashMap<IpAddr, Mac> = HashMap::new();
    let mut macs: HashMap<Mac, IpAddr> = HashMap::new();
    for run in 0..runs {
        let acks = run_child(place, run, &mut rng);
        println!(
            "run {run}: {} leases acknowledged before the kill",
            acks.len()
        );
        for (ip, mac) in acks {
            if let Some(other) = acked.insert(ip, mac) {
                panic!("run {run}: {ip} was acknowledged to {other} and to {mac}");
            }
            if let Some(other) = macs.insert(mac, ip) {
                panic!("run {run}: {mac} was acknowledged {other} and {ip}");
            }
        }
        check_store(place, &acked, run);
    }
    println!("{} leases acknowledged in all", acked.len());
    assert!(!acked.is_empty(), "no child acknowledged anything");
}
