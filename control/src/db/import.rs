//! `smppgw import-config FILE`: merging a TOML configuration into the tables, in one transaction.
//!
//! Items are matched by key (customer system_id, vendor and route name, brand and campaign id). An
//! item that differs is rewritten with its child rows (number ranges, route vendors, route
//! customers, campaign numbers); an equal one is not touched, so importing the same file twice
//! writes nothing the second time (and sends no notification). Items the database has and the file
//! does not are kept: the import merges, it does not prune.
//!
//! Before committing, the merged contents are loaded and validated inside the transaction: an import
//! that would leave the database with a configuration the gateway refuses (a number range claimed by
//! a customer the file does not know, say) is rolled back and reported.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Value, json};
use smppgw_engine::config::{
    BrandConfig, CampaignConfig, Config, CustomerConfig, RouteConfig, ServerConfig, VendorConfig,
};
use tokio_postgres::{Client, Transaction};

use super::load;
use super::{DbError, InvalidConfig};

/// First key of the advisory lock that serialises imports ("impt").
const LOCK_CLASS: i32 = 0x696d_7074;

/// What an import did to one kind of item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemCounts {
    /// Items the database did not have.
    pub added: usize,
    /// Items that differed and were rewritten.
    pub updated: usize,
    /// Items that were already equal.
    pub unchanged: usize,
}

/// What [`import_config`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    /// Whether the cluster-wide server settings changed.
    pub settings_changed: bool,
    /// `[[customer]]` items (with their number ranges).
    pub customers: ItemCounts,
    /// `[[vendor]]` items.
    pub vendors: ItemCounts,
    /// `[[route]]` items (with their vendors and customer filters).
    pub routes: ItemCounts,
    /// `[[brand]]` items.
    pub brands: ItemCounts,
    /// `[[campaign]]` items (with their source numbers).
    pub campaigns: ItemCounts,
}

impl ImportSummary {
    /// Whether anything was written.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.settings_changed
            || [self.customers, self.vendors, self.routes, self.brands, self.campaigns]
                .iter()
                .any(|c| c.added + c.updated > 0)
    }
}

impl fmt::Display for ItemCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} added, {} updated, {} unchanged", self.added, self.updated, self.unchanged)
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "settings {}; customers: {}; vendors: {}; routes: {}; brands: {}; campaigns: {}",
            if self.settings_changed { "updated" } else { "unchanged" },
            self.customers,
            self.vendors,
            self.routes,
            self.brands,
            self.campaigns
        )
    }
}

/// Merges `cfg` into the tables in one transaction (see the module documentation): the cluster-wide
/// `[server]` settings ([`super::DB_SERVER_SETTINGS`]) and every customer, vendor, route, brand and
/// campaign. Idempotent.
///
/// # Errors
/// [`DbError::Invalid`] when `cfg` does not validate, or the merged contents would not (nothing is
/// written then); [`DbError::Query`] when a statement fails (a number range owned by a customer the
/// file does not define, for one), also with nothing written.
pub async fn import_config(client: &mut Client, cfg: &Config) -> Result<ImportSummary, DbError> {
    import_config_setting(client, cfg, None).await
}

