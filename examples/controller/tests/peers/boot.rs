//! Machines the controller has never seen boot from it (QEMU, BIOS and UEFI), every boot URL
//! it hands out is served, DHCPv6, and bounded enlistment.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::can_run;
use crate::support::netns::{Daemon, Netns, Scratch, run_bounded};
use crate::support::qemu::{self, Firmware};
use crate::{
    Api, LIFETIME, WAIT, admin_token, client_lan, config, controller_binary, events_named,
    http_get, in_ns, marker_line, pxe_lan, start_controller,
};

/// A QEMU machine (BIOS, iPXE) the controller has never seen PXE-boots from it: it leases an
/// address from the managed dynamic range, fetches its own iPXE script over HTTP, and the
/// script's marker shows on its serial console; the API (plain HTTP on loopback, 401 without
/// a token) lists it as new to the first admin. Then the controller is killed with SIGKILL and
/// restarted: no second first admin, the same token works, the lease and the machine are
/// still there, and the same MAC gets the same address again.
#[test]
fn an_unknown_qemu_machine_boots_is_enlisted_and_keeps_its_address_across_a_kill() {
    if !can_run(
        "controller_qemu",
        &["ip", "qemu-system-x86_64", "curl", "busybox", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("controller_qemu", Firmware::Bios) {
        return;
    }
    let n = 24;
    let scratch = Scratch::new("controller_qemu");
    let (ns, _ra) = pxe_lan(n, &scratch);
    let config_path = scratch.join("controller.toml");
    std::fs::write(&config_path, config(n, &scratch.join("state"), "")).unwrap();
    let mut controller = start_controller(&ns, &config_path);
    // Plain HTTP on loopback, and no answer without a token.
    let api = Api::of(&ns, &controller);
    assert_eq!(api.url, "http://127.0.0.1:5240", "{api:?}");
    let anonymous = api.with_token(None).call("GET", "/api/v1/machines", None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.output);

    let serial = scratch.join("serial");
    let mac = "52:54:00:77:18:10";
    let mut vm = qemu::boot(
        &ns,
        Firmware::Bios,
        mac,
        &serial,
        &scratch.join(""),
        LIFETIME,
    );

    let line = marker_line(&serial, &controller);
    eprintln!("controller_qemu: serial says {line:?}");
    assert!(line.contains(&format!("node-771810 {mac} new")), "{line}");

    // The lease is in IPAM and the machine is listed as new, with its address and boot answer.
    let machine = api.get(&format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["status"], "new", "{machine}");
    assert_eq!(machine["origin"], "enlisted", "{machine}");
    assert_eq!(machine["boot"]["choice"], "ipxe", "{machine}");
    let ip: Ipv4Addr = machine["ip"].as_str().unwrap().parse().unwrap();
    assert!(
        (Ipv4Addr::new(10, 77, n, 100)..=Ipv4Addr::new(10, 77, n, 199)).contains(&ip),
        "{ip}"
    );
    let leases = api.get("/api/v1/leases");
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == ip.to_string())
        .unwrap_or_else(|| panic!("{ip} not among the leases: {leases}"));
    assert_eq!(lease["mac"], mac, "{lease}");
    assert_eq!(lease["lease"]["state"], "bound", "{lease}");

    // SIGKILL, restart: the machine and the lease are still there.
    vm.kill_hard();
    controller.kill_hard();
    let controller = start_controller(&ns, &config_path);
    // The store has its admin: no new first admin, the same token still works.
    assert!(
        events_named(&controller, "first_admin").is_empty(),
        "{}",
        controller.transcript()
    );
    let machine = api.get(&format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["ip"], ip.to_string(), "{machine}");
    let leases = api.get("/api/v1/leases");
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == ip.to_string()),
        "{leases}"
    );
    // The same MAC asks again (udhcpc on a link of the bridge) and gets the same address.
    let client = Netns::new(&format!("maas-ctl{n}-cli"));
    ns.attach("br0", "vcl", &client, "vcli");
    client.ip(&["link", "set", "vcli", "address", mac, "up"]);
    let script = scratch.join("udhcpc.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"udhcpc-script: $1 ip=$ip\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut udhcpc = in_ns(&client, "busybox");
    udhcpc
        .args([
            "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s",
        ])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let bound = lines
        .iter()
        .find(|l| l.starts_with("udhcpc-script: bound"))
        .unwrap_or_else(|| {
            panic!(
                "no lease after restart: {lines:?}\n{}",
                controller.transcript()
            )
        });
    assert!(
        bound.ends_with(&format!("ip={ip}")),
        "{bound}, expected {ip}"
    );
}

