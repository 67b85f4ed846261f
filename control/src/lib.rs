//! smppgw's control plane: everything that turns one gateway process into a service run as several
//! nodes, on one thread with a current-thread tokio runtime of its own.
//!
//! It owns the configuration in PostgreSQL ([`db`]: migrations, import from TOML, loading into a
//! validated [`smppgw_engine::config::Config`], hot reload through LISTEN/NOTIFY). The data plane
//! reads immutable snapshots built from what this crate publishes; this crate must never run on a
//! data-plane core, never block one, and never hand it anything that did not validate.

pub mod db;
pub mod files;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod receipt_state;
pub mod redis;

pub use db::{
    ConfigWatcher, DbConfig, DbError, Health, ImportSummary, InvalidConfig, ReloadOutcome, WatchOptions,
    import_config, load, migrate,
};