/// [`import_config`] of a file that sets only the cluster-wide `[server]` settings named in
/// `set` (its keys, from [`crate::db::DB_SERVER_SETTINGS`]; None: all of them): the others are
/// written NULL, so that each node's own value applies, as the file left them unset.
///
/// # Errors
/// As [`import_config`].
pub async fn import_config_setting(
    client: &mut Client,
    cfg: &Config,
    set: Option<&[String]>,
) -> Result<ImportSummary, DbError> {
    cfg.validate().map_err(|e| DbError::Invalid(InvalidConfig::from_config_errors(&e)))?;
    let tx = client.transaction().await.map_err(DbError::query("starting the import transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))", &[&LOCK_CLASS])
        .await
        .map_err(DbError::query("taking the import lock"))?;
    let (current, _) = load::build(load::read(&tx).await?, cfg);
    let current = current.config;

    let customers: Vec<CustomerConfig> = cfg
        .customers
        .iter()
        .map(|c| CustomerConfig { number_ranges: dedup(&c.number_ranges), ..c.clone() })
        .collect();
    let routes: Vec<RouteConfig> =
        cfg.routes.iter().map(|r| RouteConfig { customers: dedup(&r.customers), ..r.clone() }).collect();
    let campaigns: Vec<CampaignConfig> = cfg
        .campaigns
        .iter()
        .map(|c| CampaignConfig { source_prefixes: dedup(&c.source_prefixes), ..c.clone() })
        .collect();

    let mut summary =
        ImportSummary { settings_changed: settings(&tx, &cfg.server, set).await?, ..Default::default() };
    let (counts, upsert) = classify(&customers, &current.customers, |c| &c.system_id);
    summary.customers = counts;
    import_customers(&tx, &upsert).await?;
    let (counts, upsert) = classify(&cfg.vendors, &current.vendors, |v| &v.name);
    summary.vendors = counts;
    import_vendors(&tx, &upsert).await?;
    let (counts, upsert) = classify(&routes, &current.routes, |r| &r.name);
    summary.routes = counts;
    import_routes(&tx, &upsert).await?;
    // The file's order is the routes' order (ties among routes of equal prefix go to the first):
    // routes the file moves count as updated, though nothing else of theirs changed.
    let moved = order_routes(&tx, &routes).await?;
    let moved_only = moved.iter().filter(|m| !upsert.iter().any(|r| &r.name == *m)).count();
    summary.routes.unchanged -= moved_only.min(summary.routes.unchanged);
    summary.routes.updated += moved_only;
    // Brands before campaigns: a campaign references its brand.
    let (counts, upsert) = classify(&cfg.brands, &current.brands, |b| &b.brand_id);
    summary.brands = counts;
    import_brands(&tx, &upsert).await?;
    let (counts, upsert) = classify(&campaigns, &current.campaigns, |c| &c.campaign_id);
    summary.campaigns = counts;
    import_campaigns(&tx, &upsert).await?;

    let (merged, problems) = load::build(load::read(&tx).await?, cfg);
    load::check(merged, problems)?;
    tx.commit().await.map_err(DbError::query("committing the import"))?;
    tracing::info!(%summary, "imported configuration");
    Ok(summary)
}

/// `list` without repeats, first occurrences kept in order (the tables key these).
fn dedup(list: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    list.iter().filter(|s| seen.insert(s.as_str())).cloned().collect()
}

/// Splits `wanted` into new, changed and equal items against `current`: the counts, and the items
/// to write (with their child rows replaced).
fn classify<'a, T: PartialEq>(
    wanted: &'a [T],
    current: &[T],
    key: impl Fn(&T) -> &String,
) -> (ItemCounts, Vec<&'a T>) {
    let current: HashMap<&str, &T> = current.iter().map(|item| (key(item).as_str(), item)).collect();
    let mut counts = ItemCounts::default();
    let mut upsert = Vec::new();
    for item in wanted {
        match current.get(key(item).as_str()) {
            Some(&existing) if existing == item => counts.unchanged += 1,
            Some(_) => {
                counts.updated += 1;
                upsert.push(item);
            }
            None => {
                counts.added += 1;
                upsert.push(item);
            }
        }
    }
    (counts, upsert)
}

