//! Tests of [`Durable`](super::Durable) against a store that can be watched, held up and made
//! to fail.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;

use maas_net::{IpRange, IpRangeKind, Mac, Subnet, SubnetId};

use super::writer::MAX_BATCH_CHANGES;
use super::*;
use crate::{ClientKey, LeaseState, MemoryStore, Snapshot, Timestamp};

const NOW: Timestamp = Timestamp(1_700_000_000);

/// A /16 with a dynamic range of 10.77.1.0-10.77.200.255.
fn topology() -> (Topology, SubnetId) {
    let mut topo = Topology::new();
    let vlan = topo.default_vlan(Topology::DEFAULT_FABRIC).unwrap();
    let subnet = topo
        .create_subnet(Subnet {
            gateway_ip: Some("10.77.0.1".parse().unwrap()),
            ..Subnet::new("10.77.0.0/16".parse().unwrap(), vlan)
        })
        .unwrap();
    topo.create_ip_range(IpRange::new(
        subnet,
        "10.77.1.0".parse().unwrap(),
        "10.77.200.255".parse().unwrap(),
        IpRangeKind::Dynamic,
    ))
    .unwrap();
    (topo, subnet)
}

fn client(n: u32) -> ClientKey {
    let [a, b, c, d] = n.to_be_bytes();
    ClientKey::Mac(Mac::from([0x02, a, b, c, d, 0x01]))
}

/// Offers and binds an address for `client`.
fn lease(ipam: &mut Ipam, subnet: SubnetId, client: &ClientKey) -> Result<IpAddr, crate::Error> {
    let ip = ipam.dhcp_offer(subnet, client, NOW, 30)?;
    ipam.dhcp_request(ip, client, NOW, 3600)?;
    Ok(ip)
}

#[derive(Debug, thiserror::Error)]
#[error("probe store refused")]
struct Refused {
    /// Whether it is a refusal of the batch ([`Store::is_refusal`]) rather than a failure.
    batch: bool,
}

/// What a [`Probe`] holds and how it behaves.
#[derive(Default)]
struct ProbeState {
    store: MemoryStore,
    batches: Vec<Vec<Change>>,
    /// Commits wait while this is set (for at most ten seconds).
    gate_closed: bool,
    fail_commits: bool,
    /// Commits are refused as a database shared with another controller would.
    refuse_commits: bool,
    fail_load: bool,
    panic_on_commit: bool,
}

/// A memory store that tests can watch, hold up and make fail.
#[derive(Clone, Default)]
struct Probe(Arc<(Mutex<ProbeState>, Condvar)>);

impl Probe {
    fn set(&self, f: impl FnOnce(&mut ProbeState)) {
        f(&mut self.0.0.lock().unwrap());
        self.0.1.notify_all();
    }

    fn with<R>(&self, f: impl FnOnce(&ProbeState) -> R) -> R {
        f(&self.0.0.lock().unwrap())
    }

    fn snapshot(&self) -> Snapshot {
        self.with(|s| s.store.snapshot())
    }
}

/// The clients whose leases reached the store, in commit order (each once: an offer and the
/// lease that follows it are written one after the other).
fn committed_clients(probe: &Probe) -> Vec<ClientKey> {
    probe.with(|s| {
        let mut clients: Vec<ClientKey> = s
            .batches
            .iter()
            .flatten()
            .filter_map(|c| match c {
                Change::PutRecord(record) => record.lease.as_ref().map(|l| l.client.clone()),
                _ => None,
            })
            .collect();
        clients.dedup();
        clients
    })
}

impl Store for Probe {
    type Error = Refused;

    fn is_refusal(error: &Refused) -> bool {
        error.batch
    }

