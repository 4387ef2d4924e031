//! The Redfish driver on reqwest (rustls).

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use tokio::sync::OnceCell;

use super::model::{self, System};
use super::preference;
use crate::driver::{BootDevice, BootMode, BootPersistence, BootRequest, PowerDriver, PowerFuture};
use crate::params::{RedfishAuth, RedfishParams};
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The Redfish driver.
#[derive(Debug)]
pub struct Redfish {
    params: RedfishParams,
    base: String,
    http: reqwest::Client,
    system: OnceCell<String>,
}

/// HTTP clients for Redfish drivers to share: one verifying TLS certificates, one for the
/// BMCs whose parameters opt out. Cheap to clone. Build them inside the tokio runtime that
/// runs the drivers (their pooled connections belong to it).
#[derive(Clone, Debug)]
pub struct HttpClients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
}

impl HttpClients {
    /// Clients whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, PowerError> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .use_rustls_tls()
                .danger_accept_invalid_certs(insecure)
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .build()
                .map_err(|e| PowerError::invalid("HTTP client", e))
        };
        Ok(Self {
            verified: build(false)?,
            insecure: build(true)?,
        })
    }
}

struct Auth {
    token: Option<String>,
    session: Option<String>,
}

impl Redfish {
    /// A driver for the BMC in `params` (each request times out after 20 s).
    pub fn new(params: RedfishParams) -> Result<Self, PowerError> {
        Self::with_timeout(params, Duration::from_secs(20))
    }

    /// A driver with a per-request timeout.
    pub fn with_timeout(params: RedfishParams, timeout: Duration) -> Result<Self, PowerError> {
        let clients = HttpClients::new(timeout)?;
        Self::with_clients(params, &clients)
    }

