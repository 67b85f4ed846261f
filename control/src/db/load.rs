//! Reading the configuration tables into a [`DbConfig`]: one consistent snapshot (a repeatable-read,
//! read-only transaction whose queries are pipelined), turned into typed values row by row, then
//! validated as a whole.
//!
//! Reading ([`read`]), building ([`build`]) and checking ([`check`]) are separate so that the
//! importer can build the current contents without refusing them, and so that building stays
//! linear in the number of rows (items are joined to their children through hash maps).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::de::value::{Error as ValueError, StrDeserializer};
use smppgw_engine::config::{
    BindType, BrandConfig, CampaignConfig, Cidr, Config, CustomerConfig, ErrorKind, RouteConfig, RouteVendor,
    ServerConfig, VendorConfig,
};
use tokio::sync::{Semaphore, oneshot};
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, IsolationLevel, Row, Transaction};

use super::{DbConfig, DbError, InvalidConfig, Problem};

const SETTINGS_SQL: &str = "SELECT system_id, window_size::bigint, max_command_length::bigint, \
     enquire_link_interval_ms::bigint, session_timeout_ms::bigint, response_timeout_ms::bigint, \
     bind_timeout_ms::bigint, receipt_ttl_secs::bigint, unknown_outcome_failover FROM smppgw_settings";
const CUSTOMERS_SQL: &str = "SELECT system_id, password_hash, bind_types::text[], allowed_ips::text[], \
     max_binds::bigint, throughput::bigint, window_size::bigint, id_format, receipt_pdu, receipt_parts \
     FROM smppgw_customers ORDER BY id";
const NUMBER_RANGES_SQL: &str = "SELECT system_id, prefix FROM smppgw_number_ranges ORDER BY id";
const VENDORS_SQL: &str = "SELECT name, host, port, system_id, password, system_type, binds::bigint, \
     bind_type, window_size::bigint, throughput::bigint, enquire_link_interval_ms::bigint, \
     response_timeout_ms::bigint, reconnect_backoff_min_ms::bigint, reconnect_backoff_max_ms::bigint, \
     id_format FROM smppgw_vendors ORDER BY id";
const ROUTES_SQL: &str =
    "SELECT name, prefixes::text[], source_prefixes::text[] FROM smppgw_routes ORDER BY position, id";
const ROUTE_VENDORS_SQL: &str =
    "SELECT route, vendor, priority::bigint, weight::bigint FROM smppgw_route_vendors ORDER BY id";
const ROUTE_CUSTOMERS_SQL: &str = "SELECT route, system_id FROM smppgw_route_customers ORDER BY id";
const BRANDS_SQL: &str = "SELECT brand_id, daily_cap_segments::bigint FROM smppgw_brands ORDER BY id";
const CAMPAIGNS_SQL: &str =
    "SELECT campaign_id, brand_id, segments_per_minute::bigint FROM smppgw_campaigns ORDER BY id";
const CAMPAIGN_NUMBERS_SQL: &str =
    "SELECT campaign_id, source_prefix FROM smppgw_campaign_numbers ORDER BY id";

/// Configuration builds running at once in the process, each on a thread of its own. A watcher
/// builds one at a time; the second is for a build still running after its caller gave up on it
/// (a stopped watcher, a first load that timed out): a thread cannot be cancelled.
pub const BUILD_THREADS_MAX: usize = 2;

/// Name of a build's thread, as `top` and a debugger show it.
const BUILD_THREAD_NAME: &str = "smppgw-config-build";

/// One permit per build thread alive, held by the thread until it ends.
static BUILD_THREADS: Semaphore = Semaphore::const_new(BUILD_THREADS_MAX);

