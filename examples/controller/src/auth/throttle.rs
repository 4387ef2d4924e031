//! Failed authentications slowed per source address, without I/O (time in, decisions out).
//!
//! The first [`FREE`] failures from an address cost nothing. After that, each failure bars
//! the address for twice as long as the previous one (1 s, 2 s, 4 s ... up to [`MAX_WAIT`]):
//! while barred, its requests are answered 429 with `Retry-After` before any token is
//! looked at. An address is forgotten after [`FORGET_AFTER`] without a failure, and a
//! success clears it. IPv6 addresses count per /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Failures an address may make before it is slowed.
pub const FREE: u32 = 5;
/// The longest an address is barred after one failure.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long an address is remembered after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The most addresses remembered; past it, the quietest are forgotten first.
pub const MAX_TRACKED: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Duration,
    barred_until: Duration,
}

/// Failed attempts per source address. Times are durations since any fixed origin (the
/// caller's monotonic clock).
#[derive(Debug, Default)]
pub struct Throttle {
    by_source: HashMap<IpAddr, Failures>,
}

/// The key an address is counted under.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

impl Throttle {
    /// `Err(wait)` while `ip` is barred: answer without looking at its credential.
    pub fn check(&self, ip: IpAddr, now: Duration) -> Result<(), Duration> {
        match self.by_source.get(&source(ip)) {
            Some(f) if f.barred_until > now => Err(f.barred_until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure from `ip`; how long it is now barred (zero while it is within
    /// [`FREE`]).
    pub fn failed(&mut self, ip: IpAddr, now: Duration) -> Duration {
        if self.by_source.len() >= MAX_TRACKED {
            self.forget(now);
        }
        let entry = self.by_source.entry(source(ip)).or_insert(Failures {
            count: 0,
            last: now,
            barred_until: now,
        });
        if now.saturating_sub(entry.last) > FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        let wait = match entry.count.checked_sub(FREE) {
            None | Some(0) => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << (over - 1).min(16)).min(MAX_WAIT),
        };
        entry.barred_until = now + wait;
        wait
    }

    /// A success from `ip`: its failures are forgotten.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.by_source.remove(&source(ip));
    }

    /// How many addresses are remembered.
    pub fn tracked(&self) -> usize {
        self.by_source.len()
    }

    /// Forgets addresses quiet for [`FORGET_AFTER`]; if that frees nothing, the quietest
    /// half.
    fn forget(&mut self, now: Duration) {
        self.by_source
            .retain(|_, f| now.saturating_sub(f.last) <= FORGET_AFTER);
        if self.by_source.len() >= MAX_TRACKED {
            let mut lasts: Vec<Duration> = self.by_source.values().map(|f| f.last).collect();
            let middle = lasts.len() / 2;
            let (_, median, _) = lasts.select_nth_unstable(middle);
            let median = *median;
            self.by_source.retain(|_, f| f.last > median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, 9));

    #[test]
    fn failures_past_the_free_ones_bar_the_address_for_longer_each_time() {
        let mut t = Throttle::default();
        let now = Duration::from_secs(100);
        for _ in 0..FREE {
            assert_eq!(t.failed(A, now), Duration::ZERO);
            assert_eq!(t.check(A, now), Ok(()));
        }
        let waits: Vec<Duration> = (0..5).map(|_| t.failed(A, now)).collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16].map(Duration::from_secs).to_vec(),
            "each failure doubles the bar"
        );
        assert_eq!(t.check(A, now), Err(Duration::from_secs(16)));
        assert_eq!(
            t.check(A, now + Duration::from_secs(10)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(t.check(A, now + Duration::from_secs(16)), Ok(()));
        // Another address is not affected.
        let b: IpAddr = "10.77.0.10".parse().unwrap();
        assert_eq!(t.check(b, now), Ok(()));
        for _ in 0..40 {
            t.failed(A, now);
        }
        assert_eq!(t.check(A, now), Err(MAX_WAIT));
        t.succeeded(A);
        assert_eq!(t.check(A, now), Ok(()));
    }

    #[test]
    fn an_address_is_forgotten_after_a_quiet_hour() {
        let mut t = Throttle::default();
        for _ in 0..=FREE {
            t.failed(A, Duration::ZERO);
        }
        let later = FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(t.failed(A, later), Duration::ZERO, "counting starts over");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let mut t = Throttle::default();
        let now = Duration::ZERO;
        for i in 0..=FREE {
            let ip: IpAddr = format!("fd77::{i}").parse().unwrap();
            t.failed(ip, now);
        }
        let same_block: IpAddr = "fd77::ffff".parse().unwrap();
        assert!(t.check(same_block, now).is_err());
        let other_block: IpAddr = "fd77:0:0:1::1".parse().unwrap();
        assert!(t.check(other_block, now).is_ok());
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::default();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            // Each in its own /64 of fd77::/16.
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(
                0xfd77_u128 << 112 | u128::from(i) << 64,
            ));
            t.failed(ip, Duration::from_millis(u64::from(i)));
        }
        assert!(t.tracked() <= MAX_TRACKED);
    }
}
