//! Every API endpoint, with good and bad input, against a controller state in a scratch
//! directory; and the state surviving a reopen.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::app::App;
use crate::config;
use crate::protocol::{PROTOCOL_VERSION, VERSION_HEADER};
use crate::state::State;
use crate::{boot, region};

const CONFIG: &str = r##"
[controller]
state_dir = "state"
ipxe_script = "#!ipxe\necho {hostname} {mac} {status} via {server}\n"
boot_assets = "assets"

[[zones]]
name = "default"

[[zones]]
name = "rack-b"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.91.0/24"
gateway_ip = "10.77.91.1"

[[ip_ranges]]
subnet = "10.77.91.0/24"
start = "10.77.91.100"
end = "10.77.91.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:91:10"
hostname = "node1"
power = { power_type = "manual" }
"##;

/// A scratch directory, removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("maas-controller-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("assets/grub")).unwrap();
        std::fs::write(dir.join("assets/grub/grub.cfg"), "set timeout=1\n").unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The databases of its state directories, and with the last of them the server.
        let mut databases = DATABASES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        databases.retain(|dir, _| !dir.starts_with(&self.0));
    }
}

/// The PostgreSQL database of each state directory the tests opened, when they run on
/// PostgreSQL (`MAAS_TEST_STORE=postgres`), with the server they are on.
static DATABASES: std::sync::Mutex<
    std::collections::BTreeMap<PathBuf, (String, std::sync::Arc<crate::pg_server::PgServer>)>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Where the tests keep the state of `state_dir`: the embedded store in it, or, when
/// `MAAS_TEST_STORE=postgres`, a database of its own on a PostgreSQL server the tests start
/// (the same database each time the directory is opened, for the tests that reopen it).
pub(crate) fn store_at(state_dir: &Path) -> crate::state::StoreAt {
    if std::env::var("MAAS_TEST_STORE").as_deref() != Ok("postgres") {
        return crate::state::StoreAt::embedded(state_dir);
    }
    crate::state::StoreAt::Postgres(database_for(state_dir))
}

/// A fresh database for `state_dir` (the same one on later calls), on the shared server.
/// Panics when no server can be started: the caller asked for PostgreSQL.
pub(crate) fn database_for(state_dir: &Path) -> String {
    let mut databases = DATABASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((url, _)) = databases.get(state_dir) {
        return url.clone();
    }
    let server = crate::pg_server::PgServer::shared().expect("a PostgreSQL server for the tests");
    let url = server.create_database();
    databases.insert(state_dir.to_path_buf(), (url.clone(), server));
    url
}

/// An admin's token, known in advance (every test app has it).
pub(crate) const ADMIN: &str = "maas_00000000000000ad_000000000000000000000000000000000000a11e";
/// An operator's and a viewer's.
pub(crate) const OPERATOR: &str = "maas_000000000000000b_00000000000000000000000000000000000000b0";
pub(crate) const VIEWER: &str = "maas_000000000000000c_00000000000000000000000000000000000000c0";

/// Gives the test users (admin, operator, viewer) their known tokens.
pub(crate) fn with_test_users(state: &State) {
    use crate::state::auth::UserRole;
    state.add_token_for_tests("admin", UserRole::Admin, ADMIN);
    state.add_token_for_tests("operator", UserRole::Operator, OPERATOR);
    state.add_token_for_tests("viewer", UserRole::Viewer, VIEWER);
}

fn app(dir: &Path) -> App {
    app_from(CONFIG, dir)
}

