//! Errors of every driver, split into classes that decide whether retrying can help.

use std::time::Duration;

use crate::PowerState;

/// What kind of failure an error is; the power manager retries only [`ErrorClass::Connection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Wrong user, password, Kg or privilege: retrying would only lock the account out.
    Auth,
    /// The BMC could not be reached or did not answer in time: worth another try.
    Connection,
    /// The driver or the BMC cannot do this operation at all.
    Unsupported,
    /// The BMC understood the request and said no (a completion code, an HTTP 4xx/5xx).
    Refused,
    /// The BMC answered with something that does not follow the protocol.
    Protocol,
    /// The driver parameters are wrong (fix the configuration).
    Config,
    /// The action was accepted but the machine did not reach the expected state in time.
    Transition,
}

/// The underlying error of a [`PowerError`]: an I/O, HTTP, parse or other error value.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A power operation failed.
///
/// `Display` includes the underlying error's message, so that one line says everything;
/// it never includes a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PowerError {
    /// The BMC refused the credentials.
    #[error("{bmc}: authentication failed: {reason}")]
    Auth {
        /// The BMC's address.
        bmc: String,
        /// What the BMC said.
        reason: String,
    },
    /// The BMC could not be reached.
    #[error("{bmc}: cannot connect: {source}")]
    Connection {
        /// The BMC's address.
        bmc: String,
        /// The underlying error: an I/O or HTTP error, or a description when there is none.
        #[source]
        source: Cause,
    },
    /// The BMC did not answer in time.
    #[error("{bmc}: no answer within {after:?} (is the BMC reachable and the address right?)")]
    Timeout {
        /// The BMC's address.
        bmc: String,
        /// How long we waited.
        after: Duration,
    },
    /// The operation is not available with this driver or BMC.
    #[error("{driver}: not supported: {operation}")]
    Unsupported {
        /// The driver (or BMC) name.
        driver: String,
        /// The operation asked for.
        operation: String,
    },
    /// The BMC refused the request.
    #[error("{bmc}: the BMC refused {request}: {reason}")]
    Refused {
        /// The BMC's address.
        bmc: String,
        /// The request it refused.
        request: String,
        /// Its reason (completion code, HTTP status and message).
        reason: String,
    },
    /// The BMC's answer does not follow the protocol.
    #[error("{bmc}: protocol error: {reason}")]
    Protocol {
        /// The BMC's address.
        bmc: String,
        /// What was wrong.
        reason: String,
    },
    /// The BMC's answer could not be decoded.
    #[error("{bmc}: protocol error: {source}")]
    Malformed {
        /// The BMC's address.
        bmc: String,
        /// What the decoder found wrong.
        #[source]
        source: crate::redfish::model::ModelError,
    },
    /// The driver parameters are invalid.
    #[error("invalid power parameters: {0}")]
    Config(String),
    /// A driver parameter could not be parsed or used.
    #[error("invalid power parameters: {name}: {source}")]
    InvalidParameter {
        /// The parameter (`mac_address`, `power_on_regex`, ...) or what was built from the
        /// parameters (`HTTP client`).
        name: String,
        /// Why it was rejected.
        #[source]
        source: Cause,
    },
    /// The machine never reached the state the action should have led to.
    #[error("{bmc}: BMC never transitioned from {from} to {to} within {after:?}")]
    NeverTransitioned {
        /// The BMC's address.
        bmc: String,
        /// The state seen last.
        from: PowerState,
        /// The state expected.
        to: PowerState,
        /// How long we polled.
        after: Duration,
    },
}

impl PowerError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Auth { .. } => ErrorClass::Auth,
            Self::Connection { .. } | Self::Timeout { .. } => ErrorClass::Connection,
            Self::Unsupported { .. } => ErrorClass::Unsupported,
            Self::Refused { .. } => ErrorClass::Refused,
            Self::Protocol { .. } | Self::Malformed { .. } => ErrorClass::Protocol,
            Self::Config(_) | Self::InvalidParameter { .. } => ErrorClass::Config,
            Self::NeverTransitioned { .. } => ErrorClass::Transition,
        }
    }

    /// Whether trying the same request again may succeed: only for connection errors and
    /// timeouts, never for authentication errors (they would lock the account out).
    pub fn retryable(&self) -> bool {
        self.class() == ErrorClass::Connection
    }

    pub(crate) fn protocol(bmc: &str, reason: impl Into<String>) -> Self {
        Self::Protocol {
            bmc: bmc.to_owned(),
            reason: reason.into(),
        }
    }

    /// A connection error caused by `cause` (an error value, or text when there is none).
    pub(crate) fn connection(bmc: &str, cause: impl Into<Cause>) -> Self {
        Self::Connection {
            bmc: bmc.to_owned(),
            source: cause.into(),
        }
    }

    /// The parameter `name` was rejected because of `cause`.
    pub(crate) fn invalid(name: &str, cause: impl Into<Cause>) -> Self {
        Self::InvalidParameter {
            name: name.to_owned(),
            source: cause.into(),
        }
    }

    pub(crate) fn auth(bmc: &str, reason: impl Into<String>) -> Self {
        Self::Auth {
            bmc: bmc.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(driver: &str, operation: impl Into<String>) -> Self {
        Self::Unsupported {
            driver: driver.to_owned(),
            operation: operation.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn causes_are_sources_and_stay_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = PowerError::connection("10.0.0.1", io);
        assert_eq!(e.to_string(), "10.0.0.1: cannot connect: refused");
        let source = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            source.map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(e.retryable());

        let text = PowerError::connection("bmc", "the name has no address");
        assert_eq!(
            text.to_string(),
            "bmc: cannot connect: the name has no address"
        );

        let mac = "nope".parse::<maas_net::Mac>().unwrap_err();
        let e = PowerError::invalid("mac_address", mac.clone());
        assert!(
            e.to_string()
                .starts_with("invalid power parameters: mac_address: ")
        );
        let source = e
            .source()
            .and_then(|s| s.downcast_ref::<maas_net::ParseMacError>());
        assert_eq!(source, Some(&mac));
        assert_eq!(e.class(), ErrorClass::Config);
    }
}
