//! Who may call what: every route of `openapi.yaml` against the role table, with no token, a
//! revoked or expired one, each role, a rack's and a machine's credential; failed attempts
//! slowed per address; the audit trail; tokens made and revoked through the API.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::auth::{Need, ROUTES};
use crate::protocol::{PROTOCOL_VERSION, VERSION_HEADER};
use crate::region;
use crate::state::auth::UserRole;
use crate::tests::{ADMIN, OPERATOR, Scratch, VIEWER, app_from};

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[cluster]
secret = "0123456789abcdef-secret"

[[cluster.racks]]
name = "rack-t"
vlans = [{ fabric = "fabric-0", vid = 0 }]

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.91.0/24"

[[ip_ranges]]
subnet = "10.77.91.0/24"
start = "10.77.91.100"
end = "10.77.91.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:91:10"
hostname = "node1"
"##;

/// The routes `openapi.yaml` documents, as (method, path).
fn documented() -> BTreeSet<(String, String)> {
    let text = include_str!("../openapi.yaml");
    let mut out = BTreeSet::new();
    let mut path = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if !line.starts_with("   ") && !line.starts_with("  /") && !line.trim().is_empty() {
            if !line.starts_with(' ') {
                path = None;
            }
        } else if let Some(method) = line
            .strip_prefix("    ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|m| ["get", "post", "put", "patch", "delete"].contains(m))
            && let Some(p) = &path
        {
            out.insert((method.to_uppercase(), p.clone()));
        }
    }
    out
}

#[test]
fn the_role_table_covers_every_documented_route_and_no_other() {
    let documented = documented();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_string(), (*p).to_string()))
        .collect();
    assert!(documented.len() > 30, "openapi.yaml read: {documented:?}");
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unlisted: Vec<_> = documented.difference(&table).collect();
    assert!(
        undocumented.is_empty(),
        "in the role table, not in openapi.yaml: {undocumented:?}"
    );
    assert!(
        unlisted.is_empty(),
        "in openapi.yaml, not in the role table: {unlisted:?}"
    );
}

/// A request to `route` with its path parameters filled with things that do not exist (so
/// no call changes what the next one finds).
fn request(method: &str, route: &str, bearer: Option<&str>, from: SocketAddr) -> Request<Body> {
    let uri = route
        .replace("{mac}", "52:54:00:77:91:99")
        .replace("{ip}", "10.77.91.5")
        .replace(
            "{id}",
            if route.contains("tokens") {
                "00000000000000ff"
            } else {
                "0"
            },
        )
        .replace("{name}", "nobody");
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-maas-rack", "rack-t")
        .header(VERSION_HEADER, PROTOCOL_VERSION.to_string());
    if let Some(b) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {b}"));
    }
    let body = if method == "POST" {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let mut request = builder.body(body).unwrap();
    request.extensions_mut().insert(ConnectInfo(from));
    request
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    // An event stream does not end: its status is the answer.
    if response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t == "text/event-stream")
    {
        return (status, Value::Null);
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Who calls, in the table-driven test.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Revoked,
    Expired,
    Role(UserRole),
    Rack,
    Machine,
}

/// What the role table says `who` gets on a route needing `need`: `None` for "let through"
/// (the handler answers), else the refusal.
fn expected(need: Need, who: Who) -> Option<StatusCode> {
    let refused_token = Some(StatusCode::UNAUTHORIZED);
    match (need, who) {
        (Need::Public, _) => None,
        (_, Who::Nobody | Who::Revoked | Who::Expired) => refused_token,
        // Enrolment takes the shared secret, never a token.
        (Need::Enrol, _) => refused_token,
        (Need::User(wanted), Who::Role(role)) if role >= wanted => None,
        (Need::Rack, Who::Rack) | (Need::Machine, Who::Machine) => None,
        _ => Some(StatusCode::FORBIDDEN),
    }
}

