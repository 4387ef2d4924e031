//! The PostgreSQL schema of [`PgStore`](super::PgStore) and its migrations.

use postgres::{Client, IsolationLevel};

use super::PgStoreError;

/// The `component` under which this store's migrations are recorded in `maas_schema`, so that
/// other parts of a controller can version their own tables in the same database.
pub(super) const COMPONENT: &str = "ipam";

/// The advisory lock taken while migrating: an arbitrary constant ("maas-ipam" in ASCII, cut
/// to 63 bits), shared by every process that migrates this schema in one database.
const MIGRATION_LOCK: i64 = 0x6d61_6173_2d69_7061;

/// One step of the schema. Versions start at 1 and have no gaps.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration this build knows, in order. Never edit one that has shipped: add another.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "topology, address records, client bindings",
        sql: r"
CREATE TABLE ipam_topology (
    id       smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    doc      jsonb       NOT NULL,
    updated  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ipam_records (
    ip             inet        NOT NULL,
    discovered     boolean     NOT NULL,
    subnet         bigint      NOT NULL,
    kind           text        NOT NULL,
    mac            macaddr,
    owner          text,
    lease_client   text,
    lease_state    text,
    lease_expires  timestamptz,
    created        timestamptz NOT NULL,
    updated        timestamptz NOT NULL,
    record         bytea       NOT NULL,
    -- One held record and one DISCOVERED record per address, as the engine keys them.
    PRIMARY KEY (ip, discovered),
    -- inet equality includes the netmask: a host address with another mask would be a second
    -- key for the same address.
    CONSTRAINT ipam_records_host_address
        CHECK (masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END),
    CONSTRAINT ipam_records_discovered_kind CHECK (discovered = (kind = 'DISCOVERED'))
);
CREATE INDEX ipam_records_subnet ON ipam_records (subnet);
CREATE INDEX ipam_records_lease_expires ON ipam_records (lease_expires)
    WHERE lease_expires IS NOT NULL;

CREATE TABLE ipam_bindings (
    client       bytea PRIMARY KEY,
    client_text  text  NOT NULL,
    ip           inet  NOT NULL
        CONSTRAINT ipam_bindings_host_address
        CHECK (masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END)
);
",
    },
    Migration {
        version: 2,
        description: "a write names the version of the row it replaces",
        sql: r"
-- The stored version the writing store last read or wrote (see PUT_RECORDS); only meaningful
-- in the statement that writes it, NULL once a write replaced the row.
ALTER TABLE ipam_records ADD COLUMN prior bytea;
",
    },
    Migration {
        version: 3,
        description: "bindings that a record implies are not stored",
        // No change to the tables: the version tells earlier builds, which read every binding
        // from ipam_bindings, that they cannot read this database.
        sql: "SELECT 1;",
    },
];

/// The schema version this build reads and writes.
pub(super) const VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Brings the schema up to [`VERSION`]: each missing migration in its own transaction, under a
/// transaction-scoped advisory lock, so that two processes connecting at once apply each
/// migration once (the second waits for the first, then finds the version already there).
/// A transaction-scoped lock rather than a session one is released by PostgreSQL on commit,
/// rollback or a lost connection alike, so no error path can leave it held.
pub(super) fn migrate(client: &mut Client, target: &str) -> Result<(), PgStoreError> {
    let db = |action: &'static str| {
        move |source| PgStoreError::Database {
            target: target.to_owned(),
            action,
            source,
        }
    };
    for migration in MIGRATIONS {
        let mut txn = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(db("begin a migration transaction"))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(db("take the migration lock"))?;
        txn.batch_execute(
            "CREATE TABLE IF NOT EXISTS maas_schema (
                component    text        NOT NULL,
                version      integer     NOT NULL,
                description  text        NOT NULL,
                applied      timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)
            )",
        )
        .map_err(db("create the maas_schema table"))?;
        let found: i32 = txn
            .query_one(
                "SELECT coalesce(max(version), 0) FROM maas_schema WHERE component = $1",
                &[&COMPONENT],
            )
            .map_err(db("read the schema version"))?
            .try_get(0)
            .map_err(db("read the schema version"))?;
        if found > VERSION {
            return Err(PgStoreError::SchemaTooNew {
                target: target.to_owned(),
                found,
                supported: VERSION,
            });
        }
        if found >= migration.version {
            txn.commit().map_err(db("end a migration transaction"))?;
            continue;
        }
        txn.batch_execute(migration.sql)
            .map_err(|source| PgStoreError::Migrate {
                target: target.to_owned(),
                version: migration.version,
                source,
            })?;
        txn.execute(
            "INSERT INTO maas_schema (component, version, description) VALUES ($1, $2, $3)",
            &[&COMPONENT, &migration.version, &migration.description],
        )
        .map_err(db("record a migration"))?;
        txn.commit().map_err(|source| PgStoreError::Migrate {
            target: target.to_owned(),
            version: migration.version,
            source,
        })?;
    }
    Ok(())
}

