//! The dashboard's server side without a browser: logging in and out, the cookie's
//! attributes, CSRF and origin checks on every state-changing call with the cookie, roles,
//! idle expiry, revocation, the change stream, and the pages' security headers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::session::{COOKIE, CSRF_HEADER, IDLE_SECS, Sessions, cookie_of, csrf_refusal};
use crate::auth::token::Token;
use crate::region;
use crate::tests::{ADMIN, OPERATOR, Scratch, VIEWER, app_from};

const CONFIG: &str = r##"
[controller]
state_dir = "state"

[[zones]]
name = "default"

[[vlans]]
fabric = "fabric-0"
vid = 0

[[subnets]]
cidr = "10.77.93.0/24"

[[ip_ranges]]
subnet = "10.77.93.0/24"
start = "10.77.93.100"
end = "10.77.93.199"
kind = "dynamic"

[[machines]]
mac = "52:54:00:77:93:10"
hostname = "node1"
power = { power_type = "manual" }
"##;

const HOST: &str = "10.77.93.1:5240";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(router: &axum::Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// A request from a browser holding `cookie`, with the CSRF token and origin given.
fn browser(
    method: Method,
    uri: &str,
    cookie: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::COOKIE, format!("theme=dark; {COOKIE}={cookie}"));
    if let Some(c) = csrf {
        builder = builder.header(CSRF_HEADER, c);
    }
    if let Some(o) = origin {
        builder = builder.header(header::ORIGIN, o);
    }
    match body {
        Some(b) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// Logs in with `token`: the session id from Set-Cookie, the CSRF token, and the cookie line.
async fn login(router: &axum::Router, token: &str) -> (String, String, String) {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/session")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "token": token }).to_string()))
        .unwrap();
    let answer = send(router, request).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let line = answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let id = line
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix(&format!("{COOKIE}=")))
        .unwrap()
        .to_owned();
    let csrf = answer.body["csrf_token"].as_str().unwrap().to_owned();
    (id, csrf, line)
}

#[test]
fn login_gives_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let dir = Scratch::new("web-login");
    let app = app_from(CONFIG, &dir.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (id, csrf, line) = login(&api, ADMIN).await;
        assert_eq!(id.len(), 64, "256 bits as hex: {line}");
        assert_eq!(csrf.len(), 64);
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        assert!(!line.contains("Secure"), "plain HTTP: no Secure: {line}");
        // Who is logged in, with the CSRF token; reads need nothing more.
        let who = send(
            &api,
            browser(Method::GET, "/api/v1/session", &id, None, None, None),
        )
        .await;
        assert_eq!(who.status, StatusCode::OK);
        assert_eq!(who.body["user"], "admin");
        assert_eq!(who.body["role"], "admin");
        assert_eq!(who.body["csrf_token"], csrf.as_str());
        let machines = send(
            &api,
            browser(Method::GET, "/api/v1/machines", &id, None, None, None),
        )
        .await;
        assert_eq!(machines.status, StatusCode::OK);
        assert_eq!(machines.body[0]["hostname"], "node1");
        // A bearer caller has no session and no CSRF token.
        let (status, body) =
            crate::tests::call_as(&api, Method::GET, "/api/v1/session", VIEWER, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["session"], false);
        assert_eq!(body["csrf_token"], Value::Null);
        // Logging out needs the CSRF token too, and clears the cookie.
        let out = send(
            &api,
            browser(
                Method::DELETE,
                "/api/v1/session",
                &id,
                Some(&csrf),
                None,
                None,
            ),
        )
        .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        let cleared = out.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        let after = send(
            &api,
            browser(Method::GET, "/api/v1/machines", &id, None, None, None),
        )
        .await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        assert!(
            after.body["error"]
                .as_str()
                .unwrap()
                .contains("log in again")
        );
        assert_eq!(app.sessions.len(), 0);
    });
}

