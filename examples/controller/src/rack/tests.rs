//! The rack against regions that are gone, fail or refuse: failover, leases while cut off,
//! and the durable queue behind them. The regions here are small HTTP servers on loopback
//! that answer every request with one fixed status and body.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::Method;
use maas_ipam::{Ipam, LeaseState};
use maas_net::{ClientKey, SubnetId, Timestamp, Topology};
use maas_pxe::dhcp::server::{LeaseError, Leases};
use serde_json::Value;

use super::leases::RackLeases;
use super::queue::Queued;
use super::region::{Region, RegionError};
use crate::protocol::{LeaseOp, block_client};

const RACK: &str = "rack-t";

/// A region that answers every request with `status` and `body`; how many it got.
struct FakeRegion {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl FakeRegion {
    async fn start(status: u16, body: &'static str) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    // The head, then as much body as it announces.
                    loop {
                        let Ok(n) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..n]);
                        let text = String::from_utf8_lossy(&request).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A port on loopback nobody listens on.
fn nobody() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("maas-rack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A rack's `Region` for `regions`, its state in a scratch directory named `name`.
fn regions_of(name: &str, regions: &[&str]) -> Arc<Region> {
    let list: Vec<String> = regions.iter().map(|r| format!("{r:?}")).collect();
    let text = format!(
        r#"
[controller]
state_dir = "{}"
role = "rack"

[cluster]
regions = [{}]
secret = "0123456789abcdef"
name = "{RACK}"
"#,
        scratch(name).display(),
        list.join(", ")
    );
    let config = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
    Arc::new(Region::new(&config).unwrap())
}

/// One subnet, `10.77.92.0/24`, whose dynamic range is `.100` to `.103`.
fn topology() -> (Topology, SubnetId) {
    let topology: Topology = toml::from_str(
        r#"
[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.92.0/24"

[[ip_ranges]]
subnet = "10.77.92.0/24"
start = "10.77.92.100"
end = "10.77.92.103"
kind = "dynamic"
"#,
    )
    .unwrap();
    let subnet = topology.subnets().next().unwrap().0;
    (topology, subnet)
}

fn mac(n: u8) -> ClientKey {
    ClientKey::Mac(format!("52:54:00:77:92:{n:02x}").parse().unwrap())
}

const NOW: Timestamp = Timestamp(1_000_000);

/// A mirror as a region sends it: `bound` leased to `mac(1)`, and one address (the lowest
/// free one, `.100` when nothing else is held) held as this rack's block.
fn mirror(bound: Option<IpAddr>) -> (Ipam, SubnetId, IpAddr) {
    let (topology, subnet) = topology();
    let mut ipam = Ipam::new(topology);
    if let Some(ip) = bound {
        ipam.dhcp_request(ip, &mac(1), NOW, 600).unwrap();
    }
    let cidr = "10.77.92.0/24".parse().unwrap();
    let reserved = ipam
        .dhcp_offer(subnet, &block_client(RACK, &cidr, 0), NOW, 86_400)
        .unwrap();
    ipam.take_changes();
    (ipam, subnet, reserved)
}

fn queued_leases(region: &Region) -> Vec<(LeaseOp, IpAddr)> {
    region
        .queue
        .front(usize::MAX)
        .into_iter()
        .filter_map(|e| match e.item {
            Queued::Lease(r) => Some((r.op, r.ip)),
            _ => None,
        })
        .collect()
}

/// Calls go to the region in use; one that cannot be reached or answers 5xx passes the call
/// to the next, in list order, each once; the region that answered stays in use. A 401 is an
/// answer: no failover.
#[tokio::test]
async fn failover_goes_round_the_list_in_order_and_stays() {
    let failing = FakeRegion::start(503, r#"{"error": "busy"}"#).await;
    let good = FakeRegion::start(200, r#"{"ok": true}"#).await;
    let gone = nobody();
    let region = regions_of("failover", &[&gone, &failing.url, &good.url]);
    let answer: Value = region
        .call(Method::GET, "/api/v1/x", None::<&()>)
        .await
        .unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(region.in_use(), good.url);
    assert_eq!((failing.hits(), good.hits()), (1, 1));
    let status = region.status();
    assert_eq!(status.failovers, 2);
    assert!(status.reachable);
    assert!(status.last_contact.is_some());
    // The next call starts at the region in use.
    let _: Value = region
        .call(Method::GET, "/api/v1/x", None::<&()>)
        .await
        .unwrap();
    assert_eq!((failing.hits(), good.hits()), (1, 2));

    // Every region down: one pass over the list, then the last error; cut off.
    let region = region_all_down(&[&nobody(), &failing.url]).await;
    assert!(region.cut_off());
    // Round robin: after the last region comes the first.
    assert_eq!(region.in_use(), region.status().regions[0]);

    // A refusal is the region's answer.
    let refusing = FakeRegion::start(401, r#"{"error": "who are you"}"#).await;
    let region = regions_of("no-failover", &[&refusing.url, &good.url]);
    let before = good.hits();
    let error = region
        .call::<Value>(Method::GET, "/api/v1/x", None::<&()>)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RegionError::Refused { status, .. } if status.as_u16() == 401),
        "{error}"
    );
    assert_eq!(region.in_use(), refusing.url);
    assert_eq!(good.hits(), before);
    assert!(!region.cut_off());
}

async fn region_all_down(regions: &[&str]) -> Arc<Region> {
    let region = regions_of("all-down", regions);
    let error = region
        .call::<Value>(Method::GET, "/api/v1/x", None::<&()>)
        .await
        .unwrap_err();
    assert!(error.fails_over(), "{error}");
    region
}

/// Cut off, a client renewing the address the mirror shows bound to it is acknowledged, and
/// the renewal is queued on disk.
#[tokio::test]
async fn a_renewal_is_acknowledged_while_cut_off() {
    let ip: IpAddr = "10.77.92.102".parse().unwrap();
    let region = region_all_down_named("renewal").await;
    let (ipam, subnet, _) = mirror(Some(ip));
    let leases = RackLeases::new(
        ipam,
        Vec::new(),
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    assert_eq!(leases.offer(subnet, &mac(1), NOW, 30), Ok(ip));
    let bound = leases.bind(ip, &mac(1), None, NOW, 600).unwrap();
    leases.wait_async(bound.ticket.unwrap()).await.unwrap();
    assert_eq!(queued_leases(&region), [(LeaseOp::Bind, ip)]);
}

async fn region_all_down_named(name: &str) -> Arc<Region> {
    let region = regions_of(name, &[&nobody()]);
    let _ = region
        .call::<Value>(Method::GET, "/api/v1/x", None::<&()>)
        .await
        .unwrap_err();
    assert!(region.cut_off());
    region
}

/// Cut off, a new client is offered an address of the rack's block only: it gets it and the
/// lease is acknowledged and queued. With the block used up the next new client gets no
/// offer although the range has free addresses, and a request for one of those is refused.
#[tokio::test]
async fn a_new_client_gets_only_a_block_address_while_cut_off() {
    let region = region_all_down_named("block").await;
    let (ipam, subnet, reserved) = mirror(None);
    let leases = RackLeases::new(
        ipam,
        vec![reserved],
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    let ip = leases.offer(subnet, &mac(2), NOW, 30).unwrap();
    assert_eq!(ip, reserved);
    let bound = leases.bind(ip, &mac(2), None, NOW, 600).unwrap();
    leases.wait_async(bound.ticket.unwrap()).await.unwrap();
    assert_eq!(queued_leases(&region), [(LeaseOp::Bind, reserved)]);
    let lease = leases
        .mirror_handle()
        .lock()
        .unwrap()
        .record(reserved)
        .and_then(|r| r.lease.clone())
        .unwrap();
    assert_eq!((lease.client, lease.state), (mac(2), LeaseState::Bound));

    // The block is used up: no offer, and no lease of an address outside it.
    assert!(matches!(
        leases.offer(subnet, &mac(3), NOW, 30),
        Err(LeaseError::Exhausted { .. })
    ));
    let outside: IpAddr = "10.77.92.101".parse().unwrap();
    let bound = leases.bind(outside, &mac(3), None, NOW, 600).unwrap();
    let error = leases.wait_async(bound.ticket.unwrap()).await.unwrap_err();
    assert!(matches!(error, LeaseError::Storage { .. }), "{error}");
    assert_eq!(queued_leases(&region), [(LeaseOp::Bind, reserved)]);
    // Refused, the address is free again in the mirror.
    assert!(
        leases
            .mirror_handle()
            .lock()
            .unwrap()
            .record(outside)
            .is_none()
    );
}

/// A region that cannot be reached while the rack thought it could: a new client's lease
/// (neither a renewal nor from the block) is refused, nothing is queued, the rack counts as
/// cut off, and the mirror lets the address go, so it can be offered again.
#[tokio::test]
async fn a_lease_no_region_recorded_is_refused_and_freed() {
    let region = regions_of("unrecorded", &[&nobody()]);
    region.set_reachable(true);
    let (ipam, subnet, _) = mirror(None);
    let leases = RackLeases::new(
        ipam,
        Vec::new(),
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    let ip = leases.offer(subnet, &mac(4), NOW, 30).unwrap();
    let bound = leases.bind(ip, &mac(4), None, NOW, 600).unwrap();
    let error = leases.wait_async(bound.ticket.unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, LeaseError::Storage { message } if message.contains("region")),
        "{error}"
    );
    assert!(region.queue.is_empty());
    assert!(region.cut_off());
    assert!(leases.mirror_handle().lock().unwrap().record(ip).is_none());
    // Once a region answers again, the address is offered again.
    region.set_reachable(true);
    assert_eq!(leases.offer(subnet, &mac(5), NOW, 30), Ok(ip));
}

/// A region's refusal of a renewal stands: the rack does not acknowledge it and queues
/// nothing, even though it would have accepted the renewal while cut off.
#[tokio::test]
async fn a_region_refusal_is_not_overridden() {
    let refusing =
        FakeRegion::start(200, r#"{"results": [{"error": "10.77.92.102 is in use"}]}"#).await;
    let region = regions_of("refusal", &[&refusing.url]);
    region.set_reachable(true);
    let ip: IpAddr = "10.77.92.102".parse().unwrap();
    let (ipam, _, _) = mirror(Some(ip));
    let leases = RackLeases::new(
        ipam,
        Vec::new(),
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    let bound = leases.bind(ip, &mac(1), None, NOW, 600).unwrap();
    let error = leases.wait_async(bound.ticket.unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, LeaseError::Storage { message } if message.contains("in use")),
        "{error}"
    );
    assert!(region.queue.is_empty());
    assert_eq!(refusing.hits(), 1);
}

/// A region that refuses the rack itself (401: removed) is an answer, not an absence: a
/// renewal is not acknowledged on the rack's own authority, and nothing is queued.
#[tokio::test]
async fn a_rack_the_region_refuses_acknowledges_nothing_on_its_own() {
    let refusing = FakeRegion::start(401, r#"{"error": "unknown rack"}"#).await;
    let region = regions_of("refused-rack", &[&refusing.url]);
    region.set_reachable(true);
    let ip: IpAddr = "10.77.92.102".parse().unwrap();
    let (ipam, _, _) = mirror(Some(ip));
    let leases = RackLeases::new(
        ipam,
        Vec::new(),
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    let bound = leases.bind(ip, &mac(1), None, NOW, 600).unwrap();
    let error = leases.wait_async(bound.ticket.unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, LeaseError::Storage { message } if message.contains("401")),
        "{error}"
    );
    assert!(region.queue.is_empty());
    assert!(!region.cut_off());
}

/// What was queued while cut off goes to the region in order once one answers, and leaves
/// the queue; a fresh `Region` over the same state directory finds it first (a restart).
#[tokio::test]
async fn the_queue_is_replayed_in_order_after_a_restart() {
    let ip: IpAddr = "10.77.92.102".parse().unwrap();
    let region = region_all_down_named("replay").await;
    let (ipam, _, _) = mirror(Some(ip));
    let leases = RackLeases::new(
        ipam,
        Vec::new(),
        Arc::clone(&region),
        &tokio::runtime::Handle::current(),
    );
    let bound = leases.bind(ip, &mac(1), None, NOW, 600).unwrap();
    leases.wait_async(bound.ticket.unwrap()).await.unwrap();
    let released = leases.release(ip, &mac(1)).unwrap().unwrap();
    leases.wait_async(released).await.unwrap();
    region.report_seen(crate::protocol::SeenReport {
        mac: "52:54:00:77:92:09".parse().unwrap(),
        ip: None,
        boot: None,
    });
    wait_for(|| region.queue.len() == 3).await;
    drop(leases);

    // The restarted rack's region answers.
    let answering =
        FakeRegion::start(200, r#"{"results": [{"record": null}, {"record": null}]}"#).await;
    let dir = region_dir("replay");
    let restarted = region_in(&dir, &[&answering.url]);
    let kinds: Vec<&str> = restarted
        .queue
        .front(10)
        .iter()
        .map(|e| e.item.kind())
        .collect();
    assert_eq!(kinds, ["lease", "lease", "seen"]);
    assert_eq!(
        queued_leases(&restarted),
        [(LeaseOp::Bind, ip), (LeaseOp::Release, ip)]
    );
    let (ipam, _, _) = mirror(None);
    super::leases::replay(&restarted, &std::sync::Mutex::new(ipam))
        .await
        .unwrap();
    assert!(restarted.queue.is_empty());
    // One batch with both lease operations, then the seen report.
    assert_eq!(answering.hits(), 2);
}

fn region_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("maas-rack-{name}-{}", std::process::id()))
}

fn region_in(dir: &std::path::Path, regions: &[&str]) -> Arc<Region> {
    let list: Vec<String> = regions.iter().map(|r| format!("{r:?}")).collect();
    let text = format!(
        r#"
[controller]
state_dir = "{}"
role = "rack"

[cluster]
regions = [{}]
secret = "0123456789abcdef"
name = "{RACK}"
"#,
        dir.display(),
        list.join(", ")
    );
    let config = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
    Arc::new(Region::new(&config).unwrap())
}

/// Waits (at most ten seconds) until `done`.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not done in time");
}

/// A region (the real one, on loopback) hears a rack's health on each of its calls: the
/// queue's length from the first, whether DHCP serves once the rack knows (none while it
/// starts: unknown), and `GET /api/v1/racks` shows what the last call carried.
#[test]
fn the_region_hears_the_racks_health_on_every_call() {
    use crate::protocol::DhcpHealth;
    use crate::state::resources::{BootResource, ResourceFile};
    let scratch = crate::tests::Scratch::new("rack-health-calls");
    let text = r#"
[controller]
state_dir = "region-state"

[cluster]
secret = "0123456789abcdef"

[[cluster.racks]]
name = "rack-t"
vlans = [{ fabric = "fabric-0", vid = 0 }]

[[vlans]]
fabric = "fabric-0"
vid = 0
"#;
    // Made and dropped off the runtime: on PostgreSQL the store blocks on a runtime of its own.
    let app = crate::tests::app_from(text, &scratch.0);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let stop = tokio_util::sync::CancellationToken::new();
            let router = crate::region::router(app.clone());
            let server = tokio::spawn(crate::tls::serve(
                listener,
                None,
                router.clone(),
                stop.clone(),
            ));
            let racks = || {
                let router = router.clone();
                async move {
                    use tower::ServiceExt as _;
                    let request = hyper::Request::get("/api/v1/racks")
                        .header("authorization", format!("Bearer {}", crate::tests::ADMIN))
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let response = router.oneshot(request).await.unwrap();
                    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                        .await
                        .unwrap();
                    let racks: Value = serde_json::from_slice(&bytes).unwrap();
                    let rack = racks[0].clone();
                    assert_eq!(rack["name"], RACK, "{racks}");
                    (
                        rack["dhcp_serving"].clone(),
                        rack["queued_reports"].clone(),
                        rack,
                    )
                }
            };

            let region = region_in(&scratch.0.join("rack-state"), &[&url]);
            region.enrol().await.unwrap();
            let _: Value = region
                .call(Method::GET, "/api/v1/rack/config", None::<&()>)
                .await
                .unwrap();
            let (dhcp, queued, rack) = racks().await;
            assert_eq!((dhcp, queued), (Value::Null, Value::from(0)), "{rack}");

            region.set_dhcp(DhcpHealth::serving(1_718_000_000, ["br0".to_string()]));
            assert!(
                region.enqueue(vec![Queued::Seen(crate::protocol::SeenReport {
                    mac: "52:54:00:77:92:01".parse().unwrap(),
                    ip: None,
                    boot: None,
                })])
            );
            let _: Value = region
                .call(Method::GET, "/api/v1/rack/config", None::<&()>)
                .await
                .unwrap();
            let (dhcp, queued, rack) = racks().await;
            assert_eq!(
                (dhcp, queued),
                (Value::Bool(true), Value::from(1)),
                "{rack}"
            );
            assert_eq!(
                (&rack["dhcp_since"], &rack["dhcp_interfaces"]),
                (&Value::from(1_718_000_000), &serde_json::json!(["br0"])),
                "{rack}"
            );

            // Boot resource downloads carry it too (the file is unknown: refused, and still heard).
            region.set_dhcp(DhcpHealth::off("stopped"));
            let fetched = region
                .sync_resources(
                    &app.state,
                    &scratch.0.join("rack-state"),
                    vec![BootResource {
                        name: "ephemeral".into(),
                        arch: "amd64".into(),
                        release: "jammy".into(),
                        kernel: Some(ResourceFile {
                            file: "vmlinuz".into(),
                            sha256: "00".repeat(32),
                            size: 1,
                        }),
                        initrd: None,
                        kernel_version: None,
                        image: None,
                        imported: Timestamp(0),
                    }],
                )
                .await;
            assert!(fetched.is_err());
            let (dhcp, _, rack) = racks().await;
            assert_eq!(
                (dhcp, &rack["dhcp_reason"]),
                (Value::Bool(false), &Value::from("stopped")),
                "{rack}"
            );
            stop.cancel();
            let _ = server.await;
        });
}

/// `region` is a one-element `regions`; both, none, or one twice are configuration errors.
#[test]
fn regions_are_configured_as_a_list_or_one_region() {
    let rack = |cluster: &str| {
        let text = format!(
            "[controller]\nstate_dir = \"s\"\nrole = \"rack\"\n\n[cluster]\nsecret = \"0123456789abcdef\"\n{cluster}\n"
        );
        crate::config::parse(&text, std::path::Path::new("."))
    };
    let one = rack("region = \"http://10.77.0.1:5240\"").unwrap();
    assert_eq!(one.cluster.region_urls(), ["http://10.77.0.1:5240"]);
    assert_eq!(one.cluster.start_wait_secs, 30);
    let two = rack("regions = [\"http://10.77.0.1:5240\", \"http://10.77.0.2:5240\"]").unwrap();
    assert_eq!(
        two.cluster.region_urls(),
        ["http://10.77.0.1:5240", "http://10.77.0.2:5240"]
    );
    for (cluster, problem) in [
        (
            "region = \"http://10.77.0.1:5240\"\nregions = [\"http://10.77.0.2:5240\"]",
            "not both",
        ),
        ("", "a rack needs region or regions"),
        (
            "regions = [\"http://10.77.0.1:5240\", \"http://10.77.0.1:5240/\"]",
            "listed twice",
        ),
        (
            "regions = [\"ftp://10.77.0.1\"]",
            "must be an https:// or http:// URL",
        ),
    ] {
        let problems = rack(cluster).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains(problem)),
            "{cluster}: {problems:?}"
        );
    }
}

/// The cached configuration is written whole and private, read back as written, and not used
/// when it is of another protocol version.
#[test]
fn the_cached_configuration_round_trips_privately() {
    use std::os::unix::fs::PermissionsExt as _;
    let (topology, _) = topology();
    let (ipam, _, reserved) = mirror(Some("10.77.92.102".parse().unwrap()));
    let mut config = crate::protocol::RackConfig {
        protocol: crate::protocol::PROTOCOL_VERSION,
        topology: topology.to_doc(),
        snapshot: ipam.snapshot(),
        machines: Vec::new(),
        ipxe_script: Some("#!ipxe".into()),
        pxelinux_template: None,
        grub_template: None,
        lease_secs: 600,
        machine_tokens: std::collections::BTreeMap::new(),
        resources: Vec::new(),
        block: vec![reserved],
        dhcp_shares: Vec::new(),
    };
    let path = scratch("cache").join(super::CACHE_FILE);
    super::save_cache(&path, &config);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let read = super::load_cache(&path).unwrap();
    assert_eq!(read.block, [reserved]);
    assert_eq!(read.snapshot, config.snapshot);
    // Written again over the old one, still private.
    config.protocol += 1;
    super::save_cache(&path, &config);
    assert!(super::load_cache(&path).is_none());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