async fn settings(tx: &Transaction<'_>, s: &ServerConfig, set: Option<&[String]>) -> Result<bool, DbError> {
    let is_set = |key: &str| set.is_none_or(|keys| keys.iter().any(|k| k == key));
    let n = |key: &str, v: u32| is_set(key).then_some(i64::from(v));
    let system_id = is_set("system_id").then_some(&s.system_id);
    let failover = is_set("unknown_outcome_failover").then_some(s.unknown_outcome_failover);
    let rows = tx
        .execute(
            "INSERT INTO smppgw_settings AS s (singleton, system_id, window_size, max_command_length, \
             enquire_link_interval_ms, session_timeout_ms, response_timeout_ms, bind_timeout_ms, \
             receipt_ttl_secs, unknown_outcome_failover) \
             VALUES (true, $1::text, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::bigint, $7::bigint, \
             $8::bigint, $9::boolean) \
             ON CONFLICT (singleton) DO UPDATE SET system_id = excluded.system_id, \
             window_size = excluded.window_size, max_command_length = excluded.max_command_length, \
             enquire_link_interval_ms = excluded.enquire_link_interval_ms, \
             session_timeout_ms = excluded.session_timeout_ms, response_timeout_ms = excluded.response_timeout_ms, \
             bind_timeout_ms = excluded.bind_timeout_ms, receipt_ttl_secs = excluded.receipt_ttl_secs, \
             unknown_outcome_failover = excluded.unknown_outcome_failover \
             WHERE (s.system_id, s.window_size, s.max_command_length, s.enquire_link_interval_ms, \
             s.session_timeout_ms, s.response_timeout_ms, s.bind_timeout_ms, s.receipt_ttl_secs, \
             s.unknown_outcome_failover) IS DISTINCT FROM (excluded.system_id, excluded.window_size, \
             excluded.max_command_length, excluded.enquire_link_interval_ms, excluded.session_timeout_ms, \
             excluded.response_timeout_ms, excluded.bind_timeout_ms, excluded.receipt_ttl_secs, \
             excluded.unknown_outcome_failover)",
            &[
                &system_id,
                &n("window", s.window),
                &n("max_command_length", s.max_command_length),
                &n("enquire_link_interval_ms", s.enquire_link_interval_ms),
                &n("session_timeout_ms", s.session_timeout_ms),
                &n("response_timeout_ms", s.response_timeout_ms),
                &n("bind_timeout_ms", s.bind_timeout_ms),
                &n("receipt_ttl_secs", s.receipt_ttl_secs),
                &failover,
            ],
        )
        .await
        .map_err(DbError::query("importing smppgw_settings"))?;
    Ok(rows > 0)
}

/// Runs `sql` with `rows` (a JSON array of objects) as `$1`, unless there are none.
async fn bulk(
    tx: &Transaction<'_>,
    sql: &str,
    rows: Vec<Value>,
    context: &'static str,
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    tx.execute(sql, &[&Value::Array(rows)]).await.map_err(DbError::query(context))?;
    Ok(())
}

/// Runs the DELETE `sql` with `keys` as `$1`, unless there are none.
async fn delete_children(
    tx: &Transaction<'_>,
    sql: &str,
    keys: &[&str],
    context: &'static str,
) -> Result<(), DbError> {
    if keys.is_empty() {
        return Ok(());
    }
    tx.execute(sql, &[&keys]).await.map_err(DbError::query(context))?;
    Ok(())
}

async fn import_customers(tx: &Transaction<'_>, upsert: &[&CustomerConfig]) -> Result<(), DbError> {
    let rows = upsert
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "i": i,
                "system_id": c.system_id,
                "password_hash": c.password_hash,
                "bind_types": c.bind_types.iter().map(|b| b.as_str()).collect::<Vec<_>>(),
                "allowed_ips": c.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "max_binds": c.max_binds,
                "throughput": c.throughput,
                "window_size": c.window,
                "id_format": c.id_format.as_str(),
                "receipt_pdu": c.receipt_pdu.as_str(),
                "receipt_parts": c.receipt_parts.as_str(),
            })
        })
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_customers (system_id, password_hash, bind_types, allowed_ips, max_binds, \
         throughput, window_size, id_format, receipt_pdu, receipt_parts) \
         SELECT system_id, password_hash, bind_types, allowed_ips, max_binds, throughput, window_size, \
         id_format, receipt_pdu, receipt_parts \
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, system_id text, password_hash text, \
         bind_types text[], allowed_ips cidr[], max_binds bigint, throughput bigint, window_size bigint, \
         id_format text, receipt_pdu text, receipt_parts text) ORDER BY i \
         ON CONFLICT (system_id) DO UPDATE SET password_hash = excluded.password_hash, \
         bind_types = excluded.bind_types, allowed_ips = excluded.allowed_ips, max_binds = excluded.max_binds, \
         throughput = excluded.throughput, window_size = excluded.window_size, \
         id_format = excluded.id_format, receipt_pdu = excluded.receipt_pdu, \
         receipt_parts = excluded.receipt_parts",
        rows,
        "importing smppgw_customers",
    )
    .await?;
    delete_children(
        tx,
        "DELETE FROM smppgw_number_ranges WHERE system_id = ANY($1::text[])",
        &upsert.iter().map(|c| c.system_id.as_str()).collect::<Vec<_>>(),
        "replacing smppgw_number_ranges",
    )
    .await?;
    let ranges = upsert
        .iter()
        .flat_map(|c| c.number_ranges.iter().map(move |prefix| (&c.system_id, prefix)))
        .enumerate()
        .map(|(i, (system_id, prefix))| json!({ "i": i, "system_id": system_id, "prefix": prefix }))
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_number_ranges (prefix, system_id) \
         SELECT prefix, system_id FROM jsonb_to_recordset($1::jsonb) AS x(i integer, prefix text, system_id text) \
         ORDER BY i",
        ranges,
        "importing smppgw_number_ranges",
    )
    .await
}

