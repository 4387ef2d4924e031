//! Boot resources: a kernel and an initrd for an architecture and a release, with their
//! checksums, imported from a directory a build script wrote (`manifest.json` beside the
//! files), kept under `<state_dir>/boot/resources/<name>/<arch>/<release>/` and recorded in
//! the store. Booting machines fetch them over boot HTTP and TFTP as
//! `resources/<name>/<arch>/<release>/<file>`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use maas_ipam::Ticket;
use maas_net::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::store::Change;
use super::{State, StateError};

/// One file of a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResourceFile {
    /// Its name in the resource's directory.
    pub(crate) file: String,
    /// SHA-256, lower-case hex.
    pub(crate) sha256: String,
    /// Bytes.
    pub(crate) size: u64,
}

/// A boot resource as the store keeps it: the ephemeral environment (a kernel and an initrd)
/// or an OS image that deployment writes to a machine's disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BootResource {
    /// `ephemeral` (the environment that commissions and deploys), or an OS (`debian`).
    pub(crate) name: String,
    /// `amd64`...
    pub(crate) arch: String,
    /// `bookworm`...
    pub(crate) release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel: Option<ResourceFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) initrd: Option<ResourceFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel_version: Option<String>,
    /// The disk image of an OS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) image: Option<DiskImage>,
    pub(crate) imported: Timestamp,
}

/// An OS image, written whole to a machine's disk (MAAS's `ddgz` kind of image).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DiskImage {
    /// The compressed image.
    pub(crate) file: ResourceFile,
    /// `raw.gz`: a raw disk image, gzip-compressed.
    pub(crate) format: String,
    /// The raw image's size: the least disk it fits.
    pub(crate) raw_size: u64,
    /// The partition holding the root file system (1-based), where deployment drops the
    /// datasource and network configuration for cloud-init.
    pub(crate) root_partition: u32,
    /// The firmware it boots on (`bios`, `uefi`).
    #[serde(default)]
    pub(crate) firmware: Vec<String>,
}

impl BootResource {
    /// `name/arch/release`: its key, and its directory under `boot/resources/`.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}/{}", self.name, self.arch, self.release)
    }

    /// The path a booting machine asks for the kernel (or the initrd) under.
    pub(crate) fn url_path(&self, file: &ResourceFile) -> String {
        format!("resources/{}/{}", self.key(), file.file)
    }

    /// Its files.
    pub(crate) fn files(&self) -> Vec<&ResourceFile> {
        self.kernel
            .iter()
            .chain(&self.initrd)
            .chain(self.image.as_ref().map(|i| &i.file))
            .collect()
    }
}

/// The directory booting machines' files are served from (TFTP and boot HTTP): it holds
/// `resources/` and nothing secret.
pub(crate) fn boot_root(state_dir: &Path) -> PathBuf {
    state_dir.join("boot")
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ImportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not what the build script writes.
    #[error("{path}: not a boot resource manifest: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest lacks something a resource needs.
    #[error("{path}: the manifest lacks {what}")]
    Incomplete {
        /// The manifest.
        path: PathBuf,
        /// What.
        what: &'static str,
    },
    /// A name in the manifest is not a plain path component.
    #[error("{field} {value:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-'")]
    Name {
        /// Which.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// A file's checksum or size is not the manifest's: the resource is refused whole.
    #[error("{file}: {what} is {got}, the manifest says {expected}: refused")]
    Mismatch {
        /// The file.
        file: String,
        /// `SHA-256` or `size`.
        what: &'static str,
        /// What the manifest says.
        expected: String,
        /// What the file has.
        got: String,
    },
}

/// What scripts/build-ephemeral.sh and scripts/build-deploy-image.sh write.
#[derive(Deserialize)]
struct Manifest {
    /// `ephemeral`, or an OS, alone or as `os/release`.
    name: String,
    arch: String,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    kernel: Option<ResourceFile>,
    #[serde(default)]
    initrd: Option<ResourceFile>,
    #[serde(default)]
    kernel_version: Option<String>,
    #[serde(default)]
    image: Option<ResourceFile>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    raw_size: Option<u64>,
    #[serde(default)]
    root_partition: Option<u32>,
    #[serde(default)]
    firmware: Vec<String>,
}

fn plain(field: &'static str, value: &str) -> Result<(), ImportError> {
    let ok = (1..=64).contains(&value.len())
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ImportError::Name {
            field,
            value: value.to_string(),
        })
    }
}

