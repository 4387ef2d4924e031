//! The tokio driver of discovery on one interface: a capture feeding an [`Observer`], and
//! rounds of active scans of subnets chosen when each round starts.
//!
//! [`Watcher::open`] opens the capture at once, so that a missing interface or privilege
//! fails at start; [`Watcher::run`] then receives frames, sends probes and hands every
//! [`Report`] (discovery events and scan progress) to a callback until the capture fails or
//! the future is dropped.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use maas_discovery::watch::{Report, WatchConfig, Watcher};
//!
//! let mut config = WatchConfig::new("eth1");
//! config
//!     .scan_every(Duration::from_secs(3600))
//!     .scan_targets(|| vec!["10.77.130.0/24".parse().unwrap()]);
//! let mut watcher = Watcher::open(config)?;
//! let error = watcher
//!     .run(|report| {
//!         if let Report::Neighbour(event) = report {
//!             println!("{}", serde_json::to_string(&event).unwrap());
//!         }
//!     })
//!     .await;
//! Err(error.into())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use maas_net::{Mac, Timestamp};

use crate::capture::{AsyncCapture, Capture, CaptureConfig, CaptureError};
use crate::scan::{Answer, Scan, ScanConfig, ScanError};
use crate::wire::{Frame, WireError};
use crate::{Event, Observer, ObserverConfig};

/// The subnets to scan, asked at the start of each round.
type Targets = Arc<dyn Fn() -> Vec<IpNet> + Send + Sync>;

/// What to watch and how often to scan.
#[derive(Clone)]
pub struct WatchConfig {
    /// The capture (its interface is the one watched).
    pub capture: CaptureConfig,
    /// The neighbour table.
    pub observer: ObserverConfig,
    /// How scans probe; `source_mac` is replaced by the interface's MAC.
    pub scan: ScanConfig,
    /// The time between the starts of two scan rounds (`None`, the default: no periodic
    /// scan; [`Watcher::scan_now`] still starts one).
    pub scan_every: Option<Duration>,
    /// How long after opening the first periodic round starts (default one second).
    pub first_scan_after: Duration,
    targets: Targets,
}

impl fmt::Debug for WatchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchConfig")
            .field("capture", &self.capture)
            .field("observer", &self.observer)
            .field("scan", &self.scan)
            .field("scan_every", &self.scan_every)
            .field("first_scan_after", &self.first_scan_after)
            .finish_non_exhaustive()
    }
}

impl WatchConfig {
    /// The defaults for `interface`: passive only, nothing to scan.
    pub fn new(interface: impl Into<String>) -> Self {
        let interface = interface.into();
        Self {
            capture: CaptureConfig::new(interface.clone()),
            observer: ObserverConfig::new(interface),
            scan: ScanConfig::new(Mac::ZERO),
            scan_every: None,
            first_scan_after: Duration::from_secs(1),
            targets: Arc::new(Vec::new),
        }
    }

    /// Puts the interface in promiscuous mode.
    pub fn promiscuous(&mut self, on: bool) -> &mut Self {
        self.capture.promiscuous(on);
        self
    }

    /// Starts a scan round every `every`.
    pub fn scan_every(&mut self, every: Duration) -> &mut Self {
        self.scan_every = Some(every);
        self
    }

    /// Sets the delay before the first periodic round.
    pub fn first_scan_after(&mut self, delay: Duration) -> &mut Self {
        self.first_scan_after = delay;
        self
    }

    /// Sets the probes per second of each scan.
    pub fn scan_rate(&mut self, pps: u32) -> &mut Self {
        self.scan.rate(pps);
        self
    }

    /// Sets what to scan: `targets` is called at the start of each round, so the subnets
    /// may follow a network model that changes. They are scanned one after the other.
    pub fn scan_targets(
        &mut self,
        targets: impl Fn() -> Vec<IpNet> + Send + Sync + 'static,
    ) -> &mut Self {
        self.targets = Arc::new(targets);
        self
    }
}

/// What a [`Watcher`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Report {
    /// A discovery event of the neighbour table.
    Neighbour(Event),
    /// A scan of `subnet` started.
    ScanStarted {
        /// The subnet.
        subnet: IpNet,
        /// How many addresses it probes.
        targets: usize,
    },
    /// A scan is over.
    ScanDone(ScanSummary),
    /// A subnet could not be scanned (too large, ...); the round goes on with the next.
    ScanFailed {
        /// The subnet.
        subnet: IpNet,
        /// Why.
        error: ScanError,
    },
    /// A probe could not be sent; the scan goes on with the next one later.
    SendFailed {
        /// The subnet being scanned.
        subnet: IpNet,
        /// The error of the send.
        error: io::Error,
    },
    /// A received frame was malformed and ignored.
    BadFrame(WireError),
}

/// The result of one scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanSummary {
    /// The subnet scanned.
    pub subnet: IpNet,
    /// How many addresses were probed.
    pub targets: usize,
    /// How many probes were sent (with retries).
    pub sent: u64,
    /// The addresses that answered, in address order.
    pub answers: Vec<Answer>,
}