/// Timestamps go to `timestamptz` columns as seconds; beyond PostgreSQL's range (about year
/// 294,000) they become `infinity`. The `record` column keeps the exact value.
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "CASE WHEN ",
            $col,
            " > 9000000000000 THEN 'infinity'::timestamptz ELSE to_timestamp(",
            $col,
            ") END"
        )
    };
}

pub(super) const PUT_TOPOLOGY: &str = "INSERT INTO ipam_topology (id, doc, updated)
    VALUES (1, $1::text::jsonb, now())
    ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, updated = EXCLUDED.updated";

/// Who holds the address of a record row `t`, for the rule of [`PUT_RECORDS`]: the lease's
/// client for a DHCP record, else the interface's MAC, else the owner, else the kind. A client
/// keyed by its MAC and an interface with that MAC are the same holder (`ClientKey`'s text of
/// a MAC is the `macaddr` text form), so a machine that leased an address by DHCP may have it
/// made STICKY or AUTO.
macro_rules! holder {
    ($t:literal) => {
        concat!(
            "CASE WHEN ",
            $t,
            ".lease_client IS NOT NULL THEN ",
            $t,
            ".lease_client",
            " WHEN ",
            $t,
            ".mac IS NOT NULL THEN ",
            $t,
            ".mac::text",
            " WHEN ",
            $t,
            ".owner IS NOT NULL THEN 'owner ' || ",
            $t,
            ".owner",
            " ELSE 'kind ' || ",
            $t,
            ".kind END"
        )
    };
}

/// Inserts records, or replaces a stored one only where the rule allows (see
/// [`PgStore`](super::PgStore)): the row is a `DISCOVERED` one; or the stored record is a
/// lease (offer, quarantine) that had expired when the new record was made; or the holders
/// are the same and the stored record is the version the writer last read or wrote (`prior`),
/// or both are DHCP leases of the same client (a client renewing through another region). A refused row is neither inserted nor updated, so it is missing
/// from what the statement returns: the caller compares and rolls back.
pub(super) const PUT_RECORDS: &str = concat!(
    "INSERT INTO ipam_records AS s (ip, discovered, subnet, kind, mac, owner, lease_client,
        lease_state, lease_expires, created, updated, record, prior)
    SELECT ip, discovered, subnet, kind, mac::macaddr, owner, lease_client, lease_state, ",
    ts!("lease_expires"),
    ", ",
    ts!("created"),
    ", ",
    ts!("updated"),
    ", record, prior
    FROM unnest($1::inet[], $2::bool[], $3::int8[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::bytea[],
        $13::bytea[])
        AS t(ip, discovered, subnet, kind, mac, owner, lease_client, lease_state,
            lease_expires, created, updated, record, prior)
    ON CONFLICT (ip, discovered) DO UPDATE SET
        subnet = EXCLUDED.subnet, kind = EXCLUDED.kind, mac = EXCLUDED.mac,
        owner = EXCLUDED.owner, lease_client = EXCLUDED.lease_client,
        lease_state = EXCLUDED.lease_state, lease_expires = EXCLUDED.lease_expires,
        created = EXCLUDED.created, updated = EXCLUDED.updated, record = EXCLUDED.record,
        prior = NULL
    WHERE s.discovered
        OR s.lease_expires < EXCLUDED.updated
        OR (",
    holder!("s"),
    " = ",
    holder!("EXCLUDED"),
    "
            AND (s.record = EXCLUDED.prior
                OR (s.lease_client IS NOT NULL AND s.lease_client = EXCLUDED.lease_client)))
    RETURNING ip, discovered"
);

/// Removes records: each only if its row still holds exactly the version this store last
/// read or wrote for that key, so that a region removing its own stale record never removes
/// what another region stored since. A record this store never read or wrote is not its to
/// remove: no version, no deletion.
pub(super) const REMOVE_RECORDS: &str = "DELETE FROM ipam_records r
    USING unnest($1::inet[], $2::bool[], $3::bytea[]) AS d(ip, discovered, record)
    WHERE r.ip = d.ip AND r.discovered = d.discovered AND r.record = d.record";

pub(super) const PUT_BINDINGS: &str = "INSERT INTO ipam_bindings (client, client_text, ip)
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::inet[])
    ON CONFLICT (client) DO UPDATE SET client_text = EXCLUDED.client_text, ip = EXCLUDED.ip";

pub(super) const REMOVE_BINDINGS: &str =
    "DELETE FROM ipam_bindings WHERE client = ANY($1::bytea[])";

pub(super) const LOAD_TOPOLOGY: &str = "SELECT doc::text FROM ipam_topology WHERE id = 1";

/// `inet` orders by family (IPv4 first), then address: [`std::net::IpAddr`]'s order.
pub(super) const LOAD_RECORDS: &str =
    "SELECT ip, discovered, record FROM ipam_records ORDER BY ip, discovered";

pub(super) const LOAD_BINDINGS: &str = "SELECT client, ip FROM ipam_bindings";