#[test]
fn the_cookie_is_secure_under_tls() {
    let dir = Scratch::new("web-tls");
    let config = CONFIG.replace("[controller]\n", "[controller]\ntls = \"self-signed\"\n");
    let api = region::router(app_from(&config, &dir.0));
    runtime().block_on(async {
        let (_, _, line) = login(&api, OPERATOR).await;
        assert!(line.contains("Secure"), "{line}");
        assert!(line.contains("HttpOnly"), "{line}");
    });
}

#[test]
fn bad_logins_are_refused_and_counted() {
    let dir = Scratch::new("web-bad-login");
    let app = app_from(CONFIG, &dir.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        for (body, want) in [
            (json!({ "token": "maas_00000000000000ad_00000000000000000000000000000000000000ff" }), StatusCode::UNAUTHORIZED),
            (json!({ "token": "nonsense" }), StatusCode::UNAUTHORIZED),
            (json!({ "password": "x" }), StatusCode::BAD_REQUEST),
        ] {
            let request = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let answer = send(&api, request).await;
            assert_eq!(answer.status, want, "{body}: {}", answer.body);
            assert!(!answer.headers.contains_key(header::SET_COOKIE));
        }
        // Another site cannot log a browser in.
        let request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/session")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "http://evil.example")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "token": ADMIN }).to_string()))
            .unwrap();
        let answer = send(&api, request).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert!(!answer.headers.contains_key(header::SET_COOKIE));
        // Enough failures bar the address, as bearer failures do.
        let mut barred = false;
        for _ in 0..30 {
            let request = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({ "token": "nonsense" }).to_string()))
                .unwrap();
            if send(&api, request).await.status == StatusCode::TOO_MANY_REQUESTS {
                barred = true;
                break;
            }
        }
        assert!(barred, "the throttle never barred repeated bad logins");
        app.guard.forget_all();
        assert_eq!(app.sessions.len(), 0);
    });
}

#[test]
fn state_changing_calls_with_the_cookie_need_the_csrf_token_and_our_origin() {
    let dir = Scratch::new("web-csrf");
    let app = app_from(CONFIG, &dir.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (id, csrf, _) = login(&api, ADMIN).await;
        let zone = |name: &str| Some(json!({ "name": name }));
        let cases = [
            (None, None, "needs the x-csrf-token header"),
            (Some("0".repeat(64)), None, "wrong x-csrf-token"),
            (
                Some(csrf.clone()),
                Some("http://evil.example"),
                "another site",
            ),
            (Some(csrf.clone()), Some("null"), "another site"),
            (
                Some(csrf.clone()),
                Some("https://10.77.93.1:5241"),
                "another site",
            ),
        ];
        for (token, origin, why) in &cases {
            let answer = send(
                &api,
                browser(
                    Method::POST,
                    "/api/v1/zones",
                    &id,
                    token.as_deref(),
                    *origin,
                    zone("forged"),
                ),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{why}: {}",
                answer.body
            );
            let error = answer.body["error"].as_str().unwrap();
            assert!(error.contains(why), "{error}");
            assert!(
                !error.contains(&csrf) && !error.contains(&id),
                "secrets in {error}"
            );
        }
        assert!(app.state.zones().iter().all(|z| z.name != "forged"));
        // The right token from our own origin (or with no Origin at all) is accepted.
        let ok = send(
            &api,
            browser(
                Method::POST,
                "/api/v1/zones",
                &id,
                Some(&csrf),
                Some(&format!("http://{HOST}")),
                zone("rack-a"),
            ),
        )
        .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
        let ok = send(
            &api,
            browser(
                Method::POST,
                "/api/v1/zones",
                &id,
                Some(&csrf),
                None,
                zone("rack-b"),
            ),
        )
        .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
        // The audit trail names the user for cookie calls, refused or not.
        let trail = app.state.audit_entries(None, None, 1000);
        let zones: Vec<_> = trail
            .iter()
            .filter(|e| e.action == "POST /api/v1/zones")
            .collect();
        assert_eq!(zones.len(), cases.len() + 2, "{trail:?}");
        assert!(zones.iter().all(|e| e.who == "user:admin"), "{zones:?}");
        assert_eq!(
            zones.iter().filter(|e| e.status == 403).count(),
            cases.len()
        );
    });
}

