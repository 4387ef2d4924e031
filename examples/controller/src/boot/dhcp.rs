//! DHCP (PXE and HTTP boot) on the configured interfaces, on a thread of its own, with the
//! store as its lease store; every lease of a booting machine is recorded on the machine.

use std::sync::Arc;
use std::time::Duration;

use maas_pxe::dhcp::BootConfig;
use maas_pxe::dhcp::server::{
    Bound, InterfaceConfig, LeaseError, Leases, Report, Server4, Server6, ServerConfig,
    ServiceConfig, ServiceHandle, serve4, serve6,
};

use crate::app::App;
use crate::error::Error;
use crate::now;
use crate::protocol::DhcpHealth;
use crate::state::BootSeen;

/// The store as the DHCP server's lease store: the address manager's leases, with one
/// addition. An acknowledgement also waits for the enlistments recorded before it: the
/// service reports a lease (and the report enlists an unknown booting machine) before it
/// waits to send the reply, so a new machine's first lease is never acknowledged before its
/// enlistment is durable.
pub(crate) struct BootLeases(pub(crate) Arc<crate::state::State>);

impl Leases for BootLeases {
    type Ticket = maas_ipam::Ticket;

    fn offer(
        &self,
        subnet: maas_net::SubnetId,
        client: &maas_net::ClientKey,
        now: maas_net::Timestamp,
        hold_secs: u32,
    ) -> Result<std::net::IpAddr, LeaseError> {
        Leases::offer(&*self.0.ipam, subnet, client, now, hold_secs)
    }

    fn bind(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
        hostname: Option<&str>,
        now: maas_net::Timestamp,
        lease_secs: u32,
    ) -> Result<Bound<Self::Ticket>, LeaseError> {
        Leases::bind(&*self.0.ipam, ip, client, hostname, now, lease_secs)
    }

    fn release(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
    ) -> Result<Option<Self::Ticket>, LeaseError> {
        Leases::release(&*self.0.ipam, ip, client)
    }

    fn decline(
        &self,
        ip: std::net::IpAddr,
        client: &maas_net::ClientKey,
        now: maas_net::Timestamp,
        quarantine_secs: u32,
    ) -> Result<Option<Self::Ticket>, LeaseError> {
        Leases::decline(&*self.0.ipam, ip, client, now, quarantine_secs)
    }

    fn expire(
        &self,
        now: maas_net::Timestamp,
    ) -> Result<(usize, Option<Self::Ticket>), LeaseError> {
        Leases::expire(&*self.0.ipam, now)
    }

    fn wait(&self, ticket: Self::Ticket) -> Result<(), LeaseError> {
        Leases::wait(&*self.0.ipam, ticket)?;
        match self.0.latest_enlistment() {
            Some(enlisted) => Leases::wait(&*self.0.ipam, enlisted),
            None => Ok(()),
        }
    }

    async fn wait_async(&self, ticket: Self::Ticket) -> Result<(), LeaseError> {
        Leases::wait_async(&*self.0.ipam, ticket).await?;
        match self.0.latest_enlistment() {
            Some(enlisted) => Leases::wait_async(&*self.0.ipam, enlisted).await,
            None => Ok(()),
        }
    }
}

/// The DHCPv4 server's share of each VLAN it serves with other racks (`dhcp.shares` of the
/// [`Config`](crate::config::Config), from the region).
fn load_balance(config: &crate::config::Config) -> maas_pxe::dhcp::server::LoadBalance {
    let mut balance = maas_pxe::dhcp::server::LoadBalance::none();
    for (vlan, index, of) in config.shared_vlans() {
        if let Some(part) = maas_pxe::dhcp::server::Share::new(index, of) {
            tracing::info!(event = "dhcp_share", vlan = ?vlan, index, of);
            balance.shares.insert(vlan, part);
        }
    }
    balance
}

