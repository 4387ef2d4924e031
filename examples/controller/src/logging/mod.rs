//! Logs: one JSON object per line on stdout, through `tracing`.
//!
//! Every event the controller logs has an `event` field naming what happened (`listening`,
//! `enlisted`, `transfer`, `power_state`...), with its other fields beside it at the top
//! level of the line. `RUST_LOG` filters (default `info`).
//!
//! Under load the controller logs thousands of lines a second (two per DHCP lease), and a
//! write to stdout per line would cost more than the lease itself: lines collect in memory
//! and go out together every [`FLUSH_EVERY`] or once [`HIGH_WATER`] bytes have gathered.
//! Warnings and errors go out at once (with whatever was queued before them), as does
//! everything queued when the process ends ([`flush`], called by `main` and on a panic).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

mod json;

pub use json::JsonLines;

/// How long a line may wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// How much may gather before it is written at once.
pub const HIGH_WATER: usize = 64 << 10;

static QUEUED: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();
/// Whether the flushing thread runs: until it does, every line is written at once.
static FLUSHING: AtomicBool = AtomicBool::new(false);

/// Installs the JSON subscriber for the process; does nothing if one is installed already.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .event_format(JsonLines)
        .with_env_filter(filter)
        .with_writer(Lines)
        .try_init()
        .is_ok();
    if installed {
        FLUSHER.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("log-flush".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(FLUSH_EVERY);
                        flush();
                    }
                });
            match spawned {
                Ok(_) => FLUSHING.store(true, Ordering::Release),
                Err(e) => eprintln!("warning: no log flushing thread ({e}): logging line by line"),
            }
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                flush();
                previous(info);
            }));
        });
    }
}

/// Writes out every queued line.
pub fn flush() {
    let mut queued = QUEUED.lock().unwrap_or_else(PoisonError::into_inner);
    write_out(&mut queued);
}

fn write_out(queued: &mut Vec<u8>) {
    if queued.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout is not worth a panic: the controller goes on serving.
    let _ = out.write_all(queued);
    let _ = out.flush();
    queued.clear();
    if queued.capacity() > 4 * HIGH_WATER {
        queued.shrink_to(HIGH_WATER);
    }
}

/// Hands out a [`Line`] per log line.
struct Lines;

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            urgent: !FLUSHING.load(Ordering::Acquire),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN || !FLUSHING.load(Ordering::Acquire),
        }
    }
}

/// One line's writer: queues it, and writes the queue out when the line is urgent or the
/// queue full.
struct Line {
    urgent: bool,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut queued = QUEUED.lock().unwrap_or_else(PoisonError::into_inner);
        queued.extend_from_slice(bytes);
        if self.urgent || queued.len() >= HIGH_WATER {
            write_out(&mut queued);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
