//! The power manager: serialises commands per BMC endpoint with a minimum gap between
//! actions, confirms each action by polling with back-off until a deadline, retries
//! connection errors (never authentication errors) with back-off, and queries thousands of
//! BMCs concurrently with a bound.
//!
//! Machines are inserted under an id (a MAC, a name); the BMC they share is the driver's
//! [`PowerDriver::endpoint`]. Every command to one endpoint (actions, boot-device changes,
//! status queries and confirmation polls, whichever machine they are for) waits for the one
//! in flight, so a chassis or a Redfish service holding many systems sees one request at a
//! time. Commands to different endpoints run concurrently. Actions on one machine do not
//! interleave: the next waits until the previous one is confirmed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::driver::{Action, BootRequest, PowerDriver, PowerFuture};
use crate::{PowerError, PowerState};

/// Timing and bounds of the manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerConfig {
    /// The least time between two actions (power or boot-device commands) to the same BMC
    /// endpoint.
    pub min_gap: Duration,
    /// How long to poll for the new state after an action.
    pub confirm_deadline: Duration,
    /// The back-off of confirmation polls.
    pub poll: Backoff,
    /// Attempts per command when the BMC cannot be reached (1 = no retry).
    pub attempts: u32,
    /// The back-off between those attempts.
    pub retry: Backoff,
    /// The most status queries in flight at once.
    pub max_concurrent_queries: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            min_gap: Duration::from_millis(500),
            confirm_deadline: Duration::from_secs(60),
            poll: Backoff::new(Duration::from_millis(500), Duration::from_secs(5)),
            attempts: 3,
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(8)),
            max_concurrent_queries: 256,
        }
    }
}

impl ManagerConfig {
    /// Sets the least time between two actions to one BMC endpoint.
    pub fn min_gap(&mut self, v: Duration) -> &mut Self {
        self.min_gap = v;
        self
    }
    /// Sets the confirmation deadline.
    pub fn confirm_deadline(&mut self, v: Duration) -> &mut Self {
        self.confirm_deadline = v;
        self
    }
    /// Sets the attempts per command for connection errors.
    pub fn attempts(&mut self, v: u32) -> &mut Self {
        self.attempts = v.max(1);
        self
    }
    /// Sets the bound on concurrent status queries.
    pub fn max_concurrent_queries(&mut self, v: usize) -> &mut Self {
        self.max_concurrent_queries = v.max(1);
        self
    }
}

/// Exponential back-off: `initial`, doubling, capped at `max`. Pure: no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Backoff {
    /// A back-off from `initial` to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before attempt `n + 1` (n counting from 0).
    pub fn delay(&self, n: u32) -> Duration {
        self.initial.saturating_mul(1u32 << n.min(16)).min(self.max)
    }
}

/// What the manager decides after a failed attempt: `Some(delay)` to try again.
pub fn retry_after(
    err: &PowerError,
    attempt: u32,
    attempts: u32,
    backoff: Backoff,
) -> Option<Duration> {
    (err.retryable() && attempt + 1 < attempts).then(|| backoff.delay(attempt))
}

/// A power state and when it was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// The state.
    pub state: PowerState,
    /// Wall-clock time of the observation.
    pub at: SystemTime,
}

impl Observation {
    fn now(state: PowerState) -> Self {
        Self {
            state,
            at: SystemTime::now(),
        }
    }
}

/// The serialisation point of one BMC endpoint: held while a command is sent to it, and
/// when the last action was.
#[derive(Default)]
struct Line {
    last_action: tokio::sync::Mutex<Option<Instant>>,
}

/// Whose [`Line`] a machine uses: its BMC endpoint's, shared by every machine behind that
/// BMC, or its own when the driver has no BMC.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LineKey {
    Endpoint(String),
    Machine(String),
}

struct Machine {
    driver: Arc<dyn PowerDriver>,
    key: LineKey,
    line: Arc<Line>,
    /// Held for a whole action and its confirmation, so that two actions on one machine
    /// never interleave while other machines on its BMC get their turns between polls.
    busy: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Machines {
    by_id: HashMap<String, Arc<Machine>>,
    /// Lines stay alive as long as a machine (or a call in flight) holds them.
    lines: HashMap<LineKey, Weak<Line>>,
}

impl Machines {
    fn line(&mut self, key: &LineKey) -> Arc<Line> {
        if let Some(line) = self.lines.get(key).and_then(Weak::upgrade) {
            return line;
        }
        let line = Arc::new(Line::default());
        self.lines.insert(key.clone(), Arc::downgrade(&line));
        line
    }

