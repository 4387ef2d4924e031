//! Boot resources from the regions: downloaded into the rack's state directory, checked
//! against their SHA-256, and recorded.

use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use hyper::body::Bytes;

use super::{Region, RegionError, unreachable};
use crate::state::State;

impl Region {
    /// Downloads `path` from the regions into `to` (a new file), checking its SHA-256
    /// against `sha256`; nothing is left at `to` when it does not match.
    async fn download(
        &self,
        path: &str,
        to: &std::path::Path,
        sha256: &str,
    ) -> Result<(), RegionError> {
        self.with_failover(|base| async move { self.download_from(&base, path, to, sha256).await })
            .await
    }

    /// [`download`](Self::download) from region `base`.
    async fn download_from(
        &self,
        base: &str,
        path: &str,
        to: &std::path::Path,
        sha256: &str,
    ) -> Result<(), RegionError> {
        use sha2::Digest as _;
        use std::io::Write as _;
        let uri = format!("{base}{path}");
        let credential = self
            .credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        let request = self
            .request(Method::GET, &uri, &credential)
            .body(Full::new(Bytes::new()))
            .map_err(|source| RegionError::Request {
                uri: uri.clone(),
                source,
            })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|source| unreachable(&uri, source))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegionError::Refused {
                uri,
                status,
                message: "the boot resource could not be fetched".into(),
            });
        }
        let failed = |source| RegionError::File {
            path: to.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::create(to).map_err(failed)?;
        let mut hasher = sha2::Sha256::new();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| RegionError::Body {
                uri: uri.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).map_err(failed)?;
            }
        }
        file.sync_all().map_err(failed)?;
        let got: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !got.eq_ignore_ascii_case(sha256) {
            let _ = std::fs::remove_file(to);
            return Err(RegionError::Invalid {
                what: "boot resource",
                message: format!("{path}: SHA-256 {got}, the region says {sha256}"),
            });
        }
        Ok(())
    }

    /// Fetches the boot resources this rack lacks (or holds another version of) into its
    /// state directory, checked, and records them.
    pub(crate) async fn sync_resources(
        &self,
        state: &State,
        state_dir: &std::path::Path,
        wanted: Vec<crate::state::resources::BootResource>,
    ) -> Result<(), RegionError> {
        let held = state.resources();
        for resource in wanted {
            if held.contains(&resource) {
                continue;
            }
            let dir = crate::state::resources::boot_root(state_dir)
                .join("resources")
                .join(resource.key());
            std::fs::create_dir_all(&dir).map_err(|source| RegionError::File {
                path: dir.clone(),
                source,
            })?;
            for file in resource.files() {
                let target = dir.join(&file.file);
                let partial = dir.join(format!(".{}.partial", file.file));
                self.download(
                    &format!("/api/v1/rack/{}", resource.url_path(file)),
                    &partial,
                    &file.sha256,
                )
                .await?;
                std::fs::rename(&partial, &target).map_err(|source| RegionError::File {
                    path: target.clone(),
                    source,
                })?;
            }
            let ticket = state.put_resource(resource.clone())?;
            state.durable(ticket).await?;
            tracing::info!(event = "boot_resource_synced", resource = resource.key());
        }
        Ok(())
    }
}
