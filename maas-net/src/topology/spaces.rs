//! Spaces.

use crate::{Error, Kind, Space, SpaceId};

use super::{Topology, check_name, not_found};

impl Topology {
    // ---- spaces --------------------------------------------------------------------------

    /// Add a space. An empty name becomes `space-<id>`.
    pub fn create_space(&mut self, space: Space) -> Result<SpaceId, Error> {
        self.insert_space(None, space)
    }

    pub(crate) fn insert_space(
        &mut self,
        id: Option<SpaceId>,
        mut space: Space,
    ) -> Result<SpaceId, Error> {
        let id = id.unwrap_or(SpaceId::new(self.next.space));
        if self.spaces.contains_key(&id) {
            return Err(Error::IdInUse {
                kind: Kind::Space,
                id: id.get(),
            });
        }
        if space.name.is_empty() {
            space.name = format!("space-{id}");
        }
        self.check_space(id, &space)?;
        self.spaces.insert(id, space);
        self.next.space = self.next.space.max(id.get().saturating_add(1));
        Ok(id)
    }

    /// Change a space. An empty name becomes `space-<id>`.
    pub fn update_space(
        &mut self,
        id: SpaceId,
        change: impl FnOnce(&mut Space),
    ) -> Result<(), Error> {
        let mut space = self
            .spaces
            .get(&id)
            .ok_or(not_found(Kind::Space, id.get()))?
            .clone();
        change(&mut space);
        if space.name.is_empty() {
            space.name = format!("space-{id}");
        }
        self.check_space(id, &space)?;
        self.spaces.insert(id, space);
        Ok(())
    }

    /// Delete a space; its VLANs are left without one.
    pub fn delete_space(&mut self, id: SpaceId) -> Result<Space, Error> {
        let space = self
            .spaces
            .remove(&id)
            .ok_or(not_found(Kind::Space, id.get()))?;
        for vlan in self.vlans.values_mut().filter(|v| v.space == Some(id)) {
            vlan.space = None;
        }
        Ok(space)
    }

    fn check_space(&self, id: SpaceId, space: &Space) -> Result<(), Error> {
        check_name(Kind::Space, &space.name, id.get(), Some("space"))?;
        if self
            .spaces
            .iter()
            .any(|(o, s)| *o != id && s.name == space.name)
        {
            return Err(Error::NameInUse {
                kind: Kind::Space,
                name: space.name.clone(),
            });
        }
        Ok(())
    }
}