#[test]
fn a_viewer_session_is_refused_operator_actions() {
    let dir = Scratch::new("web-viewer");
    let api = region::router(app_from(CONFIG, &dir.0));
    runtime().block_on(async {
        let (id, csrf, _) = login(&api, VIEWER).await;
        let who = send(
            &api,
            browser(Method::GET, "/api/v1/session", &id, None, None, None),
        )
        .await;
        assert_eq!(who.body["role"], "viewer");
        let answer = send(
            &api,
            browser(
                Method::POST,
                "/api/v1/machines/52:54:00:77:93:10/power-on",
                &id,
                Some(&csrf),
                None,
                None,
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert!(answer.body["error"].as_str().unwrap().contains("operator"));
        let read = send(
            &api,
            browser(Method::GET, "/api/v1/subnets", &id, None, None, None),
        )
        .await;
        assert_eq!(read.status, StatusCode::OK);
    });
}

#[test]
fn sessions_end_after_being_idle() {
    let sessions = Sessions::default();
    let token = Token::parse(ADMIN.as_bytes()).unwrap();
    let start = maas_net::Timestamp(1_000_000);
    let (id, _) = sessions.create(token, start).unwrap();
    let later = maas_net::Timestamp(start.0 + IDLE_SECS - 1);
    assert!(
        sessions.find(&id, later).is_some(),
        "used within the idle time"
    );
    // Each use pushes the end back.
    let still = maas_net::Timestamp(later.0 + IDLE_SECS - 1);
    assert!(sessions.find(&id, still).is_some());
    let gone = maas_net::Timestamp(still.0 + IDLE_SECS);
    assert!(sessions.find(&id, gone).is_none(), "idle too long");
    assert!(
        sessions.find(&id, still).is_none(),
        "forgotten once expired"
    );
    assert!(sessions.find("not-a-session", start).is_none());
}

#[test]
fn revoking_the_token_or_removing_the_user_ends_their_sessions() {
    let dir = Scratch::new("web-revoke");
    let app = app_from(CONFIG, &dir.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let (status, _) = crate::tests::call_as(
            &api,
            Method::POST,
            "/api/v1/users",
            ADMIN,
            Some(json!({ "name": "carol", "role": "operator" })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let mut tokens = Vec::new();
        for _ in 0..2 {
            let (status, body) = crate::tests::call_as(
                &api,
                Method::POST,
                "/api/v1/tokens",
                ADMIN,
                Some(json!({ "user": "carol" })),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            tokens.push((
                body["id"].as_str().unwrap().to_owned(),
                body["token"].as_str().unwrap().to_owned(),
            ));
        }
        let (first, _, _) = login(&api, &tokens[0].1).await;
        let (second, _, _) = login(&api, &tokens[1].1).await;
        let read = |id: String| browser(Method::GET, "/api/v1/machines", &id, None, None, None);
        assert_eq!(send(&api, read(first.clone())).await.status, StatusCode::OK);
        let (status, _) = crate::tests::call_as(
            &api,
            Method::DELETE,
            &format!("/api/v1/tokens/{}", tokens[0].0),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            send(&api, read(first.clone())).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&api, read(second.clone())).await.status,
            StatusCode::OK
        );
        let (status, _) =
            crate::tests::call_as(&api, Method::DELETE, "/api/v1/users/carol", ADMIN, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            send(&api, read(second)).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(app.sessions.len(), 0);
    });
}

#[test]
fn the_event_stream_names_what_changed() {
    let dir = Scratch::new("web-events");
    let app = app_from(CONFIG, &dir.0);
    let api = region::router(app.clone());
    runtime().block_on(async {
        let request = Request::builder()
            .uri("/api/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
            .body(Body::empty())
            .unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body().into_data_stream();
        let mut next = async || {
            let chunk = tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::StreamExt::next(&mut body),
            )
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .unwrap();
            String::from_utf8(chunk.to_vec()).unwrap()
        };
        assert!(next().await.contains("event: hello"));
        let (status, body) = crate::tests::call_as(
            &api,
            Method::POST,
            "/api/v1/machines/allocate",
            OPERATOR,
            Some(json!({ "hostname": "node1" })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut seen = String::new();
        while !seen.contains("machines") {
            let event = next().await;
            assert!(event.contains("event: change"), "{event}");
            seen.push_str(&event);
        }
        assert!(!seen.contains("52:54:00"), "no data travels: {seen}");
        // A power change (as the power monitor records one) is announced too.
        let seen_on = crate::state::PowerSeen {
            state: "on".into(),
            error: None,
            at: 1,
        };
        let changed = app
            .state
            .saw_power("52:54:00:77:93:10".parse().unwrap(), seen_on)
            .unwrap();
        assert!(changed.is_some());
        // (The allocation's audit entry may come first.)
        let mut event = next().await;
        for _ in 0..3 {
            if event.contains("machines") {
                break;
            }
            event = next().await;
        }
        assert!(
            event.contains("event: change") && event.contains("machines"),
            "{event}"
        );
    });
}

#[test]
fn pages_are_public_and_locked_down() {
    let dir = Scratch::new("web-pages");
    let api = region::router(app_from(CONFIG, &dir.0));
    runtime().block_on(async {
        for path in [
            "/",
            "/login",
            "/machines",
            "/machines/52:54:00:77:93:10",
            "/subnets",
            "/discoveries",
            "/racks",
            "/audit",
        ] {
            let answer = send(
                &api,
                Request::builder().uri(path).body(Body::empty()).unwrap(),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{path}");
            let policy = answer.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(
                policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"),
                "{policy}"
            );
            assert!(!policy.contains("unsafe-inline"), "{policy}");
            assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(answer.headers[header::REFERRER_POLICY], "no-referrer");
            assert!(
                answer.headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
        }
        // Every script is a file of ours: none inline, nothing from elsewhere.
        let html = super::INDEX;
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=\"/static/").count()
        );
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!super::STYLE.contains("url(http") && !super::STYLE.contains("@import"));
        for asset in ["/static/app.js", "/static/app.css", "/static/icon.svg"] {
            let answer = send(
                &api,
                Request::builder().uri(asset).body(Body::empty()).unwrap(),
            )
            .await;
            assert_eq!(answer.status, StatusCode::OK, "{asset}");
        }
        // The API is still the API: unknown paths answer JSON errors, data needs a login.
        let data = send(
            &api,
            Request::builder()
                .uri("/api/v1/machines")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(data.status, StatusCode::UNAUTHORIZED);
    });
}

#[test]
fn the_session_cookie_is_found_among_others() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        "a=1; maas_session=abc; b=2".parse().unwrap(),
    );
    assert_eq!(cookie_of(&headers).as_deref(), Some("abc"));
    headers.insert(header::COOKIE, "maas_session=; x".parse().unwrap());
    assert_eq!(cookie_of(&headers), None);
    headers.insert(
        header::COOKIE,
        "\u{1}garbage"
            .parse()
            .unwrap_or(header::HeaderValue::from_static("==;;")),
    );
    assert_eq!(cookie_of(&headers), None);
    let mut headers = HeaderMap::new();
    assert!(csrf_refusal(&Method::GET, &headers, "t").is_none());
    headers.insert(CSRF_HEADER, "t".parse().unwrap());
    headers.insert(header::HOST, "h:1".parse().unwrap());
    assert!(csrf_refusal(&Method::POST, &headers, "t").is_none());
    assert!(csrf_refusal(&Method::POST, &headers, "tt").is_some());
    headers.insert(header::ORIGIN, "http://H:1".parse().unwrap());
    assert!(
        csrf_refusal(&Method::PUT, &headers, "t").is_none(),
        "host names are case-blind"
    );
    headers.insert(header::ORIGIN, "ftp://h:1".parse().unwrap());
    assert!(csrf_refusal(&Method::DELETE, &headers, "t").is_some());
}
