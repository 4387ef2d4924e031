//! The `proxy` example against real clients in network namespaces: curl (plain HTTP, CONNECT
//! to an `openssl s_server` TLS origin on 443), apt-get against a local repository, and raw
//! sockets for the attacks (request smuggling, oversized heads, slow clients, loops, SSRF).
//! The origin is a Python HTTP server whose request log shows what reached it.
//!
//! Needs root and the peers `scripts/setup.sh` installs (except the loopback test of several
//! listening addresses, which runs anywhere); a test without them prints why and passes.
//! Each test has namespaces and a `10.77.18x.0/24` of its own, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::can_run;
use support::netns::Scratch;
use support::proxy::{ProxyNet, WAIT, origin_requests, proxy_binary, sh};

fn metrics(net: &ProxyNet) -> serde_json::Value {
    let (out, ok) = net.curl(&net.px, &["-s", "http://127.0.0.1:3128/metrics"]);
    assert_eq!(ok, Some(true), "{out:?}");
    serde_json::from_str(&out.join("")).unwrap()
}

/// Files with an old modification time, so the origin's Last-Modified makes them fresh for
/// a long while (heuristic freshness), as a mirror's files are.
fn old_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    sh(Command::new("touch")
        .args(["-d", "2020-01-01 00:00:00"])
        .arg(path));
}

fn header(lines: &[String], name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    lines
        .iter()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// A loopback origin that answers every request with `hello` and closes.
fn loopback_origin() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                );
            });
        }
    });
    addr
}

