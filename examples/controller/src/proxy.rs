//! The caching proxy for the machines' package downloads: clients from the subnets with
//! `allow_proxy` (and loopback); the controller's own listening addresses and the machines'
//! BMCs refused as destinations, besides the built-in refusals and `[proxy] deny`.

use std::net::{IpAddr, SocketAddr};

use maas_proxy::server::{Proxy, ProxyConfig};
use tokio::task::JoinSet;

use crate::app::App;
use crate::config::ProxySection;
use crate::error::Error;

/// Starts the proxy; its task joins `tasks`. The address it listens on.
pub(crate) async fn serve(
    app: &App,
    section: &ProxySection,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, Error> {
    let topology = app.state.ipam.read(|ipam| ipam.topology().clone());
    let acl = maas_proxy::acl::Acl::from_topology(&topology, denied(app, section));
    let mut config = ProxyConfig {
        listen: section.listen,
        upstream: section.upstream.clone(),
        ..ProxyConfig::default()
    };
    config.acl.allow = acl.allowed().to_vec();
    config.acl.deny = acl.denied().to_vec();
    config.store.dir = section.cache_dir.clone();
    config.store.max_bytes = section.cache_size;
    let proxy = Proxy::new(config)?;
    let listener = proxy.bind().await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the proxy's address", e))?;
    let _ = app.proxy.set(proxy.clone());
    tasks.spawn(async move {
        if let Err(e) = proxy.serve(listener).await {
            tracing::error!(event = "proxy_error", error = %e);
        }
    });
    Ok(addr)
}

/// The destinations refused besides the built-in ones: `[proxy] deny`, the controller's own
/// listening addresses, and every machine's BMC.
pub(crate) fn denied(app: &App, section: &ProxySection) -> Vec<ipnet::IpNet> {
    let mut deny = section.deny.clone();
    let own = &app.config.controller;
    for addr in [
        Some(own.api),
        Some(own.boot_http),
        own.tftp,
        Some(section.listen),
    ]
    .into_iter()
    .flatten()
    {
        if !addr.ip().is_unspecified() {
            deny.push(ipnet::IpNet::from(addr.ip()));
        }
    }
    deny.extend(own.advertise.map(ipnet::IpNet::from));
    for machine in app.state.machines() {
        if let Some(ip) = machine.power.as_ref().and_then(bmc_ip) {
            deny.push(ipnet::IpNet::from(ip));
        }
    }
    deny.sort();
    deny.dedup();
    deny
}

/// The address of the BMC behind `params`, when it is given as an address.
fn bmc_ip(params: &maas_power::params::DriverParams) -> Option<IpAddr> {
    use maas_power::params::DriverParams;
    match params {
        DriverParams::Ipmi(p) => bmc_address(&p.power_address),
        DriverParams::Redfish(p) => bmc_address(&p.power_address),
        DriverParams::Webhook(p) => bmc_address(&p.power_on_uri),
        _ => None,
    }
}

/// The IP address in a BMC's `power_address`: an address, `address:port`, `[v6]:port`, or
/// a URL with an address as its host (names are not resolved here).
pub(crate) fn bmc_address(text: &str) -> Option<IpAddr> {
    let rest = text.split_once("://").map_or(text, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    if let Ok(sock) = host.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    host.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}
