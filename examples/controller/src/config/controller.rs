//! `[controller]`: where state lives, what the controller listens on, how machines boot and
//! enlist, and how the API is served (`tls`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Role;

/// `[controller]`: where state lives and what the controller listens on.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControllerSection {
    /// `all` (default), `region` or `rack`; `--role` on the command line wins.
    #[serde(default)]
    pub(crate) role: Role,
    /// The state directory (IPAM store, machines); relative paths are relative to the file.
    pub(crate) state_dir: PathBuf,
    /// The HTTP JSON API (and `/metrics`).
    #[serde(default = "default_api")]
    pub(crate) api: SocketAddr,
    /// Boot files over HTTP: the iPXE scripts and the assets directory.
    #[serde(default = "default_boot_http")]
    pub(crate) boot_http: SocketAddr,
    /// The address machines reach the controller at, in URLs handed to them; default: the
    /// address of the interface a DHCP request came in on.
    #[serde(default)]
    pub(crate) advertise: Option<std::net::IpAddr>,
    /// Boot assets served over HTTP (kernels, initrds, boot loaders); relative to the file.
    #[serde(default)]
    pub(crate) boot_assets: Option<PathBuf>,
    /// The iPXE script every machine gets, with `{mac}`, `{hostname}`, `{server}` and
    /// `{status}` replaced, and `{token}`: the machine's credential for what it reports back.
    /// Absent (the default): the script MAAS's life cycle asks for (the ephemeral
    /// environment to commission, or told to power off), see the `ephemeral` module.
    #[serde(default)]
    pub(crate) ipxe_script: Option<String>,
    /// TFTP (boot loaders from `boot_assets`, per-machine pxelinux and GRUB files); off when
    /// absent. Firmware asks on port 69.
    #[serde(default)]
    pub(crate) tftp: Option<SocketAddr>,
    /// A machine's `pxelinux.cfg/01-<mac>`, with `{mac}`, `{hostname}`, `{status}` replaced;
    /// absent, as the life cycle asks.
    #[serde(default)]
    pub(crate) pxelinux_template: Option<String>,
    /// A machine's `grub/grub.cfg-<mac>`, with the same replacements; absent, as the life
    /// cycle asks.
    #[serde(default)]
    pub(crate) grub_template: Option<String>,
    /// The most machines waiting as New: an unknown machine seen booting beyond it is not
    /// enlisted (and a log line says why).
    #[serde(default = "default_enlist_max_new")]
    pub(crate) enlist_max_new: usize,
    /// The most enlistments a minute (bursts up to as many).
    #[serde(default = "default_enlist_per_minute")]
    pub(crate) enlist_per_minute: u32,
    /// Whether machines enlisted are commissioned at once (MAAS's default); otherwise they
    /// wait as New for `commission` (or `accept`).
    #[serde(default)]
    pub(crate) commission_enlisted: bool,
    /// How long a commissioning may take before the machine is marked Failed commissioning.
    #[serde(default = "default_commissioning_timeout")]
    pub(crate) commissioning_timeout_secs: u64,
    /// How long a deployment may take (power-on to the ephemeral environment's report that the
    /// image is written) before the machine is marked Failed deployment.
    #[serde(default = "default_deployment_timeout")]
    pub(crate) deployment_timeout_secs: u64,
    /// Name servers handed to deployed machines in their network configuration, besides
    /// their subnets' own.
    #[serde(default)]
    pub(crate) dns_servers: Vec<std::net::IpAddr>,
    /// HTTPS for the API: `"self-signed"`, `{ cert = "...", key = "..." }`, or `"off"`;
    /// absent, self-signed off loopback and plain on loopback.
    #[serde(default)]
    pub(crate) tls: TlsSetting,
}

fn default_commissioning_timeout() -> u64 {
    1200
}

fn default_deployment_timeout() -> u64 {
    1800
}

fn default_enlist_max_new() -> usize {
    1000
}

fn default_enlist_per_minute() -> u32 {
    120
}

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5240))
}

fn default_boot_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5248))
}

/// `[controller] tls`: how the API (and the rack endpoints) are served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) enum TlsSetting {
    /// Not set: HTTPS with a self-signed certificate when the API listens off loopback,
    /// plain HTTP on loopback.
    #[default]
    Auto,
    /// Plain HTTP, wherever the API listens (the explicit setting plain HTTP off loopback
    /// needs).
    Off,
    /// HTTPS with a certificate the controller makes on first start and keeps in its state
    /// directory (`tls/cert.pem`); its fingerprint is logged at start.
    SelfSigned,
    /// HTTPS with these PEM files (relative to the file).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl<'de> Deserialize<'de> for TlsSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Files {
            cert: PathBuf,
            key: PathBuf,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Files(Files),
        }
        match Form::deserialize(d)? {
            Form::Word(w) => match w.as_str() {
                "off" => Ok(Self::Off),
                "self-signed" => Ok(Self::SelfSigned),
                "auto" => Ok(Self::Auto),
                other => Err(serde::de::Error::custom(format!(
                    "tls {other:?}: use \"self-signed\", \"off\", or {{ cert = \"...\", key = \"...\" }}"
                ))),
            },
            Form::Files(f) => Ok(Self::Files {
                cert: f.cert,
                key: f.key,
            }),
        }
    }
}

impl ControllerSection {
    /// The TLS setting with `Auto` decided by where the API listens.
    pub(crate) fn tls(&self) -> TlsSetting {
        match &self.tls {
            TlsSetting::Auto if self.api.ip().is_loopback() => TlsSetting::Off,
            TlsSetting::Auto => TlsSetting::SelfSigned,
            other => other.clone(),
        }
    }
}