/// Runs anywhere (no root, no peers): the example listens on every `--listen` and names
/// them all in its `listening` line; a request through each reaches the origin.
#[test]
fn every_listen_address_serves() {
    let origin = loopback_origin();
    let scratch = Scratch::new("proxy-listen");
    let mut cmd = Command::new(proxy_binary());
    cmd.args(["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(["--no-default-deny", "--threads", "1", "--cache-dir"])
        .arg(scratch.join("cache"));
    let proxy = support::netns::Daemon::spawn("proxy", cmd);
    let listening = proxy
        .wait_event(WAIT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("proxy did not start\n{}", proxy.transcript()));
    let addrs: Vec<String> = listening["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(addrs.len(), 2, "{listening}");
    assert_ne!(addrs[0], addrs[1], "{listening}");
    assert_eq!(listening["addr"], addrs[0], "addr is the first address");
    for (i, addr) in addrs.iter().enumerate() {
        let mut s = std::net::TcpStream::connect(addr.as_str()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let url = format!("http://{origin}/file{i}");
        write!(
            s,
            "GET {url} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "through {addr}: {out:?}");
        assert!(out.ends_with("hello"), "through {addr}: {out:?}");
    }
}

#[test]
fn curl_miss_then_hit_range_and_refused_client() {
    if !can_run(
        "curl_miss_then_hit_range_and_refused_client",
        &["curl", "python3", "ip"],
    ) {
        return;
    }
    let net = ProxyNet::new(181);
    let scratch = Scratch::new("proxy-curl");
    let www = scratch.join("www");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    old_file(&www.join("images/root.tgz"), &body);
    let origin = net.origin(&scratch, &www, 8080);
    let _proxy = net.proxy(&proxy_binary(), &scratch.join("cache"), &[]);
    let url = format!("http://{}:8080/images/root.tgz", net.addr(66));
    let px = net.proxy_url();

    for (i, expect) in [(1, "MISS"), (2, "HIT")] {
        let out_file = scratch.join(&format!("got{i}"));
        let (out, ok) = net.curl(
            &net.cl,
            &[
                "-s",
                "-D",
                "-",
                "-o",
                out_file.to_str().unwrap(),
                "-x",
                &px,
                &url,
            ],
        );
        assert_eq!(ok, Some(true), "{out:?}");
        assert_eq!(header(&out, "x-cache").as_deref(), Some(expect), "{out:?}");
        assert!(out[0].contains(" 200"), "{out:?}");
        assert_eq!(std::fs::read(&out_file).unwrap(), body);
    }
    assert_eq!(
        origin_requests(&origin, "/images/root.tgz"),
        1,
        "{}",
        origin.transcript()
    );

    // A range of the stored object, served without asking the origin.
    let (out, ok) = net.curl(
        &net.cl,
        &[
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-r",
            "1000-1999",
            "-x",
            &px,
            &url,
        ],
    );
    assert_eq!(ok, Some(true));
    assert!(out[0].contains(" 206"), "{out:?}");
    assert_eq!(
        header(&out, "content-range").as_deref(),
        Some("bytes 1000-1999/200000")
    );
    // The client's own conditional request is answered from the store.
    let (out, _) = net.curl(
        &net.cl,
        &[
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "If-Modified-Since: Tue, 01 Jan 2030 00:00:00 GMT",
            "-x",
            &px,
            &url,
        ],
    );
    assert!(out[0].contains(" 304"), "{out:?}");
    assert_eq!(
        origin_requests(&origin, "/images/root.tgz"),
        1,
        "{}",
        origin.transcript()
    );

    // A client outside the allowed subnets gets 403 and the origin sees nothing.
    let other = format!("http://{}:8080/images/other", net.addr(66));
    let (out, _) = net.curl(
        &net.bad,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &px,
            &other,
        ],
    );
    assert_eq!(out.join(""), "403");
    assert_eq!(origin_requests(&origin, "/images/other"), 0);

    // A URL with a query string is passed through, never stored.
    old_file(&www.join("q"), b"query");
    for _ in 0..2 {
        let (out, _) = net.curl(
            &net.cl,
            &[
                "-s",
                "-x",
                &px,
                &format!("http://{}:8080/q?x=1", net.addr(66)),
            ],
        );
        assert_eq!(out.join(""), "query");
    }
    assert_eq!(origin_requests(&origin, "/q?x=1"), 2);

    let m = metrics(&net);
    assert!(m["hits"].as_u64().unwrap() >= 2, "{m}");
    assert!(m["refused"].as_u64().unwrap() >= 1, "{m}");
}

#[test]
fn connect_tunnel_to_tls_on_443_only() {
    if !can_run(
        "connect_tunnel_to_tls_on_443_only",
        &["curl", "python3", "openssl", "ip"],
    ) {
        return;
    }
    let net = ProxyNet::new(182);
    let scratch = Scratch::new("proxy-connect");
    let (cert, key) = (scratch.join("cert.pem"), scratch.join("key.pem"));
    sh(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=origin",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let mut servers = Vec::new();
    for port in ["443", "8443"] {
        let mut cmd = net.or.command("openssl", support::proxy::LIFETIME);
        cmd.args(["s_server", "-quiet", "-www", "-accept", port])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key);
        servers.push(support::netns::Daemon::spawn("s_server", cmd));
    }
    let _proxy = net.proxy(&proxy_binary(), &scratch.join("cache"), &[]);
    let px = net.proxy_url();
    let deadline = std::time::Instant::now() + WAIT;
    let out = loop {
        let (out, ok) = net.curl(
            &net.cl,
            &["-s", "-k", "-x", &px, &format!("https://{}/", net.addr(66))],
        );
        if ok == Some(true) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        out.join("\n").contains("s_server"),
        "TLS through the tunnel: {out:?}"
    );
    let (out, ok) = net.curl(
        &net.cl,
        &[
            "-s",
            "-k",
            "-v",
            "-x",
            &px,
            &format!("https://{}:8443/", net.addr(66)),
        ],
    );
    assert_ne!(ok, Some(true));
    assert!(
        out.iter().any(|l| l.contains("403")),
        "CONNECT to 8443 must be refused: {out:?}"
    );
    let m = metrics(&net);
    assert_eq!(m["tunnels"], 1, "{m}");
}

#[test]
fn attacks_are_refused() {
    if !can_run("attacks_are_refused", &["curl", "python3", "ip"]) {
        return;
    }
    let net = ProxyNet::new(183);
    let scratch = Scratch::new("proxy-attacks");
    let www = scratch.join("www");
    old_file(&www.join("x"), b"x");
    let origin = net.origin(&scratch, &www, 8080);
    let _proxy = net.proxy(
        &proxy_binary(),
        &scratch.join("cache"),
        &["--header-timeout", "2"],
    );
    let o = net.addr(66);
    let status = |lines: &[String]| lines.first().cloned().unwrap_or_default();

    let smuggle = format!(
        "POST http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let out = net.raw(smuggle.as_bytes(), 5);
    assert!(status(&out).contains(" 400"), "{out:?}");
    let dup = format!(
        "POST http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    );
    assert!(status(&net.raw(dup.as_bytes(), 5)).contains(" 400"));
    let big = format!(
        "GET http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    assert!(status(&net.raw(big.as_bytes(), 5)).contains(" 431"));
    let looped =
        format!("GET http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\nVia: 1.1 maas-proxy\r\n\r\n");
    assert!(status(&net.raw(looped.as_bytes(), 5)).contains(" 508"));
    // A real loop: the proxy asked for a URL on itself.
    let (out, _) = net.curl(
        &net.cl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &net.proxy_url(),
            &format!("http://{}:3128/x", net.addr(1)),
        ],
    );
    assert_eq!(out.join(""), "508");
    // Slow client: half a head, then nothing. The proxy hangs up after its header timeout.
    let slow = format!("GET http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\n");
    let out = net.raw(slow.as_bytes(), 15);
    assert!(
        out.iter().any(|l| l.contains("EOF")),
        "slow client must be disconnected: {out:?}"
    );
    assert!(!out.iter().any(|l| l.contains("TIMEOUT")), "{out:?}");
    // An idle kept-alive connection is closed too.
    let idle = format!("GET http://{o}:8080/x HTTP/1.1\r\nHost: {o}\r\n\r\n");
    let out = net.raw(idle.as_bytes(), 15);
    assert!(
        out[0].contains(" 200") && out.iter().any(|l| l.contains("EOF")),
        "{out:?}"
    );

    // SSRF: loopback (by address and by name), link-local metadata, a denied network, bad ports.
    for url in [
        "http://127.0.0.1:3128/metrics",
        "http://localhost:8080/",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/",
    ] {
        let (out, _) = net.curl(
            &net.cl,
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-x",
                &net.proxy_url(),
                url,
            ],
        );
        assert_eq!(out.join(""), "403", "{url}");
    }
    let (out, _) = net.curl(
        &net.cl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &net.proxy_url(),
            &format!("http://{o}:22/"),
        ],
    );
    assert_eq!(out.join(""), "403");
    assert_eq!(
        origin_requests(&origin, "/x"),
        1,
        "only the one good request reached the origin\n{}",
        origin.transcript()
    );
}

#[test]
fn denied_network_is_refused() {
    if !can_run("denied_network_is_refused", &["curl", "python3", "ip"]) {
        return;
    }
    let net = ProxyNet::new(184);
    let scratch = Scratch::new("proxy-deny");
    let www = scratch.join("www");
    old_file(&www.join("bmc"), b"bmc");
    let origin = net.origin(&scratch, &www, 8080);
    let deny = format!("{}/26", net.addr(64));
    let _proxy = net.proxy(&proxy_binary(), &scratch.join("cache"), &["--deny", &deny]);
    let (out, _) = net.curl(
        &net.cl,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            &net.proxy_url(),
            &format!("http://{}:8080/bmc", net.addr(66)),
        ],
    );
    assert_eq!(out.join(""), "403");
    assert_eq!(origin_requests(&origin, "/bmc"), 0);
}

#[test]
fn restart_keeps_the_cache_and_kill_9_leaves_nothing_corrupt() {
    if !can_run(
        "restart_keeps_the_cache_and_kill_9_leaves_nothing_corrupt",
        &["curl", "python3", "ip"],
    ) {
        return;
    }
    let net = ProxyNet::new(185);
    let scratch = Scratch::new("proxy-restart");
    let www = scratch.join("www");
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    old_file(&www.join("pool/a.deb"), &body);
    let origin = net.origin(&scratch, &www, 8080);
    let cache = scratch.join("cache");
    let px = net.proxy_url();
    let url = format!("http://{}:8080/pool/a.deb", net.addr(66));
    {
        let mut proxy = net.proxy(&proxy_binary(), &cache, &[]);
        let (out, _) = net.curl(
            &net.cl,
            &["-s", "-D", "-", "-o", "/dev/null", "-x", &px, &url],
        );
        assert_eq!(header(&out, "x-cache").as_deref(), Some("MISS"));
        proxy.stop("TERM", Duration::from_secs(5));
    }
    {
        let _proxy = net.proxy(&proxy_binary(), &cache, &[]);
        let got = scratch.join("got");
        let (out, _) = net.curl(
            &net.cl,
            &[
                "-s",
                "-D",
                "-",
                "-o",
                got.to_str().unwrap(),
                "-x",
                &px,
                &url,
            ],
        );
        assert_eq!(header(&out, "x-cache").as_deref(), Some("HIT"), "{out:?}");
        assert_eq!(std::fs::read(&got).unwrap(), body);
        assert_eq!(origin_requests(&origin, "/pool/a.deb"), 1);
    }

    // kill -9 while a 4 MiB object streams in slowly.
    let slow = format!("http://{}:8080/slow/4194304", net.addr(66));
    let expected: Vec<u8> = (0..4_194_304u32).map(|i| (i % 251) as u8).collect();
    {
        let mut proxy = net.proxy(&proxy_binary(), &cache, &[]);
        let mut cmd = net.cl.command("curl", support::proxy::LIFETIME);
        cmd.args(["-s", "-o", "/dev/null", "-x", &px, &slow]);
        let mut client = support::netns::Daemon::spawn("slow client", cmd);
        let deadline = std::time::Instant::now() + WAIT;
        while origin_requests(&origin, "/slow/4194304") == 0 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(800));
        proxy.kill_hard();
        client.stop("TERM", Duration::from_secs(1));
    }
    let objects_before = std::fs::read_dir(cache.join("objects")).unwrap().count();
    let _proxy = net.proxy(&proxy_binary(), &cache, &[]);
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "leftovers are removed"
    );
    assert_eq!(objects_before, 1, "only the complete object is stored");
    let got = scratch.join("slow");
    let (out, ok) = net.curl(
        &net.cl,
        &[
            "-s",
            "-D",
            "-",
            "-o",
            got.to_str().unwrap(),
            "-x",
            &px,
            &slow,
        ],
    );
    assert_eq!(ok, Some(true), "{out:?}");
    assert_eq!(
        header(&out, "x-cache").as_deref(),
        Some("MISS"),
        "the cut download was not stored: {out:?}"
    );
    assert!(std::fs::read(&got).unwrap() == expected, "body intact");
    assert_eq!(origin_requests(&origin, "/slow/4194304"), 2);
}

#[test]
fn concurrent_misses_make_one_origin_fetch() {
    if !can_run(
        "concurrent_misses_make_one_origin_fetch",
        &["curl", "python3", "ip"],
    ) {
        return;
    }
    let net = ProxyNet::new(186);
    let scratch = Scratch::new("proxy-collapse");
    let www = scratch.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let origin = net.origin(&scratch, &www, 8080);
    let _proxy = net.proxy(&proxy_binary(), &scratch.join("cache"), &[]);
    let url = format!("http://{}:8080/slow/1048576", net.addr(66));
    let expected: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let out = scratch.join(&format!("c{i}"));
            let mut cmd = net.cl.command("curl", support::proxy::LIFETIME);
            cmd.args([
                "-s",
                "--max-time",
                "15",
                "-o",
                out.to_str().unwrap(),
                "-x",
                &net.proxy_url(),
                &url,
            ]);
            (out, support::netns::Daemon::spawn("curl", cmd))
        })
        .collect();
    for (out, mut d) in clients {
        assert!(
            d.wait_exit(WAIT).is_some_and(|s| s.success()),
            "{}",
            d.transcript()
        );
        assert!(std::fs::read(&out).unwrap() == expected);
    }
    assert_eq!(
        origin_requests(&origin, "/slow/1048576"),
        1,
        "{}",
        origin.transcript()
    );
}

