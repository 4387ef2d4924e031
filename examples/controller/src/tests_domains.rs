//! DNS domains through the API: the default one always there, made, changed and deleted by
//! an admin only, refusals (bad names, the default, one in use), a machine's domain, and all
//! of it surviving a reopen of the state (embedded or PostgreSQL).

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::region;
use crate::tests::{ADMIN, Scratch, VIEWER, app_from, call_as as call};

const CONFIG: &str = r#"
[controller]
state_dir = "state"

[[subnets]]
cidr = "10.77.93.0/24"

[[machines]]
mac = "52:54:00:77:93:01"
hostname = "one"
"#;

const ONE: &str = "52:54:00:77:93:01";

#[test]
fn domains_are_made_changed_deleted_and_kept() {
    let scratch = Scratch::new("domains");
    let app = app_from(CONFIG, &scratch.0);
    let api = region::router(app.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (s, list) = call(&api, Method::GET, "/api/v1/domains", VIEWER, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            list,
            json!([{ "name": "maas", "authoritative": true, "ttl": null }])
        );
        let new = json!({ "name": "Lab.Example", "ttl": 120 });
        let (s, _) = call(
            &api,
            Method::POST,
            "/api/v1/domains",
            VIEWER,
            Some(new.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "a viewer may not");
        let (s, made) = call(
            &api,
            Method::POST,
            "/api/v1/domains",
            ADMIN,
            Some(new.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{made}");
        assert_eq!(
            made,
            json!({ "name": "lab.example", "authoritative": true, "ttl": 120 })
        );
        let (s, _) = call(&api, Method::POST, "/api/v1/domains", ADMIN, Some(new)).await;
        assert_eq!(s, StatusCode::CONFLICT, "twice");
        for bad in ["", "a..b", "-x", "under_score", "sp ace"] {
            let (s, body) = call(
                &api,
                Method::POST,
                "/api/v1/domains",
                ADMIN,
                Some(json!({ "name": bad })),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        }
        let (s, changed) = call(
            &api,
            Method::PUT,
            "/api/v1/domains/lab.example",
            ADMIN,
            Some(json!({ "authoritative": false, "ttl": null })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{changed}");
        assert_eq!(
            changed,
            json!({ "name": "lab.example", "authoritative": false, "ttl": null })
        );
        let (s, _) = call(&api, Method::GET, "/api/v1/domains/nowhere", VIEWER, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let path = format!("/api/v1/machines/{ONE}/domain");
        let (s, _) = call(
            &api,
            Method::PUT,
            &path,
            ADMIN,
            Some(json!({ "domain": "nowhere" })),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "an unknown domain");
        let (s, machine) = call(
            &api,
            Method::PUT,
            &path,
            ADMIN,
            Some(json!({ "domain": "lab.example" })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{machine}");
        assert_eq!(machine["domain"], "lab.example");
        let (s, body) = call(
            &api,
            Method::DELETE,
            "/api/v1/domains/lab.example",
            ADMIN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}");
        assert!(
            body.to_string().contains("one"),
            "names the machine: {body}"
        );
        let (s, _) = call(&api, Method::DELETE, "/api/v1/domains/maas", ADMIN, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "the default domain");
        let (s, _) = call(
            &api,
            Method::POST,
            "/api/v1/domains",
            ADMIN,
            Some(json!({ "name": "gone.example" })),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, _) = call(
            &api,
            Method::DELETE,
            "/api/v1/domains/gone.example",
            ADMIN,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    });
    drop(api);
    drop(app);
    let again = app_from(CONFIG, &scratch.0);
    let names: Vec<(String, bool)> = again
        .state
        .domains()
        .into_iter()
        .map(|d| (d.name, d.authoritative))
        .collect();
    assert_eq!(
        names,
        [("lab.example".into(), false), ("maas".into(), true)]
    );
    let one = again.state.machine(ONE.parse().unwrap()).unwrap();
    assert_eq!(one.domain, "lab.example");
}
