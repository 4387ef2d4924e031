//! Every API endpoint, with good and bad input, against a controller state in a scratch
//! directory; and the state surviving a reopen.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::app::App;
use crate::config;
use crate::state::State;
use crate::{boot, region};

pub(crate) const CONFIG: &str = r##"
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

pub(crate) fn app(dir: &Path) -> App {
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

pub(crate) async fn call(
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

pub(crate) async fn post(api: &axum::Router, body: Value) -> (StatusCode, Value, String) {
    call(
        api,
        Method::POST,
        "/api/v1/ipaddresses",
        Some(&body.to_string()),
    )
    .await
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
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
    replay_corpus("controller_config", |_, bytes| {
        if let Ok(text) = std::str::from_utf8(bytes)
            && let Err(problems) = config::parse(text, Path::new("/srv/maas"))
        {
            assert!(!problems.is_empty());
        }
    });
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

/// Sends `request` through `router`: the answer's status and its body as JSON (`null` when it
/// is not JSON).
pub(crate) async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
    )
}

/// Hands every file of the committed fuzz corpus `target` (`fuzz/corpus/<target>`) to `check`
/// with its path; fails on an empty corpus. How many files there were.
pub(crate) fn replay_corpus(target: &str, mut check: impl FnMut(&Path, &[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        check(&path, &bytes);
        seen += 1;
    }
    assert!(seen > 0, "{} is empty", dir.display());
    seen
}