#[test]
fn apt_get_updates_through_the_proxy_and_revalidates_indexes() {
    if !can_run(
        "apt_get_updates_through_the_proxy_and_revalidates_indexes",
        &[
            "curl",
            "python3",
            "ip",
            "apt-get",
            "dpkg-deb",
            "dpkg-scanpackages",
            "apt-ftparchive",
        ],
    ) {
        return;
    }
    let net = ProxyNet::new(187);
    let scratch = Scratch::new("proxy-apt");
    let repo = scratch.join("www/repo");
    // A one-package repository: pool/main/h/hello-maas/hello-maas_1.0_all.deb.
    let pkg = scratch.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/doc/hello-maas")).unwrap();
    std::fs::write(pkg.join("DEBIAN/control"), "Package: hello-maas\nVersion: 1.0\nArchitecture: all\nMaintainer: maas-rs <maas@example.com>\nDescription: test package\n").unwrap();
    std::fs::write(pkg.join("usr/share/doc/hello-maas/README"), "hello\n").unwrap();
    let pool = repo.join("pool/main/h/hello-maas");
    std::fs::create_dir_all(&pool).unwrap();
    sh(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(pool.join("hello-maas_1.0_all.deb")));
    let bin = repo.join("dists/stable/main/binary-all");
    std::fs::create_dir_all(&bin).unwrap();
    let out = Command::new("dpkg-scanpackages")
        .args(["pool", "/dev/null"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(bin.join("Packages"), &out.stdout).unwrap();
    sh(Command::new("gzip")
        .args(["-k", "-f"])
        .arg(bin.join("Packages")));
    let out = Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Architectures=all",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "release",
        ])
        .arg(repo.join("dists/stable"))
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(repo.join("dists/stable/Release"), &out.stdout).unwrap();
    let origin = net.origin(&scratch, &scratch.join("www"), 80);
    let _proxy = net.proxy(&proxy_binary(), &scratch.join("cache"), &[]);

    let apt_root = scratch.join("apt");
    let sources = scratch.join("sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [trusted=yes] http://{}/repo stable main\n",
            net.addr(66)
        ),
    )
    .unwrap();
    let run_apt = |round: u32| {
        let _ = std::fs::remove_dir_all(&apt_root);
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/preferences.d",
            "etc/apt.conf.d",
            "etc/trusted.gpg.d",
        ] {
            std::fs::create_dir_all(apt_root.join(d)).unwrap();
        }
        std::fs::write(apt_root.join("status"), "").unwrap();
        let opts = [
            format!("Dir::Etc::SourceList={}", sources.display()),
            "Dir::Etc::SourceParts=-".to_string(),
            format!(
                "Dir::Etc::Parts={}",
                apt_root.join("etc/apt.conf.d").display()
            ),
            format!(
                "Dir::Etc::PreferencesParts={}",
                apt_root.join("etc/preferences.d").display()
            ),
            format!("Dir::State={}", apt_root.join("state").display()),
            format!("Dir::State::status={}", apt_root.join("status").display()),
            format!("Dir::Cache={}", apt_root.join("cache").display()),
            format!("Acquire::http::Proxy={}", net.proxy_url()),
            "APT::Architecture=amd64".to_string(),
            "APT::Sandbox::User=root".to_string(),
            "Debug::NoLocking=1".to_string(),
            "Acquire::Languages=none".to_string(),
        ];
        let mut args: Vec<String> = Vec::new();
        for o in &opts {
            args.push("-o".into());
            args.push(o.clone());
        }
        for action in [vec!["update"], vec!["download", "hello-maas"]] {
            let mut cmd = net.cl.command("apt-get", support::proxy::LIFETIME);
            cmd.args(&args)
                .args(&action)
                .current_dir(apt_root.as_path());
            let (lines, status) = support::netns::run_bounded("apt-get", cmd, WAIT);
            assert!(
                status.is_some_and(|s| s.success()),
                "round {round} apt-get {action:?}: {lines:#?}"
            );
        }
        assert!(
            apt_root.join("hello-maas_1.0_all.deb").exists(),
            "round {round}: package downloaded"
        );
    };
    run_apt(1);
    let deb = "/repo/pool/main/h/hello-maas/hello-maas_1.0_all.deb";
    let indexes_first = origin_requests(&origin, "/repo/dists/stable/Release");
    assert_eq!(origin_requests(&origin, deb), 1);
    run_apt(2);
    // The package came from the cache; the indexes were revalidated with the origin (304).
    assert_eq!(origin_requests(&origin, deb), 1, "{}", origin.transcript());
    assert!(
        origin_requests(&origin, "/repo/dists/stable/Release") > indexes_first,
        "Release is revalidated\n{}",
        origin.transcript()
    );
    assert!(
        origin
            .lines()
            .iter()
            .any(|l| l.contains("/repo/dists/stable/Release ") && l.contains(" 304 ")),
        "{}",
        origin.transcript()
    );
    let m = metrics(&net);
    assert!(
        m["hits"].as_u64().unwrap() >= 1 && m["revalidated"].as_u64().unwrap() >= 1,
        "{m}"
    );
}

