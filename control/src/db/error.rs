//! Errors of the PostgreSQL configuration source: one enum for the layer, each variant carrying
//! what an operator needs to act on it, and whether trying again can help.

use std::fmt;

use smppgw_engine::config::{ConfigErrors, ErrorKind};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database URL (or key=value connection string) could not be parsed.
    #[error("invalid database URL: {reason}")]
    BadUrl {
        /// The parser's words (the URL itself is not repeated: it may hold a password).
        reason: String,
    },
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {}", pg_message(source))]
    Connect {
        /// Where we tried, without the password: `host=... port=... dbname=... user=...`.
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The configuration tables do not exist: the schema was never migrated.
    #[error("the database has no smppgw configuration tables ({detail}); run `smppgw migrate` first")]
    NotMigrated {
        /// PostgreSQL's message naming the missing table.
        detail: String,
    },
    /// A migration failed; its transaction was rolled back and the later ones were not tried.
    #[error("migration {version:04} ({name}) failed: {}", pg_message(source))]
    Migration {
        /// Its version.
        version: u32,
        /// Its file name.
        name: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema lacks migrations this binary needs and the role connected may not apply them
    /// (a node may run as a role that only reads). Nothing was changed.
    #[error(
        "the database schema is behind this binary (not applied: {}) and role {role} may not change it \
         ({}); run `smppgw migrate` as the schema's owner",
        versions(pending),
        pg_message(source)
    )]
    MigrationDenied {
        /// The versions not applied, in order.
        pending: Vec<u32>,
        /// The role connected (`current_user`).
        role: String,
        /// PostgreSQL's refusal (insufficient_privilege).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed (or the connection broke) while doing `context`.
    #[error("PostgreSQL error while {context}: {}", pg_message(source))]
    Query {
        /// What we were doing, as a gerund phrase ("reading smppgw_vendors").
        context: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server closed the connection while we were `context`.
    #[error("the PostgreSQL connection closed while {context}")]
    Disconnected {
        /// What we were doing.
        context: &'static str,
    },
    /// No answer within the time allowed (`what` took longer than `timeout_ms`).
    #[error("PostgreSQL did not answer within {timeout_ms} ms while {what}")]
    Timeout {
        /// What we were doing.
        what: &'static str,
        /// The bound that was exceeded.
        timeout_ms: u64,
    },
    /// The tables hold a configuration the gateway refuses. Nothing was applied.
    #[error("the configuration in the database is invalid:\n{0}")]
    Invalid(InvalidConfig),
}

impl DbError {
    /// Whether trying the same thing again later may succeed without anyone changing the data: true
    /// for connection problems, timeouts and failed statements; false for an invalid configuration,
    /// a missing schema, a bad URL, a failed or denied migration (they need an operator).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DbError::Connect { .. }
                | DbError::Query { .. }
                | DbError::Disconnected { .. }
                | DbError::Timeout { .. }
        )
    }

    /// The problems, when the configuration was refused.
    #[must_use]
    pub fn invalid(&self) -> Option<&InvalidConfig> {
        match self {
            DbError::Invalid(invalid) => Some(invalid),
            _ => None,
        }
    }

    pub(crate) fn query(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| {
            // 42P01 undefined_table, 42703 undefined_column: the schema is missing or too old.
            let code = source.code().map(tokio_postgres::error::SqlState::code);
            if matches!(code, Some("42P01" | "42703")) {
                DbError::NotMigrated { detail: pg_message(&source) }
            } else {
                DbError::Query { context, source }
            }
        }
    }
}

/// Migration versions as their file names number them: "0003, 0004".
fn versions(list: &[u32]) -> String {
    list.iter().map(|v| format!("{v:04}")).collect::<Vec<_>>().join(", ")
}

/// PostgreSQL's own message for a server error (with its detail, if any), else the driver's text
/// followed by its causes ("error connecting to server: Connection refused (os error 111)").
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        };
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// Every problem that made a configuration in the database unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// The problems, rows first (values that cannot become configuration at all), then what
    /// validation found.
    pub problems: Vec<Problem>,
}

/// One problem of an [`InvalidConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The table it is about, when known (validation messages name the item instead:
    /// "vendor 'a': window = 0 is out of range ...").
    pub table: Option<&'static str>,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(table: &'static str, kind: ErrorKind, message: String) -> Self {
        Self { table: Some(table), kind, message }
    }
}

impl InvalidConfig {
    pub(crate) fn from_config_errors(errors: &ConfigErrors) -> Self {
        let problems = errors
            .errors()
            .iter()
            .map(|e| Problem { table: None, kind: e.kind.clone(), message: e.message.clone() })
            .collect();
        Self { problems }
    }

    /// The messages, one per problem.
    #[must_use]
    pub fn messages(&self) -> Vec<String> {
        self.problems.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.table {
            Some(table) => write!(f, "{table}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {problem}")?;
        }
        Ok(())
    }
}
