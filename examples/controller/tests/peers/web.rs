//! The web dashboard in headless Chromium, driven through chromedriver (WebDriver).
//!
//! The controller runs in a namespace of its own with discovery and DNS on its bridge, and a
//! peer namespace on that bridge plays an unknown device. The browser must reach the
//! controller's loopback API, so the browser half of the test runs inside the controller's
//! namespace: the outer test sets the namespaces and the controller up, then runs this test
//! binary again there (`in_the_browser`, ignored otherwise) and checks it passed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::WAIT;
use crate::browser::{
    Browser, e, fits_the_width, login, screenshot_dir, screenshots, wait_attr, wait_text,
    wait_text_within,
};
use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::support::qemu::Firmware;
use crate::{Api, config, in_ns, start_controller};

const N: u8 = 71;
const PEER_MAC: &str = "52:54:00:77:47:20";
const MACHINE_MAC: &str = "52:54:00:77:47:10";
/// The QEMU machine that boots unannounced.
const NEW_MAC: &str = "52:54:00:77:47:30";
/// The cluster's shared secret, with which the test's rack enrols.
const RACK_SECRET: &str = "web-test-rack-secret-0123456789";
/// How long one browser run may take before it is killed.
const BROWSER_RUN: Duration = Duration::from_secs(240);

