//! The controller's authoritative DNS server: the zones of its domains and subnets
//! ([`zone`]), built from the hosts it knows ([`hosts`]), served over UDP and TCP by
//! hickory-server ([`server`]).
//!
//! A refresher gathers the state several times a second; when it differs from the last
//! snapshot's, a new [`zone::Snapshot`] is built with the next SOA serial and swapped in
//! whole, so queries read without a lock and a change is answered within a second.

pub(crate) mod hosts;
pub(crate) mod server;
#[cfg(test)]
mod tests;
pub(crate) mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::DnsSection;
use crate::error::Error;
use zone::{Inputs, Snapshot};

/// How often the state is compared with the served snapshot.
const REFRESH_EVERY: Duration = Duration::from_millis(200);
/// How long a TCP client may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The next SOA serial: one more than `previous`, and at least the seconds since the epoch
/// (so a restarted controller goes on increasing), wrapping as RFC 1982 allows.
pub(crate) fn next_serial(previous: u32, now_secs: u64) -> u32 {
    let now = u32::try_from(now_secs % (1 << 32)).unwrap_or(0);
    let next = previous.wrapping_add(1);
    if now.wrapping_sub(next) < (1 << 31) && now != next {
        now
    } else {
        next
    }
}

/// The network model DHCP answers from: with `[dns]` on, every subnet that allows DNS
/// names the controller's DNS address first among its DNS servers (option 6, DHCPv6 23).
pub(crate) fn dhcp_topology(config: &crate::Config) -> maas_net::Topology {
    let mut topology = config.topology.clone();
    let Some(section) = config.dns.as_ref().filter(|d| d.enabled) else {
        return topology;
    };
    let ids: Vec<_> = topology
        .subnets()
        .filter(|(_, s)| s.allow_dns)
        .map(|(id, s)| (id, s.cidr))
        .collect();
    for (id, cidr) in ids {
        let Some(ip) = section.server_for(cidr, config.controller.advertise) else {
            continue;
        };
        let changed = topology.update_subnet(id, |s| {
            s.dns_servers.retain(|d| *d != ip);
            s.dns_servers.insert(0, ip);
        });
        if let Err(e) = changed {
            tracing::warn!(event = "dns_dhcp_server", subnet = %cidr, error = %e);
        }
    }
    topology
}

/// Starts the DNS server on every `[dns] listen` address (UDP and TCP); its tasks join
/// `tasks`. The addresses it listens on.
pub(crate) async fn serve(
    app: &App,
    section: &DnsSection,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<Vec<SocketAddr>, Error> {
    let now = crate::now().0;
    let inputs = hosts::gather(app, section);
    let serial = next_serial(0, now);
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(&inputs, serial)));
    let handler = server::Handler {
        snapshot: Arc::clone(&snapshot),
        allow_transfer: section.allow_transfer.clone(),
        forwarders: section.forwarders.clone(),
    };
    let mut dns = hickory_server::server::Server::new(handler);
    let mut bound = Vec::new();
    for addr in &section.listen {
        let udp = bind(*addr, socket2::Type::DGRAM)
            .and_then(|s| tokio::net::UdpSocket::from_std(s.into()))
            .map_err(|source| Error::Bind {
                what: "DNS (UDP)",
                addr: *addr,
                source,
            })?;
        let local = udp.local_addr().map_err(|e| Error::io("DNS", e))?;
        // TCP on the same port as UDP (the one the system chose for port 0).
        let tcp = bind(local, socket2::Type::STREAM)
            .and_then(|s| {
                s.listen(1024)?;
                tokio::net::TcpListener::from_std(s.into())
            })
            .map_err(|source| Error::Bind {
                what: "DNS (TCP)",
                addr: local,
                source,
            })?;
        dns.register_socket(udp);
        dns.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
        bound.push(local);
    }
    tracing::info!(
        event = "dns_serving",
        listen = ?bound,
        serial,
        zones = snapshot.load().zone_names().count()
    );
    let stop = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = dns.block_until_done() => {}
            () = stop.cancelled() => {
                let _ = dns.shutdown_gracefully().await;
            }
        }
    });
    let app = app.clone();
    let section = section.clone();
    tasks.spawn(refresh(app, section, snapshot, inputs, shutdown));
    Ok(bound)
}

/// A non-blocking socket bound to `addr`; an IPv6 one is IPv6-only, so `0.0.0.0:53` and
/// `[::]:53` can both be listened on.
fn bind(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, kind, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if kind == socket2::Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Rebuilds the snapshot whenever what it is built from changes.
async fn refresh(
    app: App,
    section: DnsSection,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mut last: Inputs,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let inputs = hosts::gather(&app, &section);
        if inputs == last {
            continue;
        }
        let serial = next_serial(snapshot.load().serial(), crate::now().0);
        let built = Snapshot::build(&inputs, serial);
        snapshot.store(Arc::new(built));
        tracing::debug!(event = "dns_changed", serial);
        last = inputs;
    }
}