pub(crate) fn app_from(text: &str, dir: &Path) -> App {
    let config = config::parse(text, dir).unwrap();
    std::fs::create_dir_all(&config.controller.state_dir).unwrap();
    let at = store_at(&config.controller.state_dir);
    let state = State::open_at(&at, &config.topology, &config.machines).unwrap();
    with_test_users(&state);
    App::new(state, config)
}

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "10.77.91.1:5248")
        .header("authorization", format!("Bearer {ADMIN}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn post(api: &axum::Router, body: Value) -> (StatusCode, Value, String) {
    call(
        api,
        Method::POST,
        "/api/v1/ipaddresses",
        Some(&body.to_string()),
    )
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_endpoint_with_good_and_bad_input() {
    let scratch = Scratch::new("api");
    let app = app(&scratch.0);
    let api = region::router(app.clone());
    let boot = boot::router(app.clone());
    runtime().block_on(async {
        use Method as M;
        let (s, v, _) = call(&api, M::GET, "/api/v1/version", None).await;
        assert_eq!(
            (s, v["name"].as_str()),
            (StatusCode::OK, Some("maas-rs controller"))
        );

        let (s, v, _) = call(&api, M::GET, "/api/v1/zones", None).await;
        assert_eq!(s, StatusCode::OK);
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|z| z["name"].as_str())
            .collect();
        assert_eq!(names, ["default", "rack-b"]);

        let (s, v, _) = call(&api, M::GET, "/api/v1/subnets", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["cidr"], "10.77.91.0/24");
        let id = v[0]["id"].as_u64().unwrap();
        // 254 usable, the gateway and the 100-address dynamic range unavailable.
        assert_eq!(v[0]["statistics"]["num_available"], 153);

        let (s, v, _) = call(
            &api,
            M::GET,
            &format!("/api/v1/subnets/{id}/statistics"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["ranges"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
        let (s, v, _) = call(&api, M::GET, "/api/v1/subnets/x/statistics", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _, _) = call(&api, M::GET, "/api/v1/subnets/99/statistics", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, v, _) = call(&api, M::GET, "/api/v1/ipranges", None).await;
        assert_eq!(
            (s, v[0]["start"].as_str()),
            (StatusCode::OK, Some("10.77.91.100"))
        );
        let (s, v, _) = call(&api, M::GET, "/api/v1/leases", None).await;
        assert_eq!((s, v), (StatusCode::OK, json!([])));

        // Reservations: by address, by subnet (MAAS's AUTO choice), and refusals.
        let (s, v, _) = post(&api, json!({ "ip": "10.77.91.50", "owner": "switch" })).await;
        assert_eq!(
            (s, v["kind"].as_str()),
            (StatusCode::CREATED, Some("USER_RESERVED")),
            "{v}"
        );
        let (s, v, _) = post(
            &api,
            json!({ "subnet": id, "kind": "sticky", "mac": "52:54:00:77:91:20" }),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["kind"], "STICKY");
        // Free: .2-.49, .51-.99 (.50 is reserved above) and .200-.254: MAAS takes the
        // smallest block's first address.
        assert_eq!(v["ip"], "10.77.91.2");
        let (s, v, _) = post(&api, json!({ "ip": "10.77.91.150" })).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            v["error"].as_str().unwrap().contains("dynamic range"),
            "{v}"
        );
        let (s, v, _) = post(&api, json!({ "ip": "10.77.91.50" })).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        let (s, _, _) = post(&api, json!({ "ip": "10.77.91.60", "subnet": id })).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, _) = post(&api, json!({ "ip": "10.77.91.60", "kind": "forever" })).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, _) = post(&api, json!({ "ip": "10.99.0.1" })).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, v, _) = call(&api, M::POST, "/api/v1/ipaddresses", Some("{not json")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, v, _) = call(&api, M::GET, "/api/v1/ipaddresses", None).await;
        assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
        let (s, _, _) = call(&api, M::DELETE, "/api/v1/ipaddresses/10.77.91.50", None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(&api, M::DELETE, "/api/v1/ipaddresses/10.77.91.50", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(&api, M::DELETE, "/api/v1/ipaddresses/not-an-ip", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // Machines.
        let (s, v, _) = call(&api, M::GET, "/api/v1/machines", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["hostname"], "node1");
        assert_eq!(v[0]["origin"], "config");
        let new =
            json!({ "mac": "52:54:00:77:91:30", "hostname": "n30", "zone": "rack-b" }).to_string();
        let (s, v, _) = call(&api, M::POST, "/api/v1/machines", Some(&new)).await;
        assert_eq!(
            (s, v["origin"].as_str()),
            (StatusCode::CREATED, Some("api")),
            "{v}"
        );
        let (s, _, _) = call(&api, M::POST, "/api/v1/machines", Some(&new)).await;
        assert_eq!(s, StatusCode::CONFLICT);
        for bad in [
            json!({ "mac": "52:54:00:77:91:31", "zone": "nowhere" }),
            json!({ "mac": "52:54:00:77:91:31", "hostname": "-x" }),
            json!({ "mac": "52:54:00:77:91:31", "hostname": "n30" }),
            json!({ "mac": "zz" }),
            json!({ "mac": "52:54:00:77:91:31", "colour": "red" }),
        ] {
            let (s, v, _) = call(&api, M::POST, "/api/v1/machines", Some(&bad.to_string())).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} -> {v}");
            assert!(v["error"].is_string(), "{v}");
        }
        let (s, v, _) = call(&api, M::GET, "/api/v1/machines/52-54-00-77-91-30", None).await;
        assert_eq!((s, v["zone"].as_str()), (StatusCode::OK, Some("rack-b")));
        let (s, _, _) = call(&api, M::GET, "/api/v1/machines/52:54:00:77:91:99", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(&api, M::GET, "/api/v1/machines/nonsense", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // Boot: the chain script, a machine's own script (an unknown one is enlisted), assets.
        let (s, _, text) = call(&boot, M::GET, "/ipxe.cfg", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            text.starts_with("#!ipxe\nchain ipxe.cfg-${net0/mac:hexhyp}"),
            "{text}"
        );
        let (s, _, text) = call(&boot, M::GET, "/ipxe.cfg-52-54-00-77-91-10", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            text,
            "#!ipxe\necho node1 52:54:00:77:91:10 ready via 10.77.91.1:5248\n"
        );
        let (s, _, text) = call(&boot, M::GET, "/ipxe.cfg-52-54-00-77-91-40", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(text.contains("node-779140 52:54:00:77:91:40 new"), "{text}");
        let (s, v, _) = call(&api, M::GET, "/api/v1/machines/52:54:00:77:91:40", None).await;
        assert_eq!(
            (s, v["status"].as_str(), v["origin"].as_str()),
            (StatusCode::OK, Some("new"), Some("enlisted"))
        );
        let (s, v, _) = call(
            &api,
            M::POST,
            "/api/v1/machines/52:54:00:77:91:40/accept",
            None,
        )
        .await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));
        let (s, _, text) = call(&boot, M::GET, "/pxelinux.cfg/01-52-54-00-77-91-10", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            text.contains("node1 (52:54:00:77:91:10) is ready"),
            "{text}"
        );
        let (s, _, text) = call(&boot, M::GET, "/grub/grub.cfg-52:54:00:77:91:10", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            text.contains("node1 (52:54:00:77:91:10) is ready"),
            "{text}"
        );
        let (s, _, _) = call(&boot, M::GET, "/pxelinux.cfg/default", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, text) = call(&boot, M::GET, "/assets/grub/grub.cfg", None).await;
        assert_eq!((s, text.as_str()), (StatusCode::OK, "set timeout=1\n"));
        for escape in [
            "/assets/../state/machines.json",
            "/assets/%2e%2e/state/machines.json",
            "/assets/grub/../../CONFIG",
            "/assets//etc/passwd",
            "/ipxe.cfg-zz",
            "/other",
        ] {
            let (s, _, text) = call(&boot, M::GET, escape, None).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{escape}: {text}");
        }

        // Power: secrets masked, bad parameters refused, machines without power refused.
        let ipmi = json!({ "mac": "52:54:00:77:91:50", "power": {
            "power_type": "ipmi", "power_address": "10.77.91.250", "power_user": "admin",
            "power_pass": "s3cret" } })
        .to_string();
        let (s, v, text) = call(&api, M::POST, "/api/v1/machines", Some(&ipmi)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["power"]["power_pass"], "********");
        assert!(!text.contains("s3cret"), "{text}");
        let (_, _, text) = call(&api, M::GET, "/api/v1/machines", None).await;
        assert!(!text.contains("s3cret"), "{text}");
        let bad = json!({ "mac": "52:54:00:77:91:51", "power": { "power_type": "telepathy" } });
        let (s, v, _) = call(&api, M::POST, "/api/v1/machines", Some(&bad.to_string())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("power"), "{v}");
        let (s, v, _) = call(
            &api,
            M::GET,
            "/api/v1/machines/52:54:00:77:91:10/power",
            None,
        )
        .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("unknown")),
            "{v}"
        );
        let (s, _, _) = call(
            &api,
            M::POST,
            "/api/v1/machines/52:54:00:77:91:40/power-on",
            None,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::CONFLICT,
            "an enlisted machine has no power parameters"
        );
        let (s, _, _) = call(
            &api,
            M::POST,
            "/api/v1/machines/52:54:00:77:91:99/power-off",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Boot device: a manual machine takes the request (its driver has nothing to do),
        // bad devices and bodies are refused, machines without power are a conflict.
        let boot_uri = "/api/v1/machines/52:54:00:77:91:10/boot";
        let (s, v, _) = call(&api, M::POST, boot_uri, Some(r#"{"device": "pxe"}"#)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["boot"]["persistence"], "once", "{v}");
        let (s, v, _) = call(&api, M::POST, boot_uri, Some(r#"{"device": "floppy"}"#)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("floppy"), "{v}");
        let (s, _, _) = call(&api, M::POST, boot_uri, Some("{")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _, _) = call(
            &api,
            M::POST,
            "/api/v1/machines/52:54:00:77:91:40/boot",
            Some(r#"{"device": "pxe"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        // The last power state seen is shown with the machine.
        let (_, v, _) = call(&api, M::GET, "/api/v1/machines/52:54:00:77:91:10", None).await;
        assert_eq!(v["power_state"]["state"], "unknown", "{v}");

        // Discoveries: none on a controller that watches no interface.
        let (s, v, _) = call(&api, M::GET, "/api/v1/discoveries", None).await;
        assert_eq!((s, v), (StatusCode::OK, json!([])));

        let (s, _, _) = call(&api, M::DELETE, "/api/v1/machines/52:54:00:77:91:30", None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, _) = call(&api, M::DELETE, "/api/v1/machines/52:54:00:77:91:30", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = call(&api, M::GET, "/api/v1/nothing-here", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, _, text) = call(&api, M::GET, "/metrics", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(text.contains("maas_machines_enlisted_total 1"), "{text}");
        assert!(text.contains("maas_boot_scripts_total 2"), "{text}");
        assert!(text.contains("maas_machines{status=\"ready\"} 3"), "{text}");
    });
    // Everything above survives a reopen of the state.
    drop(api);
    drop(boot);
    drop(app);
    let again = self::app(&scratch.0);
    let machines = again.state.machines();
    let macs: Vec<String> = machines.iter().map(|m| m.mac.to_string()).collect();
    assert_eq!(
        macs,
        [
            "52:54:00:77:91:10",
            "52:54:00:77:91:40",
            "52:54:00:77:91:50"
        ]
    );
    let sticky = again
        .state
        .ipam
        .read(|ipam| ipam.record("10.77.91.2".parse().unwrap()).cloned());
    assert_eq!(sticky.map(|r| r.kind), Some(maas_ipam::AddressKind::Sticky));
}

/// The rack endpoints: enrolment with the shared secret (refused without `[cluster] secret`
/// or with a wrong one, and once per name), then the rack's own credential: the
/// configuration a rack needs, lease reports applied by the region's own address manager (a
/// second client's claim on a leased address refused), what machines told a rack, and
/// discoveries; reports outside the rack's VLANs refused and audited; a removed rack
/// refused at once.
#[test]
fn rack_endpoints_need_the_secret_and_record_what_racks_report() {
    use axum::http::Method as M;
    let scratch = Scratch::new("racks");
    let no_secret = region::router(app(&scratch.0));
    let with_secret = CONFIG.replace(
        "[[zones]]\nname = \"default\"",
        "[cluster]\nsecret = \"0123456789abcdef-secret\"\n\n[[cluster.racks]]\nname = \"rack-t\"\nvlans = [{ fabric = \"fabric-0\", vid = 0 }]\n\n[[zones]]\nname = \"default\"",
    );
    let with_secret = with_secret.replace("state_dir = \"state\"", "state_dir = \"state-b\"")
        + "\n[[vlans]]\nfabric = \"fabric-0\"\nvid = 93\n\n[[subnets]]\ncidr = \"10.77.93.0/24\"\nfabric = \"fabric-0\"\nvid = 93\n";
    let app_b = app_from(&with_secret, &scratch.0);
    let region = region::router(app_b.clone());
    let rack = |method: M, uri: &str, secret: Option<&str>, body: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-maas-rack", "rack-t")
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(secret) = secret {
            request = request.header("authorization", format!("Bearer {secret}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap()
    };
    let send = |router: &axum::Router, request: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let shared = Some("0123456789abcdef-secret");
    let admin = Some(ADMIN);
    runtime().block_on(async {
        let enrol = "/api/v1/rack/enrol";
        let (s, v) = send(&no_secret, rack(M::POST, enrol, shared, None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "no secret set: {v}");
        let (s, v) = send(&region, rack(M::POST, enrol, None, None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        let (s, _) = send(&region, rack(M::POST, enrol, Some("0123456789abcdef-secreT"), None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        // The shared secret opens nothing but enrolment.
        let (s, _) = send(&region, rack(M::GET, "/api/v1/rack/config", shared, None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = send(&region, rack(M::POST, enrol, shared, None)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let credential = v["credential"].as_str().unwrap().to_string();
        let secret = Some(credential.as_str());
        // Once per name: an admin removes a rack before its name enrols again.
        let (s, v) = send(&region, rack(M::POST, enrol, shared, None)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");

        // A rack of another protocol version is told so, whatever else it sends.
        for version in [None, Some("0"), Some("99")] {
            let mut request = rack(M::GET, "/api/v1/rack/config", secret, None);
            request.headers_mut().remove(VERSION_HEADER);
            if let Some(v) = version {
                request.headers_mut().insert(VERSION_HEADER, v.parse().unwrap());
            }
            let (s, v) = send(&region, request).await;
            assert_eq!(s, StatusCode::CONFLICT, "{v}");
            assert!(v["error"].as_str().unwrap().contains("protocol"), "{v}");
        }
        let (s, v) = send(&region, rack(M::GET, "/api/v1/rack/config", secret, None)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["topology"]["subnets"][0]["cidr"], "10.77.91.0/24", "{v}");
        assert_eq!(v["machines"][0]["hostname"], "node1", "{v}");
        assert!(v["ipxe_script"].as_str().unwrap().contains("{hostname}"), "{v}");
        assert_eq!(v["lease_secs"], 3600, "{v}");
        assert!(v["machine_tokens"]["52:54:00:77:91:10"].as_str().unwrap().starts_with("maas_"), "{v}");
        // A user's token is not a rack's.
        let (s, _) = send(&region, rack(M::GET, "/api/v1/rack/config", admin, None)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let bind = |mac: &str, ip: &str| {
            format!(r#"{{"op": "bind", "ip": "{ip}", "client": {{"mac": "{mac}"}}, "hostname": "vm"}}"#)
        };
        let leases = "/api/v1/rack/leases";
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(&bind("52:54:00:77:91:70", "10.77.91.150")))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["lease"]["state"].as_str(), v["owner"].as_str()), (Some("bound"), Some("vm")), "{v}");
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(&bind("52:54:00:77:91:71", "10.77.91.150")))).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap().contains("10.77.91.150"), "{v}");
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(&bind("52:54:00:77:91:72", "10.77.91.20")))).await;
        assert_eq!(s, StatusCode::CONFLICT, "outside the dynamic range: {v}");
        let (s, _) = send(&region, rack(M::POST, leases, secret, Some(r#"{"op": "steal", "ip": "10.77.91.150", "client": {"mac": "52:54:00:77:91:70"}}"#))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = send(&region, rack(M::POST, leases, secret, Some("[1, 2"))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(r#"{"op": "release", "ip": "10.77.91.150", "client": {"mac": "52:54:00:77:91:71"}}"#))).await;
        assert_eq!(s, StatusCode::CONFLICT, "not the holder: {v}");
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(r#"{"op": "release", "ip": "10.77.91.150", "client": {"mac": "52:54:00:77:91:70"}}"#))).await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // A batch that does not follow the protocol (an unknown operation) is refused whole,
        // before anything in it is applied.
        let malformed = format!(
            r#"{{"reports": [{}, {{"op": "steal", "ip": "10.77.91.160", "client": {{"mac": "52:54:00:77:91:73"}}}}]}}"#,
            bind("52:54:00:77:91:73", "10.77.91.160"),
        );
        let (s, v) = send(&region, rack(M::POST, "/api/v1/rack/leases/batch", secret, Some(&malformed))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("steal"), "{v}");
        // A batch: applied in order, one answer each, in order.
        let batch = format!(
            r#"{{"reports": [{}, {}, {}]}}"#,
            bind("52:54:00:77:91:73", "10.77.91.160"),
            bind("52:54:00:77:91:74", "10.77.91.160"),
            bind("52:54:00:77:91:74", "10.77.91.161"),
        );
        let (s, v) = send(&region, rack(M::POST, "/api/v1/rack/leases/batch", secret, Some(&batch))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "{v}");
        assert_eq!(results[0]["record"]["ip"], "10.77.91.160", "{v}");
        assert!(results[1]["error"].as_str().unwrap().contains("10.77.91.160"), "{v}");
        assert_eq!(results[2]["record"]["lease"]["state"], "bound", "{v}");
        let (s, _) = send(&region, rack(M::POST, "/api/v1/rack/leases/batch", None, Some(&batch))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let seen = r#"{"mac": "52:54:00:77:91:70", "ip": "10.77.91.151", "boot": {"choice": "ipxe"}}"#;
        let (s, v) = send(&region, rack(M::POST, "/api/v1/rack/seen", secret, Some(seen))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["status"].as_str(), v["ip"].as_str()), (Some("new"), Some("10.77.91.151")), "{v}");
        let (s, _) = send(&region, rack(M::POST, "/api/v1/rack/seen", secret, Some(r#"{"mac": "zz"}"#))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        let event = json!({
            "event": "NEW", "ip": "10.77.91.40", "mac": "52:54:00:77:91:41", "previous_mac": null,
            "vid": 0, "hostname": "printer", "interface": "br0", "first_seen": 100, "last_seen": 100,
        });
        let (s, v) = send(&region, rack(M::POST, "/api/v1/rack/discoveries", secret, Some(&event.to_string()))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["subnet"], "10.77.91.0/24", "{v}");
        let (s, _) = send(&region, rack(M::POST, "/api/v1/rack/discoveries", secret, Some(r#"{"event": "NEW"}"#))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (_, v) = send(&region, rack(M::GET, "/api/v1/discoveries", admin, None)).await;
        assert_eq!(v[0]["hostname"], "printer", "{v}");
        // The rack's own interface is never an unknown discovery.
        let (_, v) = send(&region, rack(M::GET, "/api/v1/discoveries?unknown=mac", admin, None)).await;
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        let own = r#"{"interfaces": [{"mac": "52:54:00:77:91:41", "ips": ["10.77.91.40"]}]}"#;
        let (s, v) = send(&region, rack(M::POST, "/api/v1/rack/interfaces", secret, Some(own))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for unknown in ["mac", "ip", "both"] {
            let (_, v) = send(&region, rack(M::GET, &format!("/api/v1/discoveries?unknown={unknown}"), admin, None)).await;
            assert_eq!(v, json!([]), "{unknown}");
        }
        let off = r#"{"interfaces": [{"mac": "52:54:00:77:91:42", "ips": ["10.77.93.1"]}]}"#;
        let (s, _) = send(&region, rack(M::POST, "/api/v1/rack/interfaces", secret, Some(off))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Reports about addresses off the rack's VLANs are refused, and audited.
        let (s, v) = send(&region, rack(M::POST, leases, secret, Some(&bind("52:54:00:77:93:70", "10.77.93.50")))).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"].as_str().unwrap().contains("does not serve"), "{v}");
        let off_vlan = json!({
            "event": "NEW", "ip": "10.77.93.40", "mac": "52:54:00:77:93:41", "previous_mac": null,
            "vid": 93, "hostname": null, "interface": "br0", "first_seen": 100, "last_seen": 100,
        });
        let (s, _) = send(&region, rack(M::POST, "/api/v1/rack/discoveries", secret, Some(&off_vlan.to_string()))).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (_, v) = send(&region, rack(M::GET, "/api/v1/audit?rack=rack-t", admin, None)).await;
        let actions: Vec<(&str, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["action"].as_str().unwrap(), e["status"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            actions,
            [
                ("POST /api/v1/rack/enrol", 201),
                ("POST /api/v1/rack/enrol", 409),
                ("POST /api/v1/rack/interfaces", 403),
                ("POST /api/v1/rack/leases", 403),
                ("POST /api/v1/rack/discoveries", 403),
            ],
            "{v}"
        );

        let (_, v) = send(&region, rack(M::GET, "/api/v1/racks", admin, None)).await;
        assert_eq!(v[0]["name"], "rack-t", "{v}");
        assert_eq!(v[0]["leases_recorded"], 4, "{v}");
        // Malformed reports are not counted: they never reached the address manager.
        assert_eq!(v[0]["leases_refused"], 4, "{v}");
        assert_eq!(v[0]["discoveries"], 1, "{v}");
        assert_eq!(v[0]["vlans"][0]["vid"], 0, "{v}");

        // Removed: the credential stops working at once, and the name may enrol again.
        let (s, v) = send(&region, rack(M::DELETE, "/api/v1/racks/rack-t", Some(OPERATOR), None)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "operators do not manage racks: {v}");
        let (s, v) = send(&region, rack(M::DELETE, "/api/v1/racks/rack-t", admin, None)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _) = send(&region, rack(M::GET, "/api/v1/rack/config", secret, None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = send(&region, rack(M::POST, enrol, shared, None)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_ne!(v["credential"].as_str(), Some(credential.as_str()));
    });
    drop(app_b);
}

/// Roles: a region serves no network itself and needs a secret; a rack needs its region and
/// takes the network model and machines from it.
#[test]
fn roles_are_checked() {
    let region = config::parse_as(
        "[controller]\nstate_dir = \"s\"\ntftp = \"127.0.0.1:69\"\n[dhcp]\ninterfaces = [\"br0\"]\n",
        Path::new("."),
        Some(config::Role::Region),
    )
    .unwrap_err()
    .join("\n");
    assert!(
        region.contains("[dhcp] interfaces: a region serves no network"),
        "{region}"
    );
    assert!(
        region.contains("[controller] tftp: a region serves no network"),
        "{region}"
    );
    assert!(region.contains("a region needs a secret"), "{region}");
    let rack = config::parse_as(CONFIG, Path::new("."), Some(config::Role::Rack))
        .unwrap_err()
        .join("\n");
    assert!(rack.contains("a rack needs region"), "{rack}");
    assert!(
        rack.contains("a rack takes its network model from its region"),
        "{rack}"
    );
    assert!(
        rack.contains("a rack takes its machines from its region"),
        "{rack}"
    );
    let short = config::parse_as(
        "[controller]\nstate_dir = \"s\"\n[cluster]\nregion = \"ftp://x\"\nsecret = \"short\"\n",
        Path::new("."),
        Some(config::Role::Rack),
    )
    .unwrap_err()
    .join("\n");
    assert!(short.contains("at least 16 characters"), "{short}");
    assert!(
        short.contains("must be an https:// or http:// URL"),
        "{short}"
    );
    let untrusted = config::parse_as(
        "[controller]\nstate_dir = \"s\"\n[cluster]\nregion = \"https://10.77.91.1:5240\"\nsecret = \"0123456789abcdef\"\n",
        Path::new("."),
        Some(config::Role::Rack),
    )
    .unwrap_err()
    .join("\n");
    assert!(untrusted.contains("give region_ca"), "{untrusted}");
    let pinned = config::parse_as(
        "[controller]\nstate_dir = \"s\"\n[cluster]\nregion = \"https://10.77.91.1:5240\"\nsecret = \"0123456789abcdef\"\nregion_fingerprint = \"AB:CD\"\n",
        Path::new("."),
        Some(config::Role::Rack),
    )
    .unwrap_err()
    .join("\n");
    assert!(pinned.contains("64 hex digits"), "{pinned}");
    let good = config::parse_as(
        "[controller]\nstate_dir = \"s\"\n[dhcp]\ninterfaces = [\"br0\"]\n[cluster]\nregion = \"http://10.77.91.1:5240\"\nsecret = \"0123456789abcdef\"\n",
        Path::new("."),
        Some(config::Role::Rack),
    );
    assert!(good.is_ok(), "{:?}", good.err());
}

/// The committed fuzz corpus of the configuration loader (`fuzz/corpus/controller_config`):
/// every input gives a configuration or a list of problems, never a panic.
#[test]
fn the_config_fuzz_corpus_replays() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/corpus/controller_config"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(problems) = config::parse(text, Path::new("/srv/maas"))
        {
            assert!(!problems.is_empty());
        }
        seen += 1;
    }
    assert!(seen > 0, "{dir} is empty");
}

/// One request through `router` as `token`'s holder, with a JSON body if any: the status
/// and the JSON answer (`null` when the body is not JSON).
pub(crate) async fn call_as(
    router: &axum::Router,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            request = request.header(axum::http::header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
