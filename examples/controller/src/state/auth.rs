//! Who may call the controller: users and their roles, API tokens (kept as hashes), racks and
//! their credentials, the per-machine credentials handed out in boot configurations, and the
//! audit trail of state-changing calls.

use std::collections::BTreeMap;
use std::net::IpAddr;

use maas_net::{Mac, Timestamp};
use serde::{Deserialize, Serialize};

use super::store::Change;
use super::{Memory, State, StateError};
use crate::auth::token::{Token, TokenHash, TokenId};
use maas_ipam::Ticket;

/// The most audit entries kept in memory for the API (the store keeps them all).
const AUDIT_IN_MEMORY: usize = 10_000;
/// How stale a rack's stored last contact may get before it is written again.
const CONTACT_WRITE_EVERY: u64 = 60;

/// What a user may do. Ordered: each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UserRole {
    /// Reads.
    Viewer,
    /// Also powers machines, sets boot devices, reserves and releases addresses, accepts,
    /// commissions and deploys machines.
    Operator,
    /// Also manages users, tokens, racks, the network model and settings.
    Admin,
}

impl UserRole {
    /// The name in the API, the CLI and the store.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for UserRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UserRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "operator" => Ok(Self::Operator),
            "admin" => Ok(Self::Admin),
            other => Err(format!("role {other:?}: use admin, operator or viewer")),
        }
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) role: UserRole,
    pub(crate) created: Timestamp,
}

/// Whom a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub(crate) enum Owner {
    /// A user, with the user's role.
    User(String),
    /// An enrolled rack.
    Rack(String),
}

/// A token as stored: its hash, never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub(crate) id: TokenId,
    pub(crate) owner: Owner,
    pub(crate) hash: TokenHash,
    pub(crate) created: Timestamp,
    #[serde(default)]
    pub(crate) expires: Option<Timestamp>,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

impl TokenRecord {
    /// What the API and the CLI show of it (no hash).
    pub(crate) fn shown(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "owner": self.owner,
            "created": self.created,
            "expires": self.expires,
            "description": self.description,
        })
    }
}

/// An enrolled rack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RackRecord {
    pub(crate) name: String,
    pub(crate) enrolled: Timestamp,
    pub(crate) last_contact: Timestamp,
    /// The address it last called from.
    #[serde(default)]
    pub(crate) address: Option<IpAddr>,
    /// Its credential's id.
    pub(crate) token: TokenId,
}

/// One state-changing call, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditEntry {
    pub(crate) at: Timestamp,
    /// `user:NAME`, `rack:NAME`, `machine:MAC`, or `anonymous`.
    pub(crate) who: String,
    /// The method and the route (`POST /api/v1/machines/{mac}/power-off`).
    pub(crate) action: String,
    /// What it was about (a MAC, an address, a name), from the path.
    #[serde(default)]
    pub(crate) target: Option<String>,
    /// The HTTP status answered.
    pub(crate) status: u16,
}

/// Who is calling, once their credential is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    /// A user, with the role they have now.
    User { name: String, role: UserRole },
    /// An enrolled rack.
    Rack(String),
    /// A machine, with the credential of its boot configuration.
    Machine(Mac),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User { name, .. } => write!(f, "user:{name}"),
            Self::Rack(name) => write!(f, "rack:{name}"),
            Self::Machine(mac) => write!(f, "machine:{mac}"),
        }
    }
}

/// The controller's access records in memory.
#[derive(Default)]
pub(super) struct Access {
    pub(super) users: BTreeMap<String, User>,
    pub(super) tokens: BTreeMap<TokenId, TokenRecord>,
    pub(super) racks: BTreeMap<String, RackRecord>,
    pub(super) machine_tokens: BTreeMap<Mac, Token>,
    pub(super) machine_by_id: BTreeMap<TokenId, Mac>,
    pub(super) audit: std::collections::VecDeque<AuditEntry>,
}

impl Access {
    pub(super) fn set_machine_token(&mut self, mac: Mac, token: Token) {
        if let Some(old) = self.machine_tokens.insert(mac, token.clone()) {
            self.machine_by_id.remove(&old.id);
        }
        self.machine_by_id.insert(token.id, mac);
    }

