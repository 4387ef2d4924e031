//! Counters: hits, misses, bytes, refusals.

use std::sync::atomic::{AtomicU64, Ordering};

/// The proxy's counters, shared between connections.
#[derive(Debug, Default)]
pub struct Metrics {
    hits: AtomicU64,
    revalidated: AtomicU64,
    misses: AtomicU64,
    upstream_fetches: AtomicU64,
    refused: AtomicU64,
    tunnels: AtomicU64,
    bytes_to_clients: AtomicU64,
    bytes_from_upstream: AtomicU64,
}

/// A copy of the counters at one moment (serde, for logs and the metrics endpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    /// Answers served from the store without asking upstream.
    pub hits: u64,
    /// Answers served from the store after upstream answered 304.
    pub revalidated: u64,
    /// Answers that needed a new response from upstream.
    pub misses: u64,
    /// Requests sent upstream (collapsed misses count once).
    pub upstream_fetches: u64,
    /// Requests refused (ACL, ports, smuggling, limits, loops).
    pub refused: u64,
    /// CONNECT tunnels opened.
    pub tunnels: u64,
    /// Body bytes sent to clients.
    pub bytes_to_clients: u64,
    /// Body bytes received from upstream.
    pub bytes_from_upstream: u64,
}

macro_rules! counter {
    ($($name:ident => $field:ident),* $(,)?) => {
        $(
            #[doc = concat!("Adds `n` to `", stringify!($field), "`.")]
            pub fn $name(&self, n: u64) {
                self.$field.fetch_add(n, Ordering::Relaxed);
            }
        )*
    };
}

impl Metrics {
    counter! {
        add_hits => hits,
        add_revalidated => revalidated,
        add_misses => misses,
        add_upstream_fetches => upstream_fetches,
        add_refused => refused,
        add_tunnels => tunnels,
        add_bytes_to_clients => bytes_to_clients,
        add_bytes_from_upstream => bytes_from_upstream,
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            hits: r(&self.hits),
            revalidated: r(&self.revalidated),
            misses: r(&self.misses),
            upstream_fetches: r(&self.upstream_fetches),
            refused: r(&self.refused),
            tunnels: r(&self.tunnels),
            bytes_to_clients: r(&self.bytes_to_clients),
            bytes_from_upstream: r(&self.bytes_from_upstream),
        }
    }
}
