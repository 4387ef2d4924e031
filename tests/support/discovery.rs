//! A switched LAN in network namespaces for the discovery peer tests: an observer namespace
//! holding bridge `br0` (where the `discover` example captures) and host namespaces, each
//! joined to the bridge by a veth pair (`eth0` in the host).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::netns::{Daemon, Netns};

/// The hard limit on every process a test starts, in case the test itself dies.
pub(crate) const LIFETIME: Duration = Duration::from_secs(120);

/// The `discover` example, built next to the test binary (`target/<profile>/examples`).
pub(crate) fn discover_binary() -> PathBuf {
    super::example_binary("discover")
}

/// Test `n`'s LAN: `10.77.(130+n).0/24` and `fd77:(130+n)::/64`.
pub(crate) struct Lan {
    pub(crate) n: u8,
    pub(crate) hosts: Vec<Netns>,
    pub(crate) obs: Netns,
}

impl Lan {
    /// The observer namespace with its bridge (no address, multicast snooping off so every
    /// multicast group is flooded) and `hosts` host namespaces, links up, no addresses.
    pub(crate) fn new(n: u8, hosts: u8) -> Self {
        let obs = Netns::new(&format!("maas-disc{n}-obs"));
        obs.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
        ]);
        obs.ip(&["link", "set", "br0", "up"]);
        let mut list = Vec::new();
        for i in 1..=hosts {
            let host = Netns::new(&format!("maas-disc{n}-h{i}"));
            let port = format!("p{i}");
            obs.veth(&port, &host, "eth0");
            obs.ip(&["link", "set", &port, "master", "br0"]);
            obs.ip(&["link", "set", &port, "up"]);
            host.ip(&["link", "set", "eth0", "address", &Self::mac(n, i), "up"]);
            list.push(host);
        }
        Self {
            n,
            hosts: list,
            obs,
        }
    }

    /// Host `i`'s MAC (1-based).
    pub(crate) fn mac(n: u8, i: u8) -> String {
        format!("52:54:00:77:{:02x}:{i:02x}", 130 + u16::from(n))
    }

    /// The IPv4 address `10.77.(130+n).last`.
    pub(crate) fn v4(&self, last: u8) -> String {
        format!("10.77.{}.{last}", 130 + u16::from(self.n))
    }

    /// The IPv6 address `fd77:(130+n)::last`.
    pub(crate) fn v6(&self, last: u8) -> String {
        format!("fd77:{}::{last:x}", 130 + u16::from(self.n))
    }

    /// Host `i` (1-based).
    pub(crate) fn host(&self, i: u8) -> &Netns {
        &self.hosts[usize::from(i) - 1]
    }

    /// Starts `discover` on `br0` with `args`, waiting until it listens.
    pub(crate) fn discover(&self, args: &[&str]) -> Daemon {
        let mut cmd = self.obs.command(discover_binary(), LIFETIME);
        cmd.args(["--interface", "br0"]).args(args);
        let daemon = Daemon::spawn("discover", cmd);
        assert!(
            daemon
                .wait_line(Duration::from_secs(10), |l| l.contains("\"LISTENING\""))
                .is_some(),
            "discover did not start\n{}",
            daemon.transcript()
        );
        daemon
    }
}

/// Whether `event` is of kind `kind` for `ip`.
pub(crate) fn is(event: &Value, kind: &str, ip: &str) -> bool {
    event["event"] == kind && event["ip"] == ip
}
