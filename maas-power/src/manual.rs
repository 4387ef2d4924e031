//! The manual driver: an operator presses the button; every call succeeds and does nothing.

use crate::driver::{BlockingPowerDriver, BootRequest};
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// Does nothing; the state is always [`PowerState::Unknown`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Manual;

impl BlockingPowerDriver for Manual {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    fn power_on(&self) -> Result<(), PowerError> {
        Ok(())
    }
    fn power_off(&self, _mode: OffMode) -> Result<(), PowerError> {
        Ok(())
    }
    fn power_cycle(&self) -> Result<(), PowerError> {
        Ok(())
    }
    fn power_query(&self) -> Result<PowerState, PowerError> {
        Ok(PowerState::Unknown)
    }
    fn set_boot_device(&self, _boot: BootRequest) -> Result<(), PowerError> {
        Ok(())
    }
}

#[cfg(feature = "tokio")]
impl crate::PowerDriver for Manual {
    fn bmc(&self) -> &str {
        "manual"
    }
    fn endpoint(&self) -> Option<String> {
        None
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }
    fn power_on(&self) -> crate::PowerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn power_off(&self, _mode: OffMode) -> crate::PowerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn power_cycle(&self) -> crate::PowerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn power_query(&self) -> crate::PowerFuture<'_, PowerState> {
        Box::pin(async { Ok(PowerState::Unknown) })
    }
    fn set_boot_device(&self, _boot: BootRequest) -> crate::PowerFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
