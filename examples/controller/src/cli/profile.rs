//! The profile `cli login` writes and every later command reads: the API's URL, the token
//! and the CA file to trust, kept with mode 0600.

/// What `cli login` keeps.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Profile {
    pub(super) api: Option<String>,
    pub(super) token: Option<String>,
    pub(super) ca: Option<std::path::PathBuf>,
    pub(super) fingerprint: Option<String>,
}

/// Where the profile lives.
pub(super) fn profile_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("MAAS_PROFILE") {
        return Some(p.into());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")))?;
    Some(config.join("maas-controller").join("profile.json"))
}

/// The profile, or an empty one when there is none or it is unreadable.
pub(super) fn read_profile() -> Profile {
    profile_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Replaces the profile (mode 0600); where it was written.
pub(super) fn write_profile(profile: &Profile) -> Result<std::path::PathBuf, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = profile_path().ok_or("no profile location: set MAAS_PROFILE or HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let text = serde_json::to_vec_pretty(profile).map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