    /// A driver that shares `clients` (their connection pools, TLS configuration and
    /// timeout) with other drivers: what a process talking to many BMCs should do.
    pub fn with_clients(params: RedfishParams, clients: &HttpClients) -> Result<Self, PowerError> {
        let base = params.power_address.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(PowerError::Config(format!(
                "power_address {base:?} must be an http:// or https:// URL"
            )));
        }
        let http = if params.power_verify_ssl {
            clients.verified.clone()
        } else {
            clients.insecure.clone()
        };
        Ok(Self {
            params,
            base,
            http,
            system: OnceCell::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    fn malformed(&self, e: model::ModelError) -> PowerError {
        PowerError::Malformed {
            bmc: self.base.clone(),
            source: e,
        }
    }

    fn net_error(&self, e: reqwest::Error) -> PowerError {
        if e.is_timeout() {
            PowerError::Timeout {
                bmc: self.base.clone(),
                after: Duration::ZERO,
            }
        } else {
            PowerError::connection(&self.base, e)
        }
    }

    async fn login(&self) -> Result<Auth, PowerError> {
        if self.params.auth == RedfishAuth::Basic {
            return Ok(Auth {
                token: None,
                session: None,
            });
        }
        let body = json!({
            "UserName": self.params.power_user,
            "Password": self.params.power_pass.expose(),
        });
        let r = self
            .http
            .post(self.url("/redfish/v1/SessionService/Sessions"))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.net_error(e))?;
        let status = r.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(PowerError::auth(
                &self.base,
                format!("session login: HTTP {status}"),
            ));
        }
        if !status.is_success() {
            return Err(self.refused(
                "session login",
                status,
                &r.bytes().await.unwrap_or_default(),
            ));
        }
        let token = r
            .headers()
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                PowerError::protocol(&self.base, "session login gave no X-Auth-Token")
            })?;
        let session = r
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Auth {
            token: Some(token),
            session,
        })
    }

    async fn logout(&self, auth: Auth) {
        if let (Some(token), Some(session)) = (auth.token, auth.session) {
            // Best effort: the BMC expires idle sessions on its own.
            let _ = self
                .http
                .delete(self.url(&session))
                .header("X-Auth-Token", token)
                .send()
                .await;
        }
    }

    async fn send(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, header::HeaderMap, Vec<u8>), PowerError> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header(header::ACCEPT, "application/json");
        req = match &auth.token {
            Some(t) => req.header("X-Auth-Token", t),
            None => req.basic_auth(
                &self.params.power_user,
                Some(self.params.power_pass.expose()),
            ),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(tag) = if_match {
            req = req.header(header::IF_MATCH, tag);
        }
        let r = req.send().await.map_err(|e| self.net_error(e))?;
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.map_err(|e| self.net_error(e))?.to_vec();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(PowerError::auth(
                &self.base,
                format!("HTTP {status} for {path} (check power_user and power_pass)"),
            ));
        }
        Ok((status, headers, bytes))
    }

    fn refused(&self, what: &str, status: StatusCode, body: &[u8]) -> PowerError {
        if status == StatusCode::NOT_IMPLEMENTED {
            return PowerError::unsupported(&self.base, format!("{what} (HTTP 501)"));
        }
        PowerError::Refused {
            bmc: self.base.clone(),
            request: what.to_owned(),
            reason: match model::parse_error_message(body) {
                Some(m) => format!("HTTP {status}: {m}"),
                None => format!("HTTP {status}"),
            },
        }
    }

    async fn system_path(&self, auth: &Auth) -> Result<String, PowerError> {
        self.system
            .get_or_try_init(|| async {
                if !self.params.node_id.is_empty() {
                    return Ok(format!("/redfish/v1/Systems/{}", self.params.node_id));
                }
                let (status, _, body) = self
                    .send(auth, Method::GET, "/redfish/v1/Systems", None, None)
                    .await?;
                if !status.is_success() {
                    return Err(self.refused("GET /redfish/v1/Systems", status, &body));
                }
                model::parse_members(&body)
                    .map_err(|e| self.malformed(e))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| PowerError::protocol(&self.base, "the BMC lists no systems"))
            })
            .await
            .cloned()
    }

    async fn get_system(
        &self,
        auth: &Auth,
    ) -> Result<(String, System, Option<String>), PowerError> {
        let path = self.system_path(auth).await?;
        let (status, headers, body) = self.send(auth, Method::GET, &path, None, None).await?;
        if !status.is_success() {
            return Err(self.refused(&format!("GET {path}"), status, &body));
        }
        let system = model::parse_system(&body).map_err(|e| self.malformed(e))?;
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| system.etag.clone());
        Ok((path, system, etag))
    }

    /// Runs `f` with a logged-in session, logging out afterwards whatever happens.
    async fn with_auth<T>(
        &self,
        f: impl AsyncFnOnce(&Self, &Auth) -> Result<T, PowerError>,
    ) -> Result<T, PowerError> {
        let auth = self.login().await?;
        let r = f(self, &auth).await;
        self.logout(auth).await;
        r
    }

    async fn reset(&self, auth: &Auth, preferred: &[&str], what: &str) -> Result<(), PowerError> {
        let (path, system, _) = self.get_system(auth).await?;
        let kind = model::choose_reset_type(&system.reset_types, preferred).ok_or_else(|| {
            PowerError::unsupported(
                &self.base,
                format!(
                    "{what}: none of {preferred:?} in the BMC's allowable reset types {:?}",
                    system.reset_types
                ),
            )
        })?;
        let target = system
            .reset_target
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let (status, _, body) = self
            .send(
                auth,
                Method::POST,
                &target,
                Some(json!({ "ResetType": kind })),
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(self.refused(&format!("reset {kind}"), status, &body));
        }
        Ok(())
    }

    /// The system's current resource (power state, boot override, reset types).
    pub async fn system(&self) -> Result<System, PowerError> {
        self.with_auth(async |me, auth| me.get_system(auth).await.map(|(_, s, _)| s))
            .await
    }

    async fn boot(&self, auth: &Auth, boot: BootRequest) -> Result<(), PowerError> {
        let (path, _, etag) = self.get_system(auth).await?;
        let target = match boot.device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
            BootDevice::Cdrom => "Cd",
            BootDevice::BiosSetup => "BiosSetup",
            BootDevice::None => "None",
        };
        let enabled = match (boot.device, boot.persistence) {
            (BootDevice::None, _) => "Disabled",
            (_, BootPersistence::Once) => "Once",
            (_, BootPersistence::Persistent) => "Continuous",
        };
        let mut b = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": enabled,
        });
        let mode = match boot.mode {
            BootMode::Auto => self.params.power_boot_type,
            m => m,
        };
        match mode {
            BootMode::Efi => b["BootSourceOverrideMode"] = json!("UEFI"),
            BootMode::Legacy => b["BootSourceOverrideMode"] = json!("Legacy"),
            BootMode::Auto => {}
        }
        let if_match = etag.as_deref().filter(|_| self.params.use_etag);
        let (status, _, body) = self
            .send(
                auth,
                Method::PATCH,
                &path,
                Some(json!({ "Boot": b })),
                if_match,
            )
            .await?;
        if !status.is_success() {
            return Err(self.refused("PATCH Boot override", status, &body));
        }
        Ok(())
    }
}

impl PowerDriver for Redfish {
    fn bmc(&self) -> &str {
        &self.base
    }

    fn endpoint(&self) -> Option<String> {
        crate::driver::url_endpoint(&self.base).or_else(|| Some(self.base.clone()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        Box::pin(self.with_auth(async |me, a| me.reset(a, preference::ON, "power on").await))
    }

    fn power_off(&self, mode: OffMode) -> PowerFuture<'_, ()> {
        let (pref, what) = match mode {
            OffMode::Hard => (preference::OFF, "power off"),
            OffMode::Soft => (preference::SOFT_OFF, "soft power off"),
        };
        Box::pin(self.with_auth(async move |me, a| me.reset(a, pref, what).await))
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        Box::pin(self.with_auth(async |me, a| {
            let (_, system, _) = me.get_system(a).await?;
            if system.power == PowerState::Off {
                me.reset(a, preference::ON, "power on").await
            } else {
                me.reset(a, preference::CYCLE, "power cycle").await
            }
        }))
    }

    fn power_reset(&self) -> PowerFuture<'_, ()> {
        Box::pin(self.with_auth(async |me, a| me.reset(a, preference::RESET, "reset").await))
    }

    fn power_query(&self) -> PowerFuture<'_, PowerState> {
        Box::pin(self.with_auth(async |me, a| me.get_system(a).await.map(|(_, s, _)| s.power)))
    }

    fn set_boot_device(&self, boot: BootRequest) -> PowerFuture<'_, ()> {
        Box::pin(self.with_auth(async move |me, a| me.boot(a, boot).await))
    }
}