/// Logs in through the form as an admin, sees a machine made through the API, sees its
/// status change live (without a reload; the delay is printed, usually well under a second)
/// when the API allocates and releases it, sees the
/// subnet's utilisation bar and ranges; a viewer sees no action button; forged state-changing
/// requests with the session cookie (from the page without the CSRF header, with a wrong one,
/// and from curl) are refused with 403; the cookie is HttpOnly and SameSite=Strict; a real
/// ARP peer shows live on the discoveries page, is added as a device through the form, and
/// then resolves through the controller's DNS; a QEMU machine the controller has never seen
/// network-boots and shows as New on the machines page without a reload; a rack that enrolled
/// with its health on its calls shows on the racks page with DHCP serving and its queued
/// reports. Screenshots of every
/// page at 1280x800 and 390x844 land in `target/artifacts/screenshots/`. About 70 s (most of
/// it the QEMU machine's firmware under TCG).
#[test]
fn the_dashboard_in_a_real_browser() {
    if !can_run(
        "controller_web",
        &["ip", "curl", "arping", "dig", "chromium", "chromedriver"],
    ) {
        return;
    }
    let started = Instant::now();
    let ctl = Netns::new(&format!("maas-ctl{N}-ctl"));
    let peer = Netns::new(&format!("maas-ctl{N}-peer"));
    // tap0 on the bridge takes a QEMU machine the controller has never seen.
    ctl.bridge_with_tap("br0", &format!("10.77.{N}.1/24"), "tap0");
    // Router advertisements spare iPXE its wait for IPv6 before it asks for its script.
    ctl.ip(&["addr", "add", &format!("fd77:{N}::1/64"), "dev", "br0"]);
    ctl.attach("br0", "p1", &peer, "eth0");
    peer.sysctl("net.ipv6.conf.eth0.disable_ipv6", "1");
    peer.ip(&["link", "set", "eth0", "address", PEER_MAC]);
    peer.ip(&["addr", "add", &format!("10.77.{N}.20/24"), "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    let scratch = Scratch::new("controller_web");
    let _ra =
        crate::support::qemu::router_advertisements(&ctl, "br0", N, &scratch.join(""), BROWSER_RUN);
    let config_path = scratch.join("controller.toml");
    let extra = format!(
        "\n[discovery]\ninterfaces = [\"br0\"]\nscan_interval_secs = 0\n\n\
         [dns]\nlisten = [\"10.77.{N}.1:53\"]\naddresses = [\"10.77.{N}.1\"]\n\n\
         [cluster]\nsecret = \"{RACK_SECRET}\"\n\n\
         [[cluster.racks]]\nname = \"rack-w\"\nvlans = [{{ fabric = \"fabric-0\", vid = 0 }}]\n"
    );
    std::fs::write(&config_path, config(N, &scratch.join("state"), &extra)).unwrap();
    let controller = start_controller(&ctl, &config_path);
    let api = Api::of(&ctl, &controller);
    let viewer = api.new_user("vera", "viewer");
    api.send(
        "POST",
        "/api/v1/machines",
        Some(&json!({ "mac": MACHINE_MAC, "hostname": "web-node", "power": { "power_type": "manual" } }).to_string()),
    );

    // A rack enrols and fetches its configuration the way a rack does, its calls carrying its
    // health: the racks page shows its DHCP serving and its three queued reports.
    let rack_headers = [
        "x-maas-rack: rack-w".to_string(),
        "x-maas-protocol: 4".to_string(),
        "x-maas-rack-dhcp: serving; interfaces=eth1".to_string(),
        "x-maas-rack-queued: 3".to_string(),
    ];
    let enrolled = api.with_token(Some(RACK_SECRET)).call_with(
        "POST",
        "/api/v1/rack/enrol",
        None,
        &rack_headers,
    );
    assert_eq!(enrolled.status, 201, "enrol: {}", enrolled.text);
    let credential = enrolled.json["credential"].as_str().unwrap();
    let fetched = api.with_token(Some(credential)).call_with(
        "GET",
        "/api/v1/rack/config",
        None,
        &rack_headers,
    );
    assert_eq!(fetched.status, 200, "rack config: {}", fetched.text);

    let shots = screenshot_dir();
    let mut browser = in_ns(&ctl, std::env::current_exe().unwrap());
    browser
        .args([
            "web::in_the_browser",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MAAS_WEB_URL", &api.url)
        .env("MAAS_WEB_ADMIN", api.token.as_deref().unwrap())
        .env("MAAS_WEB_VIEWER", viewer.token.as_deref().unwrap())
        .env("MAAS_WEB_PEER_NS", format!("maas-ctl{N}-peer"))
        .env("MAAS_WEB_SHOTS", &shots)
        .env("MAAS_WEB_SCRATCH", scratch.join(""));
    let (lines, status) = run_bounded("browser", browser, BROWSER_RUN);
    let output = lines.join("\n");
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("test result: ok. 1 passed"),
        "the browser run failed ({status:?}):\n{output}\n{}",
        controller.transcript()
    );
    println!("{output}");
    println!("screenshots in {}", shots.display());
    println!("controller_web: {:.1} s", started.elapsed().as_secs_f64());
}

/// The browser half, run by [`the_dashboard_in_a_real_browser`] inside the controller's
/// namespace (it needs what that test sets up, handed over in `MAAS_WEB_*`).
#[test]
#[ignore = "run by the_dashboard_in_a_real_browser inside its namespace"]
fn in_the_browser() {
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k}: run by the_dashboard_in_a_real_browser"))
    };
    let run = Run {
        url: env("MAAS_WEB_URL"),
        admin: env("MAAS_WEB_ADMIN"),
        viewer: env("MAAS_WEB_VIEWER"),
        peer_ns: env("MAAS_WEB_PEER_NS"),
        shots: PathBuf::from(env("MAAS_WEB_SHOTS")),
        scratch: PathBuf::from(env("MAAS_WEB_SCRATCH")),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run.all());
}

struct Run {
    url: String,
    admin: String,
    viewer: String,
    peer_ns: String,
    shots: PathBuf,
    scratch: PathBuf,
}

impl Run {
    async fn all(&self) {
        let browser = Browser::start(&self.scratch, BROWSER_RUN).await;
        let result = self.story(&browser.client).await;
        browser.close().await;
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    async fn story(&self, c: &Client) -> Result<(), String> {
        // (1) Log in as the admin through the form.
        self.login(c, &self.admin).await?;
        let row = format!("#m-{}", MACHINE_MAC.replace(':', "-"));
        let cell = wait_text(c, &format!("{row} .c-status"), |t| t == "Ready").await?;
        println!("machine listed as {cell}");
        self.shots(c, "machines").await?;
        // Its status changes through the API and the page follows without a reload.
        let allocated = self.api(
            "POST",
            "/api/v1/machines/allocate",
            Some(json!({ "hostname": "web-node" })),
            None,
        );
        assert_eq!(allocated.0, 200, "{allocated:?}");
        let waited = Instant::now();
        wait_text(c, &format!("{row} .c-status"), |t| t == "Allocated").await?;
        println!("allocation shown after {} ms", waited.elapsed().as_millis());
        let released = self.api(
            "POST",
            &format!("/api/v1/machines/{MACHINE_MAC}/release"),
            Some(json!({})),
            None,
        );
        assert_eq!(released.0, 200, "{released:?}");
        let waited = Instant::now();
        wait_text(c, &format!("{row} .c-status"), |t| t != "Allocated").await?;
        println!("release shown after {} ms", waited.elapsed().as_millis());
        // The machine's page.
        c.find(Locator::Css(&format!("{row} a")))
            .await
            .map_err(e)?
            .click()
            .await
            .map_err(e)?;
        wait_text(c, "#machine-status", |t| !t.is_empty()).await?;
        wait_text(c, "#netconfig", |t| !t.is_empty()).await?;
        self.shots(c, "machine").await?;
        // Subnets: the utilisation bar and the ranges.
        self.go(c, "/subnets").await?;
        let bar = wait_attr(c, ".subnet .bar", "aria-label").await?;
        if !bar.contains("dynamic") || !bar.contains("100 dynamic") {
            return Err(format!("the bar says {bar:?}"));
        }
        let ranges = wait_text(c, ".subnet .ranges", |t| t.contains("dynamic")).await?;
        println!("bar: {bar}; ranges: {}", ranges.replace('\n', " | "));
        self.shots(c, "subnets").await?;
        self.go(c, "/racks").await?;
        wait_text(c, "h1", |t| t == "Controllers").await?;
        let dhcp = wait_text(c, "#rack-rack-w .c-dhcp", |t| t.contains("serving on eth1")).await?;
        let queued = wait_text(c, "#rack-rack-w .c-queued", |t| t.starts_with('3')).await?;
        wait_text(c, "#rack-rack-w", |t| t.contains("in contact")).await?;
        println!("rack: DHCP {dhcp}; queued {queued}");
        self.shots(c, "racks").await?;
        self.go(c, "/audit").await?;
        wait_text(c, "#audit", |t| t.contains("/api/v1/machines/allocate")).await?;
        self.shots(c, "audit").await?;

        // (2) The cookie's attributes, and forged requests refused.
        let cookies = c.get_all_cookies().await.map_err(e)?;
        let session = cookies
            .iter()
            .find(|k| k.name() == "maas_session")
            .ok_or("no session cookie")?;
        if session.http_only() != Some(true)
            || session.same_site() != Some(cookie::SameSite::Strict)
        {
            return Err(format!("cookie attributes: {session:?}"));
        }
        let forged = |header: &str| {
            format!(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/zones', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' {header} }},
               body: JSON.stringify({{ name: 'forged' }}) }})
               .then(async r => done([r.status, await r.text()])).catch(e => done([0, String(e)]));"
        )
        };
        for header in ["", ", 'X-CSRF-Token': 'wrong'"] {
            let answer = c.execute_async(&forged(header), vec![]).await.map_err(e)?;
            println!("forged from the page ({header:?}): {answer}");
            if answer[0] != 403 {
                return Err(format!(
                    "a forged request from the page was not refused: {answer}"
                ));
            }
        }
        let id = session.value().to_string();
        let plain = self.api(
            "POST",
            "/api/v1/zones",
            Some(json!({ "name": "forged" })),
            Some(&id),
        );
        println!("forged with curl: {plain:?}");
        if plain.0 != 403
            || !plain.1["error"]
                .as_str()
                .unwrap_or_default()
                .contains("x-csrf-token")
        {
            return Err(format!(
                "a forged request from curl was not refused: {plain:?}"
            ));
        }
        let zones = self.api("GET", "/api/v1/zones", None, None);
        if zones.1.to_string().contains("forged") {
            return Err(format!("a forged zone was made: {}", zones.1));
        }

        // (3) A real ARP peer appears live on the discoveries page; add it as a device.
        self.go(c, "/discoveries").await?;
        wait_text(c, "h1", |t| t.starts_with("Discoveries")).await?;
        let mut arping = Command::new("timeout");
        arping
            .args([
                "10",
                "ip",
                "netns",
                "exec",
                &self.peer_ns,
                "arping",
                "-c",
                "3",
                "-w",
                "5",
                "-I",
                "eth0",
            ])
            .arg(gateway());
        let _ = run_bounded("arping", arping, Duration::from_secs(15));
        let row = format!("#d-{}", PEER_MAC.replace(':', "-"));
        let vendor = wait_text(c, &format!("{row} td:nth-child(2)"), |t| !t.is_empty()).await?;
        if vendor != "QEMU/KVM virtual NIC" {
            return Err(format!("vendor {vendor:?}"));
        }
        self.shots(c, "discoveries").await?;
        c.find(Locator::Css(&format!("{row} button.add")))
            .await
            .map_err(e)?
            .click()
            .await
            .map_err(e)?;
        let hostname = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#f-hostname"))
            .await
            .map_err(e)?;
        hostname.clear().await.map_err(e)?;
        hostname.send_keys("web-peer").await.map_err(e)?;
        c.find(Locator::Css("#f-ip"))
            .await
            .map_err(e)?
            .select_by_value("static")
            .await
            .map_err(e)?;
        self.shots(c, "discovery-add").await?;
        c.find(Locator::Css("#f-save"))
            .await
            .map_err(e)?
            .click()
            .await
            .map_err(e)?;
        let deadline = Instant::now() + WAIT;
        loop {
            let devices = self.api("GET", "/api/v1/devices", None, None).1;
            if devices.to_string().contains("web-peer") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no device web-peer: {devices}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let dns = gateway();
        let deadline = Instant::now() + WAIT;
        loop {
            let mut dig = Command::new("dig");
            dig.args([
                &format!("@{dns}"),
                "+short",
                "+time=1",
                "+tries=1",
                "web-peer.maas",
                "A",
            ]);
            let (lines, _) = run_bounded("dig", dig, Duration::from_secs(5));
            if lines
                .iter()
                .any(|l| l.trim() == format!("{}.20", dns.trim_end_matches(".1")))
            {
                println!("web-peer.maas resolves: {lines:?}");
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("web-peer.maas does not resolve: {lines:?}"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }

        // (4) A QEMU machine the controller has never seen network-boots, and the machines
        // page lists it as New while it boots (no reload).
        self.enlisted(c).await?;

        // A viewer sees no action button, and no audit page link.
        c.find(Locator::Css("#logout"))
            .await
            .map_err(e)?
            .click()
            .await
            .map_err(e)?;
        wait_text(c, "h1", |t| t == "Log in").await?;
        let nav = c
            .execute(
                "return getComputedStyle(document.getElementById('nav')).display",
                vec![],
            )
            .await
            .map_err(e)?;
        if nav != "none" {
            return Err(format!("the menu shows after logout ({nav})"));
        }
        self.shots(c, "login").await?;
        self.login(c, &self.viewer).await?;
        wait_text(
            c,
            &format!("#m-{} .c-status", MACHINE_MAC.replace(':', "-")),
            |t| !t.is_empty(),
        )
        .await?;
        let buttons = c
            .find_all(Locator::Css("main button, main input[type=checkbox]"))
            .await
            .map_err(e)?;
        if !buttons.is_empty() {
            return Err(format!("a viewer sees {} action controls", buttons.len()));
        }
        let audit_link = c
            .execute(
                "return document.querySelector('nav a[data-view=audit]').hidden",
                vec![],
            )
            .await
            .map_err(e)?;
        if audit_link != Value::Bool(true) {
            return Err("a viewer sees the audit link".into());
        }
        self.shots(c, "machines-viewer").await?;
        Ok(())
    }

    async fn enlisted(&self, c: &Client) -> Result<(), String> {
        if !crate::support::qemu::installed("controller_web", Firmware::Bios)
            || crate::support::which("qemu-system-x86_64").is_none()
        {
            println!("no QEMU or iPXE: the enlistment step is skipped");
            return Ok(());
        }
        self.go(c, "/machines").await?;
        wait_text(c, "h1", |t| t.starts_with("Machines")).await?;
        let serial = self.scratch.join("serial");
        let mut cmd = Command::new("timeout");
        cmd.args([
            "-k",
            "5",
            "120",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-display",
            "none",
        ])
        .args(["-monitor", "none", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args(["-m", "256", "-machine", "pc,graphics=off", "-boot", "n"])
        .args(["-device", &format!("e1000,netdev=n0,mac={NEW_MAC}")]);
        let vm = Daemon::spawn("qemu", cmd);
        let booted = Instant::now();
        let row = format!("#m-{} .c-status", NEW_MAC.replace(':', "-"));
        let shown = wait_text_within(c, &row, |t| t == "New", Duration::from_secs(90)).await;
        let shown = shown.map_err(|e| format!("{e}\n{}", vm.transcript()))?;
        println!(
            "the booting machine was listed as {shown} {:.1} s after QEMU started",
            booted.elapsed().as_secs_f64()
        );
        self.shots(c, "machines-enlisted").await?;
        drop(vm);
        Ok(())
    }

    async fn login(&self, c: &Client, token: &str) -> Result<(), String> {
        login(c, &self.url, token).await
    }

    async fn go(&self, c: &Client, path: &str) -> Result<(), String> {
        c.goto(&format!("{}{path}", self.url)).await.map_err(e)
    }

    async fn shots(&self, c: &Client, name: &str) -> Result<(), String> {
        screenshots(c, &self.shots, name).await?;
        fits_the_width(c, name).await
    }

    /// An API call with curl: as the admin's bearer token, or with only the session cookie
    /// `cookie` (a forged request: no CSRF header). The status and the JSON answer.
    fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        cookie: Option<&str>,
    ) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        match cookie {
            Some(id) => cmd.args(["-H", &format!("cookie: maas_session={id}")]),
            None => cmd.args(["-H", &format!("authorization: Bearer {}", self.admin)]),
        };
        if let Some(b) = body {
            cmd.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                &b.to_string(),
            ]);
        }
        cmd.arg(format!("{}{path}", self.url));
        let (lines, _) = run_bounded("curl", cmd, Duration::from_secs(30));
        let status = lines
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let text = lines[..lines.len().saturating_sub(1)].join("\n");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The bridge address of LAN `N` (the controller's, and its DNS server's).
fn gateway() -> String {
    format!("10.77.{N}.1")
}
