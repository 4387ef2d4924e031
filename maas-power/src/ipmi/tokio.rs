//! The IPMI driver on tokio sockets.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::guard::{Expect, POISON, Verdict};
use super::rs::{self, Outcome, Shared, lock};
use super::session::{Session, SessionError};
use super::wire::Response;
use super::{
    Backend, BootFlags, ChassisControl, Command, DEFAULT_PORT, Resolved, Timing, no_rmcp_plus,
    parse_boot_flags, parse_chassis_status, session_config, session_error, split_host_port,
};
use crate::driver::{BootRequest, PowerDriver, PowerFuture};
use crate::params::IpmiParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// How many `ipmi-rs` sessions run at once in the process by default (each holds a thread
/// of tokio's blocking pool while it runs).
pub const DEFAULT_BLOCKING_LIMIT: usize = 64;

/// The IPMI driver on tokio. The native backend uses one UDP socket per call and no thread;
/// the `ipmi-rs` backend runs each session's blocking calls with `spawn_blocking`, at most
/// as many at once as its semaphore has permits (shared by every driver that shares it).
#[derive(Debug, Clone)]
pub struct Ipmi {
    params: IpmiParams,
    timing: Timing,
    backend: Backend,
    blocking: Arc<Semaphore>,
}

impl Ipmi {
    /// A driver for the BMC in `params`.
    pub fn new(params: IpmiParams) -> Result<Self, PowerError> {
        session_config(&params)?;
        split_host_port(&params.power_address, DEFAULT_PORT)?;
        Ok(Self {
            params,
            timing: Timing::default(),
            backend: Backend::Auto,
            blocking: Self::default_blocking_limit(),
        })
    }

    /// The process-wide bound of `ipmi-rs` sessions, [`DEFAULT_BLOCKING_LIMIT`] permits.
    pub fn default_blocking_limit() -> Arc<Semaphore> {
        static LIMIT: OnceLock<Arc<Semaphore>> = OnceLock::new();
        LIMIT
            .get_or_init(|| Arc::new(Semaphore::new(DEFAULT_BLOCKING_LIMIT)))
            .clone()
    }

    /// Bounds this driver's `ipmi-rs` sessions by `limit` (share one among many drivers).
    pub fn set_blocking_limit(&mut self, limit: Arc<Semaphore>) -> &mut Self {
        self.blocking = limit;
        self
    }

    /// Sets the retransmission interval and the deadline of each call.
    pub fn set_timing(&mut self, timing: Timing) -> &mut Self {
        self.timing = timing;
        self
    }

    /// Chooses the implementation of the sessions; an error if `backend` cannot serve
    /// this driver's parameters.
    pub fn set_backend(&mut self, backend: Backend) -> Result<&mut Self, PowerError> {
        backend.resolve(&self.params)?;
        self.backend = backend;
        Ok(self)
    }