/// Discovery on one interface; see the module docs.
pub struct Watcher {
    capture: AsyncCapture,
    observer: Observer,
    rounds: Rounds,
    targets: Targets,
    buf: Vec<u8>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("capture", &self.capture)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Opens the capture on the configured interface. Must be called within a tokio runtime.
    pub fn open(config: WatchConfig) -> Result<Self, CaptureError> {
        let capture = AsyncCapture::open(&config.capture)?;
        let mut scan = config.scan;
        scan.source_mac = capture.get_ref().mac();
        let first = config
            .scan_every
            .map(|_| Instant::now() + config.first_scan_after);
        Ok(Self {
            capture,
            observer: Observer::new(config.observer),
            rounds: Rounds::new(scan, config.scan_every, first),
            targets: config.targets,
            buf: vec![0; 65536],
        })
    }

    /// The capture (its interface name and MAC).
    pub fn capture(&self) -> &Capture {
        self.capture.get_ref()
    }

    /// The neighbour table.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Starts a scan round as soon as [`Watcher::run`] runs (periodic rounds, if any, keep
    /// their schedule).
    pub fn scan_now(&mut self) {
        self.rounds.start_at(Instant::now());
    }

    /// Watches until receiving fails, which is the error returned; every report goes to
    /// `on_report` as it happens. Dropping the future stops watching: the state stays in
    /// the watcher, and calling `run` again carries on.
    pub async fn run(&mut self, mut on_report: impl FnMut(Report)) -> io::Error {
        let mut reports = VecDeque::new();
        loop {
            let now = Instant::now();
            self.rounds.poll(now, &*self.targets, &mut reports);
            reports.drain(..).for_each(&mut on_report);
            while let Some((subnet, frame)) = self.rounds.poll_transmit(now) {
                if let Err(error) = self.capture.send(&frame).await {
                    on_report(Report::SendFailed { subnet, error });
                    break;
                }
            }
            let now = Instant::now();
            let wake = [self.rounds.poll_timeout(now), self.observer.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                received = self.capture.recv(&mut self.buf) => {
                    let received = match received {
                        Ok(r) => r,
                        Err(e) => return e,
                    };
                    if !received.outgoing {
                        match received.decode(&self.buf) {
                            Ok(Some(frame)) => self.handle_frame(&frame),
                            Ok(None) => {}
                            Err(e) => on_report(Report::BadFrame(e)),
                        }
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if self.observer.poll_timeout().is_some_and(|t| t <= now) {
                        self.observer.handle_timeout(now);
                    }
                }
            }
            while let Some(event) = self.observer.poll_event() {
                on_report(Report::Neighbour(event));
            }
        }
    }

    fn handle_frame(&mut self, frame: &Frame) {
        let now = Instant::now();
        self.observer.handle_frame(now, Timestamp::now(), frame);
        self.rounds.handle_frame(now, frame);
    }
}

/// The scan rounds, sans-IO: when a round is due, the subnets to scan, the scan under way.
#[derive(Debug)]
struct Rounds {
    scan: ScanConfig,
    every: Option<Duration>,
    next_round: Option<Instant>,
    pending: VecDeque<IpNet>,
    current: Option<(IpNet, Scan)>,
}

impl Rounds {
    fn new(scan: ScanConfig, every: Option<Duration>, first: Option<Instant>) -> Self {
        Self {
            scan,
            every,
            next_round: first,
            pending: VecDeque::new(),
            current: None,
        }
    }

    /// Makes a round start at `at` (or before, if one is due earlier).
    fn start_at(&mut self, at: Instant) {
        self.next_round = Some(self.next_round.map_or(at, |t| t.min(at)));
    }

    /// Starts a round if one is due (asking `targets` for its subnets), ends the scan under
    /// way if it is done and starts the next; reports what happened.
    fn poll(
        &mut self,
        now: Instant,
        targets: &dyn Fn() -> Vec<IpNet>,
        reports: &mut VecDeque<Report>,
    ) {
        if self.next_round.is_some_and(|t| t <= now) {
            // A new round replaces what is left of the last one.
            self.pending = targets().into();
            self.next_round = self.every.map(|every| now + every);
        }
        loop {
            if let Some((subnet, scan)) = &self.current {
                if !scan.is_done(now) {
                    return;
                }
                reports.push_back(Report::ScanDone(ScanSummary {
                    subnet: *subnet,
                    targets: scan.len(),
                    sent: scan.sent(),
                    answers: scan.answers().cloned().collect(),
                }));
                self.current = None;
            }
            let Some(subnet) = self.pending.pop_front() else {
                return;
            };
            match Scan::subnet(self.scan.clone(), subnet) {
                Ok(scan) => {
                    reports.push_back(Report::ScanStarted {
                        subnet,
                        targets: scan.len(),
                    });
                    self.current = Some((subnet, scan));
                }
                Err(error) => reports.push_back(Report::ScanFailed { subnet, error }),
            }
        }
    }

