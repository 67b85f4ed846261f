//! Versioned schema migrations, embedded in the binary and applied in order, each in a transaction
//! of its own, under an advisory lock so that nodes starting together do not race.

use tokio_postgres::Client;

use super::DbError;

/// One schema migration: `control/migrations/NNNN_name.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Its number; applied in increasing order, each once.
    pub version: u32,
    /// Its file name.
    pub name: &'static str,
    /// Its SQL (several statements).
    pub sql: &'static str,
}

/// Every migration, in order. Never edit one that was released: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_config_tables.sql",
        sql: include_str!("../../migrations/0001_config_tables.sql"),
    },
    Migration {
        version: 2,
        name: "0002_config_notify.sql",
        sql: include_str!("../../migrations/0002_config_notify.sql"),
    },
];

const fn versions_increase(list: &[Migration]) -> bool {
    let mut i = 1;
    while i < list.len() {
        if list[i].version <= list[i - 1].version {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(versions_increase(MIGRATIONS));
// Versions are stored in an `integer` column.
const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].version <= i32::MAX as u32);

/// First key of the advisory lock that serialises migrations (the second is the schema's hash),
/// "smpp" in ASCII so that it is recognisable in `pg_locks`.
const LOCK_CLASS: i32 = 0x736d_7070;

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS smppgw_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Applies every migration the database does not have yet, in order, each in its own transaction
/// together with its row in `smppgw_schema_migrations`, and returns the versions it applied
/// (empty when the schema was current). Holds a session advisory lock meanwhile: a node that starts
/// at the same time waits, then finds nothing left to do.
///
/// A database with versions newer than this binary knows is left alone (logged): migrations only
/// add, so an older node can run against a newer schema during a rolling upgrade.
///
/// # Errors
/// [`DbError::Migration`] for the first migration that failed (it was rolled back; the ones before
/// it stay applied), [`DbError::Query`] when the connection fails.
pub async fn migrate(client: &mut Client) -> Result<Vec<u32>, DbError> {
    let row = client
        .query_one("SELECT hashtext(coalesce(current_schema(), ''))", &[])
        .await
        .map_err(DbError::query("hashing the schema name"))?;
    let schema_key: i32 = row.try_get(0).map_err(DbError::query("hashing the schema name"))?;
    client
        .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &schema_key])
        .await
        .map_err(DbError::query("taking the migration lock"))?;
    let applied = apply_pending(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &schema_key])
        .await
        .map_err(DbError::query("releasing the migration lock"));
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client) -> Result<Vec<u32>, DbError> {
    client
        .batch_execute(CREATE_HISTORY)
        .await
        .map_err(DbError::query("creating smppgw_schema_migrations"))?;
    let rows = client
        .query("SELECT version FROM smppgw_schema_migrations", &[])
        .await
        .map_err(DbError::query("reading smppgw_schema_migrations"))?;
    let mut done = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i32 = row.try_get(0).map_err(DbError::query("reading smppgw_schema_migrations"))?;
        done.push(version);
    }
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(&newest) = done.iter().max()
        && u32::try_from(newest).is_ok_and(|v| v > known)
    {
        tracing::warn!(
            database = newest,
            binary = known,
            "the database schema is newer than this binary; running on it unchanged"
        );
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        if done.contains(&version) {
            continue;
        }
        let failed = |source| DbError::Migration { version: m.version, name: m.name, source };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO smppgw_schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &m.name],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    Ok(applied)
}