    /// Opens a session, runs `commands`, closes the session.
    pub async fn exchange(&self, commands: &[Command]) -> Result<Vec<Response>, PowerError> {
        let bmc = self.params.power_address.as_str();
        let deadline = Instant::now() + self.timing.deadline;
        let timeout = || PowerError::Timeout {
            bmc: bmc.to_owned(),
            after: self.timing.deadline,
        };
        let (host, port) = split_host_port(bmc, DEFAULT_PORT)?;
        let target: SocketAddr =
            timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| timeout())?
                .map_err(|e| PowerError::connection(bmc, e))?
                .next()
                .ok_or_else(|| PowerError::connection(bmc, "the name has no address"))?;
        if self.backend.resolve(&self.params)? == Resolved::IpmiRs {
            match self.exchange_ipmi_rs(target, commands).await? {
                Outcome::Done(r) => return r,
                Outcome::NoRmcpPlus | Outcome::Unavailable(_) if self.backend == Backend::Auto => {}
                Outcome::NoRmcpPlus => return Err(no_rmcp_plus(bmc)),
                Outcome::Unavailable(e) => return Err(e),
            }
        }
        self.exchange_native(target, deadline, commands).await
    }

    /// One session on `ipmi-rs`: the blocking part on tokio's blocking pool under the
    /// semaphore, the relay as a task. Both run to their end even if this future is dropped.
    async fn exchange_ipmi_rs(
        &self,
        target: SocketAddr,
        commands: &[Command],
    ) -> Result<Outcome, PowerError> {
        let bmc = self.params.power_address.clone();
        let permit = self
            .blocking
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PowerError::connection(&bmc, "the ipmi-rs session pool is closed"))?;
        let (local, out) = match rs::relay_sockets(&bmc, target) {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::Unavailable(e)),
        };
        let relay_addr = local
            .local_addr()
            .map_err(|e| PowerError::connection(&bmc, e))?;
        let to_tokio = |s: std::net::UdpSocket| {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        };
        let local = to_tokio(local).map_err(|e| PowerError::connection(&bmc, e))?;
        let out = to_tokio(out).map_err(|e| PowerError::connection(&bmc, e))?;
        let shared: Shared = Arc::default();
        let deadline = Instant::now() + self.timing.deadline;
        let (done_tx, done_rx) = oneshot::channel();
        let relay = tokio::spawn(relay(
            bmc.clone(),
            local,
            out,
            self.timing,
            deadline,
            shared.clone(),
            done_rx,
        ));
        let (params, timing, commands) = (self.params.clone(), self.timing, commands.to_vec());
        let session = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let outcome = rs::run_session(relay_addr, &params, timing, &commands, &shared);
            let _ = done_tx.send(());
            outcome
        });
        let outcome = session.await;
        let _ = relay.await;
        // The guard keeps ipmi-rs away from its panics; should one happen anyway, it is this
        // call's error and not the process's.
        outcome.map_err(|e| PowerError::protocol(&bmc, format!("the ipmi-rs session failed: {e}")))
    }

    async fn exchange_native(
        &self,
        target: SocketAddr,
        deadline: Instant,
        commands: &[Command],
    ) -> Result<Vec<Response>, PowerError> {
        let bmc = self.params.power_address.as_str();
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|e| PowerError::connection(bmc, e))?;
        sock.connect(target)
            .await
            .map_err(|e| PowerError::connection(bmc, e))?;
        let mut cfg = session_config(&self.params)?;
        cfg.raise_privilege = commands.iter().any(|c| !c.read_only());
        let mut s = Session::new(cfg);
        let mut link = Link {
            sock: &sock,
            bmc,
            deadline,
            timing: self.timing,
            buf: [0; 1024],
        };
        while let Some(d) = s.poll_transmit() {
            link.exchange(&d, &mut s, |s, b| {
                s.handle_datagram(b)
                    .map(|done| done.then_some(()))
                    .map_err(|e| session_error(bmc, "session setup", e))
            })
            .await?;
        }
        let mut answers = Vec::with_capacity(commands.len());
        let mut result = Ok(());
        for c in commands {
            let d = s.request(c.netfn, c.cmd, &c.data);
            let r = link
                .exchange(&d, &mut s, |s, b| {
                    s.handle_response(b)
                        .map_err(|e| session_error(bmc, "response", e))
                })
                .await;
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if r.completion != 0 && !(c.optional && matches!(r.completion, 0x80 | 0xc1 | 0xcc)) {
                result = Err(session_error(
                    bmc,
                    &format!("command {:#04x}/{:#04x}", c.netfn, c.cmd),
                    SessionError::Completion { code: r.completion },
                ));
                break;
            }
            answers.push(r);
        }
        if let Some(close) = s.close() {
            // Best effort: the BMC drops idle sessions on its own.
            let _ = sock.send(&close).await;
        }
        result.map(|()| answers)
    }

    async fn control(&self, c: ChassisControl) -> Result<(), PowerError> {
        self.exchange(&[Command::chassis_control(c)])
            .await
            .map(|_| ())
    }

    /// Reads the boot flags back.
    pub async fn boot_flags(&self) -> Result<BootFlags, PowerError> {
        let a = self.exchange(&[Command::get_boot_flags()]).await?;
        parse_boot_flags(&self.params.power_address, &a[0])
    }
}