    fn load(&mut self) -> Result<Snapshot, Refused> {
        self.with(|s| {
            if s.fail_load {
                Err(Refused { batch: false })
            } else {
                Ok(s.store.snapshot())
            }
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), Refused> {
        let (lock, cv) = &*self.0;
        let mut state = lock.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.gate_closed && Instant::now() < deadline {
            state = cv.wait_timeout(state, Duration::from_millis(50)).unwrap().0;
        }
        if state.panic_on_commit {
            drop(state);
            panic!("probe store panics");
        }
        if state.fail_commits || state.refuse_commits {
            let batch = !state.fail_commits;
            return Err(Refused { batch });
        }
        state.batches.push(changes.to_vec());
        let Ok(()) = state.store.commit(changes);
        Ok(())
    }
}

fn started(probe: &Probe) -> (Durable<Probe>, SubnetId) {
    let (topo, subnet) = topology();
    (Durable::with_topology(probe.clone(), topo).unwrap(), subnet)
}

#[test]
fn apply_returns_once_the_lease_is_durable() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    // The seed topology was committed before anything else.
    assert!(probe.with(|s| matches!(s.batches[0][..], [Change::Topology(_)])));
    for n in 0..20 {
        let c = client(n);
        let ip = ipam.apply(|ipam| lease(ipam, subnet, &c)).unwrap();
        let stored = probe.snapshot();
        let record = stored.records.iter().find(|r| r.ip == ip).unwrap();
        let held = record.lease.as_ref().unwrap();
        assert_eq!((&held.client, held.state), (&c, LeaseState::Bound));
        // The record implies the client's binding: no row of its own, and a manager loaded
        // from the store offers the client its address again.
        assert!(stored.bindings.iter().all(|(k, _)| k != &c));
        let mut reloaded = Ipam::from_snapshot(stored).unwrap();
        assert_eq!(reloaded.dhcp_offer(subnet, &c, NOW, 30).unwrap(), ip);
    }
}

#[test]
fn changes_commit_in_the_order_operations_ran() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let order = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let (ipam, order) = (&ipam, &order);
            scope.spawn(move || {
                let mut tickets = Vec::new();
                for n in 0..50 {
                    let c = client(t * 1000 + n);
                    let op = |ipam: &mut Ipam| {
                        order.lock().unwrap().push(c.clone());
                        lease(ipam, subnet, &c)
                    };
                    if n % 3 == 0 {
                        ipam.apply(op).unwrap();
                    } else {
                        tickets.push(ipam.submit(op).unwrap().1);
                    }
                }
                for ticket in tickets {
                    ipam.wait(ticket).unwrap();
                }
            });
        }
    });
    drop(ipam);
    let committed: Vec<ClientKey> = committed_clients(&probe);
    assert_eq!(committed, order.into_inner().unwrap());
    assert_eq!(committed.len(), 200);
}

#[test]
fn pipelined_tickets_become_durable_in_order() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let tickets: Vec<Ticket> = (0..300)
        .map(|n| {
            ipam.submit(|ipam| lease(ipam, subnet, &client(n)))
                .unwrap()
                .1
        })
        .collect();
    assert!(tickets.windows(2).all(|w| w[0].seq() < w[1].seq()));
    ipam.wait(tickets[tickets.len() - 1]).unwrap();
    for ticket in &tickets {
        assert!(ipam.is_durable(*ticket).unwrap());
    }
    assert_eq!(probe.snapshot().records.len(), 300);
    // Nothing waited for more than the batch bound allows.
    assert!(probe.with(|s| s.batches.iter().all(|b| b.len() <= MAX_BATCH_CHANGES)));
}

#[test]
fn batches_are_bounded_and_never_split_an_operation() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    probe.set(|s| s.gate_closed = true);
    // One operation larger than a batch, then many small ones: more than two batches' worth.
    let (big, _) = ipam
        .submit(|ipam| {
            (0..3000)
                .map(|n| lease(ipam, subnet, &client(n)))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    let mut last = None;
    for n in 3000..6000 {
        last = Some(
            ipam.submit(|ipam| lease(ipam, subnet, &client(n)))
                .unwrap()
                .1,
        );
    }
    probe.set(|s| s.gate_closed = false);
    ipam.wait(last.unwrap()).unwrap();
    let sizes: Vec<usize> = probe.with(|s| s.batches[1..].iter().map(Vec::len).collect());
    let big_changes = sizes[0];
    assert!(big_changes > MAX_BATCH_CHANGES, "{sizes:?}");
    assert!(
        sizes[1..].iter().all(|&n| n <= MAX_BATCH_CHANGES),
        "{sizes:?}"
    );
    let committed: Vec<ClientKey> = committed_clients(&probe);
    assert_eq!(committed, (0..6000).map(client).collect::<Vec<_>>());
    assert_eq!(probe.snapshot().records.len(), 6000);
    assert_eq!(big.len(), 3000);
}

#[test]
fn a_ticket_without_changes_waits_for_what_its_operation_saw() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    // Nothing in flight: durable at once.
    let ((), idle) = ipam.submit(|_| Ok(())).unwrap();
    assert!(ipam.is_durable(idle).unwrap());
    ipam.wait(idle).unwrap();

    probe.set(|s| s.gate_closed = true);
    let c = client(1);
    let (ip, first) = ipam.submit(|ipam| lease(ipam, subnet, &c)).unwrap();
    // An operation that changes nothing but sees the lease that is not on disk yet (as a
    // server answering a retransmitted request from what it holds would).
    let (seen, retry) = ipam
        .submit(|ipam| Ok(ipam.record(ip).and_then(|r| r.lease.clone())))
        .unwrap();
    assert_eq!(seen.map(|l| l.client), Some(c));
    assert_eq!(retry.seq(), first.seq());
    assert!(!ipam.is_durable(first).unwrap());
    assert!(!ipam.is_durable(retry).unwrap());
    assert!(!ipam.wait_timeout(retry, Duration::from_millis(1)).unwrap());
    probe.set(|s| s.gate_closed = false);
    ipam.wait(retry).unwrap();
    assert!(ipam.is_durable(first).unwrap());
    assert!(ipam.wait_timeout(first, Duration::from_secs(0)).unwrap());
}

