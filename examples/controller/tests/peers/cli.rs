//! The command line over a running controller's API, and the store commands beside it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::netns::{Daemon, Scratch, run_bounded};
use crate::{WAIT, admin_token, controller_binary, events_named, owner_only};

/// The secret part of a token (`maas_<id>_<secret>`), which no listing may show.
fn secret_of(token: &str) -> &str {
    token.rsplit('_').next().unwrap()
}

/// `maas-controller --config FILE ARGS...` (the `user` and `token` commands, on the store):
/// whether it succeeded and its output; `None` when the argument parser refuses `--config`
/// before the subcommand (then the store checks cannot run, and the test says so).
fn store_command(config: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut cmd = Command::new(controller_binary());
    cmd.arg("--config").arg(config).args(args);
    let (lines, status) = run_bounded("store", cmd, WAIT);
    let out = lines.join("\n");
    if out.contains("cannot be used with '--config") {
        eprintln!(
            "controller_cli: NOT CHECKED: `maas-controller --config FILE {}` is refused by the \
             argument parser: {out}",
            args.join(" ")
        );
        return None;
    }
    Some((status.is_some_and(|s| s.success()), out))
}

fn start(config: &Path) -> (Daemon, String) {
    let mut cmd = Command::new(controller_binary());
    cmd.arg("--config").arg(config);
    let controller = Daemon::spawn("controller", cmd);
    let listening = controller
        .wait_event(WAIT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("no start\n{}", controller.transcript()));
    let api = listening["api_url"].as_str().unwrap().to_string();
    (controller, api)
}

