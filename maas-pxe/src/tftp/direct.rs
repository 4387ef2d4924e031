//! DATA packets sent with no copy in user space: each payload is gathered by the kernel
//! straight from the content (a read-only shared mapping of the file, or the shared bytes of
//! a generated file) next to its 4-byte header, one `sendmsg` with UDP segmentation offload
//! per 64 KB, or one `sendmmsg` for a batch when segments do not fit the path.
//!
//! One of the crate's two modules with `unsafe` code: `mmap`/`munmap`, and `sendmsg`
//! and `sendmmsg` with iovecs that point into the mapping, which no safe wrapper can take
//! (a Rust slice of the mapping is never made). The mapping is never read in user space: if
//! the file shrinks under a transfer, the kernel's copy fails with `EFAULT`, which the caller
//! answers by falling back to reading the file, instead of the process taking a `SIGBUS`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::provider::Content;
use super::server::DataBlock;

/// Files at least this long are mapped for direct sends; shorter ones are read as before
/// (a mapping costs two system calls and a page-table update of its own).
pub(crate) const MAP_MIN: u64 = 1 << 20;

/// A transfer's content as one address range for the kernel to read from.
pub(crate) struct Source {
    base: *const u8,
    len: usize,
    owner: Owner,
}

enum Owner {
    /// A mapping made here, unmapped on drop.
    Map,
    /// Shared bytes, kept alive while the source is.
    Memory(#[allow(dead_code)] Arc<[u8]>),
}

// SAFETY: the range is read-only and only ever handed to the kernel; its owner (a mapping this
// value alone unmaps, or an `Arc` of immutable bytes) may move between threads.
unsafe impl Send for Source {}
// SAFETY: as above; nothing here is mutated through a shared reference.
unsafe impl Sync for Source {}

impl Drop for Source {
    fn drop(&mut self) {
        if matches!(self.owner, Owner::Map) {
            // SAFETY: `base` and `len` are exactly what mmap returned and was asked for, and
            // nothing refers to the range once the source is dropped.
            unsafe {
                libc::munmap(self.base.cast_mut().cast(), self.len);
            }
        }
    }
}

impl Source {
    /// The source for `content`: shared memory as it is, a file of at least [`MAP_MIN`]
    /// bytes mapped read-only. `None` when the content is a short file or cannot be mapped
    /// (the caller then reads it).
    pub(crate) fn of(content: &Content) -> Option<Self> {
        match content {
            Content::Memory(bytes) => Some(Self {
                base: bytes.as_ptr(),
                len: bytes.len(),
                owner: Owner::Memory(Arc::clone(bytes)),
            }),
            Content::File { file, len } => {
                if *len < MAP_MIN {
                    return None;
                }
                let len = usize::try_from(*len).ok()?;
                // SAFETY: a new read-only shared mapping chosen by the kernel; the file
                // descriptor is valid for the call (the mapping outlives it by design).
                let base = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        file.as_raw_fd(),
                        0,
                    )
                };
                if base == libc::MAP_FAILED {
                    return None;
                }
                Some(Self {
                    base: base.cast_const().cast(),
                    len,
                    owner: Owner::Map,
                })
            }
        }
    }

    /// The iovecs of `blocks`: header, then payload, for each. `None` if a payload lies
    /// outside the source (it cannot, the blocks being cut from the same content's length,
    /// but the kernel must never be handed such a range).
    fn iovecs(&self, blocks: &[DataBlock], out: &mut Vec<libc::iovec>) -> Option<()> {
        out.clear();
        for b in blocks {
            let start = usize::try_from(b.offset).ok()?;
            if start.checked_add(b.len)? > self.len {
                return None;
            }
            out.push(libc::iovec {
                iov_base: b.header.as_ptr().cast_mut().cast(),
                iov_len: b.header.len(),
            });
            out.push(libc::iovec {
                // SAFETY: `start + len <= self.len`, checked above: inside the range.
                iov_base: unsafe { self.base.add(start) }.cast_mut().cast(),
                iov_len: b.len,
            });
        }
        Some(())
    }

    /// Sends `blocks` as one UDP datagram cut by the kernel into `segment`-byte datagrams
    /// (each block's header and payload is one segment; all but the last are full), to `to`
    /// or, when `None`, on a connected socket's peer. Returns the bytes sent.
    pub(crate) fn send_segmented(
        &self,
        socket: &impl AsRawFd,
        to: Option<&socket2::SockAddr>,
        blocks: &[DataBlock],
        segment: u16,
        scratch: &mut Scratch,
    ) -> io::Result<usize> {
        let iov = &mut scratch.iov;
        self.iovecs(blocks, iov)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // Room for one control message carrying a u16, aligned as cmsghdr wants.
        let mut control = [0u64; 4];
        // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        address(&mut msg, to);
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
        // SAFETY: msg_control points at `control`, large enough for one cmsghdr and a u16
        // (CMSG_SPACE(2) <= 32 bytes), so the first header and its data lie inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&raw const msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
        }
        // SAFETY: every iovec points at a live header in `blocks` or inside the source's
        // range; the kernel only reads them.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Sends `blocks` one datagram each in one `sendmmsg`, to `to` or, when `None`, on a
    /// connected socket's peer. Returns how many went (at least one, or an error).
    pub(crate) fn send_each(
        &self,
        socket: &impl AsRawFd,
        to: Option<&socket2::SockAddr>,
        blocks: &[DataBlock],
        scratch: &mut Scratch,
    ) -> io::Result<usize> {
        let Scratch { iov, headers } = scratch;
        let blocks = &blocks[..blocks.len().min(1024)];
        self.iovecs(blocks, iov)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        headers.clear();
        for pair in iov.chunks_exact_mut(2) {
            // SAFETY: an all-zero mmsghdr is valid (no name, no iovecs, no control).
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = pair.as_mut_ptr();
            h.msg_hdr.msg_iovlen = 2;
            address(&mut h.msg_hdr, to);
            headers.push(h);
        }
        let count = u32::try_from(headers.len()).unwrap_or(1024);
        // SAFETY: each header's iovecs point at a live header in `blocks` or inside the
        // source's range; the kernel only reads them and writes `msg_len`.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// The files mapped lately, kept mapped for the next transfers of the same file (hundreds of
/// machines fetch the same kernel and initrd): mapping a file and unmapping it cost as much as
/// copying it once. A file is known by device, inode, size and modification time, so a file
/// replaced or rewritten gets a new mapping, and a kept mapping of a file since deleted or
/// changed is let go at the next lookup; at most `capacity` files, the least recently used
/// unmapped first (once no transfer holds them).
pub(crate) struct MapCache {
    capacity: usize,
    entries: std::sync::Mutex<Vec<Entry>>,
    clock: std::sync::atomic::AtomicU64,
}

struct Entry {
    key: FileKey,
    /// The file, to notice when it is deleted or changed while mapped.
    file: Arc<std::fs::File>,
    source: Arc<Source>,
    used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl MapCache {
    /// A cache of at most `capacity` mapped files (0: nothing is kept).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: std::sync::Mutex::default(),
            clock: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The source for `content`: see [`Source::of`]; a file's mapping is shared and kept.
    pub(crate) fn source(&self, content: &Content) -> Option<Arc<Source>> {
        let Content::File { file, len } = content else {
            return Source::of(content).map(Arc::new);
        };
        if *len < MAP_MIN {
            return None;
        }
        let key = FileKey::of(file, *len)?;
        let now = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A file deleted or changed since it was mapped is let go at once: a kept mapping
        // would keep a deleted file's blocks allocated on disk.
        entries.retain(|e| FileKey::of(&e.file, e.key.size) == Some(e.key));
        if let Some(e) = entries.iter_mut().find(|e| e.key == key) {
            e.used = now;
            return Some(Arc::clone(&e.source));
        }
        let source = Arc::new(Source::of(content)?);
        if self.capacity > 0 {
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(i, _)| i)
            {
                // Unmapped once the transfers still using it end.
                entries.swap_remove(oldest);
            }
            entries.push(Entry {
                key,
                file: Arc::clone(file),
                source: Arc::clone(&source),
                used: now,
            });
        }
        Some(source)
    }
}

impl FileKey {
    /// The key of an open file served as `size` bytes; `None` once it is deleted or when
    /// it cannot be examined.
    fn of(file: &std::fs::File, size: u64) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        if m.nlink() == 0 || m.len() != size {
            return None;
        }
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            size,
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// Points `msg` at the destination `to`, if any (the kernel only reads it).
fn address(msg: &mut libc::msghdr, to: Option<&socket2::SockAddr>) {
    if let Some(to) = to {
        msg.msg_name = to.as_ptr().cast_mut().cast();
        msg.msg_namelen = to.len();
    }
}

/// Reusable room for the system calls' iovecs and message headers. Their pointers are only
/// meaningful during a call, and rewritten before the next.
#[derive(Default)]
pub(crate) struct Scratch {
    iov: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the vectors' raw pointers are never dereferenced outside the system call they were
// written for, so moving them to another thread carries nothing across.
unsafe impl Send for Scratch {}
// SAFETY: as above; shared references to it give no access to the pointers.
unsafe impl Sync for Scratch {}

/// `UDP_SEGMENT` (linux/udp.h), which the libc crate defines only for some targets.
const UDP_SEGMENT: libc::c_int = 103;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_files_are_not_mapped_and_ranges_are_checked() {
        let path = std::env::temp_dir().join(format!("maas-tftp-direct-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let short = Content::File {
            file: Arc::clone(&file),
            len: 4096,
        };
        assert!(Source::of(&short).is_none());
        // Mapped as if long: the mapping covers the recorded length.
        let long = Content::File { file, len: MAP_MIN };
        let src = Source::of(&long).unwrap();
        let mut iov = Vec::new();
        let inside = DataBlock {
            header: [0, 3, 0, 1],
            offset: MAP_MIN - 10,
            len: 10,
        };
        assert!(src.iovecs(&[inside], &mut iov).is_some());
        assert_eq!(iov.len(), 2);
        let outside = DataBlock { len: 11, ..inside };
        assert!(src.iovecs(&[outside], &mut iov).is_none());
        let far = DataBlock {
            offset: u64::MAX,
            ..inside
        };
        assert!(src.iovecs(&[far], &mut iov).is_none());
        drop(src);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn mappings_are_shared_until_the_file_changes_and_evicted_oldest_first() {
        let dir = std::env::temp_dir().join(format!("maas-tftp-maps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = |name: &str| {
            let file = std::fs::File::open(dir.join(name)).unwrap();
            let len = file.metadata().unwrap().len();
            Content::File {
                file: Arc::new(file),
                len,
            }
        };
        for name in ["a", "b", "c"] {
            std::fs::write(dir.join(name), vec![1u8; MAP_MIN as usize]).unwrap();
        }
        let cache = MapCache::new(2);
        let a1 = cache.source(&open("a")).unwrap();
        let a2 = cache.source(&open("a")).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2), "the same file is mapped once");
        // Replaced (a new inode): a new mapping.
        std::fs::write(dir.join("a.new"), vec![2u8; MAP_MIN as usize + 1]).unwrap();
        std::fs::rename(dir.join("a.new"), dir.join("a")).unwrap();
        let a3 = cache.source(&open("a")).unwrap();
        assert!(!Arc::ptr_eq(&a1, &a3));
        assert_eq!(a3.len, MAP_MIN as usize + 1);
        // Capacity 2: "b" then "c" push out the least recently used.
        let b1 = cache.source(&open("b")).unwrap();
        let _ = cache.source(&open("a")).unwrap();
        let _ = cache.source(&open("c")).unwrap();
        let b2 = cache.source(&open("b")).unwrap();
        assert!(!Arc::ptr_eq(&b1, &b2), "b was evicted");
        // A deleted file's mapping is not kept.
        let c1 = cache.source(&open("c")).unwrap();
        let weak = Arc::downgrade(&c1);
        drop(c1);
        std::fs::remove_file(dir.join("c")).unwrap();
        std::fs::write(dir.join("c"), vec![3u8; MAP_MIN as usize]).unwrap();
        let _ = cache.source(&open("b")).unwrap();
        assert!(weak.upgrade().is_none(), "the deleted file is still mapped");
        // Short files and a cache of 0 keep nothing.
        std::fs::write(dir.join("small"), b"x").unwrap();
        assert!(cache.source(&open("small")).is_none());
        let none = MapCache::new(0);
        let x = none.source(&open("c")).unwrap();
        assert!(!Arc::ptr_eq(&x, &none.source(&open("c")).unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