#[test]
fn operation_errors_come_back_and_change_nothing() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let c = client(1);
    let ip = ipam.apply(|ipam| lease(ipam, subnet, &c)).unwrap();
    let stranger = client(2);
    let err = ipam
        .apply(|ipam| ipam.dhcp_release(ip, &stranger))
        .unwrap_err();
    let DurableError::Ipam(inner) = &err else {
        panic!("not an engine error: {err:?}");
    };
    assert_eq!(err.to_string(), inner.to_string());
    assert_eq!(ipam.read(|ipam| ipam.record(ip).cloned()).unwrap().ip, ip);
    // The manager goes on.
    ipam.apply(|ipam| ipam.dhcp_release(ip, &c)).unwrap();
    assert!(probe.snapshot().records.iter().all(|r| r.ip != ip));
}

#[test]
fn a_failed_commit_fails_its_waiters_and_refuses_changes_after() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    ipam.apply(|ipam| lease(ipam, subnet, &client(0))).unwrap();

    probe.set(|s| s.gate_closed = true);
    let tickets: Vec<Ticket> = (1..=5)
        .map(|n| {
            ipam.submit(|ipam| lease(ipam, subnet, &client(n)))
                .unwrap()
                .1
        })
        .collect();
    probe.set(|s| {
        s.fail_commits = true;
        s.gate_closed = false;
    });
    for ticket in tickets {
        let err = ipam.wait(ticket).unwrap_err();
        assert!(matches!(err, DurableError::Commit(_)), "{err:?}");
        assert!(err.to_string().contains("probe store refused"), "{err}");
    }

    let ran = AtomicUsize::new(0);
    let err = ipam
        .apply(|ipam| {
            ran.fetch_add(1, Ordering::Relaxed);
            lease(ipam, subnet, &client(9))
        })
        .unwrap_err();
    assert!(matches!(err, DurableError::Poisoned(_)), "{err:?}");
    assert!(err.to_string().contains("reopen"), "{err}");
    assert_eq!(ran.load(Ordering::Relaxed), 0, "the operation must not run");
    // Reads still work; only the first lease is on disk.
    assert_eq!(ipam.read(|ipam| ipam.records().count()), 6);
    assert_eq!(probe.snapshot().records.len(), 1);
    assert!(matches!(ipam.close(), Err(DurableError::Commit(_))));
}

#[test]
fn a_refused_batch_fails_its_waiters_and_the_manager_reloads_and_goes_on() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let kept = ipam.apply(|ipam| lease(ipam, subnet, &client(0))).unwrap();

    probe.set(|s| s.gate_closed = true);
    let tickets: Vec<Ticket> = (1..=5)
        .map(|n| {
            ipam.submit(|ipam| lease(ipam, subnet, &client(n)))
                .unwrap()
                .1
        })
        .collect();
    // Sees the refused leases: shares their fate.
    let ((), saw) = ipam.submit(|_| Ok(())).unwrap();
    probe.set(|s| {
        s.refuse_commits = true;
        s.gate_closed = false;
    });
    for ticket in tickets.into_iter().chain([saw]) {
        let err = ipam.wait(ticket).unwrap_err();
        assert!(matches!(err, DurableError::Refused(_)), "{err:?}");
        assert!(err.to_string().contains("probe store refused"), "{err}");
    }
    // The manager holds what the store holds, and goes on.
    assert_eq!(ipam.read(|ipam| ipam.records().count()), 1);
    assert!(ipam.read(|ipam| ipam.record(kept).is_some()));
    let ((), fresh) = ipam.submit(|_| Ok(())).unwrap();
    ipam.wait(fresh).unwrap();
    probe.set(|s| s.refuse_commits = false);
    let again = ipam.apply(|ipam| lease(ipam, subnet, &client(1))).unwrap();
    assert_eq!(probe.snapshot().records.len(), 2);
    assert_ne!(again, kept);
    ipam.close().unwrap();
}

