//! Versioned schema migrations, embedded in the binary and applied in order, each in a transaction
//! of its own, under an advisory lock so that nodes starting together do not race.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

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
/// It looks before it changes anything: on a current schema it only reads (no DDL, no lock), so
/// that a node may run as a role that can only read the tables once `smppgw migrate` ran as the
/// schema's owner (since PostgreSQL 15 an ordinary role may not CREATE in `public`, and even
/// `CREATE TABLE IF NOT EXISTS` on an existing table needs that right).
///
/// A database with versions newer than this binary knows is left alone (logged): migrations only
/// add, so an older node can run against a newer schema during a rolling upgrade.
///
/// # Errors
/// [`DbError::MigrationDenied`] when migrations are pending and the role may not apply them;
/// [`DbError::Migration`] for the first migration that failed otherwise (it was rolled back; the
/// ones before it stay applied), [`DbError::Query`] when the connection fails.
pub async fn migrate(client: &mut Client) -> Result<Vec<u32>, DbError> {
    if pending(client).await?.is_empty() {
        return Ok(Vec::new());
    }
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

/// The migrations the database has not recorded, in order, found by reading only (no table is
/// created). Warns when it records versions newer than this binary's.
async fn pending(client: &Client) -> Result<Vec<&'static Migration>, DbError> {
    let row = client
        .query_one("SELECT to_regclass('smppgw_schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(DbError::query("looking for smppgw_schema_migrations"))?;
    let exists: bool = row.try_get(0).map_err(DbError::query("looking for smppgw_schema_migrations"))?;
    if !exists {
        return Ok(MIGRATIONS.iter().collect());
    }
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
    Ok(MIGRATIONS.iter().filter(|m| !done.contains(&i32::try_from(m.version).unwrap_or(i32::MAX))).collect())
}

/// Whether PostgreSQL refused a statement for the role's rights (42501 insufficient_privilege:
/// no CREATE in the schema, not the owner of a table a migration alters).
fn is_denied(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
}

/// [`DbError::MigrationDenied`] for `left`, naming the role connected.
async fn denied(client: &Client, left: &[&Migration], source: tokio_postgres::Error) -> DbError {
    let role = match client.query_one("SELECT current_user::text", &[]).await {
        Ok(row) => row.try_get(0).unwrap_or_else(|_| "(unknown)".to_owned()),
        Err(_) => "(unknown)".to_owned(),
    };
    DbError::MigrationDenied { pending: left.iter().map(|m| m.version).collect(), role, source }
}

async fn apply_pending(client: &mut Client) -> Result<Vec<u32>, DbError> {
    if let Err(e) = client.batch_execute(CREATE_HISTORY).await {
        if is_denied(&e) {
            let left = pending(client).await?;
            return Err(denied(client, &left, e).await);
        }
        return Err(DbError::query("creating smppgw_schema_migrations")(e));
    }
    // Another node may have migrated while this one waited for the lock.
    let left = pending(client).await?;
    let mut applied = Vec::new();
    for (i, m) in left.iter().enumerate() {
        let version = i32::try_from(m.version).unwrap_or(i32::MAX);
        let failed = |source| DbError::Migration { version: m.version, name: m.name, source };
        let tx = client.transaction().await.map_err(failed)?;
        let done = async {
            tx.batch_execute(m.sql).await?;
            tx.execute(
                "INSERT INTO smppgw_schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &m.name],
            )
            .await?;
            tx.commit().await
        }
        .await;
        match done {
            Ok(()) => {}
            // The transaction was rolled back when dropped, before the next statement runs.
            Err(e) if is_denied(&e) => return Err(denied(client, &left[i..], e).await),
            Err(e) => return Err(failed(e)),
        }
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    Ok(applied)
}