#[test]
fn every_route_answers_each_caller_as_the_role_table_says() {
    let scratch = Scratch::new("roles");
    let app = app_from(CONFIG, &scratch.0);
    let router = region::router(app.clone());
    let now = crate::now();
    // A revoked token and an expired one.
    let (revoked, record, _) = app.state.create_token("admin", None, None, now).unwrap();
    let _ = app.state.revoke_token(record.id).unwrap();
    let (expired, _, _) = app
        .state
        .create_token("admin", Some(maas_net::Timestamp(now.0 - 1)), None, now)
        .unwrap();
    let (rack, _) = app.state.enrol_rack("rack-t", None, now).unwrap();
    let machine = app
        .state
        .machine_token("52:54:00:77:91:10".parse().unwrap())
        .unwrap();
    let (revoked, expired, rack, machine) = (
        revoked.to_string(),
        expired.to_string(),
        rack.to_string(),
        machine.to_string(),
    );
    // Each caller from its own address, so that failures do not slow the others.
    let callers: Vec<(Who, Option<&str>, SocketAddr)> = vec![
        (Who::Nobody, None, "10.77.91.201:1000".parse().unwrap()),
        (
            Who::Revoked,
            Some(&revoked),
            "10.77.91.202:1000".parse().unwrap(),
        ),
        (
            Who::Expired,
            Some(&expired),
            "10.77.91.203:1000".parse().unwrap(),
        ),
        (
            Who::Role(UserRole::Viewer),
            Some(VIEWER),
            "10.77.91.204:1000".parse().unwrap(),
        ),
        (
            Who::Role(UserRole::Operator),
            Some(OPERATOR),
            "10.77.91.205:1000".parse().unwrap(),
        ),
        (
            Who::Role(UserRole::Admin),
            Some(ADMIN),
            "10.77.91.206:1000".parse().unwrap(),
        ),
        (Who::Rack, Some(&rack), "10.77.91.207:1000".parse().unwrap()),
        (
            Who::Machine,
            Some(&machine),
            "10.77.91.208:1000".parse().unwrap(),
        ),
    ];
    let mut checked = 0;
    runtime().block_on(async {
        for (who, bearer, from) in &callers {
            for (method, route, need) in ROUTES {
                // The throttle would answer 429 after a few failures: clear it per call.
                app.guard.forget_all();
                let (status, body) = send(&router, request(method, route, *bearer, *from)).await;
                match expected(*need, *who) {
                    Some(refusal) => {
                        assert_eq!(status, refusal, "{who:?} {method} {route}: {body}");
                        assert!(
                            body["error"].is_string(),
                            "{who:?} {method} {route}: {body}"
                        );
                    }
                    None => assert!(
                        ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                        "{who:?} {method} {route}: {status} {body}"
                    ),
                }
                checked += 1;
            }
        }
    });
    assert_eq!(checked, callers.len() * ROUTES.len());
}

#[test]
fn failed_attempts_are_slowed_per_address() {
    let scratch = Scratch::new("brute");
    let app = app_from(CONFIG, &scratch.0);
    let router = region::router(app);
    let attacker: SocketAddr = "10.77.91.66:4000".parse().unwrap();
    let other: SocketAddr = "10.77.91.67:4000".parse().unwrap();
    runtime().block_on(async {
        let mut statuses = Vec::new();
        for i in 0..8 {
            let guess = format!("maas_00000000000000ad_{i:040x}");
            let (status, _) = send(
                &router,
                request("GET", "/api/v1/machines", Some(&guess), attacker),
            )
            .await;
            statuses.push(status.as_u16());
        }
        // Five free failures, the sixth bars the address for a second; then 429.
        assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429]);
        let response = router
            .clone()
            .oneshot(request("GET", "/api/v1/machines", Some(ADMIN), attacker))
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "while barred, even a good token waits"
        );
        let retry: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        let (status, _) = send(
            &router,
            request("GET", "/api/v1/machines", Some(ADMIN), other),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "another address is not slowed");
    });
}