#[test]
fn refresh_shows_what_another_manager_stored_and_keeps_what_is_queued() {
    let probe = Probe::default();
    let (first, subnet) = started(&probe);
    let second = Durable::open(probe.clone()).unwrap();
    let theirs = second
        .apply(|ipam| lease(ipam, subnet, &client(7)))
        .unwrap();
    assert!(first.read(|ipam| ipam.record(theirs).is_none()));

    // An operation queued (deferred: no commit of its own) before the refresh is committed
    // first, then the reload shows both.
    let seen: IpAddr = "10.77.0.50".parse().unwrap();
    first
        .submit_deferred(|ipam| {
            ipam.observe(seen, Some(Mac::from([0x02, 0, 0, 0, 0, 0x50])), NOW);
            Ok(())
        })
        .unwrap();
    first.refresh();
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.read(|ipam| ipam.record(theirs).is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(first.read(|ipam| ipam.record(theirs).is_some()));
    assert_eq!(probe.snapshot().records.len(), 2);
    assert_eq!(first.read(|ipam| ipam.discoveries().count()), 1);
    // What it leases now is not the other manager's address.
    let ours = first.apply(|ipam| lease(ipam, subnet, &client(8))).unwrap();
    assert_ne!(ours, theirs);

    // A store that cannot be read leaves the manager as it was, and serving.
    probe.set(|s| s.fail_load = true);
    first.refresh();
    let next = first.apply(|ipam| lease(ipam, subnet, &client(9))).unwrap();
    assert!(first.read(|ipam| ipam.record(next).is_some()));
    probe.set(|s| s.fail_load = false);
    first.close().unwrap();
    second.close().unwrap();
}

#[test]
fn dropping_commits_everything_queued() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    probe.set(|s| s.gate_closed = true);
    for n in 0..100 {
        let _ = ipam.submit(|ipam| lease(ipam, subnet, &client(n))).unwrap();
    }
    probe.set(|s| s.gate_closed = false);
    drop(ipam);
    assert_eq!(probe.snapshot().records.len(), 100);
}

#[test]
fn deferred_changes_start_no_commit_and_ride_with_the_next() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let commits = || probe.with(|s| s.batches.len());
    let seeded = commits();
    let offered: Vec<IpAddr> = (0..5)
        .map(|n| {
            ipam.submit_deferred(|ipam| ipam.dhcp_offer(subnet, &client(n), NOW, 30))
                .unwrap()
        })
        .collect();
    // A later commit proves the writer ran; the deferred offers must not have had one
    // of their own before it.
    let (_, ticket) = ipam
        .submit(|ipam| lease(ipam, subnet, &client(99)))
        .unwrap();
    ipam.wait(ticket).unwrap();
    assert_eq!(commits(), seeded + 1);
    let stored = probe.snapshot();
    for ip in &offered {
        assert!(
            stored.records.iter().any(|r| r.ip == *ip),
            "{ip} not stored"
        );
    }
    assert_eq!(stored.records.len(), 6);
}

#[test]
fn a_commit_delay_groups_concurrent_operations_and_loses_none() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    ipam.set_commit_delay(Duration::from_millis(2));
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let ipam = &ipam;
            scope.spawn(move || {
                let tickets: Vec<Ticket> = (0..100)
                    .map(|n| {
                        let c = client(t * 1000 + n);
                        ipam.submit(|ipam| lease(ipam, subnet, &c)).unwrap().1
                    })
                    .collect();
                for ticket in tickets {
                    ipam.wait(ticket).unwrap();
                }
            });
        }
    });
    assert_eq!(probe.snapshot().records.len(), 400);
    // Fewer commits than operations: they were grouped.
    assert!(probe.with(|s| s.batches.len()) < 400);
    // Shutdown is not held up by the delay and commits the rest.
    let _unwaited = ipam
        .submit(|ipam| lease(ipam, subnet, &client(5000)))
        .unwrap();
    drop(ipam);
    assert_eq!(probe.snapshot().records.len(), 401);
}

#[test]
fn dropping_commits_deferred_changes() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    for n in 0..10 {
        ipam.submit_deferred(|ipam| ipam.dhcp_offer(subnet, &client(n), NOW, 30))
            .unwrap();
    }
    drop(ipam);
    assert_eq!(probe.snapshot().records.len(), 10);
}