async fn import_vendors(tx: &Transaction<'_>, upsert: &[&VendorConfig]) -> Result<(), DbError> {
    let rows = upsert
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "i": i,
                "name": v.name,
                "host": v.host,
                "port": v.port,
                "system_id": v.system_id,
                "password": v.password,
                "system_type": v.system_type,
                "binds": v.binds,
                "bind_type": v.bind_type.as_str(),
                "window_size": v.window,
                "throughput": v.throughput,
                "enquire_link_interval_ms": v.enquire_link_interval_ms,
                "response_timeout_ms": v.response_timeout_ms,
                "reconnect_backoff_min_ms": v.reconnect_backoff_min_ms,
                "reconnect_backoff_max_ms": v.reconnect_backoff_max_ms,
                "id_format": v.id_format.as_str(),
            })
        })
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_vendors (name, host, port, system_id, password, system_type, binds, bind_type, \
         window_size, throughput, enquire_link_interval_ms, response_timeout_ms, reconnect_backoff_min_ms, \
         reconnect_backoff_max_ms, id_format) \
         SELECT name, host, port, system_id, password, system_type, binds, bind_type, window_size, throughput, \
         enquire_link_interval_ms, response_timeout_ms, reconnect_backoff_min_ms, reconnect_backoff_max_ms, \
         id_format \
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, name text, host text, port integer, \
         system_id text, password text, system_type text, binds bigint, bind_type text, window_size bigint, \
         throughput bigint, enquire_link_interval_ms bigint, response_timeout_ms bigint, \
         reconnect_backoff_min_ms bigint, reconnect_backoff_max_ms bigint, id_format text) ORDER BY i \
         ON CONFLICT (name) DO UPDATE SET host = excluded.host, port = excluded.port, \
         system_id = excluded.system_id, password = excluded.password, system_type = excluded.system_type, \
         binds = excluded.binds, bind_type = excluded.bind_type, window_size = excluded.window_size, \
         throughput = excluded.throughput, enquire_link_interval_ms = excluded.enquire_link_interval_ms, \
         response_timeout_ms = excluded.response_timeout_ms, \
         reconnect_backoff_min_ms = excluded.reconnect_backoff_min_ms, \
         reconnect_backoff_max_ms = excluded.reconnect_backoff_max_ms, id_format = excluded.id_format",
        rows,
        "importing smppgw_vendors",
    )
    .await
}

/// Gives each of `routes` its index in the file as its `position`; returns the names of those
/// whose position changed.
async fn order_routes(tx: &Transaction<'_>, routes: &[RouteConfig]) -> Result<Vec<String>, DbError> {
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> =
        routes.iter().enumerate().map(|(i, r)| json!({ "i": i, "name": r.name })).collect();
    let moved = tx
        .query(
            "UPDATE smppgw_routes r SET position = x.i \
             FROM jsonb_to_recordset($1::jsonb) AS x(i integer, name text) \
             WHERE r.name = x.name AND r.position IS DISTINCT FROM x.i RETURNING r.name",
            &[&Value::Array(rows)],
        )
        .await
        .map_err(DbError::query("ordering smppgw_routes"))?;
    Ok(moved.iter().map(|row| row.get::<_, String>(0)).collect())
}

