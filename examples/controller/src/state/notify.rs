//! What changed, coarsely: each commit of the state, and each reload of another region's
//! changes, is announced to whoever follows (the web dashboard's event stream) as a set of
//! kinds. No data travels with it: followers read the state again.

use tokio::sync::broadcast;

use super::store::Change;

/// How many announcements a slow follower may fall behind before it is told "everything".
const BACKLOG: usize = 256;

/// A set of kinds of records that changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Kinds(u8);

impl Kinds {
    /// Machines, their power states and events.
    pub(crate) const MACHINES: Self = Self(1);
    /// Unknown devices seen on the wire.
    pub(crate) const DISCOVERIES: Self = Self(1 << 1);
    /// Subnets, leases, addresses, devices, zones and domains.
    pub(crate) const NETWORK: Self = Self(1 << 2);
    /// Racks.
    pub(crate) const RACKS: Self = Self(1 << 3);
    /// Users, tokens and the audit trail.
    pub(crate) const ACCESS: Self = Self(1 << 4);
    /// Every kind (a reload, or a follower that fell behind).
    pub(crate) const ALL: Self = Self(0x1f);

    const NAMES: [(Self, &'static str); 5] = [
        (Self::MACHINES, "machines"),
        (Self::DISCOVERIES, "discoveries"),
        (Self::NETWORK, "network"),
        (Self::RACKS, "racks"),
        (Self::ACCESS, "access"),
    ];

    /// Whether no kind is in the set.
    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets.
    #[must_use]
    pub(crate) const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every kind of `other` is in this set.
    pub(crate) const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The kinds' names, comma-separated (`machines,discoveries`).
    pub(crate) fn names(self) -> String {
        Self::NAMES
            .iter()
            .filter(|(k, _)| self.contains(*k))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What a change touches.
    pub(super) const fn of(change: &Change) -> Self {
        match change {
            Change::PutMachine(_)
            | Change::RemoveMachine(_)
            | Change::AddEvent(_)
            | Change::PutPower(..)
            | Change::RemovePower(_)
            | Change::PutMachineToken(..)
            | Change::RemoveMachineToken(_) => Self::MACHINES,
            Change::PutDiscovery(_) | Change::RemoveDiscovery(..) => Self::DISCOVERIES,
            Change::PutZone(_)
            | Change::RemoveZone(_)
            | Change::PutDevice(_)
            | Change::RemoveDevice(_)
            | Change::PutDomain(_)
            | Change::RemoveDomain(_)
            | Change::PutResource(_) => Self::NETWORK,
            Change::PutRack(_) | Change::RemoveRack(_) => Self::RACKS,
            Change::PutUser(_)
            | Change::RemoveUser(_)
            | Change::PutToken(_)
            | Change::RemoveToken(_)
            | Change::AddAudit(_) => Self::ACCESS,
        }
    }
}

/// Announces changes to every follower; a change with no follower is dropped.
pub(crate) struct Notifier(broadcast::Sender<Kinds>);

impl Default for Notifier {
    fn default() -> Self {
        Self(broadcast::channel(BACKLOG).0)
    }
}

impl Notifier {
    /// Announces `kinds` (nothing when empty).
    pub(crate) fn send(&self, kinds: Kinds) {
        if !kinds.is_empty() {
            // No follower is not an error.
            let _ = self.0.send(kinds);
        }
    }

    /// A new follower: it hears of changes announced from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Kinds> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_combine_and_name_themselves() {
        let k = Kinds::MACHINES.with(Kinds::DISCOVERIES);
        assert!(k.contains(Kinds::MACHINES));
        assert!(!k.contains(Kinds::RACKS));
        assert_eq!(k.names(), "machines,discoveries");
        assert_eq!(
            Kinds::ALL.names(),
            "machines,discoveries,network,racks,access"
        );
        assert!(Kinds::default().is_empty());
        assert_eq!(
            Kinds::of(&Change::RemoveDiscovery(0, [10, 77, 0, 1].into())),
            Kinds::DISCOVERIES
        );
    }

    #[test]
    fn a_follower_hears_what_is_sent_after_it_subscribed() {
        let notifier = Notifier::default();
        notifier.send(Kinds::RACKS);
        let mut rx = notifier.subscribe();
        notifier.send(Kinds::default());
        notifier.send(Kinds::MACHINES);
        assert_eq!(rx.try_recv().ok(), Some(Kinds::MACHINES));
        assert!(rx.try_recv().is_err());
    }
}