#[test]
fn state_survives_close_and_reopen() {
    let (topo, subnet) = topology();
    let ipam = Durable::with_topology(MemoryStore::new(), topo).unwrap();
    let leased: Vec<(ClientKey, IpAddr)> = (0..10)
        .map(|n| {
            let c = client(n);
            let ip = ipam.apply(|ipam| lease(ipam, subnet, &c)).unwrap();
            (c, ip)
        })
        .collect();
    let store = ipam.close().unwrap();

    // A seed topology does not replace a stored one.
    let ipam = Durable::with_topology(store, Topology::new()).unwrap();
    ipam.read(|ipam| {
        assert!(ipam.topology().subnet(subnet).is_some());
        for (c, ip) in &leased {
            let lease = ipam.record(*ip).unwrap().lease.as_ref().unwrap();
            assert_eq!(&lease.client, c);
        }
    });
    let fresh = ipam.apply(|ipam| lease(ipam, subnet, &client(99))).unwrap();
    assert!(leased.iter().all(|(_, ip)| *ip != fresh));
}

#[test]
fn an_empty_store_without_seed_starts_empty() {
    let ipam = Durable::open(MemoryStore::new()).unwrap();
    assert_eq!(ipam.read(|ipam| ipam.records().count()), 0);
    let store = ipam.close().unwrap();
    assert!(store.snapshot().is_empty());
}

#[test]
fn tickets_of_another_manager_are_refused() {
    let one = Durable::open(MemoryStore::new()).unwrap();
    let two = Durable::open(MemoryStore::new()).unwrap();
    let ((), ticket) = one.submit(|_| Ok(())).unwrap();
    assert!(matches!(two.wait(ticket), Err(DurableError::ForeignTicket)));
    assert!(matches!(
        two.is_durable(ticket),
        Err(DurableError::ForeignTicket)
    ));
    one.wait(ticket).unwrap();
}

#[test]
fn a_store_that_cannot_load_is_reported() {
    let probe = Probe::default();
    probe.set(|s| s.fail_load = true);
    let err = Durable::open(probe).unwrap_err();
    assert!(matches!(err, DurableError::Load(_)), "{err:?}");
    assert!(err.to_string().contains("probe store refused"), "{err}");
}

#[test]
fn a_panicking_operation_refuses_changes_after() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ipam.apply(|_| -> Result<(), crate::Error> { panic!("operation panics") })
    }));
    assert!(panicked.is_err());
    let err = ipam
        .apply(|ipam| lease(ipam, subnet, &client(1)))
        .unwrap_err();
    assert!(matches!(err, DurableError::Panicked), "{err:?}");
    assert_eq!(ipam.read(|ipam| ipam.records().count()), 0);
}

#[test]
fn a_panicking_store_stops_the_writer_without_hanging_waiters() {
    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    probe.set(|s| s.panic_on_commit = true);
    let err = ipam
        .apply(|ipam| lease(ipam, subnet, &client(1)))
        .unwrap_err();
    assert!(matches!(err, DurableError::WriterStopped), "{err:?}");
    let err = ipam
        .apply(|ipam| lease(ipam, subnet, &client(2)))
        .unwrap_err();
    assert!(matches!(err, DurableError::WriterStopped), "{err:?}");
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn wait_async_follows_the_writer() {
    fn assert_send<T: Send>(_: &T) {}

    let probe = Probe::default();
    let (ipam, subnet) = started(&probe);
    let ((), idle) = ipam.submit(|_| Ok(())).unwrap();
    ipam.wait_async(idle).await.unwrap();

    probe.set(|s| s.gate_closed = true);
    let (_, ticket) = ipam.submit(|ipam| lease(ipam, subnet, &client(1))).unwrap();
    let opener = std::thread::spawn({
        let probe = probe.clone();
        move || probe.set(|s| s.gate_closed = false)
    });
    let wait = ipam.wait_async(ticket);
    assert_send(&wait);
    wait.await.unwrap();
    opener.join().unwrap();
    assert!(ipam.is_durable(ticket).unwrap());

    probe.set(|s| s.fail_commits = true);
    let (_, ticket) = ipam.submit(|ipam| lease(ipam, subnet, &client(2))).unwrap();
    let err = ipam.wait_async(ticket).await.unwrap_err();
    assert!(matches!(err, DurableError::Commit(_)), "{err:?}");
}
