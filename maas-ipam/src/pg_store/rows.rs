//! The rows a batch of changes comes to, as the arrays the store's statements take.

use std::collections::BTreeMap;
use std::net::IpAddr;

use maas_net::TopologyDoc;

use super::{PgStore, PgStoreError};
use crate::store::record_key;
use crate::{Change, ClientKey, Record};

impl PgStore {
    /// The rows a batch comes to: the last change of each key, preceded by a removal of the
    /// stored version where the batch removed the key on the way.
    pub(super) fn rows(&self, changes: &[Change]) -> Result<Rows, PgStoreError> {
        let mut topology = None;
        // Per key: the record it ends with (`None`: removed), and whether the batch removed
        // it on the way, in which case the stored version goes first.
        let mut records: BTreeMap<(IpAddr, bool), (Option<&Record>, bool)> = BTreeMap::new();
        let mut bindings: BTreeMap<&ClientKey, Option<IpAddr>> = BTreeMap::new();
        for change in changes {
            match change {
                Change::Topology(doc) => topology = Some(doc),
                Change::PutRecord(record) => {
                    records.entry(record_key(record)).or_default().0 = Some(record);
                }
                Change::RemoveRecord { ip, discovered } => {
                    *records.entry((*ip, *discovered)).or_default() = (None, true);
                }
                Change::PutBinding { client, ip } => {
                    bindings.insert(client, Some(*ip));
                }
                Change::RemoveBinding { client } => {
                    bindings.insert(client, None);
                }
            }
        }
        let mut rows = Rows {
            topology: topology
                .map(|doc: &TopologyDoc| serde_json::to_string(doc))
                .transpose()
                .map_err(|source| PgStoreError::Topology {
                    target: self.target.clone(),
                    action: "encode",
                    source,
                })?,
            ..Rows::default()
        };
        for ((ip, discovered), (record, removed)) in records {
            if removed {
                // Removed, then perhaps put again (for another holder): delete the version
                // this store knows first, so that the put is an insert and not a takeover.
                rows.removed.ips.push(ip);
                rows.removed.discovered.push(discovered);
                let known = self.versions.get(&(ip, discovered)).cloned();
                rows.removed.versions.push(known);
            }
            if let Some(record) = record {
                let bytes = postcard::to_stdvec(record).map_err(|source| {
                    self.codec_error("encode", format!("the record of {ip}"), source)
                })?;
                // The version this store knows, which the write may replace; none after a
                // removal in the same batch (the put is then an insert).
                let prior = if removed {
                    None
                } else {
                    self.versions.get(&(ip, discovered)).cloned()
                };
                rows.put.push(record, discovered, bytes, prior);
            }
        }
        for (client, ip) in bindings {
            let key = postcard::to_stdvec(client).map_err(|source| {
                self.codec_error("encode", format!("the client key {client}"), source)
            })?;
            match ip {
                None => rows.unbound.push(key),
                Some(ip) => {
                    rows.bound.clients.push(key);
                    rows.bound.texts.push(client.to_string());
                    rows.bound.ips.push(ip);
                }
            }
        }
        Ok(rows)
    }
}

/// The rows of one batch, as the arrays its statements take.
#[derive(Default)]
pub(super) struct Rows {
    pub(super) topology: Option<String>,
    pub(super) removed: RecordKeys,
    pub(super) put: RecordRows,
    pub(super) unbound: Vec<Vec<u8>>,
    pub(super) bound: BindingRows,
}

#[derive(Default)]
pub(super) struct RecordKeys {
    pub(super) ips: Vec<IpAddr>,
    pub(super) discovered: Vec<bool>,
    /// The version to remove (see [`schema::REMOVE_RECORDS`](super::schema::REMOVE_RECORDS)).
    pub(super) versions: Vec<Option<Vec<u8>>>,
}

#[derive(Default)]
pub(super) struct RecordRows {
    pub(super) ips: Vec<IpAddr>,
    pub(super) discovered: Vec<bool>,
    pub(super) subnets: Vec<i64>,
    pub(super) kinds: Vec<&'static str>,
    pub(super) macs: Vec<Option<String>>,
    pub(super) owners: Vec<Option<String>>,
    pub(super) lease_clients: Vec<Option<String>>,
    pub(super) lease_states: Vec<Option<&'static str>>,
    pub(super) lease_expires: Vec<Option<i64>>,
    pub(super) created: Vec<i64>,
    pub(super) updated: Vec<i64>,
    pub(super) records: Vec<Vec<u8>>,
    /// Per row: the stored version the write may replace, if this store knows one.
    pub(super) priors: Vec<Option<Vec<u8>>>,
}

impl RecordRows {
    pub(super) fn push(
        &mut self,
        record: &Record,
        discovered: bool,
        bytes: Vec<u8>,
        prior: Option<Vec<u8>>,
    ) {
        let seconds = |t: crate::Timestamp| i64::try_from(t.0).unwrap_or(i64::MAX);
        self.ips.push(record.ip);
        self.discovered.push(discovered);
        self.subnets.push(i64::from(record.subnet.get()));
        self.kinds.push(record.kind.as_str());
        self.macs.push(record.mac.map(|m| m.to_string()));
        self.owners.push(record.owner.clone());
        let lease = record.lease.as_ref();
        self.lease_clients.push(lease.map(|l| l.client.to_string()));
        self.lease_states.push(lease.map(|l| match l.state {
            crate::LeaseState::Offered => "offered",
            crate::LeaseState::Bound => "bound",
            crate::LeaseState::Declined => "declined",
        }));
        self.lease_expires.push(lease.map(|l| seconds(l.expires)));
        self.created.push(seconds(record.created));
        self.updated.push(seconds(record.updated));
        self.records.push(bytes);
        self.priors.push(prior);
    }
}

#[derive(Default)]
pub(super) struct BindingRows {
    pub(super) clients: Vec<Vec<u8>>,
    pub(super) texts: Vec<String>,
    pub(super) ips: Vec<IpAddr>,
}
