//! Writing: the address store's commit hook, which writes the staged changes in each of its
//! transactions and announces the commit to the other regions.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};

use maas_ipam::postgres::Transaction;
use maas_ipam::{PgCommitHook, PgHookError};
use serde::Serialize;

use super::{CHANNEL, Shared, Staged, Want};
use crate::state::store::Change;

/// Writes the staged changes in the address store's transactions.
pub(super) struct Hook {
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) signal: Sender<Want>,
}

impl PgCommitHook for Hook {
    fn pending(&mut self) -> bool {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        !shared.staged.is_empty() || !shared.current.is_empty()
    }

    fn write(&mut self, txn: &mut Transaction<'_>, addresses: bool) -> Result<(), PgHookError> {
        let (current, origin) = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            if shared.current.is_empty() {
                shared.current = std::mem::take(&mut shared.staged);
            }
            (shared.current.clone(), shared.origin.clone())
        };
        for staged in &current {
            write(txn, staged)?;
        }
        let changed = Want {
            addresses,
            records: !current.is_empty(),
        };
        if changed.any() {
            txn.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &changed.payload(&origin)],
            )?;
        }
        Ok(())
    }

    fn finished(&mut self, committed: bool) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.current.clear();
        if !committed {
            // Memory holds what was refused, and the revisions assumed it: read back (the
            // address manager reloads itself).
            let _ = self.signal.send(Want {
                addresses: false,
                records: true,
            });
        }
    }

    fn loaded(&mut self) {
        // After a refusal every operation queued so far fails: what they staged must not
        // reach the database with a later batch.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if !shared.staged.is_empty() {
            shared.staged.clear();
            let _ = self.signal.send(Want {
                addresses: false,
                records: true,
            });
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    // Typed records encode infallibly: no map with non-string keys, no failing Serialize.
    serde_json::to_string(value).unwrap_or_default()
}