    fn forget(&mut self, machine: Arc<Machine>) {
        let key = machine.key.clone();
        drop(machine);
        if self.lines.get(&key).is_some_and(|w| w.strong_count() == 0) {
            self.lines.remove(&key);
        }
    }
}

/// Power management of many BMCs; see the module docs.
pub struct PowerManager {
    cfg: ManagerConfig,
    machines: Mutex<Machines>,
    queries: Arc<Semaphore>,
}

impl std::fmt::Debug for PowerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerManager")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PowerManager {
    /// A manager with `cfg`.
    pub fn new(cfg: ManagerConfig) -> Self {
        let queries = Arc::new(Semaphore::new(cfg.max_concurrent_queries.max(1)));
        Self {
            cfg,
            machines: Mutex::new(Machines::default()),
            queries,
        }
    }

    /// Adds (or replaces) the machine `id` with its driver. Machines whose drivers report
    /// the same [`PowerDriver::endpoint`] share one BMC: their commands are serialised.
    pub fn insert(&self, id: impl Into<String>, driver: Arc<dyn PowerDriver>) {
        let id = id.into();
        let key = match driver.endpoint() {
            Some(endpoint) => LineKey::Endpoint(endpoint),
            None => LineKey::Machine(id.clone()),
        };
        let mut machines = self.lock();
        let line = machines.line(&key);
        let machine = Arc::new(Machine {
            driver,
            key,
            line,
            busy: tokio::sync::Mutex::new(()),
        });
        if let Some(old) = machines.by_id.insert(id, machine) {
            machines.forget(old);
        }
    }

    /// Removes the machine `id`.
    pub fn remove(&self, id: &str) -> bool {
        let mut machines = self.lock();
        match machines.by_id.remove(id) {
            Some(old) => {
                machines.forget(old);
                true
            }
            None => false,
        }
    }

