//! Availability zones.

use crate::{Error, Kind, Zone, ZoneId};

use super::{Topology, check_name, not_found};

impl Topology {
    // ---- zones ---------------------------------------------------------------------------

    /// Add a zone.
    pub fn create_zone(&mut self, zone: Zone) -> Result<ZoneId, Error> {
        self.insert_zone(None, zone)
    }

    pub(crate) fn insert_zone(&mut self, id: Option<ZoneId>, zone: Zone) -> Result<ZoneId, Error> {
        let id = id.unwrap_or(ZoneId::new(self.next.zone));
        if self.zones.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Zone,
                id: id.get(),
            });
        }
        self.check_zone(id, &zone)?;
        self.zones.insert(id, zone);
        self.next.zone = self.next.zone.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a zone. The default zone cannot be renamed.
    pub fn update_zone(&mut self, id: ZoneId, change: impl FnOnce(&mut Zone)) -> Result<(), Error> {
        let old = self.zones.get(&id).ok_or(not_found(Kind::Zone, id.get()))?;
        let mut zone = old.clone();
        change(&mut zone);
        if id == Self::DEFAULT_ZONE && zone.name != old.name {
            return Err(Error::DefaultZone {
                zone: old.name.clone(),
                action: "renamed",
            });
        }
        self.check_zone(id, &zone)?;
        self.zones.insert(id, zone);
        Ok(())
    }

    /// Delete a zone. Refused for the default zone.
    pub fn delete_zone(&mut self, id: ZoneId) -> Result<Zone, Error> {
        let zone = self.zones.get(&id).ok_or(not_found(Kind::Zone, id.get()))?;
        if id == Self::DEFAULT_ZONE {
            return Err(Error::DefaultZone {
                zone: zone.name.clone(),
                action: "deleted",
            });
        }
        Ok(self.zones.remove(&id).expect("checked above"))
    }

    fn check_zone(&self, id: ZoneId, zone: &Zone) -> Result<(), Error> {
        check_name(Kind::Zone, &zone.name, id.get(), None)?;
        if self
            .zones
            .iter()
            .any(|(o, z)| *o != id && z.name == zone.name)
        {
            return Err(Error::NameInUse {
                kind: Kind::Zone,
                name: zone.name.clone(),
            });
        }
        Ok(())
    }
}
