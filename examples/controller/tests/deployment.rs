//! Deployment end to end, with real firmware and a real deployed OS: a BIOS machine the
//! controller knows by its MAC and its BMC (ipmi_sim, whose chassis control starts and stops
//! QEMU) is commissioned, allocated by zone and deployed through the API on a dual-stack
//! network (an IPv4 /24 and an IPv6 /64, both managed, with gateways on the controller's
//! bridge). The ephemeral environment writes the Debian image (scripts/build-deploy-image.sh,
//! imported with `boot-resource import`) to the machine's disk, checks it, drops cloud-init's
//! datasource and network configuration into it and reboots; the controller's DHCP then sends
//! the machine no boot file, so the firmware boots the disk. Real cloud-init in the deployed
//! Debian applies the rendered netplan configuration (static IPv4 and IPv6 addresses from
//! IPAM, default routes via the gateways) and the user data, which serves a report of the
//! machine's routes on TCP port 8080. From the controller's namespace the machine answers ping
//! and that port at both static addresses, and the report shows both default routes via the
//! subnets' gateways. Release powers it off and returns it to Ready with its AUTO addresses
//! back in the pool. Where Chromium and chromedriver are installed, the deployment starts
//! from the web dashboard (the machine's Deploy form, with the same OS and user data) and
//! the page must follow the machine to Deployed without a reload.
//!
//! Needs root, qemu-system-x86_64 (SeaBIOS and QEMU's iPXE ROMs), ipmi_sim, curl, ping and
//! what the two build scripts need; without them it prints why and passes. Time, images built:
//! about 6 to 9 minutes under TCG on 2 cores (commissioning about 40 s, writing the image
//! about 2 minutes, the deployed system's first boot with cloud-init about 3 minutes); building
//! the images the first time adds about 3 minutes with a warm package cache.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod bmc;
mod browser;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bmc::{curl, ephemeral, import, start_bmc, start_controller, workspace_root};
use serde_json::{Value, json};
use support::can_run;
use support::netns::{Daemon, Netns, Scratch, run_bounded};
use support::qemu::{self, Firmware};

const WAIT: Duration = Duration::from_secs(30);
const COMMISSION_WITHIN: Duration = Duration::from_secs(420);
/// From the deploy call to Deployed: the environment boots, fetches and writes the image.
const DEPLOY_WITHIN: Duration = Duration::from_secs(900);
/// From Deployed to the report on port 8080: the reboot and the first boot with cloud-init.
const BOOT_WITHIN: Duration = Duration::from_secs(600);
const LIFETIME: Duration = Duration::from_secs(2400);
const N: u8 = 152;
const REPORT_PORT: u16 = 8080;

/// The deploy image, built once per run into the shared test directory (the script leaves it
/// alone when nothing changed).
fn deploy_image() -> Option<PathBuf> {
    let out = workspace_root().join("target/tmp/deploy-image");
    let script = workspace_root().join("scripts/build-deploy-image.sh");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).arg(&out);
    let started = Instant::now();
    let (lines, status) = run_bounded("build-deploy-image", cmd, Duration::from_secs(1800));
    match status.and_then(|s| s.code()) {
        Some(0) => {
            eprintln!(
                "the deploy image is ready ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            Some(out)
        }
        Some(3) => {
            eprintln!(
                "skipping: the deploy image cannot be built here:\n{}",
                lines.join("\n")
            );
            None
        }
        _ => panic!(
            "build-deploy-image.sh failed ({status:?}):\n{}",
            lines.join("\n")
        ),
    }
}