    /// The number of machines.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no machine is managed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machines> {
        // A panic while holding this lock cannot leave the maps half-updated.
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Result<Arc<Machine>, PowerError> {
        self.lock()
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| PowerError::Config(format!("no machine {id:?} in the power manager")))
    }

    async fn with_retries<'a, T>(
        &self,
        mut f: impl FnMut() -> PowerFuture<'a, T> + Send,
    ) -> Result<T, PowerError> {
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => match retry_after(&e, attempt, self.cfg.attempts, self.cfg.retry) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// Sends a state-changing command (with its retries) holding the BMC's line, at least
    /// `min_gap` after the previous one.
    async fn command<'a>(
        &self,
        line: &Line,
        f: impl FnMut() -> PowerFuture<'a, ()> + Send,
    ) -> Result<(), PowerError> {
        let mut last = line.last_action.lock().await;
        if let Some(t) = *last {
            tokio::time::sleep_until(t + self.cfg.min_gap).await;
        }
        let r = self.with_retries(f).await;
        *last = Some(Instant::now());
        r
    }

    /// Runs `action` on machine `id` (after any action already running on it, any command
    /// in flight to its BMC and the minimum gap), then polls until the machine reports the
    /// expected state. Returns the confirming observation ([`PowerState::Unknown`] at once
    /// for drivers that cannot query).
    pub async fn perform(&self, id: &str, action: Action) -> Result<Observation, PowerError> {
        let machine = self.get(id)?;
        let _busy = machine.busy.lock().await;
        let driver = &machine.driver;
        self.command(&machine.line, || driver.run(action)).await?;
        if !driver.capabilities().query {
            return Ok(Observation::now(PowerState::Unknown));
        }
        self.confirm(&machine, action.expected()).await
    }

    async fn confirm(
        &self,
        machine: &Machine,
        want: PowerState,
    ) -> Result<Observation, PowerError> {
        let driver = machine.driver.as_ref();
        let start = Instant::now();
        let deadline = start + self.cfg.confirm_deadline;
        let mut seen = PowerState::Unknown;
        let mut n = 0;
        loop {
            let wait = self.cfg.poll.delay(n);
            n += 1;
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep_until((now + wait).min(deadline)).await;
            let polled = {
                let _line = machine.line.last_action.lock().await;
                driver.power_query().await
            };
            match polled {
                Ok(s) if s == want => return Ok(Observation::now(s)),
                Ok(s) => seen = s,
                // While the BMC is busy switching it may not answer: keep polling.
                Err(e) if e.retryable() => {}
                Err(e) => return Err(e),
            }
        }
        Err(PowerError::NeverTransitioned {
            bmc: driver.bmc().to_owned(),
            from: seen,
            to: want,
            after: Instant::now() - start,
        })
    }

    /// Sets the boot device of machine `id` (serialised with its actions and with the
    /// commands to its BMC).
    pub async fn set_boot_device(&self, id: &str, boot: BootRequest) -> Result<(), PowerError> {
        let machine = self.get(id)?;
        let _busy = machine.busy.lock().await;
        let driver = &machine.driver;
        self.command(&machine.line, || driver.set_boot_device(boot))
            .await
    }

    /// The power state of machine `id` (connection errors retried), asked when no other
    /// command is in flight to its BMC.
    pub async fn query(&self, id: &str) -> Result<Observation, PowerError> {
        let machine = self.get(id)?;
        // The BMC's line first: queries waiting for a busy BMC must not hold permits that
        // queries to other BMCs could use.
        let _line = machine.line.last_action.lock().await;
        let _permit = self.queries.acquire().await;
        let driver = &machine.driver;
        self.with_retries(|| driver.power_query())
            .await
            .map(Observation::now)
    }

    /// The power states of many machines, at most `max_concurrent_queries` in flight; the
    /// results in the order of `ids`.
    pub async fn query_many<I, S>(
        self: &Arc<Self>,
        ids: I,
    ) -> Vec<(String, Result<Observation, PowerError>)>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ids: Vec<String> = ids.into_iter().map(Into::into).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let me = Arc::clone(self);
            let id = id.clone();
            tasks.spawn(async move { (i, me.query(&id).await) });
        }
        let mut out: Vec<Option<Result<Observation, PowerError>>> =
            ids.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, r)) = joined {
                out[i] = Some(r);
            }
        }
        ids.into_iter()
            .zip(out)
            .map(|(id, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(PowerError::Protocol {
                        bmc: id.clone(),
                        reason: "the query task failed".into(),
                    })
                });
                (id, r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{Capabilities, OffMode};

    /// The (start, end) of every call a group of fakes received.
    type Log = Arc<Mutex<Vec<(Instant, Instant)>>>;

    /// A machine that reaches a new state `lag` after an action, failing the first `flaky`
    /// calls with `error`. Each call takes `work` and is logged in `log`.
    struct Fake {
        state: Mutex<(PowerState, Instant)>,
        lag: Duration,
        flaky: AtomicU32,
        error: fn() -> PowerError,
        calls: AtomicU32,
        actions: Mutex<Vec<Instant>>,
        endpoint: Option<String>,
        work: Duration,
        log: Log,
    }

    impl Fake {
        fn new(lag: Duration, flaky: u32, error: fn() -> PowerError) -> Arc<Self> {
            Arc::new(Self {
                state: Mutex::new((PowerState::Off, Instant::now())),
                lag,
                flaky: AtomicU32::new(flaky),
                error,
                calls: AtomicU32::new(0),
                actions: Mutex::new(Vec::new()),
                endpoint: None,
                work: Duration::ZERO,
                log: Log::default(),
            })
        }
        /// A machine behind `endpoint` whose calls take one second each.
        fn behind(endpoint: &str, log: &Log) -> Arc<Self> {
            Arc::new(Self {
                state: Mutex::new((PowerState::Off, Instant::now())),
                lag: Duration::ZERO,
                flaky: AtomicU32::new(0),
                error: conn,
                calls: AtomicU32::new(0),
                actions: Mutex::new(Vec::new()),
                endpoint: Some(endpoint.to_owned()),
                work: Duration::from_secs(1),
                log: Arc::clone(log),
            })
        }
        async fn work(&self) {
            let start = Instant::now();
            tokio::time::sleep(self.work).await;
            self.log.lock().unwrap().push((start, Instant::now()));
        }
        fn fail(&self) -> Result<(), PowerError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self
                .flaky
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err((self.error)());
            }
            Ok(())
        }
        fn set(&self, s: PowerState) -> PowerFuture<'_, ()> {
            Box::pin(async move {
                self.work().await;
                self.fail()?;
                self.actions.lock().unwrap().push(Instant::now());
                *self.state.lock().unwrap() = (s, Instant::now() + self.lag);
                Ok(())
            })
        }
    }

    impl PowerDriver for Fake {
        fn bmc(&self) -> &str {
            "fake"
        }
        fn endpoint(&self) -> Option<String> {
            self.endpoint.clone()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::ALL
        }
        fn power_on(&self) -> PowerFuture<'_, ()> {
            self.set(PowerState::On)
        }
        fn power_off(&self, _m: OffMode) -> PowerFuture<'_, ()> {
            self.set(PowerState::Off)
        }
        fn power_cycle(&self) -> PowerFuture<'_, ()> {
            self.set(PowerState::On)
        }
        fn power_query(&self) -> PowerFuture<'_, PowerState> {
            Box::pin(async move {
                self.work().await;
                let (s, at) = *self.state.lock().unwrap();
                Ok(if Instant::now() >= at {
                    s
                } else {
                    match s {
                        PowerState::On => PowerState::Off,
                        _ => PowerState::On,
                    }
                })
            })
        }
        fn set_boot_device(&self, _b: BootRequest) -> PowerFuture<'_, ()> {
            Box::pin(async move {
                self.work().await;
                self.fail()
            })
        }
    }

    /// Asserts that no two logged calls overlapped; returns how many there were.
    fn assert_serial(log: &Log) -> usize {
        let mut calls = log.lock().unwrap().clone();
        calls.sort();
        for w in calls.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "overlapping calls {:?} and {:?}",
                w[0],
                w[1]
            );
        }
        calls.len()
    }

    fn conn() -> PowerError {
        PowerError::connection("fake", "unreachable")
    }
    fn auth() -> PowerError {
        PowerError::auth("fake", "wrong password")
    }

    #[tokio::test(start_paused = true)]
    async fn confirms_by_polling() {
        let m = PowerManager::new(ManagerConfig::default());
        let f = Fake::new(Duration::from_secs(7), 0, conn);
        m.insert("a", f.clone());
        let t0 = Instant::now();
        let o = m.perform("a", Action::On).await.unwrap();
        assert_eq!(o.state, PowerState::On);
        let took = Instant::now() - t0;
        assert!(
            took >= Duration::from_secs(7) && took < Duration::from_secs(13),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn never_transitioned() {
        let mut cfg = ManagerConfig::default();
        cfg.confirm_deadline(Duration::from_secs(10));
        let m = PowerManager::new(cfg);
        m.insert("a", Fake::new(Duration::from_secs(3600), 0, conn));
        let e = m.perform("a", Action::On).await.unwrap_err();
        assert!(
            e.to_string().contains("never transitioned from off to on"),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_connection_errors_only() {
        let m = PowerManager::new(ManagerConfig::default());
        let flaky = Fake::new(Duration::ZERO, 2, conn);
        m.insert("c", flaky.clone());
        m.set_boot_device("c", BootRequest::pxe_once())
            .await
            .unwrap();
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);

        let locked = Fake::new(Duration::ZERO, 1, auth);
        m.insert("d", locked.clone());
        let e = m
            .set_boot_device("d", BootRequest::pxe_once())
            .await
            .unwrap_err();
        assert_eq!(e.class(), crate::ErrorClass::Auth);
        assert_eq!(locked.calls.load(Ordering::SeqCst), 1);

        let dead = Fake::new(Duration::ZERO, 100, conn);
        m.insert("e", dead.clone());
        assert!(
            m.set_boot_device("e", BootRequest::pxe_once())
                .await
                .is_err()
        );
        assert_eq!(dead.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn one_action_at_a_time_with_a_gap() {
        let mut cfg = ManagerConfig::default();
        cfg.min_gap(Duration::from_secs(2));
        let m = Arc::new(PowerManager::new(cfg));
        let f = Fake::new(Duration::ZERO, 0, conn);
        m.insert("a", f.clone());
        let (a, b) = tokio::join!(m.perform("a", Action::On), m.perform("a", Action::Off));
        assert!(a.is_ok() && b.is_ok());
        let times = f.actions.lock().unwrap().clone();
        assert_eq!(times.len(), 2);
        assert!(times[1] - times[0] >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn many_queries_keep_order() {
        let mut cfg = ManagerConfig::default();
        cfg.max_concurrent_queries(8);
        let m = Arc::new(PowerManager::new(cfg));
        for i in 0..100 {
            m.insert(format!("m{i}"), Fake::new(Duration::ZERO, 0, conn));
        }
        let ids: Vec<String> = (0..100)
            .map(|i| format!("m{i}"))
            .chain(["nope".into()])
            .collect();
        let r = m.query_many(ids.clone()).await;
        assert_eq!(r.len(), 101);
        for (i, (id, res)) in r.iter().enumerate() {
            assert_eq!(id, &ids[i]);
            if i < 100 {
                assert_eq!(res.as_ref().unwrap().state, PowerState::Off);
            } else {
                assert!(res.is_err());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_endpoint_one_command_at_a_time() {
        let mut cfg = ManagerConfig::default();
        cfg.min_gap(Duration::from_secs(2));
        let m = Arc::new(PowerManager::new(cfg));
        let log = Log::default();
        let (a, b) = (Fake::behind("bmc:623", &log), Fake::behind("bmc:623", &log));
        m.insert("a", a.clone());
        m.insert("b", b.clone());
        let (pa, pb, qa, qb, boot) = tokio::join!(
            m.perform("a", Action::On),
            m.perform("b", Action::Cycle),
            m.query("a"),
            m.query("b"),
            m.set_boot_device("b", BootRequest::pxe_once()),
        );
        assert!(pa.is_ok() && pb.is_ok() && qa.is_ok() && qb.is_ok() && boot.is_ok());
        // Two actions, a boot-device change, two queries and at least one poll per action.
        assert!(assert_serial(&log) >= 7);
        // The gap holds between actions of different machines on the endpoint.
        let (ta, tb) = (a.actions.lock().unwrap()[0], b.actions.lock().unwrap()[0]);
        assert!(ta.max(tb) - ta.min(tb) >= Duration::from_secs(2));

        log.lock().unwrap().clear();
        let t0 = Instant::now();
        let r = m.query_many(["a", "b", "a", "b"]).await;
        assert!(r.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(assert_serial(&log), 4);
        assert!(Instant::now() - t0 >= Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn different_endpoints_run_concurrently() {
        let m = Arc::new(PowerManager::new(ManagerConfig::default()));
        let log = Log::default();
        m.insert("a", Fake::behind("10.0.0.1:623", &log));
        m.insert("b", Fake::behind("10.0.0.2:623", &log));

        let t0 = Instant::now();
        let r = m.query_many(["a", "b"]).await;
        assert!(r.iter().all(|(_, r)| r.is_ok()));
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));

        log.lock().unwrap().clear();
        let (pa, pb) = tokio::join!(m.perform("a", Action::On), m.perform("b", Action::On));
        assert!(pa.is_ok() && pb.is_ok());
        let calls = log.lock().unwrap().clone();
        let overlaps = calls
            .iter()
            .enumerate()
            .any(|(i, x)| calls[i + 1..].iter().any(|y| x.0 < y.1 && y.0 < x.1));
        assert!(overlaps, "{calls:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn lines_follow_the_machines() {
        let m = PowerManager::new(ManagerConfig::default());
        let log = Log::default();
        m.insert("a", Fake::behind("bmc:623", &log));
        m.insert("b", Fake::behind("bmc:623", &log));
        m.insert("c", Fake::new(Duration::ZERO, 0, conn));
        assert_eq!(m.lock().lines.len(), 2);
        assert!(m.remove("a"));
        assert_eq!(m.lock().lines.len(), 2);
        assert!(m.remove("b"));
        m.insert("c", Fake::behind("other:623", &log));
        assert_eq!(m.lock().lines.len(), 1);
        assert!(!m.remove("a"));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        assert_eq!(retry_after(&auth(), 0, 5, b), None);
        assert_eq!(retry_after(&conn(), 0, 5, b), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&conn(), 4, 5, b), None);
    }
}
