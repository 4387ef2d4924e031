//! The IPMI driver on tokio sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::session::{Session, SessionError};
use super::wire::Response;
use super::{
    BootFlags, ChassisControl, Command, DEFAULT_PORT, Timing, parse_boot_flags,
    parse_chassis_status, session_config, session_error, split_host_port,
};
use crate::driver::{BootRequest, PowerDriver, PowerFuture};
use crate::params::IpmiParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The IPMI driver on tokio: one UDP socket per call, no thread per BMC.
#[derive(Debug, Clone)]
pub struct Ipmi {
    params: IpmiParams,
    timing: Timing,
}

impl Ipmi {
    /// A driver for the BMC in `params`.
    pub fn new(params: IpmiParams) -> Result<Self, PowerError> {
        session_config(&params)?;
        split_host_port(&params.power_address, DEFAULT_PORT)?;
        Ok(Self {
            params,
            timing: Timing::default(),
        })
    }

    /// Sets the retransmission interval and the deadline of each call.
    pub fn set_timing(&mut self, timing: Timing) -> &mut Self {
        self.timing = timing;
        self
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