#[test]
fn parent_proxy_chain() {
    if !can_run("parent_proxy_chain", &["curl", "python3", "ip"]) {
        return;
    }
    let net = ProxyNet::new(188);
    let scratch = Scratch::new("proxy-parent");
    let www = scratch.join("www");
    old_file(&www.join("img"), b"image bytes");
    let origin = net.origin(&scratch, &www, 8080);
    // The parent listens on the proxy namespace's loopback; the child forwards everything there.
    let mut cmd = net.px.command(proxy_binary(), support::proxy::LIFETIME);
    cmd.args(["--listen", "127.0.0.1:3130", "--name", "parent"])
        .arg("--cache-dir")
        .arg(scratch.join("parent-cache"));
    let parent = support::netns::Daemon::spawn("parent", cmd);
    assert!(
        parent
            .wait_line(WAIT, |l| l.contains("\"listening\""))
            .is_some(),
        "{}",
        parent.transcript()
    );
    let _child = net.proxy(
        &proxy_binary(),
        &scratch.join("cache"),
        &["--upstream", "http://user:secret@127.0.0.1:3130"],
    );
    let url = format!("http://{}:8080/img", net.addr(66));
    let (out, ok) = net.curl(&net.cl, &["-s", "-D", "-", "-x", &net.proxy_url(), &url]);
    assert_eq!(ok, Some(true), "{out:?}");
    assert_eq!(
        out.last().map(String::as_str),
        Some("image bytes"),
        "{out:?}"
    );
    assert_eq!(
        header(&out, "via").as_deref(),
        Some("1.1 maas-proxy"),
        "{out:?}"
    );
    let (out, _) = net.curl(&net.px, &["-s", "http://127.0.0.1:3130/metrics"]);
    let m: serde_json::Value = serde_json::from_str(&out.join("")).unwrap();
    assert_eq!(m["upstream_fetches"], 1, "the parent fetched it: {m}");
    assert_eq!(origin_requests(&origin, "/img"), 1);
}