/// Ends expired leases, offers and quarantines every 30 s (where no DHCP server does).
pub(crate) async fn expire_leases(app: App) {
    let mut ticks = tokio::time::interval(Duration::from_secs(30));
    loop {
        ticks.tick().await;
        match app.state.ipam.expire(now()) {
            Ok((_, Some(ticket))) => {
                let _ = app.state.ipam.wait_async(ticket).await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(event = "state_error", error = %e),
        }
    }
}

/// The DHCP services, on a thread of their own: see [`serve_dhcp`]. Dropping it stops them.
pub(crate) struct DhcpThread {
    /// The interfaces DHCPv4 serves.
    pub(crate) v4: Vec<String>,
    /// The interfaces DHCPv6 serves, when it runs.
    pub(crate) v6: Option<Vec<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DhcpThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The thread only drops the services and its runtime: it ends at once.
            let _ = thread.join();
        }
    }
}

/// DHCPv4 on the configured interfaces, and DHCPv6 too when an IPv6 subnet has a dynamic
/// range to lease from; leases from `leases` (the durable IPAM, or a rack's region). Every
/// lease of a booting machine is recorded on the machine (an unknown one is enlisted).
///
/// The services run on a thread of their own with a single-threaded runtime, as the `dhcpd`
/// example does: under load one thread takes datagrams in batches and nothing else wakes it,
/// where on the shared runtime its wake-ups bounced between cores (a lease cost 1.6 times the
/// example's CPU time). Tasks the services start (enlistment's) run there too.
///
/// A rack's region learns whether they serve (see [`crate::rack::Region::set_dhcp`]): from
/// the moment they do, until the thread ends, or that they failed to start.
pub(crate) async fn serve_dhcp<L: Leases + 'static>(
    app: &App,
    leases: Arc<L>,
) -> Result<DhcpThread, Error> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app.clone();
    let thread = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::io("cannot start the DHCP runtime", e)));
                    return;
                }
            };
            let region = app.region.clone();
            let served = runtime.block_on(async move {
                let handles = match start_dhcp(&app, leases).await {
                    Ok(handles) => handles,
                    Err(e) => {
                        if let Some(region) = &app.region {
                            region.set_dhcp(DhcpHealth::off("failed"));
                        }
                        let _ = ready_tx.send(Err(e));
                        return false;
                    }
                };
                let names = |h: &ServiceHandle| -> Vec<String> {
                    h.interfaces().iter().map(|i| i.name.clone()).collect()
                };
                let v4 = handles.first().map(names).unwrap_or_default();
                let v6 = handles.get(1).map(names);
                if let Some(region) = &app.region {
                    let all = v4.iter().chain(v6.iter().flatten()).cloned();
                    region.set_dhcp(DhcpHealth::serving(now().0, all));
                }
                if ready_tx.send(Ok((v4, v6))).is_err() {
                    return true;
                }
                // Until the controller stops (or drops the thread's handle).
                let _ = stop_rx.await;
                drop(handles);
                true
            });
            if let Some(region) = region.filter(|_| served) {
                region.set_dhcp(DhcpHealth::off("stopped"));
            }
        })
        .map_err(|e| Error::io("cannot start the DHCP thread", e))?;
    let mut dhcp = DhcpThread {
        v4: Vec::new(),
        v6: None,
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.await {
        Ok(Ok((v4, v6))) => {
            (dhcp.v4, dhcp.v6) = (v4, v6);
            Ok(dhcp)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::io(
            "the DHCP thread ended before serving",
            std::io::Error::other("no answer from the DHCP thread"),
        )),
    }
}