/// Reads every configuration table in one consistent snapshot and builds a validated
/// [`DbConfig`].
///
/// The `[server]` section starts from `base.server` (this node's TOML file and environment) and takes
/// each cluster-wide setting that `smppgw_settings` sets (not NULL); `base`'s customers, vendors and
/// routes, brands and campaigns are ignored, the tables are the source of those. Then
/// [`Config::validate`] runs.
///
/// # Errors
/// [`DbError::Invalid`] with every problem when a row cannot become configuration or the result
/// does not validate (never a panic); [`DbError::NotMigrated`] when the tables are missing;
/// [`DbError::Query`] when the connection fails.
pub async fn load(client: &mut Client, base: &Config) -> Result<DbConfig, DbError> {
    let tables = fetch(client).await?;
    build_checked(tables, base).await
}

/// The part of [`load`] that waits for PostgreSQL: every table read in one repeatable-read,
/// read-only transaction. The watcher times this alone.
pub(crate) async fn fetch(client: &mut Client) -> Result<Tables, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::query("starting a read-only transaction"))?;
    let tables = read(&tx).await?;
    tx.commit().await.map_err(DbError::query("ending the read-only transaction"))?;
    Ok(tables)
}

/// The part of [`load`] that does not wait for PostgreSQL: builds and validates `tables`.
///
/// Building and validating a large configuration takes milliseconds: not on the runtime, which may
/// be a current-thread one serving other work (the gateway's control thread). Nor on its blocking
/// pool: that is small and shared with work that can hold every thread for seconds (message
/// lookups, file writes, DNS lookups that cannot be cancelled), and a build queued behind it would
/// make a watcher that times its reload take a healthy PostgreSQL for a lost one. So a thread of
/// its own, at most [`BUILD_THREADS_MAX`] at once; waiting for one waits only for other builds,
/// which use no IO and always end.
pub(crate) async fn build_checked(tables: Tables, base: &Config) -> Result<DbConfig, DbError> {
    // `None` only if the semaphore were closed, which it never is.
    let permit = BUILD_THREADS.acquire().await.ok();
    let (inputs_tx, inputs_rx) = oneshot::channel::<(Tables, Config)>();
    let (done_tx, done_rx) = oneshot::channel();
    // The inputs go over a channel once the thread exists, so that they are still here to build
    // with when no thread can be made.
    let spawned = std::thread::Builder::new().name(BUILD_THREAD_NAME.to_owned()).spawn(move || {
        let _permit = permit;
        let Ok((tables, base)) = inputs_rx.blocking_recv() else { return };
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build_and_check(tables, &base)));
        let _gone = done_tx.send(built);
    });
    let inputs = (tables, base.clone());
    let unsent = match spawned {
        Ok(_detached) => inputs_tx.send(inputs).err(),
        Err(e) => {
            tracing::warn!(error = %e, "no thread for building the configuration; building it on the runtime");
            Some(inputs)
        }
    };
    if let Some((tables, base)) = unsent {
        return build_and_check(tables, &base);
    }
    match done_rx.await {
        Ok(Ok(checked)) => checked,
        // A panic while building goes on as it would have here.
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // The thread took the inputs and ended without an answer: cannot happen short of an abort.
        Err(_) => Err(DbError::Disconnected { context: "building the configuration" }),
    }
}

fn build_and_check(tables: Tables, base: &Config) -> Result<DbConfig, DbError> {
    let (db, problems) = build(tables, base);
    check(db, problems)
}

/// The rows of every configuration table, in load order.
pub(crate) struct Tables {
    settings: Vec<Row>,
    customers: Vec<Row>,
    number_ranges: Vec<Row>,
    vendors: Vec<Row>,
    routes: Vec<Row>,
    route_vendors: Vec<Row>,
    route_customers: Vec<Row>,
    brands: Vec<Row>,
    campaigns: Vec<Row>,
    campaign_numbers: Vec<Row>,
}

