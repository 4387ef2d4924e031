//! The rack endpoints against a region state in a scratch directory: the shared secret, the
//! rack's credential, what racks report, and the health their calls carry.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::protocol::{PROTOCOL_VERSION, VERSION_HEADER};
use crate::region;

use crate::tests::*;

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

/// A rack's health, as its calls carry it: `null` until a call says (an older rack never
/// does), then what the last call said; a malformed header is ignored (the call succeeds,
/// the value before stays); the dashboard is told of a change, and only of one.
#[test]
fn a_racks_health_is_what_its_calls_carry() {
    use crate::protocol::{DHCP_HEADER, QUEUED_HEADER};
    let scratch = Scratch::new("rack-health");
    let text = CONFIG.replace(
        "[[zones]]\nname = \"default\"",
        "[cluster]\nsecret = \"0123456789abcdef-secret\"\n\n[[cluster.racks]]\nname = \"rack-h\"\nvlans = [{ fabric = \"fabric-0\", vid = 0 }]\n\n[[zones]]\nname = \"default\"",
    );
    let app = app_from(&text, &scratch.0);
    let region = region::router(app.clone());
    let mut changes = app.state.changes.subscribe();
    let request = |method: Method, uri: &str, bearer: &str, headers: &[(&str, &str)]| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-maas-rack", "rack-h")
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string())
            .header("authorization", format!("Bearer {bearer}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    };
    let send = |request: Request<Body>| send(&region, request);
    runtime().block_on(async {
        let (s, v) = send(request(
            Method::POST,
            "/api/v1/rack/enrol",
            "0123456789abcdef-secret",
            &[],
        ))
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let credential = v["credential"].as_str().unwrap().to_string();
        let rack_call = |headers: &[(&str, &str)]| {
            send(request(
                Method::GET,
                "/api/v1/rack/config",
                &credential,
                headers,
            ))
        };
        let racks = || async {
            let (s, v) = send(request(Method::GET, "/api/v1/racks", ADMIN, &[])).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v[0].clone()
        };
        let health = |rack: &Value| {
            (
                rack["dhcp_serving"].clone(),
                rack["queued_reports"].clone(),
                rack["dhcp_interfaces"].clone(),
            )
        };

        // A rack that sends no health: unknown.
        let (s, v) = rack_call(&[]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rack = racks().await;
        assert_eq!(
            health(&rack),
            (Value::Null, Value::Null, Value::Null),
            "{rack}"
        );
        assert_eq!(
            (&rack["dhcp_since"], &rack["health_at"]),
            (&Value::Null, &Value::Null),
            "{rack}"
        );
        while changes.try_recv().is_ok() {}

        let serving = "serving; since=1718000000; interfaces=br0,br1";
        let (s, v) = rack_call(&[(DHCP_HEADER, serving), (QUEUED_HEADER, "17")]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rack = racks().await;
        assert_eq!(
            health(&rack),
            (json!(true), json!(17), json!(["br0", "br1"])),
            "{rack}"
        );
        assert_eq!(rack["dhcp_since"], 1_718_000_000, "{rack}");
        assert!(
            rack["health_at"].as_u64().unwrap() > 1_718_000_000,
            "{rack}"
        );
        let kinds = changes.try_recv().expect("a change announced");
        assert!(
            kinds.contains(crate::state::notify::Kinds::RACKS),
            "{kinds:?}"
        );
        // The same again: nothing to announce.
        let (s, _) = rack_call(&[(DHCP_HEADER, serving), (QUEUED_HEADER, "17")]).await;
        assert_eq!(s, StatusCode::OK);
        assert!(changes.try_recv().is_err(), "nothing changed");

        // Malformed: ignored, whatever else the call does; what was known stays.
        for (dhcp, queued) in [
            ("on", "-1"),
            ("serving; since=soon", "17 "),
            ("off; reason=", "1e3"),
        ] {
            let (s, v) = rack_call(&[(DHCP_HEADER, dhcp), (QUEUED_HEADER, queued)]).await;
            assert_eq!(s, StatusCode::OK, "{dhcp:?} {queued:?}: {v}");
        }
        let mut bad = request(Method::GET, "/api/v1/rack/config", &credential, &[]);
        bad.headers_mut().insert(
            DHCP_HEADER,
            axum::http::HeaderValue::from_bytes(b"serving\xff").unwrap(),
        );
        let (s, v) = send(bad).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let rack = racks().await;
        assert_eq!(
            health(&rack),
            (json!(true), json!(17), json!(["br0", "br1"])),
            "{rack}"
        );

        // One header alone changes only its own value; a header left out changes nothing.
        let (s, _) = rack_call(&[(QUEUED_HEADER, "0")]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            health(&racks().await),
            (json!(true), json!(0), json!(["br0", "br1"]))
        );
        let (s, _) = rack_call(&[(DHCP_HEADER, "off; reason=unconfigured")]).await;
        assert_eq!(s, StatusCode::OK);
        let rack = racks().await;
        assert_eq!(health(&rack), (json!(false), json!(0), json!([])), "{rack}");
        assert_eq!(
            (&rack["dhcp_reason"], &rack["dhcp_since"]),
            (&json!("unconfigured"), &Value::Null),
            "{rack}"
        );

        // Only a rack's own calls count: a user cannot set a rack's health.
        let (s, _) = send(request(
            Method::GET,
            "/api/v1/racks",
            ADMIN,
            &[(QUEUED_HEADER, "5")],
        ))
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(racks().await["queued_reports"], 0);
    });
}