/// The relay of an `ipmi-rs` session on tokio sockets (see [`rs`]): ends when the session
/// says it is done, or past the deadline.
async fn relay(
    bmc: String,
    local: UdpSocket,
    out: UdpSocket,
    timing: Timing,
    deadline: Instant,
    shared: Shared,
    mut done: oneshot::Receiver<()>,
) {
    let hard_stop = deadline + Duration::from_secs(3);
    let mut buf = [0u8; 1024];
    let mut client: Option<SocketAddr> = None;
    loop {
        let (n, from) = tokio::select! {
            _ = &mut done => return,
            () = sleep_until(hard_stop) => return,
            r = local.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        if client.is_some_and(|c| c != from) {
            continue;
        }
        client = Some(from);
        let request = buf[..n].to_vec();
        let noted = {
            let mut s = lock(&shared);
            s.guard.outbound(&request).map(|()| s.guard.expect())
        };
        let failure = match noted {
            Err(reason) => Some(PowerError::protocol(&bmc, reason)),
            Ok(Expect::Nothing) => {
                let _ = out.send(&request).await;
                continue;
            }
            Ok(_) => None,
        };
        // Drop what a retransmission left behind before asking again.
        while out.try_recv(&mut buf).is_ok() {}
        let mut failure = failure;
        'answer: while failure.is_none() {
            if Instant::now() >= deadline {
                failure = Some(PowerError::Timeout {
                    bmc: bmc.clone(),
                    after: timing.deadline,
                });
                break;
            }
            if let Err(e) = out.send(&request).await
                && e.kind() != std::io::ErrorKind::ConnectionRefused
            {
                failure = Some(PowerError::connection(&bmc, e));
                break;
            }
            let resend = (Instant::now() + timing.retransmit).min(deadline);
            loop {
                let r = tokio::select! {
                    _ = &mut done => return,
                    r = timeout_at(resend, out.recv(&mut buf)) => r,
                };
                let n = match r {
                    Err(_) => break,
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(
                            Duration::from_millis(50).min(resend - Instant::now().min(resend)),
                        )
                        .await;
                        continue;
                    }
                    Ok(Err(_)) => continue,
                };
                let verdict = lock(&shared).guard.inbound(&buf[..n]);
                match verdict {
                    Verdict::Forward => {
                        let _ = local.send_to(&buf[..n], from).await;
                        break 'answer;
                    }
                    Verdict::Drop => {}
                    Verdict::Refuse(reason) => {
                        failure = Some(PowerError::protocol(&bmc, reason));
                        break 'answer;
                    }
                    Verdict::NoRmcpPlus => {
                        lock(&shared).no_rmcp_plus = true;
                        let _ = local.send_to(&POISON, from).await;
                        break 'answer;
                    }
                }
            }
        }
        if let Some(why) = failure {
            let _ = lock(&shared).failure.get_or_insert(why);
            let _ = local.send_to(&POISON, from).await;
        }
    }
}

struct Link<'a> {
    sock: &'a UdpSocket,
    bmc: &'a str,
    deadline: Instant,
    timing: Timing,
    buf: [u8; 1024],
}

impl Link<'_> {
    /// Sends `dgram` (again every retransmit interval) until `handle` returns a value.
    async fn exchange<T>(
        &mut self,
        dgram: &[u8],
        s: &mut Session,
        mut handle: impl FnMut(&mut Session, &[u8]) -> Result<Option<T>, PowerError>,
    ) -> Result<T, PowerError> {
        loop {
            if Instant::now() >= self.deadline {
                return Err(PowerError::Timeout {
                    bmc: self.bmc.to_owned(),
                    after: self.timing.deadline,
                });
            }
            self.sock
                .send(dgram)
                .await
                .map_err(|e| PowerError::connection(self.bmc, e))?;
            let resend = (Instant::now() + self.timing.retransmit).min(self.deadline);
            loop {
                match timeout_at(resend, self.sock.recv(&mut self.buf)).await {
                    Err(_) => break,
                    Ok(Ok(n)) => {
                        if let Some(v) = handle(s, &self.buf[..n])? {
                            return Ok(v);
                        }
                    }
                    // ICMP port unreachable: keep waiting until the deadline.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(Err(e)) => return Err(PowerError::connection(self.bmc, e)),
                }
            }
        }
    }
}

impl PowerDriver for Ipmi {
    fn bmc(&self) -> &str {
        &self.params.power_address
    }

    fn endpoint(&self) -> Option<String> {
        let (host, port) = split_host_port(&self.params.power_address, DEFAULT_PORT).ok()?;
        let host = host.to_ascii_lowercase();
        Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        Box::pin(self.control(ChassisControl::PowerUp))
    }

    fn power_off(&self, mode: OffMode) -> PowerFuture<'_, ()> {
        Box::pin(self.control(match mode {
            OffMode::Hard => ChassisControl::PowerDown,
            OffMode::Soft => ChassisControl::SoftShutdown,
        }))
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        Box::pin(async move {
            // A cycle of a machine that is off does nothing on many BMCs: turn it on instead.
            match self.power_query().await? {
                PowerState::Off => self.control(ChassisControl::PowerUp).await,
                _ => self.control(ChassisControl::PowerCycle).await,
            }
        })
    }

    fn power_reset(&self) -> PowerFuture<'_, ()> {
        Box::pin(self.control(ChassisControl::HardReset))
    }

    fn power_query(&self) -> PowerFuture<'_, PowerState> {
        Box::pin(async move {
            let a = self.exchange(&[Command::chassis_status()]).await?;
            parse_chassis_status(&self.params.power_address, &a[0])
        })
    }

    fn set_boot_device(&self, boot: BootRequest) -> PowerFuture<'_, ()> {
        Box::pin(async move {
            self.exchange(&Command::boot_options(boot))
                .await
                .map(|_| ())
        })
    }
}