    /// The next probe due at `now`, with the subnet it belongs to.
    fn poll_transmit(&mut self, now: Instant) -> Option<(IpNet, Vec<u8>)> {
        let (subnet, scan) = self.current.as_mut()?;
        scan.poll_transmit(now).map(|frame| (*subnet, frame))
    }

    fn handle_frame(&mut self, now: Instant, frame: &Frame) {
        if let Some((_, scan)) = self.current.as_mut() {
            scan.handle_frame(now, frame);
        }
    }

    /// When to call [`Rounds::poll`] next, seen at `now`. A scan that has not sent yet
    /// wants `now`: its `poll_timeout` is `None` then.
    fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let scan = self
            .current
            .as_ref()
            .map(|(_, scan)| scan.poll_timeout().unwrap_or(now));
        [scan, self.next_round].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::wire::{Arp, parse_frame};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn scan_config() -> ScanConfig {
        let mut c = ScanConfig::new(Mac::new([0x52, 0x54, 0, 0, 0, 1]));
        c.rate(1000).attempts(1).timeout(Duration::from_millis(500));
        c
    }

    /// Steps `rounds` from `t` to `until`, answering probes for `answering` and sending
    /// every probe due; returns the reports and how many probes were sent.
    fn drive(
        rounds: &mut Rounds,
        targets: &dyn Fn() -> Vec<IpNet>,
        t: Instant,
        until: Instant,
        answering: Option<Ipv4Addr>,
    ) -> (Vec<Report>, usize) {
        let mut reports = VecDeque::new();
        let mut sent = 0;
        let mut now = t;
        while now < until {
            rounds.poll(now, targets, &mut reports);
            while rounds.poll_transmit(now).is_some() {
                sent += 1;
            }
            if let Some(ip) = answering {
                let mac = Mac::new([0x52, 0x54, 0, 0, 0, 9]);
                let mut reply = Arp::probe(mac, ip);
                reply.sender_ip = ip;
                let bytes = reply.emit_frame(0);
                let frame = parse_frame(&bytes).unwrap().unwrap();
                rounds.handle_frame(now, &frame);
            }
            let next = rounds.poll_timeout(now).unwrap_or(until).max(now);
            now = if next == now {
                now + Duration::from_millis(1)
            } else {
                next
            };
        }
        (reports.into(), sent)
    }

    #[test]
    fn rounds_start_on_schedule_and_ask_for_targets_each_time() {
        let t0 = Instant::now();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let targets = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            vec![net("10.0.0.0/30"), net("10.0.1.0/29")]
        };
        let every = Duration::from_secs(60);
        let mut rounds = Rounds::new(
            scan_config(),
            Some(every),
            Some(t0 + Duration::from_secs(1)),
        );
        let mut reports = VecDeque::new();
        rounds.poll(t0, &targets, &mut reports);
        assert!(reports.is_empty());
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        assert_eq!(rounds.poll_timeout(t0), Some(t0 + Duration::from_secs(1)));

        let (reports, sent) = drive(
            &mut rounds,
            &targets,
            t0,
            t0 + Duration::from_secs(30),
            None,
        );
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        // The subnets one after the other: 2 + 6 host addresses.
        assert_eq!(sent, 8);
        let kinds: Vec<String> = reports
            .iter()
            .map(|r| match r {
                Report::ScanStarted { subnet, targets } => format!("start {subnet} {targets}"),
                Report::ScanDone(s) => format!("done {} {}", s.subnet, s.sent),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start 10.0.0.0/30 2",
                "done 10.0.0.0/30 2",
                "start 10.0.1.0/29 6",
                "done 10.0.1.0/29 6"
            ]
        );
        assert_eq!(rounds.poll_timeout(t0), Some(t0 + Duration::from_secs(61)));

        let (_, sent) = drive(
            &mut rounds,
            &targets,
            t0 + Duration::from_secs(30),
            t0 + Duration::from_secs(90),
            None,
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert_eq!(sent, 8);
    }

    #[test]
    fn a_bad_subnet_is_reported_and_skipped() {
        let t0 = Instant::now();
        let targets = || vec![net("10.0.0.0/8"), net("10.0.0.4/30")];
        let mut rounds = Rounds::new(scan_config(), None, None);
        rounds.start_at(t0);
        let until = t0 + Duration::from_secs(5);
        let answering = Some(Ipv4Addr::new(10, 0, 0, 5));
        let (reports, _) = drive(&mut rounds, &targets, t0, until, answering);
        assert!(matches!(
            &reports[0],
            Report::ScanFailed {
                error: ScanError::TooLarge(_),
                ..
            }
        ));
        let Some(Report::ScanDone(summary)) = reports.last() else {
            panic!("{reports:?}");
        };
        assert_eq!(summary.subnet, net("10.0.0.4/30"));
        assert_eq!(summary.answers.len(), 1);
        assert_eq!(summary.answers[0].ip, Ipv4Addr::new(10, 0, 0, 5));
        // No periodic rounds: nothing more to do.
        assert_eq!(rounds.poll_timeout(t0), None);
    }

    #[test]
    fn open_names_the_missing_interface() {
        let e = Watcher::open(WatchConfig::new("no-such-if0")).unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
    }
}