/// Reads every table within `tx`, sending all queries before waiting for the first answer.
pub(crate) async fn read(tx: &Transaction<'_>) -> Result<Tables, DbError> {
    let q = |sql: &'static str, context: &'static str| async move {
        tx.query(sql, &[]).await.map_err(DbError::query(context))
    };
    // All answers are awaited, then the first error in query order is reported: once one query
    // fails, the later ones only say that the transaction is aborted.
    let (
        settings,
        customers,
        number_ranges,
        vendors,
        routes,
        route_vendors,
        route_customers,
        brands,
        campaigns,
        numbers,
    ) = tokio::join!(
        q(SETTINGS_SQL, "reading smppgw_settings"),
        q(CUSTOMERS_SQL, "reading smppgw_customers"),
        q(NUMBER_RANGES_SQL, "reading smppgw_number_ranges"),
        q(VENDORS_SQL, "reading smppgw_vendors"),
        q(ROUTES_SQL, "reading smppgw_routes"),
        q(ROUTE_VENDORS_SQL, "reading smppgw_route_vendors"),
        q(ROUTE_CUSTOMERS_SQL, "reading smppgw_route_customers"),
        q(BRANDS_SQL, "reading smppgw_brands"),
        q(CAMPAIGNS_SQL, "reading smppgw_campaigns"),
        q(CAMPAIGN_NUMBERS_SQL, "reading smppgw_campaign_numbers"),
    );
    let (
        settings,
        customers,
        number_ranges,
        vendors,
        routes,
        route_vendors,
        route_customers,
        brands,
        campaigns,
        numbers,
    ) = (
        settings?,
        customers?,
        number_ranges?,
        vendors?,
        routes?,
        route_vendors?,
        route_customers?,
        brands?,
        campaigns?,
        numbers?,
    );
    Ok(Tables {
        settings,
        customers,
        number_ranges,
        vendors,
        routes,
        route_vendors,
        route_customers,
        brands,
        campaigns,
        campaign_numbers: numbers,
    })
}

/// Builds the configuration the rows describe, with `base`'s server settings under the database's.
/// A row that cannot become a configuration value is left out and reported.
pub(crate) fn build(t: Tables, base: &Config) -> (DbConfig, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut report = |table: &'static str, row: &Row, why: String| {
        let key: String = row.try_get(0).unwrap_or_default();
        problems.push(Problem::new(table, ErrorKind::Invalid, format!("row '{key}': {why}")));
    };

    let mut server = base.server.clone();
    for row in &t.settings {
        if let Err(why) = settings(&mut server, row) {
            report("smppgw_settings", row, why);
        }
    }

    let mut customers: Vec<CustomerConfig> = Vec::with_capacity(t.customers.len());
    for row in &t.customers {
        match customer(row) {
            Ok(c) => customers.push(c),
            Err(why) => report("smppgw_customers", row, why),
        }
    }
    let customer_index: HashMap<String, usize> =
        customers.iter().enumerate().map(|(i, c)| (c.system_id.clone(), i)).collect();
    for row in &t.number_ranges {
        match pair(row, "system_id", "prefix") {
            Ok((system_id, prefix)) => {
                if let Some(&i) = customer_index.get(&system_id) {
                    customers[i].number_ranges.push(prefix);
                }
            }
            Err(why) => report("smppgw_number_ranges", row, why),
        }
    }

    let mut vendors = Vec::with_capacity(t.vendors.len());
    for row in &t.vendors {
        match vendor(row) {
            Ok(v) => vendors.push(v),
            Err(why) => report("smppgw_vendors", row, why),
        }
    }

    let mut routes: Vec<RouteConfig> = Vec::with_capacity(t.routes.len());
    for row in &t.routes {
        match route(row) {
            Ok(r) => routes.push(r),
            Err(why) => report("smppgw_routes", row, why),
        }
    }
    let route_index: HashMap<String, usize> =
        routes.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
    for row in &t.route_vendors {
        match route_vendor(row) {
            Ok((route, rv)) => {
                if let Some(&i) = route_index.get(&route) {
                    routes[i].vendors.push(rv);
                }
            }
            Err(why) => report("smppgw_route_vendors", row, why),
        }
    }
    for row in &t.route_customers {
        match pair(row, "route", "system_id") {
            Ok((route, system_id)) => {
                if let Some(&i) = route_index.get(&route) {
                    routes[i].customers.push(system_id);
                }
            }
            Err(why) => report("smppgw_route_customers", row, why),
        }
    }

    let mut brands: Vec<BrandConfig> = Vec::with_capacity(t.brands.len());
    for row in &t.brands {
        match brand(row) {
            Ok(b) => brands.push(b),
            Err(why) => report("smppgw_brands", row, why),
        }
    }
    let mut campaigns: Vec<CampaignConfig> = Vec::with_capacity(t.campaigns.len());
    for row in &t.campaigns {
        match campaign_row(row) {
            Ok(c) => campaigns.push(c),
            Err(why) => report("smppgw_campaigns", row, why),
        }
    }
    let campaign_index: HashMap<String, usize> =
        campaigns.iter().enumerate().map(|(i, c)| (c.campaign_id.clone(), i)).collect();
    for row in &t.campaign_numbers {
        match pair(row, "campaign_id", "source_prefix") {
            Ok((campaign_id, source)) => {
                if let Some(&i) = campaign_index.get(&campaign_id) {
                    campaigns[i].source_prefixes.push(source);
                }
            }
            Err(why) => report("smppgw_campaign_numbers", row, why),
        }
    }

    (DbConfig { config: Config { server, customers, vendors, routes, brands, campaigns } }, problems)
}