/// UEFI end to end: edk2's own PXE gets `bootx64.efi` (iPXE's EFI build, from the boot
/// assets) over the controller's TFTP, which then DHCPs as iPXE, fetches the per-machine script
/// over HTTP and prints its marker; the machine is enlisted with both boot answers' last.
#[test]
fn an_unknown_uefi_machine_boots_over_tftp_and_http() {
    const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";
    if !can_run(
        "controller_uefi",
        &["ip", "qemu-system-x86_64", "curl", "dnsmasq"],
    ) {
        return;
    }
    if !qemu::installed("controller_uefi", Firmware::Uefi) {
        return;
    }
    if !Path::new(IPXE_EFI).exists() {
        eprintln!("skipping controller_uefi: no {IPXE_EFI} (ipxe)");
        return;
    }
    let n = 26;
    let scratch = Scratch::new("controller_uefi");
    let assets = scratch.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::copy(IPXE_EFI, assets.join("bootx64.efi")).unwrap();
    let (ns, _ra) = pxe_lan(n, &scratch);
    let config_path = scratch.join("controller.toml");
    let extra = format!(
        "tftp = \"0.0.0.0:69\"\nboot_assets = \"{}\"\n",
        assets.display()
    );
    std::fs::write(&config_path, config(n, &scratch.join("state"), &extra)).unwrap();
    let controller = start_controller(&ns, &config_path);
    let api = Api::of(&ns, &controller);

    let serial = scratch.join("serial");
    let mac = "52:54:00:77:1a:30";
    let _vm = qemu::boot(
        &ns,
        Firmware::Uefi,
        mac,
        &serial,
        &scratch.join(""),
        LIFETIME,
    );
    let line = marker_line(&serial, &controller);
    eprintln!("controller_uefi: serial says {line:?}");
    assert!(line.contains(&format!("node-771a30 {mac} new")), "{line}");
    // The boot loader went out over TFTP, whole.
    let transfer = controller
        .wait_event(WAIT, |e| {
            e["source"] == "tftp" && e["file"] == "bootx64.efi" && e["outcome"] == "completed"
        })
        .unwrap_or_else(|| panic!("no completed TFTP transfer\n{}", controller.transcript()));
    let size = std::fs::metadata(assets.join("bootx64.efi")).unwrap().len();
    assert_eq!(transfer["bytes"].as_u64(), Some(size), "{transfer}");
    let machine = api.get(&format!("/api/v1/machines/{mac}"));
    assert_eq!(machine["status"], "new", "{machine}");
    assert!(machine["ip"].is_string(), "{machine}");
    // Per-machine files come from machine state, over TFTP and HTTP alike.
    let mut cmd = in_ns(&ns, "curl");
    cmd.args(["-sS", "--max-time", "10"]).arg(format!(
        "tftp://10.77.{n}.1/pxelinux.cfg/01-52-54-00-77-1a-30"
    ));
    let (lines, _) = run_bounded("curl", cmd, WAIT);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("node-771a30 ({mac}) is new"))),
        "{lines:?}"
    );
}

