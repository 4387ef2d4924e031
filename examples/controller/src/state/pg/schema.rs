//! The controller's tables: their migrations, in order, and how they are applied beside the
//! address store's schema.

use maas_ipam::postgres::{Client, IsolationLevel};

use super::PgRecordsError;

/// Under this component the controller's migrations are recorded in `maas_schema`.
const COMPONENT: &str = "controller";
/// Taken while migrating ("maas-ctl" in ASCII): one process migrates at a time.
const MIGRATION_LOCK: i64 = 0x6d61_6173_2d63_746c;

/// Every migration of the controller's tables, in order. Never edit one that has shipped.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "machines, discoveries, events, power, users, tokens, racks, audit, resources, zones",
        r"
CREATE TABLE ctl_machines (
    mac  macaddr PRIMARY KEY,
    -- Starts at 1, one more per write: a write names the revision it started from.
    rev     bigint  NOT NULL CHECK (rev > 0),
    -- Which write made this revision (region and sequence): a batch tried again after a lost
    -- connection recognises its own.
    writer  text    NOT NULL,
    doc     jsonb   NOT NULL
);
CREATE TABLE ctl_discoveries (
    vid  integer NOT NULL,
    ip   inet    NOT NULL,
    doc  jsonb   NOT NULL,
    PRIMARY KEY (vid, ip)
);
CREATE TABLE ctl_events (
    id   bigserial PRIMARY KEY,
    mac  macaddr   NOT NULL,
    doc  jsonb     NOT NULL
);
CREATE INDEX ctl_events_mac ON ctl_events (mac, id);
CREATE TABLE ctl_power (mac macaddr PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_users (name text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_tokens (id bytea PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_racks (name text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_machine_tokens (mac macaddr PRIMARY KEY, token text NOT NULL);
CREATE TABLE ctl_audit (id bigserial PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_boot_resources (key text PRIMARY KEY, doc jsonb NOT NULL);
CREATE TABLE ctl_zones (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
    (
        2,
        "devices",
        r"
CREATE TABLE ctl_devices (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
    (
        3,
        "domains",
        r"
CREATE TABLE ctl_domains (name text PRIMARY KEY, doc jsonb NOT NULL);
",
    ),
];

/// The schema version of the controller's tables this build knows.
pub(super) const VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the controller's tables to [`VERSION`], each migration in its own transaction
/// under an advisory lock; refuses tables newer than this build. The address store has made
/// `maas_schema` already.
pub(super) fn migrate(client: &mut Client, target: &str) -> Result<(), PgRecordsError> {
    let db = |action: &'static str| {
        move |source| PgRecordsError::Database {
            target: target.to_owned(),
            action,
            source,
        }
    };
    for &(version, description, sql) in MIGRATIONS {
        let mut txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db("begin a migration"))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db("take the migration lock"))?;
        let found: i32 = txn
            .query_one(
                "SELECT coalesce(max(version), 0) FROM maas_schema WHERE component = $1",
                &[&COMPONENT],
            )
            .and_then(|row| row.try_get(0))
            .map_err(db("read the controller's schema version"))?;
        if found > VERSION {
            return Err(PgRecordsError::SchemaTooNew {
                target: target.to_owned(),
                found,
            });
        }
        if found < version {
            txn.batch_execute(sql)
                .map_err(db("migrate the controller's tables"))?;
            txn.execute(
                "INSERT INTO maas_schema (component, version, description) VALUES ($1, $2, $3)",
                &[&COMPONENT, &version, &description],
            )
            .map_err(db("record a migration"))?;
        }
        txn.commit().map_err(db("end a migration"))?;
    }
    Ok(())
}