/// Refuses a built configuration with row problems, else validates it.
pub(crate) fn check(db: DbConfig, mut problems: Vec<Problem>) -> Result<DbConfig, DbError> {
    if problems.is_empty()
        && let Err(errors) = db.config.validate()
    {
        problems.extend(InvalidConfig::from_config_errors(&errors).problems);
    }
    if problems.is_empty() { Ok(db) } else { Err(DbError::Invalid(InvalidConfig { problems })) }
}

fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, name: &str) -> Result<T, String> {
    row.try_get(idx).map_err(|e| format!("column {name}: {e}"))
}

fn to_u32(value: i64, name: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("column {name}: {value} is not within 0..=4294967295"))
}

fn u32_col(row: &Row, idx: usize, name: &str) -> Result<u32, String> {
    to_u32(col(row, idx, name)?, name)
}

fn parse_choice<T: DeserializeOwned>(text: &str, name: &str) -> Result<T, String> {
    // The engine's own serde spelling, so the two cannot drift apart.
    T::deserialize(StrDeserializer::<ValueError>::new(text)).map_err(|e| format!("column {name}: {e}"))
}

fn choice<T: DeserializeOwned>(row: &Row, idx: usize, name: &str) -> Result<T, String> {
    parse_choice(col::<&str>(row, idx, name)?, name)
}

fn pair(row: &Row, first: &str, second: &str) -> Result<(String, String), String> {
    Ok((col(row, 0, first)?, col(row, 1, second)?))
}

fn settings(server: &mut ServerConfig, row: &Row) -> Result<(), String> {
    if let Some(system_id) = col::<Option<String>>(row, 0, "system_id")? {
        server.system_id = system_id;
    }
    let numbers: [(&mut u32, usize, &str); 7] = [
        (&mut server.window, 1, "window_size"),
        (&mut server.max_command_length, 2, "max_command_length"),
        (&mut server.enquire_link_interval_ms, 3, "enquire_link_interval_ms"),
        (&mut server.session_timeout_ms, 4, "session_timeout_ms"),
        (&mut server.response_timeout_ms, 5, "response_timeout_ms"),
        (&mut server.bind_timeout_ms, 6, "bind_timeout_ms"),
        (&mut server.receipt_ttl_secs, 7, "receipt_ttl_secs"),
    ];
    for (field, idx, name) in numbers {
        if let Some(value) = col::<Option<i64>>(row, idx, name)? {
            *field = to_u32(value, name)?;
        }
    }
    if let Some(failover) = col::<Option<bool>>(row, 8, "unknown_outcome_failover")? {
        server.unknown_outcome_failover = failover;
    }
    Ok(())
}