    pub(super) fn remove_machine_token(&mut self, mac: Mac) {
        if let Some(old) = self.machine_tokens.remove(&mac) {
            self.machine_by_id.remove(&old.id);
        }
    }

    pub(super) fn push_audit(&mut self, entry: AuditEntry) {
        if self.audit.len() >= AUDIT_IN_MEMORY {
            self.audit.pop_front();
        }
        self.audit.push_back(entry);
    }
}

/// Whether `name` may name a user or a rack: 1 to 32 of lower-case letters, digits, `.`,
/// `_` and `-`, starting with a letter.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn invalid(message: impl Into<String>) -> StateError {
    StateError::Invalid(message.into())
}

/// A fresh machine credential and the change that stores it.
pub(super) fn new_machine_token(mac: Mac) -> Result<(Token, Change), StateError> {
    let token = Token::generate().map_err(|_| StateError::Random)?;
    Ok((
        token.clone(),
        Change::PutMachineToken(mac, token.to_string()),
    ))
}

impl State {
    /// Every user, by name.
    pub(crate) fn users(&self) -> Vec<User> {
        self.lock().access.users.values().cloned().collect()
    }

    /// Adds a user.
    pub(crate) fn add_user(
        &self,
        name: &str,
        role: UserRole,
        now: Timestamp,
    ) -> Result<(User, Ticket), StateError> {
        if !valid_name(name) {
            return Err(invalid(format!(
                "user name {name:?}: 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter"
            )));
        }
        let mut memory = self.lock();
        if memory.access.users.contains_key(name) {
            return Err(invalid(format!("user {name:?} exists already")));
        }
        let user = User {
            name: name.to_string(),
            role,
            created: now,
        };
        memory.access.users.insert(user.name.clone(), user.clone());
        let ticket = self.commit(vec![Change::PutUser(user.clone())])?;
        Ok((user, ticket))
    }

