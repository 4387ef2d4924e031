//! DNS domains: the durable domains table (the default `maas` always present, others made,
//! changed and deleted through the API) and a machine's domain.

use maas_ipam::Ticket;
use maas_net::{Mac, Timestamp};

use super::records::{DEFAULT_DOMAIN, Domain, Machine, valid_domain};
use super::store::Change;
use super::{Memory, State, StateError, event, push_event};

/// The most a TTL may be (RFC 2181: 2^31 - 1 seconds).
const MAX_TTL: u32 = i32::MAX as u32;

/// Puts the default domain in the table when it is missing; what it changed, to be stored.
pub(super) fn merge(memory: &mut Memory) -> Vec<Change> {
    if memory.domains.contains_key(DEFAULT_DOMAIN) {
        return Vec::new();
    }
    let domain = Domain {
        name: DEFAULT_DOMAIN.into(),
        authoritative: true,
        ttl: None,
    };
    memory.domains.insert(domain.name.clone(), domain.clone());
    vec![Change::PutDomain(domain)]
}

/// Refuses what cannot be a domain, saying why.
fn check(domain: &Domain) -> Result<(), StateError> {
    if !valid_domain(&domain.name) {
        return Err(StateError::Invalid(format!(
            "domain name {:?}: labels of letters, digits and '-' (1-63 each, not starting or \
             ending with '-'), separated by dots, 253 characters at most",
            domain.name
        )));
    }
    if domain.ttl.is_some_and(|t| t > MAX_TTL) {
        return Err(StateError::Invalid(format!(
            "ttl {}: at most {MAX_TTL} seconds",
            domain.ttl.unwrap_or_default()
        )));
    }
    Ok(())
}

/// The host names of the machines in `name`.
fn users<'m>(memory: &'m Memory, name: &str) -> Vec<&'m str> {
    memory
        .machines
        .values()
        .filter(|m| m.domain == name)
        .map(|m| m.hostname.as_str())
        .chain(
            memory
                .devices
                .values()
                .filter(|d| d.domain == name)
                .map(|d| d.name.as_str()),
        )
        .collect()
}

impl State {
    /// Every domain, by name.
    pub(crate) fn domains(&self) -> Vec<Domain> {
        self.lock().domains.values().cloned().collect()
    }

    /// The domain `name`.
    pub(crate) fn domain(&self, name: &str) -> Option<Domain> {
        self.lock().domains.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Makes a domain (its name lower-cased).
    pub(crate) fn create_domain(&self, mut domain: Domain) -> Result<(Domain, Ticket), StateError> {
        domain.name = domain.name.to_ascii_lowercase();
        check(&domain)?;
        let mut memory = self.lock();
        if memory.domains.contains_key(&domain.name) {
            return Err(StateError::Conflict(format!(
                "domain {:?} exists already",
                domain.name
            )));
        }
        memory.domains.insert(domain.name.clone(), domain.clone());
        let ticket = self.commit(vec![Change::PutDomain(domain.clone())])?;
        Ok((domain, ticket))
    }

    /// Changes a domain's authority and TTL (not its name).
    pub(crate) fn update_domain(
        &self,
        name: &str,
        authoritative: Option<bool>,
        ttl: Option<Option<u32>>,
    ) -> Result<(Domain, Ticket), StateError> {
        let mut memory = self.lock();
        let Some(domain) = memory.domains.get_mut(&name.to_ascii_lowercase()) else {
            return Err(StateError::NotFound(format!("domain {name:?}")));
        };
        let mut changed = domain.clone();
        if let Some(a) = authoritative {
            changed.authoritative = a;
        }
        if let Some(t) = ttl {
            changed.ttl = t;
        }
        check(&changed)?;
        *domain = changed.clone();
        let ticket = self.commit(vec![Change::PutDomain(changed.clone())])?;
        Ok((changed, ticket))
    }

    /// Deletes a domain no machine is in; the default one stays.
    pub(crate) fn delete_domain(&self, name: &str) -> Result<(Domain, Ticket), StateError> {
        let name = name.to_ascii_lowercase();
        if name == DEFAULT_DOMAIN {
            return Err(StateError::Invalid(
                "the default domain cannot be deleted".into(),
            ));
        }
        let mut memory = self.lock();
        if !memory.domains.contains_key(&name) {
            return Err(StateError::NotFound(format!("domain {name:?}")));
        }
        let in_use = users(&memory, &name);
        if !in_use.is_empty() {
            return Err(StateError::Conflict(format!(
                "domain {name:?} is in use by {}: move them first",
                in_use.join(", ")
            )));
        }
        let Some(domain) = memory.domains.remove(&name) else {
            return Err(StateError::NotFound(format!("domain {name:?}")));
        };
        let ticket = self.commit(vec![Change::RemoveDomain(name)])?;
        Ok((domain, ticket))
    }

    /// Puts a machine in a domain that exists.
    pub(crate) fn set_domain(
        &self,
        mac: Mac,
        domain: &str,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let domain = domain.to_ascii_lowercase();
        let mut memory = self.lock();
        if !memory.domains.contains_key(&domain) {
            return Err(StateError::Invalid(format!(
                "domain {domain:?} does not exist"
            )));
        }
        let machine = memory.machine_mut(mac)?;
        let before = std::mem::replace(&mut machine.domain, domain.clone());
        let out = machine.clone();
        let e = event(mac, now, "domain", Some(format!("{before} to {domain}")));
        push_event(&mut memory, e.clone());
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(out.clone())),
            Change::AddEvent(e),
        ])?;
        Ok((out, ticket))
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::valid_domain;

    #[test]
    fn domain_names_are_dns_names() {
        for good in ["maas", "example.org", "a-b.c1", &"x".repeat(63)] {
            assert!(valid_domain(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a",
            "a-",
            "a_b",
            "sp ace",
            &"x".repeat(64),
            "a.",
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }
}