#[test]
fn state_changing_calls_are_audited_without_secrets() {
    let scratch = Scratch::new("audit");
    let app = app_from(CONFIG, &scratch.0);
    let router = region::router(app.clone());
    let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    runtime().block_on(async {
        // Admin makes a token for the operator: shown once.
        let mut made = request("POST", "/api/v1/tokens", Some(ADMIN), from);
        *made.body_mut() = Body::from(
            json!({ "user": "operator", "description": "ci", "expires_in": 3600 }).to_string(),
        );
        let (status, v) = send(&router, made).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let token = v["token"].as_str().unwrap().to_string();
        let id = v["id"].as_str().unwrap().to_string();
        let (status, v) = send(
            &router,
            request("GET", "/api/v1/whoami", Some(&token), from),
        )
        .await;
        assert_eq!(
            (status, v["name"].as_str()),
            (StatusCode::OK, Some("operator"))
        );
        // The operator powers on a machine that does not exist (404, audited), the viewer
        // tries to reserve an address (403, audited), reads are not audited.
        let (status, _) = send(
            &router,
            request(
                "POST",
                "/api/v1/machines/52:54:00:77:91:10/power-on",
                Some(&token),
                from,
            ),
        )
        .await;
        assert_ne!(status, StatusCode::FORBIDDEN);
        let (status, _) = send(
            &router,
            request("POST", "/api/v1/ipaddresses", Some(VIEWER), from),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (listed, v) = send(&router, request("GET", "/api/v1/tokens", Some(ADMIN), from)).await;
        assert_eq!(listed, StatusCode::OK);
        let text = v.to_string();
        assert!(text.contains(&id) && !text.contains(&token[22..]), "{text}");
        assert!(!text.contains("hash"), "{text}");
        let (status, _) = send(
            &router,
            request("DELETE", &format!("/api/v1/tokens/{id}"), Some(ADMIN), from),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(
            &router,
            request("GET", "/api/v1/whoami", Some(&token), from),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a revoked token stops at once"
        );

        let (status, v) = send(&router, request("GET", "/api/v1/audit", Some(ADMIN), from)).await;
        assert_eq!(status, StatusCode::OK);
        let entries: Vec<(String, String, Option<String>, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["who"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                    e["target"].as_str().map(str::to_owned),
                    e["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("user:admin".into(), "POST /api/v1/tokens".into(), None, 201),
                (
                    "user:operator".into(),
                    "POST /api/v1/machines/{mac}/power-on".into(),
                    Some("52:54:00:77:91:10".into()),
                    entries[1].3
                ),
                (
                    "user:viewer".into(),
                    "POST /api/v1/ipaddresses".into(),
                    None,
                    403
                ),
                (
                    "user:admin".into(),
                    "DELETE /api/v1/tokens/{id}".into(),
                    Some(id.clone()),
                    200
                ),
            ]
        );
        assert!(!v.to_string().contains(&token[22..]));
        let (_, v) = send(
            &router,
            request(
                "GET",
                "/api/v1/audit?machine=52-54-00-77-91-10",
                Some(ADMIN),
                from,
            ),
        )
        .await;
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        let (_, v) = send(
            &router,
            request("GET", "/api/v1/audit?user=viewer", Some(ADMIN), from),
        )
        .await;
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        let (status, _) = send(
            &router,
            request("GET", "/api/v1/audit", Some(OPERATOR), from),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the trail is for admins");
    });
    // The trail and the tokens survive a restart; the revoked token stays revoked.
    drop(router);
    let state = std::sync::Arc::clone(&app.state);
    drop(app);
    state.close().unwrap();
    drop(state);
    let again = app_from(CONFIG, &scratch.0);
    assert_eq!(again.state.audit_entries(None, None, 100).len(), 4);
    assert_eq!(
        again.state.tokens(Some("operator")).len(),
        1,
        "the operator's test token"
    );
}

#[test]
fn the_last_admin_stays_and_names_are_checked() {
    let scratch = Scratch::new("users");
    let app = app_from(CONFIG, &scratch.0);
    let router = region::router(app);
    let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    runtime().block_on(async {
        let (status, v) = send(
            &router,
            request("DELETE", "/api/v1/users/admin", Some(ADMIN), from),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("last admin"), "{v}");
        for (body, want) in [
            (
                json!({ "name": "Bad Name", "role": "viewer" }),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({ "name": "ok", "role": "root" }),
                StatusCode::BAD_REQUEST,
            ),
            (
                json!({ "name": "ok", "role": "viewer" }),
                StatusCode::CREATED,
            ),
            (
                json!({ "name": "ok", "role": "viewer" }),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let mut r = request("POST", "/api/v1/users", Some(ADMIN), from);
            *r.body_mut() = Body::from(body.to_string());
            let (status, v) = send(&router, r).await;
            assert_eq!(status, want, "{body}: {v}");
        }
        let (status, v) = send(
            &router,
            request("DELETE", "/api/v1/users/operator", Some(ADMIN), from),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, _) = send(
            &router,
            request("GET", "/api/v1/whoami", Some(OPERATOR), from),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a removed user's tokens go with them"
        );
    });
}

/// The committed fuzz corpus of the Authorization header and token parsers
/// (`fuzz/corpus/controller_auth`): every input is answered, never a panic.
#[test]
fn the_auth_fuzz_corpus_replays() {
    let seen = crate::tests::replay_corpus("controller_auth", |_, bytes| {
        let _ = crate::auth::token::parse_authorization(Some(bytes));
        if let Ok(token) = crate::auth::token::Token::parse(bytes) {
            assert_eq!(token.to_string().len(), bytes.len());
        }
    });
    assert!(seen >= 5, "the corpus has {seen} inputs");
}

/// A machine's credential: handed out in its boot files, good for its own history only, and
/// revoked when the machine changes state.
#[test]
fn a_machine_reports_with_its_own_credential_until_its_state_changes() {
    let scratch = Scratch::new("machine-token");
    let text = format!(
        "{}\n",
        CONFIG.replace(
            "state_dir = \"state\"",
            "state_dir = \"state\"\nipxe_script = \"#!ipxe\\nkernel vmlinuz maas_token={token}\\n\""
        )
    );
    let app = app_from(&text, &scratch.0);
    let router = region::router(app.clone());
    let boot = crate::boot::router(app.clone());
    let from: SocketAddr = "10.77.91.150:68".parse().unwrap();
    runtime().block_on(async {
        // An unknown machine asks for its script: it is enlisted and given its credential.
        let mut asked = request("GET", "/ipxe.cfg-52-54-00-77-91-33", None, from);
        asked
            .headers_mut()
            .insert(header::HOST, "10.77.91.1:5248".parse().unwrap());
        let response = boot.clone().oneshot(asked).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let script = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let script = String::from_utf8_lossy(&script).into_owned();
        let token = script
            .split("maas_token=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        assert!(token.starts_with("maas_"), "{script}");
        let report = |token: &str| {
            let mut r = request("POST", "/api/v1/metadata/events", Some(token), from);
            *r.body_mut() = Body::from(json!({ "kind": "booted", "detail": "up" }).to_string());
            r
        };
        let (status, v) = send(&router, report(&token)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["kind"], "machine_booted", "{v}");
        assert_eq!(v["mac"], "52:54:00:77:91:33", "{v}");
        // It opens nothing else.
        let (status, _) = send(
            &router,
            request("GET", "/api/v1/machines", Some(&token), from),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Accepted (New to Ready): the credential handed out before stops working.
        let (status, _) = send(
            &router,
            request(
                "POST",
                "/api/v1/machines/52:54:00:77:91:33/accept",
                Some(OPERATOR),
                from,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = send(&router, report(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let fresh = app
            .state
            .machine_token("52:54:00:77:91:33".parse().unwrap())
            .unwrap()
            .to_string();
        assert_ne!(fresh, token);
        let (status, _) = send(&router, report(&fresh)).await;
        assert_eq!(status, StatusCode::CREATED);
        // Its history has both reports, and nobody else's.
        let (_, v) = send(
            &router,
            request(
                "GET",
                "/api/v1/machines/52:54:00:77:91:33/events",
                Some(VIEWER),
                from,
            ),
        )
        .await;
        let kinds: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["enlisted", "machine_booted", "accepted", "machine_booted"]
        );
    });
}
