//! PostgreSQL as the source of the gateway's configuration: schema migrations, loading the tables
//! into a validated [`Config`], importing a TOML configuration into them, and a watcher that
//! reloads on every committed change (LISTEN/NOTIFY) and on a timer.
//!
//! # What comes from where
//! The database holds customers (with their MO number ranges), vendors, routes (with their vendors
//! and customer filters), 10DLC brands and campaigns, and the `[server]` settings that must be the
//! same on every node ([`DB_SERVER_SETTINGS`]). The settings that describe one node
//! ([`NODE_SERVER_SETTINGS`]: listen addresses, cores, node id, memory sizing, shutdown grace and
//! the drain of a removed vendor's binds) stay
//! in each node's TOML file and `SMPPGW__` environment, passed to [`load`] as `base`. A database
//! setting left NULL falls back to `base` as well.
//!
//! # Schema
//! Created by [`migrate`] from `control/migrations/NNNN_name.sql` in the current schema (the first
//! existing entry of `search_path`, normally `public`; to use another, add
//! `options='-c search_path=NAME'` to the connection string). Tables (all prefixed `smppgw_`):
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `smppgw_settings` | one row | cluster-wide `[server]` settings; NULL = the node's own |
//! | `smppgw_customers` | `system_id` | `[[customer]]` fields |
//! | `smppgw_number_ranges` | `prefix` | `customer.number_ranges` (`system_id` references the customer) |
//! | `smppgw_vendors` | `name` | `[[vendor]]` fields |
//! | `smppgw_routes` | `name` | `prefixes`, `source_prefixes` (text arrays) and `position` |
//! | `smppgw_route_vendors` | `(route, vendor)` | `route.vendors`: `priority` (default 0), `weight` (default 1) |
//! | `smppgw_route_customers` | `(route, system_id)` | `route.customers` |
//! | `smppgw_brands` | `brand_id` | `[[brand]]`: `daily_cap_segments` |
//! | `smppgw_campaigns` | `campaign_id` | `[[campaign]]`: `brand_id`, `segments_per_minute` |
//! | `smppgw_campaign_numbers` | `source_prefix` | `campaign.source_prefixes` (`campaign_id` references the campaign) |
//!
//! Column names are the TOML keys, except `window` (reserved in SQL), which is `window_size`. Every
//! column default is the TOML default, so adding a vendor is one statement:
//! `INSERT INTO smppgw_vendors (name, host, port, system_id, password) VALUES (...)`. Note that a
//! route vendor inserted without a priority gets 0: several such vendors share the route by weight
//! instead of failing over in turn (the TOML list form numbers them 0, 1, 2...).
//!
//! The database checks structure (types, choices, keys, references: a vendor or customer that a
//! route uses cannot be deleted first); [`Config::validate`] checks meaning (limits, names, case,
//! conflicts), so the hard ceilings live in one place. A change the database accepts but the
//! validation refuses is logged by the [`ConfigWatcher`] and not applied.
//!
//! # Hot reload
//! Statement triggers on every table send `NOTIFY smppgw_config, '<table>'` at commit; see
//! [`ConfigWatcher`] for how nodes coalesce, validate and publish the result.
//!
//! Everything here runs on the control thread's tokio runtime, except building and validating
//! what [`load`] read, which has threads of its own; nothing blocks a data-plane core.

pub mod cache;
mod connect;
mod error;
mod import;
mod load;
mod migrate;
mod watch;

use smppgw_engine::config::Config;

pub use connect::{Driver, connect, describe_target, parse_database_url};
pub use error::{DbError, InvalidConfig, Problem};
pub use import::{ImportSummary, ItemCounts, import_config, import_config_setting};
pub use load::load;
pub use migrate::{MIGRATIONS, Migration, migrate};
pub use watch::{ConfigWatcher, Health, ReloadOutcome, WatchOptions, render_health_metrics};

/// The NOTIFY channel the triggers signal; the payload is the name of the table that changed.
pub const NOTIFY_CHANNEL: &str = "smppgw_config";

/// `[server]` settings kept in `smppgw_settings` (shared by every node). `window` is the column
/// `window_size`.
pub const DB_SERVER_SETTINGS: &[&str] = &[
    "system_id",
    "window",
    "max_command_length",
    "enquire_link_interval_ms",
    "session_timeout_ms",
    "response_timeout_ms",
    "bind_timeout_ms",
    "receipt_ttl_secs",
    "unknown_outcome_failover",
];

/// `[server]` settings that always come from each node's own file and environment: they describe
/// one machine (its addresses, cores, identity, memory and shutdown), not the service.
pub const NODE_SERVER_SETTINGS: &[&str] = &[
    "listen",
    "http_listen",
    "cores",
    "node_id",
    "max_binds",
    "shutdown_grace_ms",
    "receipt_store_max",
    "receipt_store_prealloc",
    "receipt_queue_max",
    "removed_vendor_drain_ms",
];

/// A configuration loaded from the database. Values handed out by [`load`] and [`ConfigWatcher`]
/// are valid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbConfig {
    /// Customers, vendors, routes, 10DLC brands and campaigns and server settings, validated with
    /// [`Config::validate`].
    pub config: Config,
}
