//! Logs: one JSON object per line on stdout, through `tracing`.
//!
//! Every event the controller logs has an `event` field naming what happened (`listening`,
//! `enlisted`, `transfer`, `power_state`...), with its other fields beside it at the top
//! level of the line. `RUST_LOG` filters (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber for the process; does nothing if one is installed already.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
