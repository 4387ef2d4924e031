//! A TFTP client: reads one file, or the same file many times at once (a load generator).
//!
//! ```text
//! cargo run --release --example tftp --features tftpd -- --server 10.77.100.1:69 \
//!     --get pxelinux.0 --out pxelinux.0 --blksize 1468 --windowsize 16 --tsize
//! ```
//!
//! Prints one JSON object on stdout: `{"event":"done","files":N,"failed":N,"bytes":N,
//! "seconds":S,"mb_per_s":R,...}` (and the first errors). Exits with status 1 when a transfer
//! failed, 2 on a command-line error.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use maas_pxe::tftp::service::{fetch_chunks, fetch_to};
use maas_pxe::tftp::{ClientConfig, Mode};

const USAGE: &str = "\
A TFTP client (RFC 1350, 2347, 2348, 2349, 7440).

Usage:
  tftp --server ADDR:PORT --get FILE [OPTIONS]

Options:
  --server ADDR:PORT    The server (port 69 unless given).
  --get FILE            The file to read.
  --out PATH            Where to write it, as it arrives (the first transfer; default: discard).
  --blksize N           Ask for this block size.
  --windowsize N        Ask for this window.
  --rcvbuf BYTES        The socket receive buffer to ask for, as SO_RCVBUF takes it (Linux
                        doubles it; default 8388608).
  --crc32               Instead of writing the first transfer's bytes, print their CRC-32
                        (IEEE, as zlib's) in the summary's crc32 field: a check that costs the
                        receiver far less than storing the file.
  --tsize               Ask for the size.
  --netascii            Netascii mode (default octet).
  --repeat N            Read the file N times (default 1).
  --concurrency N       With --repeat: this many transfers at once (default 1).
";

/// A file written by a thread of its own, so storing a chunk overlaps receiving the next:
/// the receiving task hands over the client's own buffers (about 1 MiB each) and takes back
/// written ones, copying nothing itself.
struct WriteBehind {
    full: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    writer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

const CHUNK: usize = 1 << 20;

impl WriteBehind {
    fn new(mut file: std::fs::File) -> Self {
        let (full, to_write) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (recycle, empty) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let writer = std::thread::spawn(move || {
            for chunk in to_write {
                file.write_all(&chunk)?;
                let _ = recycle.try_send(chunk);
            }
            file.flush()
        });
        Self {
            full: Some(full),
            empty,
            writer: Some(writer),
        }
    }

    /// Queues `chunk` for writing and returns a written buffer to fill next (or a new one).
    fn store(&mut self, chunk: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let sent = self.full.as_ref().map(|tx| tx.send(chunk));
        if matches!(sent, Some(Ok(()))) {
            Ok(self.empty.try_recv().unwrap_or_default())
        } else {
            // The writer stopped: its error comes out of `finish`.
            Err(self
                .finish()
                .err()
                .unwrap_or_else(|| std::io::Error::other("writer stopped")))
        }
    }

    /// Waits for the writer to write what it was given.
    fn finish(&mut self) -> std::io::Result<()> {
        self.full = None;
        match self.writer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("writer panicked"))),
            None => Ok(()),
        }
    }
}

/// The bytes' CRC-32, for `--crc32`.
struct Crc32(crc32fast::Hasher);

impl Write for Crc32 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mut server = None;
    let mut file = None;
    let mut out = None;
    let mut crc = false;
    let mut config = ClientConfig::default();
    let (mut repeat, mut concurrency) = (1usize, 1usize);
    let mut it = args.into_iter();
    let parsed: Result<(), String> = (|| {
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let num = |v: String| -> Result<u64, String> {
                v.parse().map_err(|_| format!("{v:?} is not a number"))
            };
            match flag.as_str() {
                "--server" => {
                    let v = value()?;
                    let v = if v.contains(':') && !v.starts_with('[') && v.matches(':').count() == 1
                        || v.starts_with('[')
                    {
                        v
                    } else {
                        format!("{v}:69")
                    };
                    server = Some(
                        v.parse::<SocketAddr>()
                            .map_err(|_| format!("--server {v:?} is not an ADDR:PORT"))?,
                    );
                }
                "--get" => file = Some(value()?),
                "--out" => out = Some(value()?),
                "--crc32" => crc = true,
                "--blksize" => {
                    config.blksize(u16::try_from(num(value()?)?).map_err(|e| e.to_string())?);
                }
                "--windowsize" => {
                    config.windowsize(u16::try_from(num(value()?)?).map_err(|e| e.to_string())?);
                }
                "--rcvbuf" => config.recv_buffer = num(value()?)? as usize,
                "--tsize" => {
                    config.tsize(true);
                }
                "--netascii" => {
                    config.mode(Mode::Netascii);
                }
                "--repeat" => repeat = num(value()?)?.max(1) as usize,
                "--concurrency" => concurrency = num(value()?)?.max(1) as usize,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(())
    })();
    let (Ok(()), Some(server), Some(file)) = (parsed.clone(), server, file) else {
        eprintln!(
            "tftp: {}\n\n{USAGE}",
            parsed
                .err()
                .unwrap_or_else(|| "--server and --get are required".into())
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tftp: {e}");
            return ExitCode::from(1);
        }
    };
    if crc && out.is_some() {
        eprintln!("tftp: --crc32 and --out exclude each other\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let out = out.map(Arc::new);
    let digest = Arc::new(std::sync::Mutex::new(None::<u32>));
    let results = runtime.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(repeat);
        for i in 0..repeat {
            let (file, config, limit) = (file.clone(), config.clone(), Arc::clone(&limit));
            // The first transfer streams into --out as it arrives; the others are counted.
            let out = out.clone().filter(|_| i == 0);
            let digest = (crc && i == 0).then(|| Arc::clone(&digest));
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                if let Some(digest) = digest {
                    let mut sum = Crc32(crc32fast::Hasher::new());
                    let n = fetch_to(server, &file, config, &mut sum)
                        .await
                        .map_err(|e| e.to_string())?;
                    *digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(sum.0.finalize());
                    return Ok(n);
                }
                match out {
                    Some(path) => {
                        let f = std::fs::File::create(path.as_str())
                            .map_err(|e| format!("cannot write {path}: {e}"))?;
                        let mut w = WriteBehind::new(f);
                        let n = fetch_chunks(server, &file, config, CHUNK, |c| w.store(c))
                            .await
                            .map_err(|e| e.to_string())?;
                        w.finish()
                            .map_err(|e| format!("cannot write {path}: {e}"))?;
                        Ok(n)
                    }
                    None => fetch_to(server, &file, config, &mut std::io::sink())
                        .await
                        .map_err(|e| e.to_string()),
                }
            }));
        }
        let mut results = Vec::with_capacity(repeat);
        for t in tasks {
            results.push(t.await);
        }
        results
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut bytes = 0u64;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(Ok(n)) => bytes += n,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let summary = serde_json::json!({
        "event": "done",
        "files": repeat,
        "failed": errors.len(),
        "bytes": bytes,
        "seconds": seconds,
        "mb_per_s": bytes as f64 / 1e6 / seconds.max(1e-9),
        "crc32": digest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|c| format!("{c:08x}")),
        "errors": errors.iter().take(5).collect::<Vec<_>>(),
    });
    let _ = writeln!(std::io::stdout(), "{summary}");
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