/// The command line against a running controller (no root needed: loopback, plain HTTP,
/// ports the kernel picks). The first start makes user `admin` with its token in
/// `<state_dir>/admin-token` (0600). Without a token the CLI says to set `MAAS_TOKEN` or log
/// in; with it, machines, addresses, statistics and metrics work as before, and a machine is
/// allocated and released. An admin adds a
/// viewer through the CLI, whose token reads but may not add a machine (403). `create-token
/// --user admin` prints a token that works until `revoke-token ID`. `cli login` (token on
/// standard input) writes a 0600 profile, after which commands need no `MAAS_TOKEN` and no
/// `--api`; `logout` forgets it. `cli audit` lists those calls (who, what, status) and never
/// a token's secret. `user add` on the store is refused while the controller holds it; once
/// stopped, `user add` and `token create` make an operator whose printed token works on the
/// next start (and is refused an admin's route).
#[test]
fn the_cli_drives_the_api() {
    let scratch = Scratch::new("controller_cli");
    let config = scratch.join("controller.toml");
    let state = scratch.join("state");
    std::fs::write(
        &config,
        format!(
            r#"
[controller]
state_dir = "{}"
api = "127.0.0.1:0"
boot_http = "127.0.0.1:0"

[[subnets]]
cidr = "10.77.25.0/24"
gateway_ip = "10.77.25.1"

[[machines]]
mac = "52:54:00:77:19:10"
hostname = "node1"
"#,
            state.display()
        ),
    )
    .unwrap();
    let (controller, api) = start(&config);
    assert!(api.starts_with("http://127.0.0.1:"), "{api}");
    let first = events_named(&controller, "first_admin");
    let token_file = state.join("admin-token");
    assert!(
        first
            .first()
            .is_some_and(|e| e["token_file"] == token_file.display().to_string()),
        "{}",
        controller.transcript()
    );
    assert!(
        owner_only(&token_file),
        "{} is not 0600",
        token_file.display()
    );
    let admin = admin_token(&state);

    let profile = scratch.join("profile").join("cli.json");
    // The command line with `token` in MAAS_TOKEN (none: unset) and its profile in the
    // scratch directory; nothing else from the environment.
    let run = |token: Option<&str>, args: &[&str]| -> (bool, String) {
        let mut cmd = Command::new(controller_binary());
        cmd.arg("cli")
            .args(args)
            .env("MAAS_PROFILE", &profile)
            .env_remove("MAAS_TOKEN")
            .env_remove("MAAS_API")
            .env_remove("MAAS_CA")
            .env_remove("MAAS_FINGERPRINT");
        if let Some(token) = token {
            cmd.env("MAAS_TOKEN", token);
        }
        let (lines, status) = run_bounded("cli", cmd, WAIT);
        (status.is_some_and(|s| s.success()), lines.join("\n"))
    };
    let cli = |token: Option<&str>, args: &[&str]| run(token, &[&["--api", &api], args].concat());
    let json =
        |out: &str| -> Value { serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}")) };

    // No token: a clear error that says where a token comes from.
    let (ok, out) = cli(None, &["machines"]);
    assert!(
        !ok && out.contains("401") && out.contains("MAAS_TOKEN") && out.contains("cli login"),
        "{out}"
    );

    let me = Some(admin.as_str());
    let (ok, out) = cli(me, &["machines"]);
    assert!(ok && out.contains("\"hostname\": \"node1\""), "{out}");
    let (ok, out) = cli(
        me,
        &["add-machine", "52:54:00:77:19:11", "--hostname", "node2"],
    );
    assert!(ok && out.contains("\"origin\": \"api\""), "{out}");
    let (ok, out) = cli(me, &["add-machine", "52:54:00:77:19:11"]);
    assert!(
        !ok && out.contains("409") && out.contains("exists already"),
        "{out}"
    );
    let (ok, out) = cli(
        me,
        &[
            "reserve",
            "--subnet",
            "0",
            "--sticky",
            "--mac",
            "52:54:00:77:19:11",
        ],
    );
    assert!(ok && out.contains("\"ip\": \"10.77.25.2\""), "{out}");
    let (ok, out) = cli(me, &["reserve", "--ip", "10.77.25.2"]);
    assert!(!ok && out.contains("10.77.25.2"), "{out}");
    let (ok, out) = cli(me, &["release", "10.77.25.2"]);
    assert!(ok, "{out}");
    // Allocation: the machine is the caller's until released (a MAC releases a machine).
    let (ok, out) = cli(me, &["allocate", "--hostname", "node2"]);
    assert!(ok && out.contains("\"status\": \"allocated\""), "{out}");
    let (ok, out) = cli(me, &["machines", "--status", "allocated"]);
    assert!(
        ok && out.contains("node2") && !out.contains("node1"),
        "{out}"
    );
    let (ok, out) = cli(me, &["allocate", "--zone", "nowhere"]);
    assert!(
        !ok && out.contains("400") && out.contains("nowhere"),
        "{out}"
    );
    let (ok, out) = cli(me, &["release", "52:54:00:77:19:11"]);
    assert!(ok && out.contains("\"status\": \"ready\""), "{out}");
    let (ok, out) = cli(me, &["statistics", "0"]);
    assert!(ok && out.contains("num_available"), "{out}");
    let (ok, out) = cli(me, &["metrics"]);
    assert!(ok && out.contains("maas_api_requests_total"), "{out}");
    let (ok, out) = cli(me, &["frobnicate"]);
    assert!(!ok && out.contains("unrecognized subcommand"), "{out}");

    // A viewer reads, and may not add a machine.
    let (ok, out) = cli(me, &["add-user", "viewer1", "--role", "viewer"]);
    assert!(ok && out.contains("\"role\": \"viewer\""), "{out}");
    let (ok, out) = cli(me, &["create-token", "--user", "viewer1"]);
    assert!(ok, "{out}");
    let viewer = json(&out)["token"].as_str().unwrap().to_string();
    let (ok, out) = cli(Some(&viewer), &["machines"]);
    assert!(ok && out.contains("node1"), "{out}");
    let (ok, out) = cli(Some(&viewer), &["add-machine", "52:54:00:77:19:12"]);
    assert!(!ok && out.contains("403"), "{out}");

    // A token made for admin works until it is revoked.
    let (ok, out) = cli(
        me,
        &[
            "create-token",
            "--user",
            "admin",
            "--description",
            "a second one",
        ],
    );
    assert!(ok, "{out}");
    let second = json(&out);
    let second_token = second["token"].as_str().unwrap().to_string();
    let second_id = second["id"].as_str().unwrap().to_string();
    assert!(second_token.contains(&second_id), "{second}");
    let (ok, out) = cli(Some(&second_token), &["whoami"]);
    assert!(ok && json(&out)["name"] == "admin", "{out}");
    let (ok, out) = cli(me, &["tokens", "--user", "admin"]);
    assert!(
        ok && out.contains(&second_id) && !out.contains(secret_of(&second_token)),
        "{out}"
    );
    let (ok, out) = cli(me, &["revoke-token", &second_id]);
    assert!(ok, "{out}");
    let (ok, out) = cli(Some(&second_token), &["whoami"]);
    assert!(!ok && out.contains("401"), "{out}");

    // Login keeps the API and the token in a profile only its owner reads; then neither
    // MAAS_TOKEN nor --api is needed.
    let mut login = Command::new("sh");
    login
        .args([
            "-c",
            r#"printf '%s\n' "$LOGIN_TOKEN" | "$0" cli --api "$1" login"#,
        ])
        .arg(controller_binary())
        .arg(&api)
        .env("LOGIN_TOKEN", &admin)
        .env("MAAS_PROFILE", &profile)
        .env_remove("MAAS_TOKEN")
        .env_remove("MAAS_API");
    let (lines, status) = run_bounded("login", login, WAIT);
    let out = lines.join("\n");
    assert!(
        status.is_some_and(|s| s.success()) && out.contains("kept in"),
        "{out}"
    );
    assert!(owner_only(&profile), "{} is not 0600", profile.display());
    let (ok, out) = run(None, &["whoami"]);
    assert!(ok && json(&out)["role"] == "admin", "{out}");
    let (ok, out) = run(None, &["machines"]);
    assert!(ok && out.contains("node1"), "{out}");
    let (ok, out) = run(None, &["logout"]);
    assert!(ok && !profile.exists(), "{out}");
    let (ok, out) = cli(None, &["whoami"]);
    assert!(!ok && out.contains("401"), "{out}");

    // The audit trail has those calls, who made them and how they ended; never a secret.
    let (ok, out) = cli(me, &["audit"]);
    assert!(ok, "{out}");
    let entries = json(&out);
    let entries = entries.as_array().unwrap();
    let has = |who: &str, action: &str, target: Option<&str>, status: u64| {
        entries.iter().any(|e| {
            e["who"] == who
                && e["action"] == action
                && target.is_none_or(|t| e["target"] == t)
                && e["status"] == status
        })
    };
    for (who, action, target, status) in [
        ("user:admin", "POST /api/v1/machines", None, 201),
        ("user:admin", "POST /api/v1/ipaddresses", None, 201),
        (
            "user:admin",
            "DELETE /api/v1/ipaddresses/{ip}",
            Some("10.77.25.2"),
            200,
        ),
        ("user:admin", "POST /api/v1/users", None, 201),
        ("user:admin", "POST /api/v1/tokens", None, 201),
        (
            "user:admin",
            "DELETE /api/v1/tokens/{id}",
            Some(second_id.as_str()),
            200,
        ),
        ("user:viewer1", "POST /api/v1/machines", None, 403),
    ] {
        assert!(
            has(who, action, target, status),
            "no {who} {action} {target:?} {status} in the audit trail: {out}"
        );
    }
    for token in [&admin, &viewer, &second_token] {
        assert!(
            !out.contains(secret_of(token)),
            "a secret in the audit: {out}"
        );
    }
    let (ok, out) = cli(me, &["audit", "--user", "viewer1"]);
    assert!(ok, "{out}");
    assert!(
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["who"] == "user:viewer1"),
        "{out}"
    );

    // The store is the running controller's.
    if let Some((ok, out)) = store_command(&config, &["user", "add", "bob", "--role", "operator"]) {
        assert!(!ok && out.contains("holds the store"), "{out}");
    }
    drop(controller);

    // Stopped: users and tokens on the store directly; the token works on the next start.
    let added = store_command(&config, &["user", "add", "bob", "--role", "operator"]);
    if let Some((ok, out)) = added {
        assert!(ok && out.contains("operator"), "{out}");
        let (ok, out) = store_command(&config, &["token", "create", "--user", "bob"]).unwrap();
        assert!(ok && out.trim().starts_with("maas_"), "{out}");
        let bob = out.trim().to_string();
        let (controller, api) = start(&config);
        let bob_cli = |args: &[&str]| run(Some(&bob), &[&["--api", &api], args].concat());
        let (ok, out) = bob_cli(&["whoami"]);
        assert!(ok && json(&out)["role"] == "operator", "{out}");
        let (ok, out) = bob_cli(&["delete-machine", "52:54:00:77:19:11"]);
        assert!(!ok && out.contains("403"), "{out}");
        drop(controller);
    }
    // Nothing listens any more: a clear error, not a hang.
    let (ok, out) = cli(me, &["machines"]);
    assert!(!ok && out.contains("is the controller running"), "{out}");
}
