//! Reading: every table in one consistent view, and the records decoded.

use std::collections::HashMap;

use maas_ipam::postgres::{Client, IsolationLevel};
use maas_net::Mac;
use serde::de::DeserializeOwned;

use super::PgRecordsError;
use crate::state::store::Records;

/// Reads every table in one consistent view: the machines' revisions and the records (the
/// most recent `recent` events and audit entries).
pub(super) fn read_all(
    client: &mut Client,
    target: &str,
    recent: i64,
) -> Result<(HashMap<Mac, i64>, Records), PgRecordsError> {
    let db = |action: &'static str| {
        move |source| PgRecordsError::Database {
            target: target.to_owned(),
            action,
            source,
        }
    };
    let mut txn = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(db("begin a read"))?;
    // `limited`: the query takes the row limit as its parameter.
    let mut docs = |sql: &str, limited: bool, what: &'static str| {
        let rows = if limited {
            txn.query(sql, &[&recent])
        } else {
            txn.query(sql, &[])
        }
        .map_err(db(what))?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map_err(db(what)))
            .collect::<Result<Vec<String>, PgRecordsError>>()
    };
    let mut records = Records {
        discoveries: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_discoveries ORDER BY vid, ip",
                false,
                "read the discoveries",
            )?,
            target,
            "discovery",
        )?,
        events: decode_all(
            &docs(
                "SELECT doc::text FROM (SELECT id, doc FROM ctl_events ORDER BY id DESC LIMIT $1) e
             ORDER BY id",
                true,
                "read the events",
            )?,
            target,
            "machine event",
        )?,
        users: decode_all(
            &docs("SELECT doc::text FROM ctl_users", false, "read the users")?,
            target,
            "user",
        )?,
        tokens: decode_all(
            &docs("SELECT doc::text FROM ctl_tokens", false, "read the tokens")?,
            target,
            "token",
        )?,
        racks: decode_all(
            &docs("SELECT doc::text FROM ctl_racks", false, "read the racks")?,
            target,
            "rack",
        )?,
        audit: decode_all(
            &docs(
                "SELECT doc::text FROM (SELECT id, doc FROM ctl_audit ORDER BY id DESC LIMIT $1) a
             ORDER BY id",
                true,
                "read the audit trail",
            )?,
            target,
            "audit entry",
        )?,
        resources: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_boot_resources ORDER BY key",
                false,
                "read the boot resources",
            )?,
            target,
            "boot resource",
        )?,
        zones: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_zones ORDER BY name",
                false,
                "read the zones",
            )?,
            target,
            "zone",
        )?,
        devices: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_devices ORDER BY name",
                false,
                "read the devices",
            )?,
            target,
            "device",
        )?,
        domains: decode_all(
            &docs(
                "SELECT doc::text FROM ctl_domains ORDER BY name",
                false,
                "read the domains",
            )?,
            target,
            "domain",
        )?,
        ..Records::default()
    };
    let mut revs = HashMap::new();
    for row in txn
        .query("SELECT rev, doc::text FROM ctl_machines ORDER BY mac", &[])
        .map_err(db("read the machines"))?
    {
        let rev: i64 = row.try_get(0).map_err(db("read a machine"))?;
        let doc: String = row.try_get(1).map_err(db("read a machine"))?;
        let machine: crate::state::Machine = decode(&doc, target, "machine")?;
        revs.insert(machine.mac, rev);
        records.machines.push(machine);
    }
    for row in txn
        .query("SELECT mac::text, doc::text FROM ctl_power", &[])
        .map_err(db("read the power states"))?
    {
        let mac: String = row.try_get(0).map_err(db("read a power state"))?;
        let doc: String = row.try_get(1).map_err(db("read a power state"))?;
        if let Ok(mac) = mac.parse::<Mac>() {
            records
                .power
                .push((mac, decode(&doc, target, "power state")?));
        }
    }
    for row in txn
        .query("SELECT mac::text, token FROM ctl_machine_tokens", &[])
        .map_err(db("read the machine credentials"))?
    {
        let mac: String = row.try_get(0).map_err(db("read a machine credential"))?;
        let token: String = row.try_get(1).map_err(db("read a machine credential"))?;
        if let Ok(mac) = mac.parse::<Mac>() {
            records.machine_tokens.push((mac, token));
        }
    }
    txn.commit().map_err(db("end a read"))?;
    Ok((revs, records))
}

fn decode_all<T: DeserializeOwned>(
    docs: &[String],
    target: &str,
    what: &'static str,
) -> Result<Vec<T>, PgRecordsError> {
    docs.iter().map(|d| decode(d, target, what)).collect()
}

fn decode<T: DeserializeOwned>(
    doc: &str,
    target: &str,
    what: &'static str,
) -> Result<T, PgRecordsError> {
    serde_json::from_str(doc).map_err(|source| PgRecordsError::Decode {
        target: target.to_owned(),
        what,
        source,
    })
}
