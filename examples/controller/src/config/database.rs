//! `[database]`: a region's state in PostgreSQL instead of the embedded file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Config;

/// `[database]`: keep a region's state in PostgreSQL, shared with other regions, instead of
/// the embedded file in the state directory.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseSection {
    /// `postgresql://user:password@host:port/database`, or
    /// `postgresql://user@/database?host=/run/postgresql` for a Unix socket.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// A file holding the URL (so that the password need not be in this file); relative to
    /// this file.
    #[serde(default)]
    pub(crate) url_file: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DatabaseSection")
            .field("url", &self.url.as_ref().map(|_| "(set)"))
            .field("url_file", &self.url_file)
            .finish()
    }
}

impl Config {
    /// The PostgreSQL URL of `[database]`, if the section is there (`None`: the embedded
    /// store in the state directory). Reading `url_file` may fail.
    pub(crate) fn database_url(&self) -> Result<Option<String>, String> {
        match &self.database {
            None => Ok(None),
            Some(DatabaseSection { url: Some(url), .. }) => Ok(Some(url.clone())),
            Some(DatabaseSection {
                url_file: Some(path),
                ..
            }) => std::fs::read_to_string(path)
                .map(|text| Some(text.trim().to_owned()))
                .map_err(|e| format!("[database] url_file {}: {e}", path.display())),
            Some(_) => Err("[database] needs url or url_file".into()),
        }
    }
}