/// DHCPv6: with an IPv6 subnet that has a dynamic range, the controller serves DHCPv6 on its
/// DHCP interfaces too. ISC `dhclient -6` on the LAN gets an address from the range, and the
/// lease is in the controller's IPAM; not being a network-booting machine, it is not enlisted.
#[test]
fn dhclient6_gets_its_address_from_the_controller() {
    if !can_run("controller_dhcp6", &["ip", "dhclient", "curl"]) {
        return;
    }
    let scratch = Scratch::new("controller_dhcp6");
    let lan = Netns::new("maas-ctl34-lan");
    let client = Netns::new("maas-ctl34-cli");
    lan.bridge("br0", &["10.77.34.1/24", "fd77:34::1/64"]);
    lan.attach("br0", "vcl", &client, "vcli");
    client.ip(&["link", "set", "vcli", "address", "52:54:00:77:22:10", "up"]);
    let extra = r#"
[[subnets]]
cidr = "fd77:34::/64"

[[ip_ranges]]
subnet = "fd77:34::/64"
start = "fd77:34::100"
end = "fd77:34::1ff"
kind = "dynamic"
"#;
    let config_path = scratch.join("controller.toml");
    let text = config(34, &scratch.join("state"), "") + extra;
    std::fs::write(&config_path, text).unwrap();
    let controller = start_controller(&lan, &config_path);
    let api = Api::of(&lan, &controller);
    assert!(
        controller
            .events()
            .iter()
            .any(|e| e["event"] == "listening" && e["dhcp6"].is_string()),
        "{}",
        controller.transcript()
    );
    lan.wait_link_local("br0", WAIT);
    client.wait_link_local("vcli", WAIT);
    let script = scratch.join("dhclient.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"dhclient-script: reason=$reason ip6=$new_ip6_address\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = in_ns(&client, "dhclient");
    cmd.args(["-6", "-1", "-d", "-v", "-lf"])
        .arg(scratch.join("leases"))
        .arg("-pf")
        .arg(scratch.join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("vcli");
    let dhclient = Daemon::spawn("dhclient", cmd);
    let bound = dhclient
        .wait_line(WAIT, |l| l.contains("reason=BOUND6"))
        .unwrap_or_else(|| {
            panic!(
                "dhclient -6 did not bind\n{}\n{}",
                dhclient.transcript(),
                controller.transcript()
            )
        });
    let ip: std::net::Ipv6Addr = bound
        .split("ip6=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{bound}"));
    let range: (std::net::Ipv6Addr, std::net::Ipv6Addr) = (
        "fd77:34::100".parse().unwrap(),
        "fd77:34::1ff".parse().unwrap(),
    );
    assert!(
        (range.0..=range.1).contains(&ip),
        "{ip} is not in the range"
    );
    let leases = api.get("/api/v1/leases");
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ip"] == ip.to_string())
        .unwrap_or_else(|| panic!("{ip} not among the leases: {leases}"));
    assert_eq!(lease["lease"]["state"], "bound", "{lease}");
    // dhclient is not network-booting: it is no machine to enlist.
    assert_eq!(api.get("/api/v1/machines"), serde_json::json!([]));
}

/// Every boot file and URL in the controller's boot method table (maas-pxe's, MAAS's) is
/// served by the controller: with a boot assets directory holding a dummy file for each name
/// the table hands out (and `ldlinux.c32`, which lpxelinux fetches beside its path prefix),
/// each method's URL is fetched with curl from boot HTTP (on a port other than MAAS's) and
/// each TFTP name (after its path prefix) with tftp-hpa from TFTP; lpxelinux's HTTP path
/// prefix serves `ldlinux.c32` and the machine's `pxelinux.cfg/01-<mac>`. Then udhcpc asks as
/// a UEFI HTTP-boot client (architecture 16, vendor class `HTTPClient`) and the boot URL it
/// is given serves `bootx64.efi`'s bytes. About 3 s.
#[test]
fn every_boot_url_the_controller_hands_out_is_served() {
    use maas_pxe::dhcp::BootConfig;
    if !can_run("controller_boot_urls", &["ip", "curl", "tftp", "busybox"]) {
        return;
    }
    const HTTP_PORT: u16 = 8248;
    let server = Ipv4Addr::new(10, 77, 36, 1);
    let scratch = Scratch::new("controller_boot_urls");
    let (lan, client) = client_lan(36, "10.77.36.1/24", "10.77.36.2/24");

    // The table as the controller hands it out: boot HTTP on our port.
    let mut table = BootConfig::default();
    table.set_http_base(HTTP_PORT, Some(server.into()));
    let base = format!("http://{server}:{HTTP_PORT}/");
    // Each URL and TFTP name, with the asset it must serve (a name relative to the assets
    // directory), or `None` for a file the controller generates.
    let mut http: Vec<(String, String, Option<String>)> = Vec::new();
    let mut tftp: Vec<(String, String)> = Vec::new();
    let pxelinux_cfg = "pxelinux.cfg/01-52-54-00-77-24-10";
    for (arch, method) in &table.methods {
        let method_name = arch.name().to_string();
        let file = method.file.replace("{server}", &server.to_string());
        if file.contains("://") {
            let path = file
                .strip_prefix(&base)
                .unwrap_or_else(|| panic!("{method_name}: {file} is not on boot HTTP"));
            let asset = (path != "ipxe.cfg")
                .then(|| path.strip_prefix("images/").unwrap_or(path).to_string());
            http.push((method_name.clone(), file.clone(), asset));
        } else {
            let prefix = method
                .path_prefix
                .as_deref()
                .filter(|p| !p.contains("://"))
                .unwrap_or("");
            tftp.push((method_name.clone(), format!("{prefix}{file}")));
        }
        if let Some(prefix) = method.path_prefix.as_deref().filter(|p| p.contains("://")) {
            let prefix = prefix.replace("{server}", &server.to_string());
            http.push((
                method_name.clone(),
                format!("{prefix}ldlinux.c32"),
                Some("ldlinux.c32".to_string()),
            ));
            http.push((method_name, format!("{prefix}{pxelinux_cfg}"), None));
        }
    }
    assert!(!tftp.is_empty() && http.len() > 2, "{http:?} {tftp:?}");
    let assets = scratch.join("assets");
    let content = |name: &str| format!("dummy boot file {name}\n").repeat(40).into_bytes();
    let names = tftp
        .iter()
        .map(|(_, name)| name.as_str())
        .chain(http.iter().filter_map(|(_, _, a)| a.as_deref()));
    for name in names {
        let path = assets.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content(name)).unwrap();
    }

    let config_path = scratch.join("controller.toml");
    let extra = format!(
        "tftp = \"0.0.0.0:69\"\nboot_assets = \"{}\"\n",
        assets.display()
    );
    let text = config(36, &scratch.join("state"), &extra)
        .replace("0.0.0.0:5248", &format!("0.0.0.0:{HTTP_PORT}"));
    std::fs::write(&config_path, text).unwrap();
    let controller = start_controller(&lan, &config_path);

    let fetched = scratch.join("fetched");
    let curl = |url: &str| -> (String, Vec<u8>) {
        let _ = std::fs::remove_file(&fetched);
        let mut cmd = in_ns(&client, "curl");
        cmd.args(["-sS", "--max-time", "10", "-w", "%{http_code}", "-o"])
            .arg(&fetched)
            .arg(url);
        let (lines, _) = run_bounded("curl", cmd, WAIT);
        (
            lines.join("\n"),
            std::fs::read(&fetched).unwrap_or_default(),
        )
    };
    let mut failures = Vec::new();
    for (method, url, asset) in &http {
        let (code, body) = curl(url);
        let served = match asset {
            Some(name) => code == "200" && body == content(name),
            None if url.ends_with("ipxe.cfg") => code == "200" && body.starts_with(b"#!ipxe"),
            None => code == "200" && String::from_utf8_lossy(&body).contains("52:54:00:77:24:10"),
        };
        if !served {
            failures.push(format!(
                "{method}: {url}: {code} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    for (method, name) in &tftp {
        let _ = std::fs::remove_file(&fetched);
        let mut cmd = in_ns(&client, "tftp");
        cmd.args(["-m", "binary", &server.to_string(), "69", "-c", "get", name])
            .arg(&fetched);
        let (lines, _) = run_bounded("tftp", cmd, WAIT);
        let body = std::fs::read(&fetched).unwrap_or_default();
        if body != content(name) {
            failures.push(format!("{method}: tftp {name}: {lines:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "not served:\n{}\n{}",
        failures.join("\n"),
        controller.transcript()
    );

    eprintln!(
        "controller_boot_urls: {} URLs over HTTP and {} names over TFTP served",
        http.len(),
        tftp.len()
    );

    // A UEFI HTTP-boot client is handed a URL that serves its boot loader.
    let script = scratch.join("udhcpc.sh");
    let env_dir = scratch.join("env");
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::write(
        &script,
        format!("#!/bin/sh\nenv > {}/\"$1\"\n", env_dir.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut udhcpc = in_ns(&client, "busybox");
    udhcpc
        .args([
            "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1",
        ])
        .args(["-V", "HTTPClient", "-x", "0x5d:0010", "-s"])
        .arg(&script);
    let (lines, _) = run_bounded("udhcpc", udhcpc, WAIT);
    let env = std::fs::read_to_string(env_dir.join("bound")).unwrap_or_else(|_| {
        panic!(
            "udhcpc got no lease: {lines:?}\n{}",
            controller.transcript()
        )
    });
    let url = ["boot_file=", "bootfile="]
        .iter()
        .find_map(|key| env.lines().find_map(|l| l.strip_prefix(key)))
        .unwrap_or_else(|| panic!("no boot file in the answer:\n{env}"))
        .trim_matches('\'')
        .to_string();
    assert!(
        url.starts_with(&base) && url.ends_with("bootx64.efi"),
        "{url}"
    );
    let (code, body) = curl(&url);
    eprintln!("controller_boot_urls: udhcpc as an HTTP-boot client was given {url}: {code}");
    assert_eq!(code, "200", "{url}\n{}", controller.transcript());
    assert_eq!(body, content("bootx64.efi"), "{url}");
}

/// Enlistment is bounded by `enlist_max_new`: with 3, the iPXE scripts of 5 unknown MACs are
/// asked for; the first 3 are answered (200) and listed as new, the other 2 get 429, are not
/// listed, and each has an `enlistment_refused` line with its MAC and a reason. A machine the
/// controller knows (configured, or one of the 3) still gets its script; the API lists
/// machines to the first admin's token only (version to anyone). Loopback, no root needed;
/// about 1 s.
#[test]
fn enlistment_is_bounded() {
    let scratch = Scratch::new("controller_enlist_bound");
    let config_path = scratch.join("controller.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[controller]
state_dir = "{}"
api = "127.0.0.1:0"
boot_http = "127.0.0.1:0"
enlist_max_new = 3
enlist_per_minute = 100000

[[subnets]]
cidr = "10.77.37.0/24"

[[machines]]
mac = "52:54:00:77:25:01"
hostname = "configured"
"#,
            scratch.join("state").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(controller_binary());
    cmd.arg("--config").arg(&config_path);
    let controller = Daemon::spawn("controller", cmd);
    let listening = controller
        .wait_event(WAIT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("no start\n{}", controller.transcript()));
    let boot = listening["boot_http"].as_str().unwrap().to_string();
    let api_addr = listening["api"].as_str().unwrap().to_string();

    let macs: Vec<String> = (0x10..0x15)
        .map(|i| format!("52:54:00:77:25:{i:02x}"))
        .collect();
    let script = |mac: &str| http_get(&boot, &format!("/ipxe.cfg-{}", mac.replace(':', "-")), None);
    for (i, mac) in macs.iter().enumerate() {
        let (status, body) = script(mac);
        let want = if i < 3 { 200 } else { 429 };
        assert_eq!(status, want, "{mac}: {body}\n{}", controller.transcript());
    }
    // The API wants a token for everything but its version.
    let (status, body) = http_get(&api_addr, "/api/v1/machines", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_get(&api_addr, "/api/v1/version", None);
    assert_eq!(status, 200, "{body}");
    let token = admin_token(&scratch.join("state"));
    let (status, machines) = http_get(&api_addr, "/api/v1/machines", Some(&token));
    assert_eq!(status, 200, "{machines}");
    let machines: Value = serde_json::from_str(&machines).unwrap();
    let listed = |mac: &str| {
        machines
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mac"] == mac)
            .cloned()
    };
    for (i, mac) in macs.iter().enumerate() {
        match listed(mac) {
            Some(m) if i < 3 => assert_eq!(m["status"], "new", "{m}"),
            None if i >= 3 => {}
            other => panic!("{mac}: {other:?}\n{machines}"),
        }
    }
    for mac in &macs[3..] {
        let refused = controller
            .wait_event(WAIT, |e| {
                e["event"] == "enlistment_refused" && e["mac"] == mac.as_str()
            })
            .unwrap_or_else(|| panic!("no refusal for {mac}\n{}", controller.transcript()));
        assert!(
            refused["reason"]
                .as_str()
                .is_some_and(|r| r.contains("enlist_max_new")),
            "{refused}"
        );
    }
    for known in ["52:54:00:77:25:01", macs[0].as_str()] {
        let (status, body) = script(known);
        assert_eq!(status, 200, "{known}: {body}");
        assert!(body.starts_with("#!ipxe"), "{body}");
    }
}
