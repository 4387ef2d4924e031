//! Wake-on-LAN: a magic packet (six 0xff bytes, then the MAC sixteen times) over UDP
//! broadcast. It can only turn a machine on; the state is [`PowerState::Unknown`].

use std::net::{SocketAddr, UdpSocket};

use maas_net::Mac;

use crate::driver::{BlockingPowerDriver, BootRequest};
use crate::params::WolParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The default destination: limited broadcast, discard port.
pub const DEFAULT_TARGET: &str = "255.255.255.255:9";

/// The 102-byte magic packet for `mac`.
pub fn magic_packet(mac: Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for chunk in p[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(&mac.octets());
    }
    p
}

/// The Wake-on-LAN driver.
#[derive(Clone, Debug)]
pub struct Wol {
    mac: Mac,
    target: SocketAddr,
}

impl Wol {
    /// A driver from MAAS-style parameters. `mac_address` may be spelt in any way
    /// [`Mac`] parses (`aa:bb:cc:dd:ee:ff`, `aa-bb-..`, `aabb.ccdd.eeff`, `aabbccddeeff`).
    pub fn new(params: &WolParams) -> Result<Self, PowerError> {
        let mac: Mac = params
            .mac_address
            .parse()
            .map_err(|e| PowerError::invalid("mac_address", e))?;
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

    /// The machine to wake.
    pub fn mac(&self) -> Mac {
        self.mac
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
        let mac: Mac = "52:54:00:77:a0:01".parse().unwrap();
        let p = magic_packet(mac);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + 6 * i..12 + 6 * i], &mac.octets());
        }
    }

    fn wol(mac: &str) -> Result<Wol, PowerError> {
        Wol::new(&WolParams {
            mac_address: mac.into(),
            power_address: None,
        })
    }

    #[test]
    fn mac_spellings() {
        let want = Mac::new([0x52, 0x54, 0x00, 0x77, 0xa0, 0x01]);
        // Any spelling Mac parses (its own tests cover them all).
        assert_eq!(wol("5254.0077.A001").unwrap().mac(), want);
        for bad in [
            "52:54:00:77:a0",
            "52:54:00:77:a0:01:02",
            "zz:54:00:77:a0:01",
            "",
        ] {
            let e = wol(bad).unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::Config);
            assert!(e.to_string().contains("mac_address"), "{e}");
        }
    }
}
