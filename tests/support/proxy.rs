//! A proxy test network: the proxy's namespace routes between an allowed client, a client
//! that is not allowed, and an origin, each on a /26 of `10.77.<third>.0/24`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::netns::{Daemon, Netns, Scratch, run_bounded};

/// The hard limit on every process a proxy test starts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(120);
/// The bound on waits for a peer that answers in a second or two.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The origin: a Python HTTP/1.1 file server that logs every request line on stderr, with
/// `/slow/<n>` streaming `n` bytes (byte `i` is `i % 251`) at about 640 KiB/s.
const ORIGIN: &str = r#"
import http.server, sys, time, os
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow/"):
            n = int(self.path[6:])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.send_header("Cache-Control", "max-age=3600")
            self.end_headers()
            data = bytes(i % 251 for i in range(n))
            for at in range(0, n, 65536):
                self.wfile.write(data[at:at + 65536])
                self.wfile.flush()
                time.sleep(0.1)
            return
        return super().do_GET()
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))
        sys.stderr.flush()
os.chdir(sys.argv[1])
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[2])), H).serve_forever()
"#;

/// The proxy test network of one test.
pub(crate) struct ProxyNet {
    pub(crate) third: u8,
    pub(crate) px: Netns,
    pub(crate) cl: Netns,
    pub(crate) bad: Netns,
    pub(crate) or: Netns,
}

impl ProxyNet {
    /// Namespaces `maas-proxy<third>-{px,cl,bad,or}`: the proxy at `.1` (clients),
    /// `.65` (origin side) and `.129` (the other client's side); the client `.2`, the origin
    /// `.66`, the client that is not allowed `.130`.
    pub(crate) fn new(third: u8) -> Self {
        assert!((180..=199).contains(&third));
        let name = |role: &str| format!("maas-proxy{third}-{role}");
        let px = Netns::new(&name("px"));
        let cl = Netns::new(&name("cl"));
        let bad = Netns::new(&name("bad"));
        let or = Netns::new(&name("or"));
        px.sysctl("net.ipv4.ip_forward", "0");
        for (peer, here, there, host) in [
            (&cl, "vcl", "veth0", 1u8),
            (&or, "vor", "veth0", 65),
            (&bad, "vbad", "veth0", 129),
        ] {
            px.veth(here, peer, there);
            px.ip(&[
                "addr",
                "add",
                &format!("10.77.{third}.{host}/26"),
                "dev",
                here,
            ]);
            px.ip(&["link", "set", here, "up"]);
            peer.ip(&[
                "addr",
                "add",
                &format!("10.77.{third}.{}/26", host + 1),
                "dev",
                there,
            ]);
            peer.ip(&["link", "set", there, "up"]);
            peer.ip(&[
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{third}.{host}"),
            ]);
        }
        Self {
            third,
            px,
            cl,
            bad,
            or,
        }
    }

    /// An address of this test's block.
    pub(crate) fn addr(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.third)
    }

    /// The proxy URL clients use.
    pub(crate) fn proxy_url(&self) -> String {
        format!("http://{}:3128", self.addr(1))
    }

    /// Starts the origin on port `port` serving `root`.
    pub(crate) fn origin(&self, scratch: &Scratch, root: &Path, port: u16) -> Daemon {
        let script = scratch.join("origin.py");
        std::fs::write(&script, ORIGIN).unwrap();
        let mut cmd = self.or.command("python3", LIFETIME);
        cmd.arg("-u").arg(&script).arg(root).arg(port.to_string());
        let d = Daemon::spawn("origin", cmd);
        // Ready once it answers.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (out, st) = self.curl(
                &self.or,
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &format!("http://127.0.0.1:{port}/"),
                ],
            );
            if st == Some(true) && out.iter().any(|l| l.contains("200") || l.contains("404")) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "origin did not start\n{}",
                d.transcript()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// Starts the proxy example in the proxy namespace (clients from the allowed /26 only) and
    /// waits for it to listen.
    pub(crate) fn proxy(&self, binary: &Path, cache: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = self.px.command(binary, LIFETIME);
        cmd.args([
            "--listen",
            "0.0.0.0:3128",
            "--allow",
            &format!("{}/26", self.addr(0)),
        ])
        .arg("--cache-dir")
        .arg(cache)
        .args(extra);
        let d = Daemon::spawn("proxy", cmd);
        assert!(
            d.wait_line(WAIT, |l| l.contains("\"listening\"")).is_some(),
            "proxy did not start\n{}",
            d.transcript()
        );
        d
    }

    /// Runs curl in `ns`: its output lines and whether it exited 0 (`None`: killed).
    pub(crate) fn curl(&self, ns: &Netns, args: &[&str]) -> (Vec<String>, Option<bool>) {
        let mut cmd = ns.command("curl", LIFETIME);
        cmd.args(["--max-time", "15"]).args(args);
        let (lines, status) = run_bounded("curl", cmd, WAIT);
        (lines, status.map(|s| s.success()))
    }

    /// Sends raw bytes to the proxy from the allowed client, reads until the proxy closes or
    /// `timeout_secs`, and prints what came back, then `EOF` or `TIMEOUT`.
    pub(crate) fn raw(&self, bytes: &[u8], timeout_secs: u32) -> Vec<String> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import socket,sys\ns=socket.create_connection(('{}',3128),timeout={timeout_secs})\ns.sendall(bytes.fromhex(sys.argv[1]))\nout=b''\ntry:\n    while True:\n        d=s.recv(65536)\n        if not d:\n            out+=b'\\nEOF'\n            break\n        out+=d\nexcept socket.timeout:\n    out+=b'\\nTIMEOUT'\nsys.stdout.write(out.decode('latin-1'))\n",
            self.addr(1)
        );
        let mut cmd = self.cl.command("python3", LIFETIME);
        cmd.args(["-c", &script, &hex]);
        let (lines, status) = run_bounded("raw client", cmd, WAIT);
        assert!(status.is_some(), "raw client hung");
        lines
    }
}

/// How many requests for `path` the origin logged.
pub(crate) fn origin_requests(origin: &Daemon, path: &str) -> usize {
    let needle = format!("\"GET {path} ");
    origin
        .lines()
        .iter()
        .filter(|l| l.contains(&needle))
        .count()
}

/// The `proxy` example, built next to this test binary.
pub(crate) fn proxy_binary() -> PathBuf {
    super::example_binary("proxy")
}

/// Runs a setup command to completion, panicking with its output when it fails.
pub(crate) fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
