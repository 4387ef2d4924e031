//! Wake-on-LAN: a magic packet (six 0xff bytes, then the MAC sixteen times) over UDP
//! broadcast. It can only turn a machine on; the state is [`PowerState::Unknown`].

use std::net::{SocketAddr, UdpSocket};

use crate::driver::{BlockingPowerDriver, BootRequest};
use crate::params::WolParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The default destination: limited broadcast, discard port.
pub const DEFAULT_TARGET: &str = "255.255.255.255:9";

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(text: &str) -> Result<[u8; 6], PowerError> {
    let bad = || PowerError::Config(format!("mac_address {text:?} is not a MAC address"));
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for b in &mut mac {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// The 102-byte magic packet for `mac`.
pub fn magic_packet(mac: [u8; 6]) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for chunk in p[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(&mac);
    }
    p
}

/// The Wake-on-LAN driver.
#[derive(Clone, Debug)]
pub struct Wol {
    mac: [u8; 6],
    target: SocketAddr,
}

impl Wol {
    /// A driver from MAAS-style parameters.
    pub fn new(params: &WolParams) -> Result<Self, PowerError> {
        let mac = parse_mac(&params.mac_address)?;
        let text = params.power_address.as_deref().unwrap_or(DEFAULT_TARGET);
        let target = match text.parse::<SocketAddr>() {
            Ok(t) => t,
            Err(_) => SocketAddr::new(
                text.parse().map_err(|_| {
                    PowerError::Config(format!("power_address {text:?} is not IP[:PORT]"))
                })?,
                9,
            ),
        };
        Ok(Self { mac, target })
    }

    /// Where the magic packet goes.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    fn local(&self) -> &'static str {
        if self.target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
    }

    /// Sends the magic packet (blocking).
    pub fn wake(&self) -> Result<(), PowerError> {
        let bmc = self.target.to_string();
        let sock = UdpSocket::bind(self.local()).map_err(|e| PowerError::connection(&bmc, e))?;
        sock.set_broadcast(true)
            .map_err(|e| PowerError::connection(&bmc, e))?;
        sock.send_to(&magic_packet(self.mac), self.target)
            .map_err(|e| PowerError::connection(&bmc, e))?;
        Ok(())
    }

    fn only_on(&self, op: &str) -> PowerError {
        PowerError::unsupported("Wake-on-LAN", op)
    }
}

const CAPS: Capabilities = Capabilities {
    power_on: true,
    ..Capabilities::NONE
};

impl BlockingPowerDriver for Wol {
    fn capabilities(&self) -> Capabilities {
        CAPS
    }
    fn power_on(&self) -> Result<(), PowerError> {
        self.wake()
    }
    fn power_off(&self, _mode: OffMode) -> Result<(), PowerError> {
        Err(self.only_on("power off"))
    }
    fn power_cycle(&self) -> Result<(), PowerError> {
        Err(self.only_on("power cycle"))
    }
    fn power_query(&self) -> Result<PowerState, PowerError> {
        Ok(PowerState::Unknown)
    }
    fn set_boot_device(&self, _boot: BootRequest) -> Result<(), PowerError> {
        Err(self.only_on("boot device"))
    }
}

#[cfg(feature = "tokio")]
impl crate::PowerDriver for Wol {
    fn bmc(&self) -> &str {
        "wake-on-lan"
    }
    fn endpoint(&self) -> Option<String> {
        None
    }
    fn capabilities(&self) -> Capabilities {
        CAPS
    }
    fn power_on(&self) -> crate::PowerFuture<'_, ()> {
        Box::pin(async move {
            let bmc = self.target.to_string();
            let sock = tokio::net::UdpSocket::bind(self.local())
                .await
                .map_err(|e| PowerError::connection(&bmc, e))?;
            sock.set_broadcast(true)
                .map_err(|e| PowerError::connection(&bmc, e))?;
            sock.send_to(&magic_packet(self.mac), self.target)
                .await
                .map_err(|e| PowerError::connection(&bmc, e))?;
            Ok(())
        })
    }
    fn power_off(&self, _mode: OffMode) -> crate::PowerFuture<'_, ()> {
        let e = self.only_on("power off");
        Box::pin(async move { Err(e) })
    }
    fn power_cycle(&self) -> crate::PowerFuture<'_, ()> {
        let e = self.only_on("power cycle");
        Box::pin(async move { Err(e) })
    }
    fn power_query(&self) -> crate::PowerFuture<'_, PowerState> {
        Box::pin(async { Ok(PowerState::Unknown) })
    }
    fn set_boot_device(&self, _boot: BootRequest) -> crate::PowerFuture<'_, ()> {
        let e = self.only_on("boot device");
        Box::pin(async move { Err(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_layout() {
        let mac = parse_mac("52:54:00:77:a0:01").unwrap();
        let p = magic_packet(mac);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + 6 * i..12 + 6 * i], &mac);
        }
        assert!(parse_mac("52:54:00:77:a0").is_err());
        assert!(parse_mac("52:54:00:77:a0:01:02").is_err());
        assert!(parse_mac("zz:54:00:77:a0:01").is_err());
    }
}
