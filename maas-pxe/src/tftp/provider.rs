//! Where served files come from: the [`FileProvider`] trait, a root directory that cannot be
//! escaped ([`RootDir`]), per-machine generated configuration ([`Generated`]) and layering
//! ([`Layered`]).

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maas_net::Mac;

use super::error::ProviderError;

/// The longest file name a provider accepts, in bytes.
pub const MAX_PATH: usize = 512;
/// The longest path component, in bytes.
pub const MAX_COMPONENT: usize = 255;

/// A file being served: its length and random-access reads of its bytes.
///
/// A [`Content::File`] is read with `pread` straight into the packet being built, so a block
/// is copied once from the page cache and never buffered whole; a [`Content::Memory`] is shared,
/// not copied, between transfers.
#[derive(Debug, Clone)]
pub enum Content {
    /// Bytes in memory (generated files, netascii conversions).
    Memory(Arc<[u8]>),
    /// An open regular file and its length when opened.
    File {
        /// The file.
        file: Arc<File>,
        /// Its length.
        len: u64,
    },
}

impl Content {
    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(b) => b.len() as u64,
            Self::File { len, .. } => *len,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset` (fewer bytes only at the end of the content).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Memory(bytes) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let n = buf.len().min(bytes.len() - start);
                buf[..n].copy_from_slice(&bytes[start..start + n]);
                Ok(n)
            }
            Self::File { file, len } => {
                let want = (buf.len() as u64).min(len.saturating_sub(offset));
                let want = usize::try_from(want).unwrap_or(buf.len());
                let mut done = 0;
                while done < want {
                    match file.read_at(&mut buf[done..want], offset + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    /// Fills `bufs` one after the other from `offset`, as one read of their total length
    /// (`preadv` for a file: one system call for a window of blocks), and returns the bytes
    /// read; fewer only at the end of the content.
    pub fn read_vectored_at(&self, offset: u64, bufs: &mut [&mut [u8]]) -> std::io::Result<usize> {
        match self {
            Self::Memory(_) => {
                let mut done = 0;
                for buf in bufs.iter_mut() {
                    let n = self.read_at(offset + done as u64, buf)?;
                    done += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Ok(done)
            }
            Self::File { file, len } => {
                // Never past the length the transfer was sized with.
                let mut room = usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX);
                let mut iov = Vec::with_capacity(bufs.len());
                for buf in bufs.iter_mut() {
                    if room == 0 {
                        break;
                    }
                    let n = buf.len().min(room);
                    room -= n;
                    iov.push(std::io::IoSliceMut::new(&mut buf[..n]));
                }
                let mut iov = &mut iov[..];
                let mut done = 0;
                // The kernel takes at most IOV_MAX (1024) buffers per call.
                while !iov.is_empty() {
                    let take = iov.len().min(1024);
                    let at = i64::try_from(offset + done as u64)
                        .map_err(|_| std::io::Error::other("offset too large"))?;
                    match nix::sys::uio::preadv(file.as_ref(), &mut iov[..take], at) {
                        Ok(0) => break,
                        Ok(n) => {
                            done += n;
                            std::io::IoSliceMut::advance_slices(&mut iov, n);
                        }
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(done)
            }
        }
    }

    /// The whole content in memory (for netascii conversion).
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()).map_err(std::io::Error::other)?;
        let mut out = vec![0; len];
        let n = self.read_at(0, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

impl From<Vec<u8>> for Content {
    fn from(v: Vec<u8>) -> Self {
        Self::Memory(v.into())
    }
}

impl From<&[u8]> for Content {
    fn from(v: &[u8]) -> Self {
        Self::Memory(v.into())
    }
}

/// Serves files by name. Implementations must be cheap to call concurrently.
pub trait FileProvider: Send + Sync {
    /// Opens `path` (the name as the client sent it) for `client`.
    fn open(&self, path: &str, client: SocketAddr) -> Result<Content, ProviderError>;
}

impl<P: FileProvider + ?Sized> FileProvider for Arc<P> {
    fn open(&self, path: &str, client: SocketAddr) -> Result<Content, ProviderError> {
        (**self).open(path, client)
    }
}

impl<P: FileProvider + ?Sized> FileProvider for Box<P> {
    fn open(&self, path: &str, client: SocketAddr) -> Result<Content, ProviderError> {
        (**self).open(path, client)
    }
}

/// The components of a requested name, checked: no `..`, no backslash, no NUL or control
/// character, no over-long name or component. Leading slashes mean the provider's root, as
/// firmware often sends `/pxelinux.0` (never the host's root); `.` and empty components are
/// skipped.
pub fn safe_components(path: &str) -> Result<Vec<&str>, ProviderError> {
    let refuse = |reason| ProviderError::Refused {
        path: path.to_string(),
        reason,
    };
    if path.len() > MAX_PATH {
        return Err(refuse("the name is too long"));
    }
    if path.contains('\\') {
        return Err(refuse("backslashes are not allowed"));
    }
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(refuse("control characters are not allowed"));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(refuse("'..' is not allowed")),
            c if c.len() > MAX_COMPONENT => return Err(refuse("a path component is too long")),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(refuse("the name is empty"));
    }
    Ok(out)
}

/// Files under one directory, which no request can leave.
///
/// The name is checked with [`safe_components`]; the file is opened, and what was actually
/// opened is checked: it must be a regular file (not a device, FIFO, socket or directory)
/// whose real path (after every symbolic link) lies under the root. Checking the opened
/// descriptor, not the name, leaves no window for a link swapped in between.
#[derive(Debug, Clone)]
pub struct RootDir {
    root: PathBuf,
}

impl RootDir {
    /// Serves files under `root` (which must exist; it is canonicalised once here).
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(Self { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FileProvider for RootDir {
    fn open(&self, path: &str, _client: SocketAddr) -> Result<Content, ProviderError> {
        let components = safe_components(path)?;
        let mut full = self.root.clone();
        full.extend(&components);
        let refuse = |reason| ProviderError::Refused {
            path: path.to_string(),
            reason,
        };
        // An upload's temporary file (see `UploadDir`) is never served half-written.
        if components
            .last()
            .is_some_and(|name| name.starts_with('.') && name.contains(UPLOAD_MARK))
        {
            return Err(refuse("an upload in progress"));
        }
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ProviderError::NotFound(path.to_string())
            } else if source.kind() == std::io::ErrorKind::PermissionDenied {
                refuse("permission denied")
            } else {
                ProviderError::Io {
                    path: path.to_string(),
                    source,
                }
            }
        };
        // Non-blocking, so that a FIFO planted under the root cannot hang the open.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK | O_NOCTTY)
            .open(&full)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let kind = meta.file_type();
        if kind.is_block_device() || kind.is_char_device() {
            return Err(refuse("device files are not served"));
        }
        if !kind.is_file() {
            return Err(refuse("not a regular file"));
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .or_else(|_| std::fs::canonicalize(&full))
            .map_err(io)?;
        if !real.starts_with(&self.root) {
            return Err(refuse("the file lies outside the root"));
        }
        Ok(Content::File {
            len: meta.len(),
            file: Arc::new(file),
        })
    }
}

/// What names an upload's temporary file, `.<name>.upload-<pid>-<serial>`.
pub(crate) const UPLOAD_MARK: &str = ".upload-";

// Linux's values (identical on every architecture Rust supports there, except a few not
// targeted here).
const O_NONBLOCK: i32 = 0o4000;
const O_NOCTTY: i32 = 0o400;

/// Which per-machine file a name asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MachineFile {
    /// `pxelinux.cfg/01-<mac>` or `pxelinux.cfg/<uuid>` (any path prefix before
    /// `pxelinux.cfg/`, as pxelinux adds its own path prefix).
    Pxelinux(MachineId),
    /// `grub/grub.cfg-<mac>` or `grub/grub.cfg-<uuid>`.
    Grub(MachineId),
}

/// How a machine is named in a per-machine file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MachineId {
    /// By its boot interface's MAC.
    Mac(Mac),
    /// By its SMBIOS UUID (lower case, with dashes).
    Uuid(String),
}

impl MachineFile {
    /// Reads a per-machine file name, `None` if `path` is not one.
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.trim_start_matches('/');
        if let Some(i) = path.rfind("pxelinux.cfg/") {
            let rest = &path[i + "pxelinux.cfg/".len()..];
            if i > 0 && !path[..i].ends_with('/') {
                return None;
            }
            if let Some(mac) = rest.strip_prefix("01-") {
                return parse_mac(mac).map(|m| Self::Pxelinux(MachineId::Mac(m)));
            }
            return parse_uuid(rest).map(|u| Self::Pxelinux(MachineId::Uuid(u)));
        }
        let rest = path.strip_prefix("grub/grub.cfg-")?;
        if let Some(mac) = parse_mac(rest) {
            return Some(Self::Grub(MachineId::Mac(mac)));
        }
        parse_uuid(rest).map(|u| Self::Grub(MachineId::Uuid(u)))
    }

    /// The machine the file is for.
    pub fn machine(&self) -> &MachineId {
        match self {
            Self::Pxelinux(id) | Self::Grub(id) => id,
        }
    }
}

fn parse_mac(s: &str) -> Option<Mac> {
    // pxelinux writes 01-aa-bb-cc-dd-ee-ff; grub writes aa:bb:cc:dd:ee:ff.
    if s.len() != 17 {
        return None;
    }
    Mac::parse(&s.replace('-', ":")).ok()
}

fn parse_uuid(s: &str) -> Option<String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lens == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()))
        .then(|| s.to_ascii_lowercase())
}

/// Per-machine configuration generated on request: a function from the file asked for (and
/// the client) to its content, `None` for a machine it does not know (then the file is not
/// found and a layered provider may serve a default).
pub struct Generated<F> {
    render: F,
}

impl<F> Generated<F>
where
    F: Fn(&MachineFile, SocketAddr) -> Option<Vec<u8>> + Send + Sync,
{
    /// A provider calling `render`.
    pub fn new(render: F) -> Self {
        Self { render }
    }
}

impl<F> std::fmt::Debug for Generated<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Generated")
    }
}

impl<F> FileProvider for Generated<F>
where
    F: Fn(&MachineFile, SocketAddr) -> Option<Vec<u8>> + Send + Sync,
{
    fn open(&self, path: &str, client: SocketAddr) -> Result<Content, ProviderError> {
        safe_components(path)?;
        let file = MachineFile::parse(path).ok_or_else(|| ProviderError::NotFound(path.into()))?;
        (self.render)(&file, client)
            .map(Content::from)
            .ok_or_else(|| ProviderError::NotFound(path.into()))
    }
}

/// Providers tried in order: the first that does not answer "not found" decides. A refusal
/// stops the search (a name refused by one layer is not tried against the next).
#[derive(Default)]
pub struct Layered {
    layers: Vec<Box<dyn FileProvider>>,
}

impl std::fmt::Debug for Layered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Layered({} layers)", self.layers.len())
    }
}

impl Layered {
    /// No layers (everything is not found).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a layer below the existing ones.
    pub fn with(mut self, layer: impl FileProvider + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
}

impl FileProvider for Layered {
    fn open(&self, path: &str, client: SocketAddr) -> Result<Content, ProviderError> {
        for layer in &self.layers {
            match layer.open(path, client) {
                Err(ProviderError::NotFound(_)) => {}
                other => return other,
            }
        }
        Err(ProviderError::NotFound(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_files() {
        let mac: Mac = "52:54:00:77:00:10".parse().unwrap();
        assert_eq!(
            MachineFile::parse("pxelinux.cfg/01-52-54-00-77-00-10"),
            Some(MachineFile::Pxelinux(MachineId::Mac(mac)))
        );
        assert_eq!(
            MachineFile::parse("/grub/grub.cfg-52:54:00:77:00:10"),
            Some(MachineFile::Grub(MachineId::Mac(mac)))
        );
        assert_eq!(
            MachineFile::parse("ppc64el/pxelinux.cfg/01-52-54-00-77-00-10"),
            Some(MachineFile::Pxelinux(MachineId::Mac(mac)))
        );
        assert_eq!(
            MachineFile::parse("pxelinux.cfg/8A3E1C2B-1111-2222-3333-444455556666"),
            Some(MachineFile::Pxelinux(MachineId::Uuid(
                "8a3e1c2b-1111-2222-3333-444455556666".into()
            )))
        );
        assert_eq!(MachineFile::parse("pxelinux.cfg/default"), None);
        assert_eq!(
            MachineFile::parse("xpxelinux.cfg/01-52-54-00-77-00-10"),
            None
        );
        assert_eq!(MachineFile::parse("grub/grub.cfg"), None);
    }

    #[test]
    fn memory_reads() {
        let c = Content::from(b"hello".to_vec());
        let mut buf = [0; 3];
        assert_eq!(c.read_at(3, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(c.read_at(99, &mut buf).unwrap(), 0);
        let (mut x, mut y) = ([0u8; 3], [0u8; 3]);
        assert_eq!(c.read_vectored_at(2, &mut [&mut x, &mut y]).unwrap(), 3);
        assert_eq!((&x, y[0]), (b"llo", 0));
    }

    #[test]
    fn file_vectored_reads_stop_at_the_recorded_length() {
        let path = std::env::temp_dir().join(format!("maas-tftp-readv-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        // The file grew after it was opened: reads stop at the length the transfer knows.
        let c = Content::File {
            file: Arc::new(File::open(&path).unwrap()),
            len: 8,
        };
        let (mut x, mut y, mut z) = ([0u8; 4], [0u8; 4], [0u8; 4]);
        assert_eq!(
            c.read_vectored_at(3, &mut [&mut x, &mut y, &mut z])
                .unwrap(),
            5
        );
        assert_eq!((&x, &y), (b"3456", b"7\0\0\0"));
        assert_eq!(c.read_vectored_at(8, &mut [&mut x]).unwrap(), 0);
        assert_eq!(c.read_vectored_at(0, &mut []).unwrap(), 0);
        std::fs::remove_file(&path).unwrap();
    }
}
