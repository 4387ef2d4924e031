//! Zones and tags: the durable zones table (the `default` zone and the file's zones always
//! present, others made and deleted through the API), a machine's zone, and its tags.

use maas_ipam::Ticket;
use maas_net::{Mac, Timestamp, Topology};

use super::records::{DEFAULT_ZONE, Machine, Zone, valid_label};
use super::store::Change;
use super::{Memory, State, StateError, event, push_event};

/// Puts the `default` zone and the network model's zones in the table (the file wins for
/// their descriptions); what it changed, to be stored.
pub(super) fn merge(memory: &mut Memory, topology: &Topology) -> Vec<Change> {
    let mut wanted: Vec<Zone> = topology
        .zones()
        .map(|(_, z)| Zone {
            name: z.name.clone(),
            description: z.description.clone(),
        })
        .collect();
    if !wanted.iter().any(|z| z.name == DEFAULT_ZONE) {
        wanted.push(Zone {
            name: DEFAULT_ZONE.into(),
            description: String::new(),
        });
    }
    let mut changes = Vec::new();
    for zone in wanted {
        if memory.zones.get(&zone.name) != Some(&zone) {
            memory.zones.insert(zone.name.clone(), zone.clone());
            changes.push(Change::PutZone(zone));
        }
    }
    changes
}

/// What a tag list becomes: sorted, each once.
fn tidy(tags: &mut Vec<String>) {
    tags.sort();
    tags.dedup();
}

/// Refuses names that are not tags, naming them.
fn check_tags(tags: &[String]) -> Result<(), StateError> {
    let bad: Vec<&str> = tags
        .iter()
        .filter(|t| !valid_label(t))
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "not tag names (letters, digits, '_' and '-' only): {bad:?}"
        )))
    }
}

/// How [`State::change_tags`] changes a machine's tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TagChange {
    /// Replace them all.
    Set(Vec<String>),
    /// Add these and remove those (a tag in both ends up removed).
    Edit {
        /// Tags to add.
        add: Vec<String>,
        /// Tags to remove (absent ones are ignored).
        remove: Vec<String>,
    },
}

impl State {
    /// Every zone, by name.
    pub(crate) fn zones(&self) -> Vec<Zone> {
        self.lock().zones.values().cloned().collect()
    }

    /// Makes a zone.
    pub(crate) fn create_zone(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(Zone, Ticket), StateError> {
        if !valid_label(name) {
            return Err(StateError::Invalid(format!(
                "zone name {name:?}: letters, digits, '_' and '-' only"
            )));
        }
        let mut memory = self.lock();
        if memory.zones.contains_key(name) {
            return Err(StateError::Conflict(format!(
                "zone {name:?} exists already"
            )));
        }
        let zone = Zone {
            name: name.into(),
            description: description.into(),
        };
        memory.zones.insert(zone.name.clone(), zone.clone());
        let ticket = self.commit(vec![Change::PutZone(zone.clone())])?;
        Ok((zone, ticket))
    }

    /// Deletes a zone no machine is in. `default`, and the zones of the network model in the
    /// configuration file, stay.
    pub(crate) fn delete_zone(&self, name: &str) -> Result<(Zone, Ticket), StateError> {
        if name == DEFAULT_ZONE {
            return Err(StateError::Invalid(
                "the default zone cannot be deleted".into(),
            ));
        }
        let in_file = self
            .ipam
            .read(|ipam| ipam.topology().zone_by_name(name).is_some());
        let mut memory = self.lock();
        if !memory.zones.contains_key(name) {
            return Err(StateError::NotFound(format!("zone {name:?}")));
        }
        if in_file {
            return Err(StateError::Conflict(format!(
                "zone {name:?} is in the configuration file's network model: remove it there"
            )));
        }
        let users: Vec<&str> = memory
            .machines
            .values()
            .filter(|m| m.zone == name)
            .map(|m| m.hostname.as_str())
            .chain(
                memory
                    .devices
                    .values()
                    .filter(|d| d.zone == name)
                    .map(|d| d.name.as_str()),
            )
            .collect();
        if !users.is_empty() {
            return Err(StateError::Conflict(format!(
                "zone {name:?} is in use by {}: move them first",
                users.join(", ")
            )));
        }
        let Some(zone) = memory.zones.remove(name) else {
            return Err(StateError::NotFound(format!("zone {name:?}")));
        };
        let ticket = self.commit(vec![Change::RemoveZone(name.into())])?;
        Ok((zone, ticket))
    }

    /// Puts a machine in a zone that exists.
    pub(crate) fn set_zone(
        &self,
        mac: Mac,
        zone: &str,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        if !memory.zones.contains_key(zone) {
            return Err(StateError::Invalid(format!("zone {zone:?} does not exist")));
        }
        let machine = memory.machine_mut(mac)?;
        let before = std::mem::replace(&mut machine.zone, zone.into());
        let out = machine.clone();
        let e = event(mac, now, "zone", Some(format!("{before} to {zone}")));
        push_event(&mut memory, e.clone());
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(out.clone())),
            Change::AddEvent(e),
        ])?;
        Ok((out, ticket))
    }

    /// Sets, adds or removes a machine's tags.
    pub(crate) fn change_tags(
        &self,
        mac: Mac,
        change: TagChange,
    ) -> Result<(Machine, Ticket), StateError> {
        match &change {
            TagChange::Set(tags) => check_tags(tags)?,
            TagChange::Edit { add, .. } => check_tags(add)?,
        }
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        match change {
            TagChange::Set(tags) => machine.tags = tags,
            TagChange::Edit { add, remove } => {
                machine.tags.extend(add);
                machine.tags.retain(|t| !remove.contains(t));
            }
        }
        tidy(&mut machine.tags);
        let out = machine.clone();
        let ticket = self.commit(vec![Change::PutMachine(Box::new(out.clone()))])?;
        Ok((out, ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::valid_label;

    #[test]
    fn tag_and_zone_names_follow_maas() {
        for good in ["gpu", "rack-b", "ssd_2", "ünïcode", "A1"] {
            assert!(valid_label(good), "{good}");
        }
        for bad in [
            "",
            "has space",
            "dot.ted",
            "sl/ash",
            "comma,",
            &"x".repeat(257),
        ] {
            assert!(!valid_label(bad), "{bad}");
        }
    }
}