/// Polls the machine until its status leaves `from` (or `within` passes).
fn wait_status(ns: &Netns, token: &str, mac: &str, from: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let machine = curl(ns, token, "GET", &format!("/api/v1/machines/{mac}"), None);
        if machine["status"] != from || started.elapsed() > within {
            return machine;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The report the deployed machine serves at `ip`, once it answers (or `None` by `deadline`).
fn fetch_report(ns: &Netns, ip: &str, deadline: Instant) -> Option<String> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    while Instant::now() < deadline {
        let mut cmd = ns.command("curl", LIFETIME);
        cmd.args(["-sS", "--fail", "--max-time", "5"])
            .arg(format!("http://{host}:{REPORT_PORT}/report.txt"));
        let (lines, status) = run_bounded("curl", cmd, Duration::from_secs(15));
        if status.is_some_and(|s| s.success()) {
            return Some(lines.join("\n"));
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    None
}

fn ping(ns: &Netns, ip: &str) -> bool {
    let mut cmd = ns.command("ping", LIFETIME);
    cmd.args(["-c", "2", "-W", "2", ip]);
    let (_, status) = run_bounded("ping", cmd, Duration::from_secs(15));
    status.is_some_and(|s| s.success())
}

#[test]
fn a_bios_machine_is_allocated_deployed_reached_at_its_static_addresses_and_released() {
    let test = "deployment_bios";
    if !can_run(
        test,
        &[
            "ip",
            "qemu-system-x86_64",
            "ipmi_sim",
            "curl",
            "setsid",
            "ping",
        ],
    ) || !qemu::installed(test, Firmware::Bios)
    {
        return;
    }
    let Some(ephemeral) = ephemeral() else {
        return;
    };
    let Some(image) = deploy_image() else {
        return;
    };
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(image.join("manifest.json")).unwrap())
            .unwrap();
    let raw_size = manifest["raw_size"].as_u64().unwrap();

    let scratch = Scratch::new(test);
    let ns_name = format!("maas-dep{N}");
    let ns = Netns::new(&ns_name);
    ns.bridge_with_tap("br0", &format!("10.77.{N}.1/24"), "tap0");
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("fd77:{N}::1/64"),
        "dev",
        "br0",
        "nodad",
    ]);
    let mac = format!("52:54:00:77:{N:02x}:10");
    let disk = scratch.join("disk.raw");
    // Larger than the image: cloud-init grows the root file system into the rest.
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(raw_size + (512 << 20))
        .unwrap();
    let serial = scratch.join("serial");
    // Network first, then the disk: while the machine is not deployed the network boots it;
    // once it is, DHCP sends no boot file, iPXE gives up, and SeaBIOS boots the disk.
    let qemu = format!(
        "timeout {} qemu-system-x86_64 -accel tcg -display none -monitor none -serial file:{} -smp 2 -m 1024 -machine pc,graphics=off -boot order=nc -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={mac} -drive file={},format=raw,if=virtio",
        LIFETIME.as_secs(),
        serial.display(),
        disk.display()
    );
    let port = 9500 + u16::from(N);
    let bmc_dir = scratch.join("bmc");
    let _bmc = start_bmc(&ns, &ns_name, &bmc_dir, &qemu, port);

    let state = scratch.join("state");
    let config = scratch.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[controller]
state_dir = "{state}"
api = "127.0.0.1:5240"
boot_http = "0.0.0.0:5248"
commissioning_timeout_secs = {commission}
deployment_timeout_secs = {deploy}
dns_servers = ["10.77.{N}.1"]

[dhcp]
interfaces = ["br0"]

[power]
monitor_interval_secs = 0

[[zones]]
name = "default"

[[zones]]
name = "rack-a"

[[vlans]]
fabric = "fabric-0"
vid = 0
dhcp_on = true

[[subnets]]
cidr = "10.77.{N}.0/24"
gateway_ip = "10.77.{N}.1"

[[subnets]]
cidr = "fd77:{N}::/64"
gateway_ip = "fd77:{N}::1"

[[ip_ranges]]
subnet = "10.77.{N}.0/24"
start = "10.77.{N}.100"
end = "10.77.{N}.199"
kind = "dynamic"
"#,
            state = state.display(),
            commission = COMMISSION_WITHIN.as_secs(),
            deploy = DEPLOY_WITHIN.as_secs(),
        ),
    )
    .unwrap();
    import(&config, &ephemeral);
    import(&config, &image);
    let (controller, token) = start_controller(&ns, &config, &state);
    let dump = |what: &str| {
        format!(
            "{what}\n{}\n{}",
            controller.transcript(),
            qemu::serial_text(&serial)
        )
    };
    let body = json!({
        "mac": mac, "zone": "rack-a",
        "power": {"power_type": "ipmi", "power_address": format!("127.0.0.1:{port}"),
                  "power_user": "admin", "power_pass": "password"},
    });
    let created = curl(
        &ns,
        &token,
        "POST",
        "/api/v1/machines",
        Some(&body.to_string()),
    );
    assert_eq!(created["mac"], mac.as_str(), "{created}");

    // Commissioned first: its interfaces come from what the environment found.
    let answer = curl(
        &ns,
        &token,
        "POST",
        &format!("/api/v1/machines/{mac}/commission"),
        None,
    );
    assert_eq!(answer["status"], "commissioning", "{answer}");
    let machine = wait_status(&ns, &token, &mac, "commissioning", COMMISSION_WITHIN);
    assert_eq!(machine["status"], "ready", "{}", dump(&machine.to_string()));
    let interfaces = curl(
        &ns,
        &token,
        "GET",
        &format!("/api/v1/machines/{mac}/interfaces"),
        None,
    );
    let boot_interface = interfaces["boot_interface"].as_str().unwrap().to_owned();

    // Allocated by zone: the only machine in rack-a; none in an empty zone.
    let none = curl(
        &ns,
        &token,
        "POST",
        "/api/v1/machines/allocate",
        Some(r#"{"zone": "default"}"#),
    );
    assert!(none["error"].is_string(), "{none}");
    let allocated = curl(
        &ns,
        &token,
        "POST",
        "/api/v1/machines/allocate",
        Some(r#"{"zone": "rack-a"}"#),
    );
    assert_eq!(allocated["mac"], mac.as_str(), "{allocated}");
    assert_eq!(allocated["status"], "allocated", "{allocated}");

    // Deployed, with user data that serves a report of the routes and addresses.
    let user_data = format!(
        "#cloud-config\nruncmd:\n  - [sh, -c, \"mkdir -p /srv/report && (echo host $(hostname); ip -4 route show default; ip -6 route show default; ip -o addr show) > /srv/report/report.txt && cd /srv/report && setsid python3 -m http.server --bind :: {REPORT_PORT} >/dev/null 2>&1 < /dev/null &\"]\n"
    );
    let deploy_body = json!({
        "osystem": "debian",
        "user_data": base64::engine::general_purpose::STANDARD.encode(&user_data),
    });
    let started = Instant::now();
    // With a browser at hand the deployment starts from the web dashboard: the machine's
    // page, its Deploy form (OS and user data), and the page following it to Deployed.
    let mut in_browser = None;
    let answer = if browser::present(test, "deploying through the API instead of the dashboard") {
        let mut cmd = ns.command(std::env::current_exe().unwrap(), LIFETIME);
        cmd.args([
            "deployed_from_the_dashboard",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("MAAS_WEB_URL", "http://127.0.0.1:5240")
        .env("MAAS_WEB_ADMIN", &token)
        .env("MAAS_WEB_MAC", &mac)
        .env("MAAS_WEB_USER_DATA", &user_data)
        .env("MAAS_WEB_SCRATCH", scratch.join(""));
        in_browser = Some(Daemon::spawn("browser", cmd));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let machine = curl(&ns, &token, "GET", &format!("/api/v1/machines/{mac}"), None);
            if machine["status"] != "allocated" {
                break machine;
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard did not start the deployment: {machine}\n{}",
                in_browser.as_ref().unwrap().transcript()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    } else {
        curl(
            &ns,
            &token,
            "POST",
            &format!("/api/v1/machines/{mac}/deploy"),
            Some(&deploy_body.to_string()),
        )
    };
    assert_eq!(answer["status"], "deploying", "{answer}");
    let links = &answer["network"]["interfaces"][0]["links"];
    let ipv4 = links[0]["ip"]
        .as_str()
        .expect("an IPv4 AUTO address")
        .to_owned();
    let ipv6 = links[1]["ip"]
        .as_str()
        .expect("an IPv6 AUTO address")
        .to_owned();
    assert!(ipv4.starts_with(&format!("10.77.{N}.")), "{answer}");
    assert!(ipv6.starts_with(&format!("fd77:{N}::")), "{answer}");
    eprintln!("{test}: deploying with {ipv4} and {ipv6} on {boot_interface}");
    let machine = wait_status(&ns, &token, &mac, "deploying", DEPLOY_WITHIN);
    let written = started.elapsed();
    assert_eq!(
        machine["status"],
        "deployed",
        "{}",
        dump(&machine.to_string())
    );
    eprintln!(
        "{test}: deploy call to Deployed in {:.1} s",
        written.as_secs_f64()
    );

    // The deployed system, from its own disk, at its static addresses.
    let deadline = Instant::now() + BOOT_WITHIN;
    let report = fetch_report(&ns, &ipv6, deadline)
        .unwrap_or_else(|| panic!("{}", dump("no report over IPv6")));
    eprintln!(
        "{test}: deploy call to the deployed system answering in {:.1} s\n{report}",
        started.elapsed().as_secs_f64()
    );
    let over_v4 = fetch_report(&ns, &ipv4, Instant::now() + WAIT)
        .unwrap_or_else(|| panic!("{}", dump("no report over IPv4")));
    assert_eq!(over_v4, report);
    assert!(ping(&ns, &ipv4) && ping(&ns, &ipv6), "{}", dump("no ping"));
    assert!(
        report.contains(&format!("default via 10.77.{N}.1 ")),
        "{report}"
    );
    assert!(
        report.contains(&format!("default via fd77:{N}::1 ")),
        "{report}"
    );
    assert!(report.contains(&format!("{ipv4}/24")), "{report}");
    assert!(report.contains(&format!("{ipv6}/64")), "{report}");
    assert!(report.contains(&format!(": {boot_interface} ")), "{report}");
    let hostname = machine["hostname"].as_str().unwrap();
    assert!(report.starts_with(&format!("host {hostname}")), "{report}");
    // It booted its disk because DHCP no longer offered it a boot file.
    assert!(
        controller
            .lines()
            .iter()
            .any(|l| l.contains("boots from its local disk")),
        "{}",
        dump("no local-boot answer")
    );
    // The seed was read with the deployment's own secret, which never shows in the log.
    assert!(
        !controller.transcript().contains("/metadata/v1/seed/maas_"),
        "the seed URL is a secret"
    );

    // Released: powered off, Ready, the AUTO addresses back in the pool.
    let released = curl(
        &ns,
        &token,
        "POST",
        &format!("/api/v1/machines/{mac}/release"),
        None,
    );
    assert_eq!(released["status"], "ready", "{released}");
    let addresses = curl(&ns, &token, "GET", "/api/v1/ipaddresses", None);
    let text = addresses.to_string();
    assert!(
        !text.contains(&format!("\"{ipv4}\"")) && !text.contains(&format!("\"{ipv6}\"")),
        "{addresses}"
    );
    let power = curl(
        &ns,
        &token,
        "GET",
        &format!("/api/v1/machines/{mac}/power"),
        None,
    );
    assert_eq!(power["state"], "off", "{power}");
    let events = curl(
        &ns,
        &token,
        "GET",
        &format!("/api/v1/machines/{mac}/events"),
        None,
    );
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "commissioned",
        "allocated",
        "deploying",
        "deployed",
        "releasing",
        "released",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {events}");
    }
    if let Some(run) = in_browser {
        browser::passed(run, Duration::from_secs(120));
    }
}

/// The dashboard half of the deployment test, run by it inside its namespace (`MAAS_WEB_*`
/// say where): log in, open the allocated machine's page, fill the Deploy form (Debian and
/// the test's user data), and see the page follow the machine to Deployed without a reload.
#[test]
#[ignore = "run by a_bios_machine_is_allocated_deployed_reached_at_its_static_addresses_and_released"]
fn deployed_from_the_dashboard() {
    let env =
        |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k}: run by the deployment test"));
    let (url, token, mac) = (
        env("MAAS_WEB_URL"),
        env("MAAS_WEB_ADMIN"),
        env("MAAS_WEB_MAC"),
    );
    let user_data = env("MAAS_WEB_USER_DATA");
    let scratch = PathBuf::from(env("MAAS_WEB_SCRATCH"));
    let shots = browser::screenshot_dir();
    browser::run_story(&scratch, LIFETIME, |client| async move {
        let c = &client;
        browser::login(c, &url, &token).await?;
        c.goto(&format!("{url}/machines/{mac}"))
            .await
            .map_err(browser::e)?;
        browser::wait_text(c, "#machine-status", |t| t == "Allocated").await?;
        browser::click(c, "#act-deploy").await?;
        let os = c
            .find(fantoccini::Locator::Css("#d-os"))
            .await
            .map_err(browser::e)?;
        os.send_keys("debian").await.map_err(browser::e)?;
        let data = c
            .find(fantoccini::Locator::Css("#d-user-data"))
            .await
            .map_err(browser::e)?;
        data.send_keys(&user_data).await.map_err(browser::e)?;
        browser::screenshots(c, &shots, "machine-deploy-form").await?;
        browser::click(c, "#d-start").await?;
        browser::wait_text(c, "#machine-status", |t| t == "Deploying").await?;
        let began = Instant::now();
        browser::wait_text_within(c, "#machine-status", |t| t == "Deployed", DEPLOY_WITHIN).await?;
        println!(
            "the page showed Deployed after {:.1} s",
            began.elapsed().as_secs_f64()
        );
        browser::screenshots(c, &shots, "machine-deployed").await?;
        Ok(())
    });
}