enum Refusal {
    Incomplete(&'static str),
    Named(ImportError),
}
use Refusal::{Incomplete, Named};

/// The resource a manifest describes, its names checked: a kernel and an initrd, or an
/// image (with its format, size and root partition).
fn resource_of(m: Manifest, now: Timestamp) -> Result<BootResource, Refusal> {
    let (name, release) = match (m.release, m.name.split_once('/')) {
        (Some(release), _) => (m.name.clone(), release),
        (None, Some((os, release))) => (os.to_owned(), release.to_owned()),
        (None, None) => return Err(Incomplete("release")),
    };
    plain("name", &name).map_err(Named)?;
    plain("arch", &m.arch).map_err(Named)?;
    plain("release", &release).map_err(Named)?;
    for (what, file) in [
        ("kernel file", &m.kernel),
        ("initrd file", &m.initrd),
        ("image file", &m.image),
    ] {
        if let Some(f) = file {
            plain(what, &f.file).map_err(Named)?;
        }
    }
    let image = match m.image {
        None if m.kernel.is_none() || m.initrd.is_none() => {
            return Err(Incomplete("a kernel and an initrd, or an image"));
        }
        None => None,
        Some(file) => {
            let format = m.format.unwrap_or_default();
            if format != "raw.gz" {
                return Err(Incomplete("format \"raw.gz\""));
            }
            Some(DiskImage {
                file,
                format,
                raw_size: m.raw_size.ok_or(Incomplete("raw_size"))?,
                root_partition: m
                    .root_partition
                    .filter(|p| *p > 0)
                    .ok_or(Incomplete("root_partition"))?,
                firmware: m.firmware,
            })
        }
    };
    Ok(BootResource {
        name,
        arch: m.arch,
        release,
        kernel: m.kernel,
        initrd: m.initrd,
        kernel_version: m.kernel_version,
        image,
        imported: now,
    })
}

/// Copies `from` to `to` (a new file), hashing as it goes; the hex SHA-256 and the size.
fn copy_hashing(from: &Path, to: &Path) -> Result<(String, u64), ImportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io { path, source }
    };
    let mut input = std::fs::File::open(from).map_err(io(from))?;
    let mut output = std::fs::File::create(to).map_err(io(to))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buffer).map_err(io(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).map_err(io(to))?;
        size += n as u64;
    }
    output.sync_all().map_err(io(to))?;
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((digest, size))
}

