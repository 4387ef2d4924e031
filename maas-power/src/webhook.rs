//! The webhook driver: POST to a URI to power on or off, GET a URI and match its body
//! against regular expressions to query, with basic or bearer-token authentication.

use std::time::Duration;

use regex::Regex;
use reqwest::StatusCode;

use crate::driver::{BootRequest, PowerDriver, PowerFuture};
use crate::params::WebhookParams;
use crate::{Capabilities, OffMode, PowerError, PowerState};

/// The webhook driver.
#[derive(Debug)]
pub struct Webhook {
    params: WebhookParams,
    on: Regex,
    off: Regex,
    http: reqwest::Client,
}

impl Webhook {
    /// A driver from MAAS-style parameters (each request times out after 20 s).
    pub fn new(params: WebhookParams) -> Result<Self, PowerError> {
        let compile = |name: &str, r: &str| Regex::new(r).map_err(|e| PowerError::invalid(name, e));
        let on = compile("power_on_regex", &params.power_on_regex)?;
        let off = compile("power_off_regex", &params.power_off_regex)?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(!params.power_verify_ssl)
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| PowerError::invalid("HTTP client", e))?;
        Ok(Self {
            params,
            on,
            off,
            http,
        })
    }

    /// The state a query body means: `power_on_regex` first, then `power_off_regex`.
    pub fn classify(&self, body: &str) -> PowerState {
        if self.on.is_match(body) {
            PowerState::On
        } else if self.off.is_match(body) {
            PowerState::Off
        } else {
            PowerState::Unknown
        }
    }

    async fn call(&self, post: bool, uri: &str) -> Result<String, PowerError> {
        if uri.is_empty() {
            return Err(PowerError::unsupported(
                "webhook",
                "an operation with no URI configured",
            ));
        }
        let mut req = if post {
            self.http.post(uri)
        } else {
            self.http.get(uri)
        };
        if !self.params.power_token.is_empty() {
            req = req.bearer_auth(self.params.power_token.expose());
        } else if !self.params.power_user.is_empty() {
            req = req.basic_auth(
                &self.params.power_user,
                Some(self.params.power_pass.expose()),
            );
        }
        let r = req.send().await.map_err(|e| {
            if e.is_timeout() {
                PowerError::Timeout {
                    bmc: uri.to_owned(),
                    after: Duration::from_secs(20),
                }
            } else {
                PowerError::connection(uri, e)
            }
        })?;
        let status = r.status();
        let body = r.text().await.map_err(|e| PowerError::connection(uri, e))?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(PowerError::auth(uri, format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(PowerError::Refused {
                bmc: uri.to_owned(),
                request: if post { "POST" } else { "GET" }.to_owned(),
                reason: format!("HTTP {status}"),
            });
        }
        Ok(body)
    }
}

impl PowerDriver for Webhook {
    fn bmc(&self) -> &str {
        &self.params.power_on_uri
    }

    /// The endpoint of the first configured URI (power on, then off, then query).
    fn endpoint(&self) -> Option<String> {
        let p = &self.params;
        let uri = [&p.power_on_uri, &p.power_off_uri, &p.power_query_uri]
            .into_iter()
            .find(|u| !u.is_empty())?;
        crate::driver::url_endpoint(uri).or_else(|| Some(uri.clone()))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            power_on: true,
            power_off: true,
            soft_off: false,
            power_cycle: true,
            query: !self.params.power_query_uri.is_empty(),
            boot_device: false,
        }
    }

    fn power_on(&self) -> PowerFuture<'_, ()> {
        Box::pin(async move { self.call(true, &self.params.power_on_uri).await.map(|_| ()) })
    }

    fn power_off(&self, _mode: OffMode) -> PowerFuture<'_, ()> {
        Box::pin(async move {
            self.call(true, &self.params.power_off_uri)
                .await
                .map(|_| ())
        })
    }

    fn power_cycle(&self) -> PowerFuture<'_, ()> {
        Box::pin(async move {
            self.call(true, &self.params.power_off_uri).await?;
            self.call(true, &self.params.power_on_uri).await.map(|_| ())
        })
    }

    fn power_query(&self) -> PowerFuture<'_, PowerState> {
        Box::pin(async move {
            if self.params.power_query_uri.is_empty() {
                return Ok(PowerState::Unknown);
            }
            let body = self.call(false, &self.params.power_query_uri).await?;
            Ok(self.classify(&body))
        })
    }

    fn set_boot_device(&self, _boot: BootRequest) -> PowerFuture<'_, ()> {
        Box::pin(async { Err(PowerError::unsupported("webhook", "boot device")) })
    }
}
