//! Guessing tokens over the network.

use std::time::{Duration, Instant};

use crate::support::can_run;
use crate::support::netns::Scratch;
use crate::{Api, WAIT, client_lan, start_controller};

/// Failed tokens are slowed per source address. The API listens off loopback (10.77.38.1, so
/// HTTPS with its self-signed certificate); a client namespace holds 10.77.38.2 and .3. From
/// .2, five wrong credentials (no header, Basic, not a token, an unknown token, the admin's
/// token id with a wrong secret) are each answered 401 with `WWW-Authenticate: Bearer`; more
/// wrong tokens from .2 are answered 401 until the address is barred, then 429 with
/// `Retry-After` and a JSON error. .3 is not barred: the admin's token works from there. .2,
/// once it has waited as `Retry-After` says, is let in with the admin's token. The refusals
/// are counted in the metrics. Statuses and headers only: no durations are asserted.
#[test]
fn failed_tokens_are_slowed_per_source_address() {
    if !can_run("controller_throttle", &["ip", "curl"]) {
        return;
    }
    let scratch = Scratch::new("controller_throttle");
    let (lan, client) = client_lan(38, "10.77.38.1/24", "10.77.38.2/24");
    client.ip(&["addr", "add", "10.77.38.3/24", "dev", "vcli"]);
    let config_path = scratch.join("controller.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[controller]
state_dir = "{}"
api = "10.77.38.1:5240"
boot_http = "127.0.0.1:5248"

[[subnets]]
cidr = "10.77.38.0/24"
"#,
            scratch.join("state").display()
        ),
    )
    .unwrap();
    let controller = start_controller(&lan, &config_path);
    let admin = Api::of(&lan, &controller).seen_from(&client);
    assert_eq!(admin.url, "https://10.77.38.1:5240", "{admin:?}");
    let good = admin.token.clone().unwrap();
    let id = good.split('_').nth(1).unwrap().to_string();
    let from_2 = admin.with_source("10.77.38.2");
    let from_3 = admin.with_source("10.77.38.3");
    let whoami = "/api/v1/whoami";
    let unknown = format!("maas_0123456789abcdef_{}", "0".repeat(40));

    let attempts = [
        (
            "no header",
            from_2.with_token(None).call("GET", whoami, None),
        ),
        (
            "Basic",
            from_2.with_token(None).call_with(
                "GET",
                whoami,
                None,
                &["authorization: Basic YWRtaW46cGFzc3dvcmQ=".to_string()],
            ),
        ),
        (
            "not a token",
            from_2.with_token(Some("letmein")).call("GET", whoami, None),
        ),
        (
            "an unknown token",
            from_2.with_token(Some(&unknown)).call("GET", whoami, None),
        ),
        (
            "a wrong secret",
            from_2
                .with_token(Some(&format!("maas_{id}_{}", "f".repeat(40))))
                .call("GET", whoami, None),
        ),
    ];
    for (what, reply) in &attempts {
        assert_eq!(reply.status, 401, "{what}: {}", reply.output);
        assert_eq!(
            reply.www_authenticate.as_deref(),
            Some("Bearer"),
            "{what}: {reply:?}"
        );
    }
    // More wrong tokens: 401 until the address is barred, then 429.
    let mut statuses = Vec::new();
    let barred = loop {
        let reply = from_2.with_token(Some(&unknown)).call("GET", whoami, None);
        statuses.push(reply.status);
        if reply.status != 401 || statuses.len() >= 10 {
            break reply;
        }
    };
    eprintln!("controller_throttle: after five 401s, {statuses:?}");
    assert_eq!(barred.status, 429, "{statuses:?}: {}", barred.output);
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    let retry_after: u64 = barred
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {barred:?}"));
    assert!(retry_after >= 1, "{barred:?}");
    assert!(
        barred.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many")),
        "{barred:?}"
    );

    // Another address is not barred.
    let me = from_3.call("GET", whoami, None);
    assert_eq!(me.status, 200, "{}", me.output);
    assert_eq!(me.json["name"], "admin", "{}", me.output);

    // The barred address, waiting as told, gets in with the good token.
    let deadline = Instant::now() + WAIT;
    let mut wait = retry_after;
    let let_in = loop {
        std::thread::sleep(Duration::from_secs(wait));
        let reply = from_2.call("GET", whoami, None);
        if reply.status != 429 || Instant::now() > deadline {
            break reply;
        }
        wait = reply
            .retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
    };
    assert_eq!(let_in.status, 200, "{}", let_in.output);

    let metrics = from_3.call("GET", "/metrics", None);
    let refused: u64 = metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix("maas_api_auth_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refusal count: {}", metrics.output));
    assert!(
        refused >= 7,
        "{refused} refusals counted\n{}",
        controller.transcript()
    );
}