async fn import_routes(tx: &Transaction<'_>, upsert: &[&RouteConfig]) -> Result<(), DbError> {
    let rows = upsert
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({ "i": i, "name": r.name, "prefixes": r.prefixes, "source_prefixes": r.source_prefixes })
        })
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_routes (name, prefixes, source_prefixes) \
         SELECT name, prefixes, source_prefixes \
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, name text, prefixes text[], source_prefixes text[]) \
         ORDER BY i \
         ON CONFLICT (name) DO UPDATE SET prefixes = excluded.prefixes, source_prefixes = excluded.source_prefixes",
        rows,
        "importing smppgw_routes",
    )
    .await?;
    let names: Vec<&str> = upsert.iter().map(|r| r.name.as_str()).collect();
    delete_children(
        tx,
        "DELETE FROM smppgw_route_vendors WHERE route = ANY($1::text[])",
        &names,
        "replacing smppgw_route_vendors",
    )
    .await?;
    delete_children(
        tx,
        "DELETE FROM smppgw_route_customers WHERE route = ANY($1::text[])",
        &names,
        "replacing smppgw_route_customers",
    )
    .await?;
    let vendors = upsert
        .iter()
        .flat_map(|r| r.vendors.iter().map(move |rv| (&r.name, rv)))
        .enumerate()
        .map(|(i, (route, rv))| {
            json!({ "i": i, "route": route, "vendor": rv.name, "priority": rv.priority, "weight": rv.weight })
        })
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_route_vendors (route, vendor, priority, weight) \
         SELECT route, vendor, priority, weight FROM jsonb_to_recordset($1::jsonb) \
         AS x(i integer, route text, vendor text, priority bigint, weight bigint) ORDER BY i",
        vendors,
        "importing smppgw_route_vendors",
    )
    .await?;
    let customers = upsert
        .iter()
        .flat_map(|r| r.customers.iter().map(move |c| (&r.name, c)))
        .enumerate()
        .map(|(i, (route, system_id))| json!({ "i": i, "route": route, "system_id": system_id }))
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_route_customers (route, system_id) \
         SELECT route, system_id FROM jsonb_to_recordset($1::jsonb) AS x(i integer, route text, system_id text) \
         ORDER BY i",
        customers,
        "importing smppgw_route_customers",
    )
    .await
}

async fn import_brands(tx: &Transaction<'_>, upsert: &[&BrandConfig]) -> Result<(), DbError> {
    let rows = upsert
        .iter()
        .enumerate()
        .map(|(i, b)| json!({ "i": i, "brand_id": b.brand_id, "daily_cap_segments": b.daily_cap_segments }))
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_brands (brand_id, daily_cap_segments) \
         SELECT brand_id, daily_cap_segments \
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, brand_id text, daily_cap_segments bigint) ORDER BY i \
         ON CONFLICT (brand_id) DO UPDATE SET daily_cap_segments = excluded.daily_cap_segments",
        rows,
        "importing smppgw_brands",
    )
    .await
}

async fn import_campaigns(tx: &Transaction<'_>, upsert: &[&CampaignConfig]) -> Result<(), DbError> {
    let rows = upsert
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "i": i,
                "campaign_id": c.campaign_id,
                "brand_id": c.brand_id,
                "segments_per_minute": c.segments_per_minute,
            })
        })
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_campaigns (campaign_id, brand_id, segments_per_minute) \
         SELECT campaign_id, brand_id, segments_per_minute \
         FROM jsonb_to_recordset($1::jsonb) \
         AS x(i integer, campaign_id text, brand_id text, segments_per_minute bigint) ORDER BY i \
         ON CONFLICT (campaign_id) DO UPDATE SET brand_id = excluded.brand_id, \
         segments_per_minute = excluded.segments_per_minute",
        rows,
        "importing smppgw_campaigns",
    )
    .await?;
    // Every rewritten campaign's numbers go before any is inserted, so a number can move from one
    // rewritten campaign to another.
    delete_children(
        tx,
        "DELETE FROM smppgw_campaign_numbers WHERE campaign_id = ANY($1::text[])",
        &upsert.iter().map(|c| c.campaign_id.as_str()).collect::<Vec<_>>(),
        "replacing smppgw_campaign_numbers",
    )
    .await?;
    let numbers = upsert
        .iter()
        .flat_map(|c| c.source_prefixes.iter().map(move |source| (&c.campaign_id, source)))
        .enumerate()
        .map(|(i, (campaign_id, source))| json!({ "i": i, "campaign_id": campaign_id, "source_prefix": source }))
        .collect();
    bulk(
        tx,
        "INSERT INTO smppgw_campaign_numbers (source_prefix, campaign_id) \
         SELECT source_prefix, campaign_id \
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, source_prefix text, campaign_id text) ORDER BY i",
        numbers,
        "importing smppgw_campaign_numbers",
    )
    .await
}