async fn start_dhcp<L: Leases + 'static>(
    app: &App,
    leases: Arc<L>,
) -> Result<Vec<ServiceHandle>, Error> {
    let config = &app.config;
    let mut boot = BootConfig::default();
    // The boot table's URLs name MAAS's port; point them at ours (and at the advertised
    // address, on any port).
    boot.set_http_base(
        config.controller.boot_http.port(),
        config.controller.advertise,
    );
    let dns_on = config.dns.as_ref().is_some_and(|d| d.enabled);
    let server_config = ServerConfig {
        lease_secs: config.dhcp.lease_secs,
        boot,
        // Option 15: the default domain the controller's DNS answers for.
        domain: dns_on.then(|| crate::state::DEFAULT_DOMAIN.to_owned()),
        ..ServerConfig::default()
    };
    // The subnets' DNS servers with the controller's own first, where DNS is allowed.
    let dhcp_topology = crate::dns::dhcp_topology(config);
    let mut server = Server4::new(
        server_config.clone(),
        dhcp_topology.clone(),
        Arc::clone(&leases),
    )?;
    // Deployed machines boot their own disk: DHCP sends them no boot file.
    let state = Arc::clone(&app.state);
    let local_boot: maas_pxe::dhcp::server::LocalBoot =
        Arc::new(move |mac| state.status(mac) == Some(crate::state::Status::Deployed));
    server.set_local_boot(Arc::clone(&local_boot));
    server.set_load_balance(load_balance(config));
    let interfaces: Vec<InterfaceConfig> = config
        .dhcp
        .interfaces
        .iter()
        .map(|name| InterfaceConfig::new(name.clone()))
        .collect();
    let mut service = ServiceConfig::default();
    let reporter = app.clone();
    let v4 = serve4(
        Arc::new(server),
        &interfaces,
        &service,
        move |report: &Report<'_>| on_dhcp(&reporter, report),
    )
    .await
    .map_err(|e| Error::io("cannot serve DHCP", e))?;
    let mut handles = vec![v4];
    let topology = &config.topology;
    let leases_v6 = topology.subnets().any(|(id, s)| {
        s.cidr.addr().is_ipv6()
            && s.managed
            && topology.vlan(s.vlan).is_some_and(|v| v.dhcp_on)
            && topology
                .ip_ranges_in(id)
                .any(|(_, r)| r.kind == maas_net::IpRangeKind::Dynamic)
    });
    if leases_v6 {
        // A stable server DUID (DUID-LL of the first interface), so clients keep renewing
        // with it across restarts.
        let duid = interfaces
            .first()
            .and_then(|i| maas_pxe::dhcp::server::Duid::from_interface(&i.name).ok());
        let mut server6 = Server6::new(
            ServerConfig {
                duid,
                ..server_config
            },
            dhcp_topology,
            leases,
        )?;
        server6.set_local_boot(local_boot);
        // Expiry runs once, on the DHCPv4 side: both servers share the leases.
        service.expire_every(None);
        let reporter = app.clone();
        let v6 = serve6(
            Arc::new(server6),
            &interfaces,
            &service,
            move |report: &Report<'_>| on_dhcp(&reporter, report),
        )
        .await
        .map_err(|e| Error::io("cannot serve DHCPv6", e))?;
        handles.push(v6);
    }
    Ok(handles)
}

fn on_dhcp(app: &App, report: &Report<'_>) {
    use maas_pxe::dhcp::server::Event;
    let (interface, event) = match report {
        Report::Event { interface, event } => (*interface, event),
        Report::Error { interface, error } => {
            tracing::warn!(event = "dhcp_error", interface, error = %error);
            return;
        }
        _ => return,
    };
    let kind = event.kind();
    app.metrics.dhcp_event(kind);
    if let Event::Leased {
        mac: Some(mac),
        ip,
        boot,
        ..
    } = event
    {
        let boot = boot.as_ref().map(BootSeen::from_decision);
        let known = app.state.has_machine(*mac);
        // A client that is not network-booting (an installed OS, a switch, a phone) is not a
        // machine to enlist: its lease is all there is to record.
        if known || boot.is_some() {
            if let Some(region) = &app.region {
                region.report_seen(crate::protocol::SeenReport {
                    mac: *mac,
                    ip: Some(*ip),
                    boot: boot.clone(),
                });
            }
            app.seen_booting_now(*mac, Some(*ip), boot, None);
        }
    }
    // The service reports a lease change once it is durable, so the line says it was recorded.
    // An offer changes nothing that lasts (the lease that follows is logged): it is a debug
    // line, which spares a busy server half its log lines.
    let ip = event.ip().map(tracing::field::display);
    if matches!(event, Event::Offered { .. }) {
        tracing::debug!(event = kind, source = "dhcp", interface, ip, detail = %Json(event));
    } else {
        tracing::info!(event = kind, source = "dhcp", interface, ip, detail = %Json(event));
    }
}

/// Writes a value as JSON when (and only if) a log line is written.
struct Json<'a, T>(&'a T);

impl<T: serde::Serialize> std::fmt::Display for Json<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}