/// Writes one change.
fn write(txn: &mut Transaction<'_>, staged: &Staged) -> Result<(), PgHookError> {
    let upsert = |table: &str, key: &str, cast: &str| {
        format!(
            "INSERT INTO {table} ({key}, doc) VALUES ($1{cast}, $2::text::jsonb) \
             ON CONFLICT ({key}) DO UPDATE SET doc = EXCLUDED.doc"
        )
    };
    match &staged.change {
        Change::PutMachine(m) => {
            // From the revision this region saw; a batch tried again after a lost connection
            // finds its own write, which it may write again.
            let rows = txn.query(
                "INSERT INTO ctl_machines AS m (mac, rev, writer, doc)
                 VALUES ($1::text::macaddr, $2::bigint + 1, $4, $3::text::jsonb)
                 ON CONFLICT (mac) DO UPDATE
                     SET rev = EXCLUDED.rev, writer = EXCLUDED.writer, doc = EXCLUDED.doc
                 WHERE m.rev = $2::bigint OR (m.rev = EXCLUDED.rev AND m.writer = EXCLUDED.writer)
                 RETURNING rev",
                &[&m.mac.to_string(), &staged.rev, &json(&**m), &staged.writer],
            )?;
            if rows.is_empty() {
                return Err(PgHookError::Refused(format!(
                    "machine {} was changed by another region meanwhile; try again",
                    m.mac
                )));
            }
        }
        Change::RemoveMachine(mac) => {
            let row = txn.query_opt(
                "SELECT rev FROM ctl_machines WHERE mac = $1::text::macaddr FOR UPDATE",
                &[&mac.to_string()],
            )?;
            if let Some(row) = row {
                let rev: i64 = row.try_get(0)?;
                if rev != staged.rev {
                    return Err(PgHookError::Refused(format!(
                        "machine {mac} was changed by another region meanwhile; try again"
                    )));
                }
                txn.execute(
                    "DELETE FROM ctl_machines WHERE mac = $1::text::macaddr",
                    &[&mac.to_string()],
                )?;
            }
        }
        Change::PutDiscovery(d) => {
            txn.execute(
                "INSERT INTO ctl_discoveries (vid, ip, doc) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (vid, ip) DO UPDATE SET doc = EXCLUDED.doc",
                &[&i32::from(d.vid), &d.ip, &json(&**d)],
            )?;
        }
        Change::AddEvent(e) => {
            txn.execute(
                "INSERT INTO ctl_events (mac, doc) VALUES ($1::text::macaddr, $2::text::jsonb)",
                &[&e.mac.to_string(), &json(e)],
            )?;
        }
        Change::PutPower(mac, seen) => {
            txn.execute(
                &upsert("ctl_power", "mac", "::text::macaddr"),
                &[&mac.to_string(), &json(seen)],
            )?;
        }
        Change::RemovePower(mac) => {
            txn.execute(
                "DELETE FROM ctl_power WHERE mac = $1::text::macaddr",
                &[&mac.to_string()],
            )?;
        }
        Change::PutUser(u) => {
            txn.execute(&upsert("ctl_users", "name", ""), &[&u.name, &json(u)])?;
        }
        Change::RemoveUser(name) => {
            txn.execute("DELETE FROM ctl_users WHERE name = $1", &[name])?;
        }
        Change::PutToken(t) => {
            txn.execute(&upsert("ctl_tokens", "id", ""), &[&&t.id.0[..], &json(t)])?;
        }
        Change::RemoveToken(id) => {
            txn.execute("DELETE FROM ctl_tokens WHERE id = $1", &[&&id.0[..]])?;
        }
        Change::PutRack(r) => {
            txn.execute(&upsert("ctl_racks", "name", ""), &[&r.name, &json(r)])?;
        }
        Change::RemoveRack(name) => {
            txn.execute("DELETE FROM ctl_racks WHERE name = $1", &[name])?;
        }
        Change::PutMachineToken(mac, text) => {
            txn.execute(
                "INSERT INTO ctl_machine_tokens (mac, token) VALUES ($1::text::macaddr, $2)
                 ON CONFLICT (mac) DO UPDATE SET token = EXCLUDED.token",
                &[&mac.to_string(), text],
            )?;
        }
        Change::RemoveMachineToken(mac) => {
            txn.execute(
                "DELETE FROM ctl_machine_tokens WHERE mac = $1::text::macaddr",
                &[&mac.to_string()],
            )?;
        }
        Change::AddAudit(entry) => {
            txn.execute(
                "INSERT INTO ctl_audit (doc) VALUES ($1::text::jsonb)",
                &[&json(entry)],
            )?;
        }
        Change::PutResource(r) => {
            txn.execute(
                &upsert("ctl_boot_resources", "key", ""),
                &[&r.key(), &json(&**r)],
            )?;
        }
        Change::PutZone(z) => {
            txn.execute(&upsert("ctl_zones", "name", ""), &[&z.name, &json(z)])?;
        }
        Change::RemoveZone(name) => {
            txn.execute("DELETE FROM ctl_zones WHERE name = $1", &[name])?;
        }
        Change::RemoveDiscovery(vid, ip) => {
            txn.execute(
                "DELETE FROM ctl_discoveries WHERE vid = $1 AND ip = $2",
                &[&i32::from(*vid), ip],
            )?;
        }
        Change::PutDevice(d) => {
            txn.execute(&upsert("ctl_devices", "name", ""), &[&d.name, &json(&**d)])?;
        }
        Change::RemoveDevice(name) => {
            txn.execute("DELETE FROM ctl_devices WHERE name = $1", &[name])?;
        }
        Change::PutDomain(d) => {
            txn.execute(&upsert("ctl_domains", "name", ""), &[&d.name, &json(d)])?;
        }
        Change::RemoveDomain(name) => {
            txn.execute("DELETE FROM ctl_domains WHERE name = $1", &[name])?;
        }
    }
    Ok(())
}
