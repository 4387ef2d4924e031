//! The driver vocabulary: power states, boot devices, capabilities and the driver traits.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::PowerError;

/// The power state a BMC reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// The machine is powered on.
    On,
    /// The machine is powered off.
    Off,
    /// The driver cannot tell (Wake-on-LAN, manual, an unknown Redfish state).
    Unknown,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Unknown => "unknown",
        })
    }
}

/// How to power off: MAAS's `power_off_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffMode {
    /// Cut the power at once.
    #[default]
    Hard,
    /// Ask the operating system to shut down (ACPI soft-off, GracefulShutdown).
    Soft,
}

/// The device to boot from next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BootDevice {
    /// Network boot (PXE, or UEFI HTTP/PXE in EFI mode).
    Pxe,
    /// The first hard disk.
    Disk,
    /// CD/DVD.
    Cdrom,
    /// The firmware setup screen.
    BiosSetup,
    /// Clear the override: the machine's own boot order.
    None,
}

/// Whether a boot device override applies to the next boot only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootPersistence {
    /// The next boot only (what MAAS uses before a PXE boot).
    #[default]
    Once,
    /// Every boot until changed.
    Persistent,
}

/// Firmware mode for the boot override: MAAS's `power_boot_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// Leave the firmware mode as it is.
    #[default]
    Auto,
    /// Legacy BIOS.
    Legacy,
    /// UEFI.
    Efi,
}

/// A boot device override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BootRequest {
    /// The device.
    pub device: BootDevice,
    /// Next boot only or persistent.
    #[serde(default)]
    pub persistence: BootPersistence,
    /// Firmware mode.
    #[serde(default)]
    pub mode: BootMode,
}

impl BootRequest {
    /// Network boot once, firmware mode unchanged.
    pub fn pxe_once() -> Self {
        Self {
            device: BootDevice::Pxe,
            persistence: BootPersistence::Once,
            mode: BootMode::Auto,
        }
    }
}

/// What a driver can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capabilities {
    /// `power_on` works.
    pub power_on: bool,
    /// `power_off(Hard)` works.
    pub power_off: bool,
    /// `power_off(Soft)` works.
    pub soft_off: bool,
    /// `power_cycle` works.
    pub power_cycle: bool,
    /// `power_query` can return something other than [`PowerState::Unknown`].
    pub query: bool,
    /// `set_boot_device` works.
    pub boot_device: bool,
}

impl Capabilities {
    /// Everything: IPMI and Redfish.
    pub const ALL: Self = Self {
        power_on: true,
        power_off: true,
        soft_off: true,
        power_cycle: true,
        query: true,
        boot_device: true,
    };
    /// Nothing: the manual driver.
    pub const NONE: Self = Self {
        power_on: false,
        power_off: false,
        soft_off: false,
        power_cycle: false,
        query: false,
        boot_device: false,
    };
}

/// A power action, as the power manager and the CLI name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Power on.
    On,
    /// Power off at once.
    Off,
    /// Ask the operating system to shut down.
    SoftOff,
    /// Power cycle (off, then on).
    Cycle,
    /// Hard reset of a running machine.
    Reset,
}

impl Action {
    /// The state the machine should reach after the action.
    pub fn expected(self) -> PowerState {
        match self {
            Self::On | Self::Cycle | Self::Reset => PowerState::On,
            Self::Off | Self::SoftOff => PowerState::Off,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::SoftOff => "soft power off",
            Self::Cycle => "power cycle",
            Self::Reset => "reset",
        })
    }
}

/// A power driver with blocking calls (no async runtime needed).
pub trait BlockingPowerDriver: Send + Sync {
    /// What the driver can do.
    fn capabilities(&self) -> Capabilities;
    /// Turns the machine on.
    fn power_on(&self) -> Result<(), PowerError>;
    /// Turns the machine off, at once or by asking the operating system.
    fn power_off(&self, mode: OffMode) -> Result<(), PowerError>;
    /// Power cycles the machine (turns it on if it was off).
    fn power_cycle(&self) -> Result<(), PowerError>;
    /// Hard-resets a running machine (unsupported unless the driver says otherwise).
    fn power_reset(&self) -> Result<(), PowerError> {
        Err(PowerError::unsupported("this driver", "reset"))
    }
    /// Reads the power state.
    fn power_query(&self) -> Result<PowerState, PowerError>;
    /// Sets the boot device override.
    fn set_boot_device(&self, boot: BootRequest) -> Result<(), PowerError>;