/// Reads `source/manifest.json`, copies the kernel and the initrd under `state_dir` while
/// checking each against the manifest's checksum and size, and puts them in place. Nothing
/// of a refused resource is left behind. Blocks (copies files).
pub(crate) fn import(
    state_dir: &Path,
    source: &Path,
    now: Timestamp,
) -> Result<BootResource, ImportError> {
    let manifest_path = source.join("manifest.json");
    let text = std::fs::read(&manifest_path).map_err(|e| ImportError::Io {
        path: manifest_path.clone(),
        source: e,
    })?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ImportError::Manifest {
        path: manifest_path.clone(),
        source: e,
    })?;
    let resource = resource_of(manifest, now).map_err(|e| match e {
        Incomplete(what) => ImportError::Incomplete {
            path: manifest_path.clone(),
            what,
        },
        Named(e) => e,
    })?;
    let dir = boot_root(state_dir).join("resources").join(resource.key());
    std::fs::create_dir_all(&dir).map_err(|e| ImportError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let mut staged = Vec::new();
    for file in resource.files() {
        let partial = dir.join(format!(".{}.partial", file.file));
        let result = copy_hashing(&source.join(&file.file), &partial).and_then(|(sha, size)| {
            if !sha.eq_ignore_ascii_case(&file.sha256) {
                return Err(ImportError::Mismatch {
                    file: file.file.clone(),
                    what: "SHA-256",
                    expected: file.sha256.clone(),
                    got: sha,
                });
            }
            if size != file.size {
                return Err(ImportError::Mismatch {
                    file: file.file.clone(),
                    what: "size",
                    expected: file.size.to_string(),
                    got: size.to_string(),
                });
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            for (p, _) in staged {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        staged.push((partial, dir.join(&file.file)));
    }
    for (partial, target) in staged {
        std::fs::rename(&partial, &target).map_err(|e| ImportError::Io {
            path: target.clone(),
            source: e,
        })?;
    }
    Ok(resource)
}

impl State {
    /// Records an imported resource (replacing one of the same name, arch and release).
    pub(crate) fn put_resource(&self, resource: BootResource) -> Result<Ticket, StateError> {
        self.lock()
            .resources
            .insert(resource.key(), resource.clone());
        self.commit(vec![Change::PutResource(Box::new(resource))])
    }

    /// Every boot resource, by key.
    pub(crate) fn resources(&self) -> Vec<BootResource> {
        self.lock().resources.values().cloned().collect()
    }

    /// The ephemeral environment for `arch` (the newest release imported), if any.
    pub(crate) fn ephemeral(&self, arch: &str) -> Option<BootResource> {
        self.lock()
            .resources
            .values()
            .filter(|r| {
                r.name == "ephemeral" && r.arch == arch && r.kernel.is_some() && r.initrd.is_some()
            })
            .max_by_key(|r| r.imported)
            .cloned()
    }

    /// The OS image for `arch` named `os` (and `release`, when given; else the newest
    /// imported), if any.
    pub(crate) fn os_image(
        &self,
        arch: &str,
        os: Option<&str>,
        release: Option<&str>,
    ) -> Option<BootResource> {
        self.lock()
            .resources
            .values()
            .filter(|r| {
                r.image.is_some()
                    && r.arch == arch
                    && os.is_none_or(|o| r.name == o)
                    && release.is_none_or(|v| r.release == v)
            })
            .max_by_key(|r| r.imported)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn source(dir: &Path, kernel: &[u8], claimed_kernel: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("vmlinuz"), kernel).unwrap();
        std::fs::write(dir.join("initrd.img"), b"initrd").unwrap();
        let manifest = serde_json::json!({
            "name": "ephemeral", "arch": "amd64", "release": "bookworm",
            "kernel": { "file": "vmlinuz", "sha256": sha(claimed_kernel), "size": claimed_kernel.len() },
            "initrd": { "file": "initrd.img", "sha256": sha(b"initrd"), "size": 6 },
        });
        std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    }

    #[test]
    fn a_resource_is_imported_only_when_its_checksums_match() {
        let scratch = crate::tests::Scratch::new("resources");
        let state_dir = scratch.0.join("state");
        let good = scratch.0.join("good");
        source(&good, b"kernel", b"kernel");
        let resource = import(&state_dir, &good, Timestamp(5)).unwrap();
        assert_eq!(resource.key(), "ephemeral/amd64/bookworm");
        let served =
            boot_root(&state_dir).join(resource.url_path(resource.kernel.as_ref().unwrap()));
        assert_eq!(std::fs::read(served).unwrap(), b"kernel");

        let bad = scratch.0.join("bad");
        source(&bad, b"kernel, tampered", b"kernel");
        let error = import(&state_dir, &bad, Timestamp(6)).unwrap_err();
        assert!(
            matches!(
                &error,
                ImportError::Mismatch {
                    what: "SHA-256",
                    ..
                }
            ),
            "{error}"
        );
        // What was there stays, and nothing partial is left.
        let dir = boot_root(&state_dir).join("resources/ephemeral/amd64/bookworm");
        assert_eq!(std::fs::read(dir.join("vmlinuz")).unwrap(), b"kernel");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");

        let escaping = scratch.0.join("escaping");
        source(&escaping, b"kernel", b"kernel");
        let text = std::fs::read_to_string(escaping.join("manifest.json"))
            .unwrap()
            .replace("\"bookworm\"", "\"../../etc\"");
        std::fs::write(escaping.join("manifest.json"), text).unwrap();
        assert!(matches!(
            import(&state_dir, &escaping, Timestamp(7)),
            Err(ImportError::Name { .. })
        ));
    }
}