    /// Removes a user and every token of theirs. The last admin cannot be removed.
    pub(crate) fn remove_user(&self, name: &str) -> Result<(User, Ticket), StateError> {
        let mut memory = self.lock();
        let access = &mut memory.access;
        let user = access
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| StateError::NotFound(format!("user {name:?}")))?;
        if user.role == UserRole::Admin
            && access
                .users
                .values()
                .filter(|u| u.role == UserRole::Admin)
                .count()
                == 1
        {
            return Err(invalid(format!(
                "{name:?} is the last admin: add another admin first"
            )));
        }
        access.users.remove(name);
        let owner = Owner::User(name.to_string());
        let gone: Vec<TokenId> = access
            .tokens
            .values()
            .filter(|t| t.owner == owner)
            .map(|t| t.id)
            .collect();
        let mut changes = vec![Change::RemoveUser(name.to_string())];
        for id in gone {
            access.tokens.remove(&id);
            changes.push(Change::RemoveToken(id));
        }
        let ticket = self.commit(changes)?;
        Ok((user, ticket))
    }

    /// Makes a token for user `name`: the token (to show once), its record, the ticket.
    pub(crate) fn create_token(
        &self,
        name: &str,
        expires: Option<Timestamp>,
        description: Option<String>,
        now: Timestamp,
    ) -> Result<(Token, TokenRecord, Ticket), StateError> {
        if let Some(d) = &description
            && (d.len() > 200 || d.chars().any(char::is_control))
        {
            return Err(invalid(
                "a token's description is at most 200 characters, without control characters",
            ));
        }
        let mut memory = self.lock();
        if !memory.access.users.contains_key(name) {
            return Err(StateError::NotFound(format!("user {name:?}")));
        }
        let token = Token::generate().map_err(|_| StateError::Random)?;
        let record = TokenRecord {
            id: token.id,
            owner: Owner::User(name.to_string()),
            hash: token.hash(),
            created: now,
            expires,
            description,
        };
        memory.access.tokens.insert(record.id, record.clone());
        let ticket = self.commit(vec![Change::PutToken(record.clone())])?;
        Ok((token, record, ticket))
    }

    /// The tokens of users (all, or one user's), without their hashes' use: for listing.
    pub(crate) fn tokens(&self, user: Option<&str>) -> Vec<TokenRecord> {
        self.lock()
            .access
            .tokens
            .values()
            .filter(|t| match (&t.owner, user) {
                (Owner::User(_), None) => true,
                (Owner::User(owner), Some(user)) => owner == user,
                (Owner::Rack(_), _) => false,
            })
            .cloned()
            .collect()
    }

    /// Revokes a user's token: it stops working at once.
    pub(crate) fn revoke_token(&self, id: TokenId) -> Result<(TokenRecord, Ticket), StateError> {
        let mut memory = self.lock();
        match memory.access.tokens.get(&id) {
            Some(TokenRecord {
                owner: Owner::User(_),
                ..
            }) => {}
            Some(_) => {
                return Err(invalid(format!(
                    "token {id} is a rack's credential: remove the rack instead"
                )));
            }
            None => return Err(StateError::NotFound(format!("token {id}"))),
        }
        let record = memory
            .access
            .tokens
            .remove(&id)
            .ok_or_else(|| StateError::NotFound(format!("token {id}")))?;
        let ticket = self.commit(vec![Change::RemoveToken(id)])?;
        Ok((record, ticket))
    }

    /// Who `token` speaks for at `now`, if anyone: a user's or rack's token that matches its
    /// stored hash and has not expired, or a machine's current credential.
    pub(crate) fn authenticate(&self, token: &Token, now: Timestamp) -> Option<Principal> {
        let memory = self.lock();
        let access = &memory.access;
        if let Some(record) = access.tokens.get(&token.id) {
            if !record.hash.matches(token) || record.expires.is_some_and(|e| e <= now) {
                return None;
            }
            return match &record.owner {
                Owner::User(name) => access.users.get(name).map(|u| Principal::User {
                    name: u.name.clone(),
                    role: u.role,
                }),
                Owner::Rack(name) => access
                    .racks
                    .get(name)
                    .filter(|r| r.token == token.id)
                    .map(|_| Principal::Rack(name.clone())),
            };
        }
        let mac = access.machine_by_id.get(&token.id)?;
        let current = access.machine_tokens.get(mac)?;
        current
            .hash()
            .matches(token)
            .then_some(Principal::Machine(*mac))
    }

    /// Enrols rack `name`: its record and its own credential (to hand it once). A name that
    /// is enrolled already is refused: an admin removes the rack first.
    pub(crate) fn enrol_rack(
        &self,
        name: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(Token, Ticket), StateError> {
        if !valid_name(name) {
            return Err(invalid(format!(
                "rack name {name:?}: 1 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter"
            )));
        }
        let mut memory = self.lock();
        if memory.access.racks.contains_key(name) {
            return Err(StateError::Conflict(format!(
                "rack {name:?} is enrolled already: an admin removes it before it can enrol again"
            )));
        }
        let token = Token::generate().map_err(|_| StateError::Random)?;
        let record = TokenRecord {
            id: token.id,
            owner: Owner::Rack(name.to_string()),
            hash: token.hash(),
            created: now,
            expires: None,
            description: Some(format!("rack {name}")),
        };
        let rack = RackRecord {
            name: name.to_string(),
            enrolled: now,
            last_contact: now,
            address,
            token: token.id,
        };
        memory.access.tokens.insert(record.id, record.clone());
        memory.access.racks.insert(rack.name.clone(), rack.clone());
        let ticket = self.commit(vec![Change::PutToken(record), Change::PutRack(rack)])?;
        Ok((token, ticket))
    }

    /// Every enrolled rack, by name.
    pub(crate) fn racks(&self) -> Vec<RackRecord> {
        self.lock().access.racks.values().cloned().collect()
    }

    /// Removes a rack: its credential stops working at once.
    pub(crate) fn remove_rack(&self, name: &str) -> Result<(RackRecord, Ticket), StateError> {
        let mut memory = self.lock();
        let rack = memory
            .access
            .racks
            .remove(name)
            .ok_or_else(|| StateError::NotFound(format!("rack {name:?}")))?;
        memory.access.tokens.remove(&rack.token);
        let ticket = self.commit(vec![
            Change::RemoveRack(name.to_string()),
            Change::RemoveToken(rack.token),
        ])?;
        Ok((rack, ticket))
    }

    /// Notes a rack's call; stored when the stored time is more than a minute old.
    pub(crate) fn rack_contact(
        &self,
        name: &str,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let mut memory = self.lock();
        let Some(rack) = memory.access.racks.get_mut(name) else {
            return Ok(());
        };
        let stale = now.0.saturating_sub(rack.last_contact.0) >= CONTACT_WRITE_EVERY;
        let moved = address.is_some() && rack.address != address;
        rack.last_contact = now;
        if address.is_some() {
            rack.address = address;
        }
        if stale || moved {
            let rack = rack.clone();
            // Nothing waits for it.
            let _ = self.commit(vec![Change::PutRack(rack)])?;
        }
        Ok(())
    }

    /// A machine's current credential, for its boot configuration.
    pub(crate) fn machine_token(&self, mac: Mac) -> Option<Token> {
        self.lock().access.machine_tokens.get(&mac).cloned()
    }

    /// Every machine's credential (a rack's boot configurations need them).
    pub(crate) fn machine_tokens(&self) -> BTreeMap<Mac, String> {
        self.lock()
            .access
            .machine_tokens
            .iter()
            .map(|(mac, t)| (*mac, t.to_string()))
            .collect()
    }

    /// Replaces every machine credential (a rack's copy of its region's), in memory only.
    pub(crate) fn replace_machine_tokens(&self, tokens: &BTreeMap<Mac, String>) {
        let mut memory = self.lock();
        memory.access.machine_tokens.clear();
        memory.access.machine_by_id.clear();
        for (mac, text) in tokens {
            if let Ok(token) = Token::parse(text.as_bytes()) {
                memory.access.set_machine_token(*mac, token);
            }
        }
    }

    /// Records one state-changing call; the ticket to wait for before answering.
    pub(crate) fn audit(&self, entry: AuditEntry) -> Result<Ticket, StateError> {
        self.lock().access.push_audit(entry.clone());
        self.commit(vec![Change::AddAudit(entry)])
    }

    /// The audit trail, oldest first, filtered by who (`user:NAME`...) and target.
    pub(crate) fn audit_entries(
        &self,
        who: Option<&str>,
        target: Option<&str>,
        limit: usize,
    ) -> Vec<AuditEntry> {
        let memory = self.lock();
        let mut out: Vec<AuditEntry> = memory
            .access
            .audit
            .iter()
            .rev()
            .filter(|e| who.is_none_or(|w| e.who == w))
            .filter(|e| target.is_none_or(|t| e.target.as_deref() == Some(t)))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
impl State {
    /// Gives user `name` (made with `role` if absent) the token `text`, known in advance.
    pub(crate) fn add_token_for_tests(&self, name: &str, role: UserRole, text: &str) {
        let now = Timestamp(1);
        if !self.lock().access.users.contains_key(name) {
            let (_, ticket) = self.add_user(name, role, now).expect("a valid user");
            self.durable_blocking(ticket).expect("durable");
        }
        let token = Token::parse(text.as_bytes()).expect("a token");
        let record = TokenRecord {
            id: token.id,
            owner: Owner::User(name.to_string()),
            hash: token.hash(),
            created: now,
            expires: None,
            description: None,
        };
        self.lock().access.tokens.insert(record.id, record.clone());
        let ticket = self.commit(vec![Change::PutToken(record)]).expect("staged");
        self.durable_blocking(ticket).expect("durable");
    }
}

/// Loads access records read back from the store into memory.
pub(super) fn load(memory: &mut Memory, loaded: &mut super::store::Records) {
    let access = &mut memory.access;
    access.users = std::mem::take(&mut loaded.users)
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    access.tokens = std::mem::take(&mut loaded.tokens)
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    access.racks = std::mem::take(&mut loaded.racks)
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    for (mac, text) in std::mem::take(&mut loaded.machine_tokens) {
        if let Ok(token) = Token::parse(text.as_bytes()) {
            access.set_machine_token(mac, token);
        }
    }
    let audit = std::mem::take(&mut loaded.audit);
    let skip = audit.len().saturating_sub(AUDIT_IN_MEMORY);
    access.audit = audit.into_iter().skip(skip).collect();
}