    /// Runs `action`.
    fn run(&self, action: Action) -> Result<(), PowerError> {
        match action {
            Action::On => self.power_on(),
            Action::Off => self.power_off(OffMode::Hard),
            Action::SoftOff => self.power_off(OffMode::Soft),
            Action::Cycle => self.power_cycle(),
            Action::Reset => self.power_reset(),
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::asynchronous::*;

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use super::{Action, BootRequest, Capabilities, OffMode, PowerState};
    use crate::PowerError;

    /// The future every [`PowerDriver`] method returns (boxed, so drivers can be `dyn`).
    pub type PowerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PowerError>> + Send + 'a>>;

    /// A power driver on tokio. Object safe: the power manager holds `Arc<dyn PowerDriver>`.
    pub trait PowerDriver: Send + Sync {
        /// The BMC's address, for errors and logs.
        fn bmc(&self) -> &str;
        /// The BMC endpoint this driver talks to, normalised so that every driver of the
        /// machines behind one BMC (a chassis, a Redfish system collection) returns the same
        /// key: `host:port` for IPMI, `scheme://host:port` for HTTP drivers. `None` when there
        /// is no BMC to protect (Wake-on-LAN, manual). The power manager sends one command at
        /// a time to each endpoint.
        ///
        /// The default is [`bmc`](Self::bmc), which serialises every driver reporting the
        /// same address.
        fn endpoint(&self) -> Option<String> {
            Some(self.bmc().to_owned())
        }
        /// What the driver can do.
        fn capabilities(&self) -> Capabilities;
        /// Turns the machine on.
        fn power_on(&self) -> PowerFuture<'_, ()>;
        /// Turns the machine off, at once or by asking the operating system.
        fn power_off(&self, mode: OffMode) -> PowerFuture<'_, ()>;
        /// Power cycles the machine (turns it on if it was off).
        fn power_cycle(&self) -> PowerFuture<'_, ()>;
        /// Hard-resets a running machine (unsupported unless the driver says otherwise).
        fn power_reset(&self) -> PowerFuture<'_, ()> {
            let bmc = self.bmc().to_owned();
            Box::pin(async move { Err(PowerError::unsupported(&bmc, "reset")) })
        }
        /// Reads the power state.
        fn power_query(&self) -> PowerFuture<'_, PowerState>;
        /// Sets the boot device override.
        fn set_boot_device(&self, boot: BootRequest) -> PowerFuture<'_, ()>;

        /// Runs `action`.
        fn run(&self, action: Action) -> PowerFuture<'_, ()> {
            match action {
                Action::On => self.power_on(),
                Action::Off => self.power_off(OffMode::Hard),
                Action::SoftOff => self.power_off(OffMode::Soft),
                Action::Cycle => self.power_cycle(),
                Action::Reset => self.power_reset(),
            }
        }
    }

    /// The endpoint key of an HTTP(S) URL: `scheme://host:port`, the port made explicit and
    /// the host lower-cased; `None` when `url` does not parse or has no host.
    pub(crate) fn url_endpoint(url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        Some(format!("{}://{host}:{port}", url.scheme()))
    }

    /// The blocking form of any async driver: each call runs on a private current-thread
    /// runtime. Do not call it from inside a tokio runtime.
    pub struct Blocking<D: ?Sized> {
        driver: Arc<D>,
        runtime: tokio::runtime::Runtime,
    }

    impl<D: PowerDriver + ?Sized> Blocking<D> {
        /// Wraps `driver`.
        pub fn new(driver: Arc<D>) -> std::io::Result<Self> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(Self { driver, runtime })
        }
    }

    impl<D: PowerDriver + ?Sized> super::BlockingPowerDriver for Blocking<D> {
        fn capabilities(&self) -> Capabilities {
            self.driver.capabilities()
        }
        fn power_on(&self) -> Result<(), PowerError> {
            self.runtime.block_on(self.driver.power_on())
        }
        fn power_off(&self, mode: OffMode) -> Result<(), PowerError> {
            self.runtime.block_on(self.driver.power_off(mode))
        }
        fn power_cycle(&self) -> Result<(), PowerError> {
            self.runtime.block_on(self.driver.power_cycle())
        }
        fn power_reset(&self) -> Result<(), PowerError> {
            self.runtime.block_on(self.driver.power_reset())
        }
        fn power_query(&self) -> Result<PowerState, PowerError> {
            self.runtime.block_on(self.driver.power_query())
        }
        fn set_boot_device(&self, boot: BootRequest) -> Result<(), PowerError> {
            self.runtime.block_on(self.driver.set_boot_device(boot))
        }
    }
}

#[cfg(test)]
#[cfg(feature = "tokio")]
mod tests {
    use crate::params::DriverParams;

    fn endpoint(params: serde_json::Value) -> Option<String> {
        let params: DriverParams = serde_json::from_value(params).unwrap();
        crate::build(&params).unwrap().endpoint()
    }

    #[tokio::test]
    async fn endpoints_name_the_bmc_whatever_the_spelling() {
        let ipmi = |a: &str| {
            endpoint(
                serde_json::json!({"power_type": "ipmi", "power_address": a, "power_pass": "p"}),
            )
        };
        assert_eq!(ipmi("BMC.example").as_deref(), Some("bmc.example:623"));
        assert_eq!(ipmi("bmc.example:623"), ipmi("BMC.example"));
        assert_ne!(ipmi("10.0.0.1:624"), ipmi("10.0.0.1"));
        assert_eq!(ipmi("[fe80::1]:623").as_deref(), Some("[fe80::1]:623"));
        assert_eq!(ipmi("fe80::1"), ipmi("[fe80::1]:623"));

        let redfish =
            |a: &str| endpoint(serde_json::json!({"power_type": "redfish", "power_address": a}));
        assert_eq!(
            redfish("https://BMC.example/").as_deref(),
            Some("https://bmc.example:443")
        );
        assert_eq!(
            redfish("https://bmc.example:443"),
            redfish("https://bmc.example")
        );
        assert_ne!(
            redfish("http://bmc.example"),
            redfish("https://bmc.example")
        );

        let webhook = endpoint(serde_json::json!({
            "power_type": "webhook",
            "power_on_uri": "http://hooks.example:8080/on",
            "power_off_uri": "http://hooks.example:8080/off",
        }));
        assert_eq!(webhook.as_deref(), Some("http://hooks.example:8080"));

        let wol =
            endpoint(serde_json::json!({"power_type": "wol", "mac_address": "52:54:00:77:a0:01"}));
        assert_eq!(wol, None);
        assert_eq!(endpoint(serde_json::json!({"power_type": "manual"})), None);
    }
}