fn customer(row: &Row) -> Result<CustomerConfig, String> {
    let bind_types = col::<Vec<&str>>(row, 2, "bind_types")?
        .into_iter()
        .map(|t| parse_choice::<BindType>(t, "bind_types"))
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_ips = col::<Vec<&str>>(row, 3, "allowed_ips")?
        .into_iter()
        .map(|ip| ip.parse::<Cidr>().map_err(|e| format!("column allowed_ips: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CustomerConfig {
        system_id: col(row, 0, "system_id")?,
        password_hash: col(row, 1, "password_hash")?,
        bind_types,
        allowed_ips,
        max_binds: u32_col(row, 4, "max_binds")?,
        throughput: u32_col(row, 5, "throughput")?,
        window: u32_col(row, 6, "window_size")?,
        id_format: choice(row, 7, "id_format")?,
        receipt_pdu: choice(row, 8, "receipt_pdu")?,
        receipt_parts: choice(row, 9, "receipt_parts")?,
        number_ranges: Vec::new(),
    })
}

fn vendor(row: &Row) -> Result<VendorConfig, String> {
    let port: i32 = col(row, 2, "port")?;
    Ok(VendorConfig {
        name: col(row, 0, "name")?,
        host: col(row, 1, "host")?,
        port: u16::try_from(port).map_err(|_| format!("column port: {port} is not within 0..=65535"))?,
        system_id: col(row, 3, "system_id")?,
        password: col(row, 4, "password")?,
        system_type: col(row, 5, "system_type")?,
        binds: u32_col(row, 6, "binds")?,
        bind_type: choice(row, 7, "bind_type")?,
        window: u32_col(row, 8, "window_size")?,
        throughput: u32_col(row, 9, "throughput")?,
        enquire_link_interval_ms: u32_col(row, 10, "enquire_link_interval_ms")?,
        response_timeout_ms: u32_col(row, 11, "response_timeout_ms")?,
        reconnect_backoff_min_ms: u32_col(row, 12, "reconnect_backoff_min_ms")?,
        reconnect_backoff_max_ms: u32_col(row, 13, "reconnect_backoff_max_ms")?,
        id_format: choice(row, 14, "id_format")?,
    })
}

fn route(row: &Row) -> Result<RouteConfig, String> {
    Ok(RouteConfig {
        name: col(row, 0, "name")?,
        prefixes: col(row, 1, "prefixes")?,
        customers: Vec::new(),
        source_prefixes: col(row, 2, "source_prefixes")?,
        vendors: Vec::new(),
    })
}

fn route_vendor(row: &Row) -> Result<(String, RouteVendor), String> {
    let route = col(row, 0, "route")?;
    let rv = RouteVendor {
        name: col(row, 1, "vendor")?,
        priority: u32_col(row, 2, "priority")?,
        weight: u32_col(row, 3, "weight")?,
    };
    Ok((route, rv))
}

fn brand(row: &Row) -> Result<BrandConfig, String> {
    Ok(BrandConfig {
        brand_id: col(row, 0, "brand_id")?,
        daily_cap_segments: u32_col(row, 1, "daily_cap_segments")?,
    })
}

fn campaign_row(row: &Row) -> Result<CampaignConfig, String> {
    Ok(CampaignConfig {
        campaign_id: col(row, 0, "campaign_id")?,
        brand_id: col(row, 1, "brand_id")?,
        segments_per_minute: u32_col(row, 2, "segments_per_minute")?,
        source_prefixes: Vec::new(),
    })
}
