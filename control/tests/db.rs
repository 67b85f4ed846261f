//! The PostgreSQL configuration source against a real server: migrations, import, load, hot reload,
//! rejection of bad changes, connection loss, and the time to load 10,000 routes.
//!
//! Each test creates a database of its own (`smppgw_t_...`) and drops it at the end, so tests run in
//! parallel and repeatedly. The server is `SMPPGW_TEST_DATABASE_URL`, by default
//! `host=127.0.0.1 port=5432 user=postgres dbname=test` (`make services` starts one).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use smppgw_control::db::{self, ConfigWatcher, DbConfig, DbError, Health, MIGRATIONS, WatchOptions};
use smppgw_engine::config::{
    BindType, BrandConfig, CampaignConfig, Config, CustomerConfig, IdFormat, ReceiptParts, ReceiptPdu,
    RouteConfig, RouteVendor, VendorBindType, VendorConfig, VendorIdFormat,
};
use tokio::sync::watch;
use tokio_postgres::Client;

const DEFAULT_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const EXAMPLE_TOML: &str = include_str!("../../deploy/config/example.toml");
/// A valid argon2id PHC string ("acme-pw", from the example configuration).
const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$QoH8NzdGS4ZEetisU7d4IA$19yRMcS+CQZZpv27rPXlM3vkjfz9P0iDYhw/VnmzPic";
/// How long a change may take to reach the watcher before the test fails. The issue asks for one
/// second; the bound is generous so that a loaded CI machine does not fail the test, and the
/// measured time is printed.
const CHANGE_DEADLINE: Duration = Duration::from_secs(5);

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, dropped (with any session still on it) when the test ends.
struct TestDb {
    name: String,
    admin: tokio_postgres::Config,
    pg: tokio_postgres::Config,
    /// Roles made for the test (cluster-wide): dropped after the database.
    roles: Vec<String>,
}

fn admin_config() -> tokio_postgres::Config {
    let url = std::env::var("SMPPGW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    db::parse_database_url(&url).expect("SMPPGW_TEST_DATABASE_URL is not a valid database URL")
}

impl TestDb {
    async fn create() -> TestDb {
        let admin = admin_config();
        let (client, _driver) = db::connect(&admin).await.expect(
            "PostgreSQL for the tests is not reachable (set SMPPGW_TEST_DATABASE_URL or run `make services`)",
        );
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name =
            format!("smppgw_t_{}_{}_{nanos}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed));
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        let mut pg = admin.clone();
        pg.dbname(&name);
        TestDb { name, admin, pg, roles: Vec::new() }
    }

    async fn client(&self) -> Client {
        db::connect(&self.pg).await.expect("connect to the test database").0
    }

    /// A login role that may only connect to this database and read its tables as they are now
    /// (no CREATE in the schema, whatever the server's version), and how to connect as it.
    async fn read_only_role(&mut self) -> tokio_postgres::Config {
        let role = format!("{}_ro", self.name);
        let password = format!("pw_{role}");
        let (admin, _driver) = db::connect(&self.admin).await.expect("connect as admin");
        admin
            .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            .await
            .expect("CREATE ROLE");
        self.roles.push(role.clone());
        let owner = self.client().await;
        owner
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC;
                 REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                 GRANT CONNECT ON DATABASE {db} TO {role};
                 GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};",
                db = self.name
            ))
            .await
            .expect("grant read-only rights");
        let mut pg = self.pg.clone();
        pg.user(&role).password(password);
        pg
    }

    /// A client on a freshly migrated database.
    async fn migrated(&self) -> Client {
        let mut client = self.client().await;
        db::migrate(&mut client).await.expect("migrate");
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name, roles) = (self.admin.clone(), self.name.clone(), std::mem::take(&mut self.roles));
        // Drop runs inside the test's runtime, which cannot be blocked on; use a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let (client, _driver) = db::connect(&admin).await.expect("connect to drop the test database");
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .expect("DROP DATABASE");
                // Their rights went with the database; nothing else refers to them.
                for role in roles {
                    client.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await.expect("DROP ROLE");
                }
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop test database {}", self.name);
        }
    }
}

fn example() -> Config {
    Config::from_toml_str(EXAMPLE_TOML, "deploy/config/example.toml")
        .expect("the example configuration is valid")
}

/// Waits for the next configuration, or fails after [`CHANGE_DEADLINE`]; returns it and the time taken.
async fn next_config(
    rx: &mut watch::Receiver<std::sync::Arc<DbConfig>>,
    since: Instant,
) -> (DbConfig, Duration) {
    tokio::time::timeout(CHANGE_DEADLINE, rx.changed())
        .await
        .expect("the change did not reach the watcher in time")
        .expect("the watcher stopped");
    let elapsed = since.elapsed();
    let config = (**rx.borrow_and_update()).clone();
    (config, elapsed)
}

/// Waits until the watcher's health satisfies `f`, or fails after [`CHANGE_DEADLINE`].
async fn health_until(rx: &mut watch::Receiver<Health>, what: &str, f: impl Fn(&Health) -> bool) -> Health {
    let deadline = tokio::time::Instant::now() + CHANGE_DEADLINE;
    loop {
        if f(&rx.borrow_and_update()) {
            return rx.borrow().clone();
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the watcher stopped while waiting for: {what}"),
            Err(_) => panic!("timed out waiting for: {what}; health is {:?}", rx.borrow()),
        }
    }
}

#[tokio::test]
async fn migrations_apply_from_empty_once_even_when_two_nodes_start_together() {
    let t = TestDb::create().await;
    let (mut a, mut b) = (t.client().await, t.client().await);
    let (ra, rb) = tokio::join!(db::migrate(&mut a), db::migrate(&mut b));
    let (mut ra, rb) = (ra.expect("node a migrates"), rb.expect("node b migrates"));
    ra.extend(rb);
    ra.sort_unstable();
    let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(ra, all, "every migration applied exactly once between the two nodes");

    assert_eq!(db::migrate(&mut a).await.expect("re-run"), Vec::<u32>::new(), "a re-run applies nothing");
    let rows =
        a.query("SELECT version, name FROM smppgw_schema_migrations ORDER BY version", &[]).await.unwrap();
    let recorded: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(i32, String)> =
        MIGRATIONS.iter().map(|m| (i32::try_from(m.version).unwrap(), m.name.to_owned())).collect();
    assert_eq!(recorded, expected);

    // An empty schema loads as a configuration with no items, the node's server settings.
    let base = example();
    let loaded = db::load(&mut a, &base).await.expect("empty tables load");
    assert_eq!(loaded, DbConfig { config: Config { server: base.server.clone(), ..Config::default() } });
}

#[tokio::test]
async fn load_before_migrate_says_to_migrate() {
    let t = TestDb::create().await;
    let mut client = t.client().await;
    let err = db::load(&mut client, &Config::default()).await.expect_err("no tables yet");
    assert!(matches!(err, DbError::NotMigrated { .. }), "{err:?}");
    assert!(err.to_string().contains("run `smppgw migrate` first"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_node_whose_role_only_reads_starts_on_a_migrated_schema_and_is_told_to_migrate_a_stale_one() {
    let mut t = TestDb::create().await;
    let mut owner = t.migrated().await;
    db::import_config(&mut owner, &example()).await.expect("import");
    let reader = t.read_only_role().await;

    // What a node does on start: migrate, then load. Nothing to apply, nothing touched.
    let (mut client, _driver) = db::connect(&reader).await.expect("connect as the read-only role");
    assert_eq!(db::migrate(&mut client).await.expect("migrate as a reader"), Vec::<u32>::new());
    let loaded = db::load(&mut client, &example()).await.expect("load as a reader");
    assert_eq!(loaded.config, example());

    // A binary newer than the schema: it cannot migrate it, and says who must.
    let newest = MIGRATIONS[MIGRATIONS.len() - 1];
    let version = i32::try_from(newest.version).unwrap();
    owner.execute("DELETE FROM smppgw_schema_migrations WHERE version = $1", &[&version]).await.unwrap();
    let err =
        db::migrate(&mut client).await.expect_err("a migration is pending and the role may not apply it");
    let text = err.to_string();
    println!("{text}");
    assert!(
        matches!(&err, DbError::MigrationDenied { pending, .. } if *pending == [newest.version]),
        "{err:?}"
    );
    assert!(text.contains("run `smppgw migrate` as the schema's owner"), "{text}");
    assert!(text.contains(&format!("{}_ro", t.name)), "names the role: {text}");
    assert!(!err.is_transient());
    let recorded: i64 =
        owner.query_one("SELECT count(*) FROM smppgw_schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(recorded, i64::try_from(MIGRATIONS.len() - 1).unwrap(), "nothing was applied");
}

#[tokio::test]
async fn imported_example_loads_back_equal_and_a_second_import_changes_nothing() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let mut file = example();
    // Cluster-wide settings away from their defaults, to see that they travel through the tables.
    file.server.window = 100;
    file.server.system_id = "exgw".to_owned();
    file.server.unknown_outcome_failover = true;

    let first = db::import_config(&mut client, &file).await.expect("import");
    println!("first import: {first}");
    assert!(first.settings_changed);
    assert_eq!((first.customers.added, first.vendors.added, first.routes.added), (2, 2, 4));
    assert!(first.changed());

    assert_eq!((first.brands.added, first.campaigns.added), (1, 2));

    // With the file itself as the node's base: exactly the file, 10DLC brands and campaigns too.
    let loaded = db::load(&mut client, &file).await.expect("load");
    assert_eq!(loaded.config, file);
    assert!(!loaded.config.campaigns.is_empty());

    // Another node: its own per-node settings, the cluster's from the tables.
    let mut node = Config::default();
    node.server.node_id = 9;
    node.server.listen = "127.0.0.1:3775".parse().unwrap();
    node.server.max_binds = 77;
    node.server.window = 5; // cluster-wide: the table's 100 wins
    let loaded = db::load(&mut client, &node).await.expect("load on another node");
    assert_eq!(loaded.config, db::cache::with_node_settings(file.clone(), &node));
    assert_eq!(loaded.config.server.window, 100);

    let second = db::import_config(&mut client, &file).await.expect("re-import");
    println!("second import: {second}");
    assert!(!second.changed(), "{second}");
    assert_eq!((second.customers.unchanged, second.vendors.unchanged, second.routes.unchanged), (2, 2, 4));
    assert_eq!((second.brands.unchanged, second.campaigns.unchanged), (1, 2));
    assert_eq!(db::load(&mut client, &file).await.expect("load").config, file);

    // Changing one route rewrites that route only.
    let mut changed = file.clone();
    changed.routes[1].vendors[1].weight = 7;
    changed.routes[2].customers.push("acme".to_owned());
    let third = db::import_config(&mut client, &changed).await.expect("import a change");
    assert_eq!(
        (third.routes.updated, third.routes.unchanged, third.customers.unchanged),
        (2, 2, 2),
        "{third}"
    );
    assert_eq!(db::load(&mut client, &changed).await.expect("load").config, changed);

    // A number moving between two campaigns, and a brand's new cap: those three rows only.
    let moved = changed.campaigns[0].source_prefixes.remove(1);
    changed.campaigns[1].source_prefixes.push(moved);
    changed.brands[0].daily_cap_segments = 1234;
    let fourth = db::import_config(&mut client, &changed).await.expect("import 10DLC changes");
    assert_eq!(
        (fourth.campaigns.updated, fourth.brands.updated, fourth.routes.unchanged),
        (2, 1, 4),
        "{fourth}"
    );
    assert_eq!(db::load(&mut client, &changed).await.expect("load").config, changed);

    // The file's route order is the routes' order (ties go to the first): a reordered file
    // moves them, and says so.
    changed.routes.swap(0, 3);
    let fifth = db::import_config(&mut client, &changed).await.expect("import a new order");
    assert_eq!((fifth.routes.updated, fifth.routes.unchanged), (2, 2), "{fifth}");
    let names = |c: &Config| c.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&db::load(&mut client, &changed).await.expect("load").config), names(&changed));
}

#[tokio::test]
async fn an_import_that_would_not_validate_writes_nothing() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    // Another customer owns "+15550100", which the example gives to acme as "15550100": the tables
    // accept both spellings, the gateway's validation does not.
    client
        .batch_execute(&format!(
            "INSERT INTO smppgw_customers (system_id, password_hash) VALUES ('other', '{HASH}');
             INSERT INTO smppgw_number_ranges (prefix, system_id) VALUES ('+15550100', 'other');"
        ))
        .await
        .unwrap();
    let err = db::import_config(&mut client, &example()).await.expect_err("conflicting number range");
    let invalid = err.invalid().unwrap_or_else(|| panic!("expected an invalid configuration, got {err}"));
    assert!(invalid.messages().iter().any(|m| m.contains("also claimed by another customer")), "{err}");
    let count: i64 = client.query_one("SELECT count(*) FROM smppgw_customers", &[]).await.unwrap().get(0);
    assert_eq!(count, 1, "the import was rolled back");

    // The same number exactly: the key of smppgw_number_ranges refuses it.
    client.batch_execute("UPDATE smppgw_number_ranges SET prefix = '15550100'").await.unwrap();
    let err = db::import_config(&mut client, &example()).await.expect_err("duplicate number range");
    assert!(matches!(err, DbError::Query { .. }), "{err:?}");
    assert!(err.to_string().contains("15550100"), "{err}");
}

#[tokio::test]
async fn an_import_writes_only_the_cluster_wide_settings_its_file_sets() {
    // Goal: a file that sets only some `[server]` settings leaves the others NULL in the
    // tables (each node's own, its environment overrides included), instead of pinning every
    // node to the defaults the file never chose.
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let mut file = example();
    file.server.receipt_ttl_secs = 3600;
    let set = vec!["receipt_ttl_secs".to_owned()];
    db::import_config_setting(&mut client, &file, Some(&set)).await.expect("import");
    let row = client
        .query_one("SELECT window_size, receipt_ttl_secs, system_id FROM smppgw_settings", &[])
        .await
        .unwrap();
    let (window, ttl, system_id): (Option<i64>, Option<i64>, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!((window, ttl, system_id), (None, Some(3600), None));
    let mut node = example();
    node.server.window = 7;
    let loaded = db::load(&mut client, &node).await.expect("load");
    assert_eq!((loaded.config.server.window, loaded.config.server.receipt_ttl_secs), (7, 3600));
}

#[tokio::test]
async fn items_inserted_with_only_their_required_columns_load_with_the_toml_defaults() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    client
        .batch_execute(&format!(
            "INSERT INTO smppgw_vendors (name, host, port, system_id, password)
                 VALUES ('v1', 'smsc.example.net', 2775, 'gw', 'pw');
             INSERT INTO smppgw_customers (system_id, password_hash) VALUES ('c1', '{HASH}');
             INSERT INTO smppgw_routes (name) VALUES ('r1');
             INSERT INTO smppgw_route_vendors (route, vendor) VALUES ('r1', 'v1');
             INSERT INTO smppgw_brands (brand_id) VALUES ('B1');
             INSERT INTO smppgw_campaigns (campaign_id, brand_id) VALUES ('C1', 'B1');"
        ))
        .await
        .unwrap();
    let base = Config::default();
    let loaded = db::load(&mut client, &base).await.expect("load");
    assert_eq!(loaded.config.vendors, vec![VendorConfig::new("v1", "smsc.example.net", 2775, "gw", "pw")]);
    assert_eq!(loaded.config.customers, vec![CustomerConfig::new("c1", HASH)]);
    assert_eq!(loaded.config.routes, vec![RouteConfig::new("r1", &["v1"])]);
    assert_eq!(loaded.config.server, base.server, "NULL settings leave the node's own");
    assert_eq!(loaded.config.brands, vec![BrandConfig::new("B1", 0)]);
    assert_eq!(loaded.config.campaigns, vec![CampaignConfig::new("C1", "B1")]);
}

#[tokio::test]
async fn every_choice_the_engine_accepts_is_accepted_by_the_tables() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    client
        .batch_execute(&format!(
            "INSERT INTO smppgw_vendors (name, host, port, system_id, password) VALUES ('v', 'h', 1, 's', 'p');
             INSERT INTO smppgw_customers (system_id, password_hash) VALUES ('c', '{HASH}');"
        ))
        .await
        .unwrap();
    let cases: [(&str, &str, &[&str]); 6] = [
        ("smppgw_customers", "bind_types", BindType::NAMES),
        ("smppgw_customers", "id_format", IdFormat::NAMES),
        ("smppgw_customers", "receipt_pdu", ReceiptPdu::NAMES),
        ("smppgw_customers", "receipt_parts", ReceiptParts::NAMES),
        ("smppgw_vendors", "bind_type", VendorBindType::NAMES),
        ("smppgw_vendors", "id_format", VendorIdFormat::NAMES),
    ];
    for (table, column, names) in cases {
        for name in names {
            let value = if column == "bind_types" { format!("'{{{name}}}'") } else { format!("'{name}'") };
            client
                .batch_execute(&format!("UPDATE {table} SET {column} = {value}"))
                .await
                .unwrap_or_else(|e| panic!("{table}.{column} refuses '{name}': {e}"));
            db::load(&mut client, &Config::default())
                .await
                .unwrap_or_else(|e| panic!("{table}.{column} = '{name}' does not load: {e}"));
        }
    }
}

#[tokio::test]
async fn a_change_in_each_table_reaches_the_watcher() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let base = example();
    db::import_config(&mut client, &base).await.expect("import");
    let watcher = ConfigWatcher::start(&t.pg, base.clone(), WatchOptions::default()).await.expect("watcher");
    assert_eq!(watcher.current().config, base);
    let mut rx = watcher.subscribe();
    let mut health = watcher.subscribe_health();

    type Check = fn(&DbConfig) -> bool;
    let changes: [(&str, &str, Check); 12] = [
        ("customer", "UPDATE smppgw_customers SET throughput = 777 WHERE system_id = 'acme'", |c| {
            c.config.customer("acme").is_some_and(|a| a.throughput == 777)
        }),
        ("vendor", "UPDATE smppgw_vendors SET window_size = 99 WHERE name = 'carrier-b'", |c| {
            c.config.vendor("carrier-b").is_some_and(|v| v.window == 99)
        }),
        (
            "new vendor",
            "INSERT INTO smppgw_vendors (name, host, port, system_id, password) VALUES ('new', 'h', 1, 's', 'p')",
            |c| c.config.vendor("new").is_some(),
        ),
        (
            "route (with its vendor, one transaction)",
            "BEGIN; INSERT INTO smppgw_routes (name, prefixes) VALUES ('fr', '{33,+33}');
             INSERT INTO smppgw_route_vendors (route, vendor) VALUES ('fr', 'new'); COMMIT",
            |c| c.config.route("fr").is_some_and(|r| r.vendors.len() == 1 && r.prefixes.len() == 2),
        ),
        (
            "route vendor",
            "UPDATE smppgw_route_vendors SET weight = 5 WHERE route = 'us' AND vendor = 'carrier-b'",
            |c| {
                c.config.route("us").is_some_and(|r| {
                    r.vendors.contains(&RouteVendor { name: "carrier-b".into(), priority: 0, weight: 5 })
                })
            },
        ),
        (
            "route customer",
            "INSERT INTO smppgw_route_customers (route, system_id) VALUES ('fr', 'shop')",
            |c| c.config.route("fr").is_some_and(|r| r.customers == ["shop"]),
        ),
        (
            "number range",
            "INSERT INTO smppgw_number_ranges (prefix, system_id) VALUES ('447700', 'shop')",
            |c| c.config.customer("shop").is_some_and(|s| s.number_ranges == ["447700"]),
        ),
        (
            "campaign (brand, campaign and numbers, one transaction)",
            "BEGIN; INSERT INTO smppgw_brands (brand_id, daily_cap_segments) VALUES ('BX1', 100000);
             INSERT INTO smppgw_campaigns (campaign_id, brand_id, segments_per_minute) VALUES ('CX1', 'BX1', 600);
             INSERT INTO smppgw_campaign_numbers (source_prefix, campaign_id) VALUES ('15557001', 'CX1'), ('+15557002', 'CX1');
             COMMIT",
            |c| {
                c.config.campaign("CX1").is_some_and(|x| {
                    x.brand_id == "BX1"
                        && x.source_prefixes == ["15557001", "+15557002"]
                        && x.segments_per_minute == 600
                })
            },
        ),
        ("brand", "UPDATE smppgw_brands SET daily_cap_segments = 5000", |c| {
            c.config.brands.iter().all(|b| b.daily_cap_segments == 5000)
        }),
        ("settings", "UPDATE smppgw_settings SET window_size = 32", |c| c.config.server.window == 32),
        ("route deleted", "DELETE FROM smppgw_routes WHERE name = 'fr'", |c| c.config.route("fr").is_none()),
        ("vendor deleted", "DELETE FROM smppgw_vendors WHERE name = 'new'", |c| c.config.vendor("new").is_none()),
    ];
    let mut slowest = Duration::ZERO;
    for (what, sql, check) in changes {
        let reloads_before = health.borrow_and_update().reloads;
        let since = Instant::now();
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let (config, elapsed) = next_config(&mut rx, since).await;
        println!("{what}: applied {:.1} ms after the commit", elapsed.as_secs_f64() * 1e3);
        assert!(check(&config), "{what}: the new configuration does not show the change");
        // A transaction that touches several tables is one reload, not one per table.
        assert_eq!(health.borrow().reloads - reloads_before, 1, "{what}: reloads");
        slowest = slowest.max(elapsed);
    }
    println!("slowest change: {:.1} ms", slowest.as_secs_f64() * 1e3);
    let h = watcher.health();
    assert!(h.db_ok && h.rejected.is_none(), "{h:?}");
    assert_eq!(h.applied, 12);
}

#[tokio::test]
async fn a_bad_change_is_rejected_and_the_last_good_configuration_stays() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let base = example();
    db::import_config(&mut client, &base).await.expect("import");
    let watcher = ConfigWatcher::start(&t.pg, base.clone(), WatchOptions::default()).await.expect("watcher");
    let mut rx = watcher.subscribe();
    let mut health = watcher.subscribe_health();
    let good = watcher.current();

    // The tables take a reference only to a vendor that exists.
    let err = client
        .batch_execute("INSERT INTO smppgw_route_vendors (route, vendor) VALUES ('us', 'nobody')")
        .await
        .expect_err("foreign key");
    assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION));

    // The tables take a window of 0 and a 9-character password; the gateway does not.
    client
        .batch_execute(
            "UPDATE smppgw_vendors SET window_size = 0 WHERE name = 'carrier-a';
             UPDATE smppgw_vendors SET password = '123456789' WHERE name = 'carrier-b';",
        )
        .await
        .unwrap();
    let h = health_until(&mut health, "the change to be rejected", |h| h.rejected.is_some()).await;
    let reason = h.rejected.clone().unwrap_or_default();
    println!("rejected: {reason}");
    assert!(reason.contains("vendor 'carrier-a': window = 0 is out of range"), "{reason}");
    assert!(reason.contains("vendor 'carrier-b': password"), "{reason}");
    assert!(h.db_ok);
    assert_eq!(watcher.current(), good, "the last good configuration stays");
    assert!(!rx.has_changed().unwrap(), "nothing was published");

    // A campaign number in two campaigns is refused too.
    client
        .batch_execute(
            "INSERT INTO smppgw_brands (brand_id) VALUES ('B1');
             INSERT INTO smppgw_campaigns (campaign_id, brand_id) VALUES ('C1', 'B1'), ('C2', 'B1');
             INSERT INTO smppgw_campaign_numbers (source_prefix, campaign_id) VALUES ('15550001', 'C1'), ('+15550001', 'C2');",
        )
        .await
        .unwrap();
    let h = health_until(&mut health, "the campaign change to be rejected", |h| {
        h.rejected.as_deref().is_some_and(|r| r.contains("also belongs to campaign"))
    })
    .await;
    assert_eq!(watcher.current(), good);
    assert!(h.rejections >= 2);

    // Fixed: the next reload applies, and the rejection clears.
    let since = Instant::now();
    client
        .batch_execute(
            "BEGIN;
             UPDATE smppgw_vendors SET window_size = 64 WHERE name = 'carrier-a';
             UPDATE smppgw_vendors SET password = 'changeme' WHERE name = 'carrier-b';
             DELETE FROM smppgw_campaign_numbers WHERE campaign_id = 'C2';
             COMMIT;",
        )
        .await
        .unwrap();
    let (config, elapsed) = next_config(&mut rx, since).await;
    println!("fix applied {:.1} ms after the commit", elapsed.as_secs_f64() * 1e3);
    let mut expected = base.clone();
    expected.brands.push(BrandConfig::new("B1", 0));
    expected
        .campaigns
        .push(CampaignConfig { source_prefixes: vec!["15550001".into()], ..CampaignConfig::new("C1", "B1") });
    expected.campaigns.push(CampaignConfig::new("C2", "B1"));
    assert_eq!(config.config, expected);
    assert!(watcher.health().rejected.is_none());
}

#[tokio::test]
async fn database_down_at_start_is_a_clear_error() {
    let pg = db::parse_database_url("host=127.0.0.1 port=1 user=postgres dbname=nowhere").unwrap();
    let started = Instant::now();
    let err = ConfigWatcher::start(&pg, Config::default(), WatchOptions::default())
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    println!("{text} (after {:?})", started.elapsed());
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(
        text.starts_with("cannot connect to PostgreSQL at host=127.0.0.1 port=1 dbname=nowhere"),
        "{text}"
    );
    assert!(text.contains("refused"), "the cause is shown: {text}");
    assert!(err.is_transient());

    let err = db::parse_database_url("postgres://user:secret@host:notaport/db").expect_err("bad port");
    assert!(matches!(err, DbError::BadUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn the_watcher_survives_a_lost_connection_and_catches_up() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let base = example();
    db::import_config(&mut client, &base).await.expect("import");
    let options = WatchOptions { retry_backoff_min: Duration::from_millis(20), ..WatchOptions::default() };
    let watcher = ConfigWatcher::start(&t.pg, base.clone(), options).await.expect("watcher");
    let mut rx = watcher.subscribe();
    let mut health = watcher.subscribe_health();

    // Kill the watcher's session and change the configuration while it is away: the notification
    // is lost with the session, and the reload after reconnecting must find the change anyway.
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'smppgw-config-watch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let since = Instant::now();
    client
        .batch_execute("UPDATE smppgw_customers SET throughput = 1 WHERE system_id = 'shop'")
        .await
        .unwrap();
    let h = health_until(&mut health, "the loss to be noticed", |h| h.disconnects >= 1).await;
    assert!(h.last_error.is_some(), "{h:?}");
    assert_eq!(watcher.current().config, base, "the last good configuration keeps running meanwhile");
    let (config, elapsed) = next_config(&mut rx, since).await;
    println!("caught up {:.1} ms after the change", elapsed.as_secs_f64() * 1e3);
    assert_eq!(config.config.customer("shop").map(|c| c.throughput), Some(1));
    health_until(&mut health, "the database to be ok again", |h| h.db_ok).await;

    // And it listens again.
    let since = Instant::now();
    client
        .batch_execute("UPDATE smppgw_customers SET throughput = 2 WHERE system_id = 'shop'")
        .await
        .unwrap();
    let (config, _) = next_config(&mut rx, since).await;
    assert_eq!(config.config.customer("shop").map(|c| c.throughput), Some(2));
    watcher.stop().await;
}

/// A configuration with `routes` routes over 10 vendors, two vendors each, distinct prefixes.
fn big_config(routes: usize) -> Config {
    let mut config = example();
    config.vendors =
        (0..10).map(|i| VendorConfig::new(format!("v{i}"), "smsc.example.net", 2775, "gw", "pw")).collect();
    config.routes = (0..routes)
        .map(|i| {
            let a = format!("v{}", i % 10);
            let b = format!("v{}", (i + 1) % 10);
            let mut r = RouteConfig::new(format!("r{i}"), &[a.as_str(), b.as_str()]);
            r.prefixes = vec![format!("{}", 100_000 + i), format!("+{}", 100_000 + i)];
            r
        })
        .collect();
    config
}

#[tokio::test]
async fn ten_thousand_routes_load_and_validate_quickly() {
    const ROUTES: usize = 10_000;
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let config = big_config(ROUTES);

    let started = Instant::now();
    let summary = db::import_config(&mut client, &config).await.expect("import");
    let import = started.elapsed();
    assert_eq!(summary.routes.added, ROUTES);

    let mut loads = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let loaded = db::load(&mut client, &config).await.expect("load");
        loads.push(started.elapsed());
        assert_eq!(loaded.config.routes.len(), ROUTES);
        assert_eq!(loaded.config, config);
    }
    let started = Instant::now();
    config.validate().expect("valid");
    let validate = started.elapsed();
    let best = loads.iter().min().copied().unwrap_or_default();
    println!(
        "{ROUTES} routes (debug build): import {:.0} ms; load+validate best {:.1} ms of {:?}; validate alone {:.1} ms",
        import.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        loads,
        validate.as_secs_f64() * 1e3
    );
    // A generous bound for an unoptimised build on a shared machine; the release figure is the
    // one that counts (`cargo run --release -p smppgw-control --example reload_10k`).
    assert!(best < Duration::from_secs(5), "loading {ROUTES} routes took {best:?}");
}

#[tokio::test]
async fn an_asked_for_reload_answers_what_it_came_to() {
    // Goal: `ConfigWatcher::reload` waits for a reload that started after it was called and
    // returns its outcome: the configuration in force (already published), or one reason per
    // problem when the contents are refused.
    use smppgw_control::ReloadOutcome;
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let base = example();
    db::import_config(&mut client, &base).await.expect("import");
    let watcher = ConfigWatcher::start(&t.pg, base.clone(), WatchOptions::default()).await.expect("watcher");
    let within = |f| tokio::time::timeout(Duration::from_secs(10), f);

    match within(watcher.reload()).await.expect("answered") {
        ReloadOutcome::Loaded(c) => assert!(std::sync::Arc::ptr_eq(&c, &watcher.current()), "unchanged"),
        other => panic!("{other:?}"),
    }

    // The change is found by the reload asked for after it, whatever the notification does.
    client
        .batch_execute("UPDATE smppgw_customers SET throughput = 3 WHERE system_id = 'shop'")
        .await
        .unwrap();
    match within(watcher.reload()).await.expect("answered") {
        ReloadOutcome::Loaded(c) => {
            assert_eq!(c.config.customer("shop").map(|c| c.throughput), Some(3));
            assert_eq!(c, watcher.current(), "published before the answer");
        }
        other => panic!("{other:?}"),
    }

    client
        .batch_execute(
            "UPDATE smppgw_vendors SET window_size = 0 WHERE name = 'carrier-a';
             UPDATE smppgw_vendors SET password = '123456789' WHERE name = 'carrier-b';",
        )
        .await
        .unwrap();
    match within(watcher.reload()).await.expect("answered") {
        ReloadOutcome::Refused(reasons) => {
            assert!(reasons.len() >= 2, "one reason per problem: {reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("vendor 'carrier-a': window = 0")), "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("vendor 'carrier-b': password")), "{reasons:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        watcher.current().config.customer("shop").map(|c| c.throughput),
        Some(3),
        "the last good stays"
    );
    watcher.stop().await;
}

/// The value of an unlabelled sample in a /metrics text, if there is one.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_show_postgres_lost_and_back_and_when_the_configuration_was_applied() {
    let t = TestDb::create().await;
    let mut client = t.migrated().await;
    let base = example();
    db::import_config(&mut client, &base).await.expect("import");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let options = WatchOptions { retry_backoff_min: Duration::from_millis(20), ..WatchOptions::default() };
    let watcher = ConfigWatcher::start(&t.pg, base, options).await.expect("watcher");
    let mut health = watcher.subscribe_health();
    let metrics = |h: &Health| {
        let mut out = String::new();
        db::render_health_metrics(h, &mut out);
        out
    };

    let m = metrics(&watcher.health());
    println!("{m}");
    assert_eq!(sample(&m, "smppgw_postgres_up"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "smppgw_postgres_disconnects_total"), Some(0.0), "{m}");
    let applied = sample(&m, "smppgw_config_last_applied_timestamp_seconds").expect("applied at start");
    assert!(applied >= before.floor() && applied < before + 60.0, "{applied} vs {before}");
    for family in [
        "smppgw_postgres_up gauge",
        "smppgw_postgres_disconnects_total counter",
        "smppgw_config_last_applied_timestamp_seconds gauge",
    ] {
        assert!(m.contains(&format!("# TYPE {family}\n")), "{family}: {m}");
    }

    // The watcher's session killed while the database takes no new connection: down until it does.
    // (A database cannot refuse connections from a session on itself: this from another one.)
    let (admin, _driver) = db::connect(&t.admin).await.expect("connect as admin");
    admin.batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", t.name)).await.unwrap();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'smppgw-config-watch'",
            &[&t.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let h = health_until(&mut health, "the loss to be noticed", |h| !h.db_ok && h.disconnects >= 1).await;
    let m = metrics(&h);
    assert_eq!(sample(&m, "smppgw_postgres_up"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "smppgw_postgres_disconnects_total"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "smppgw_config_last_applied_timestamp_seconds"),
        Some(applied),
        "the configuration in force is still the one applied at start"
    );

    // Back, and a change applied: up again, and the time moves on.
    admin.batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", t.name)).await.unwrap();
    health_until(&mut health, "the database to be ok again", |h| h.db_ok).await;
    client
        .batch_execute("UPDATE smppgw_customers SET throughput = 1 WHERE system_id = 'shop'")
        .await
        .unwrap();
    let h = health_until(&mut health, "the change to be applied", |h| h.applied >= 1).await;
    let m = metrics(&h);
    assert_eq!(sample(&m, "smppgw_postgres_up"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "smppgw_postgres_disconnects_total"), Some(1.0), "{m}");
    let changed = sample(&m, "smppgw_config_last_applied_timestamp_seconds").expect("applied");
    assert!(changed >= applied, "{changed} after {applied}");
    watcher.stop().await;
}

#[test]
fn a_reload_is_not_taken_for_a_lost_database_while_the_blocking_pool_is_full() {
    // Goal: with every blocking thread of the watcher's runtime busy for longer than the query
    // timeout (message lookups, file writes, stuck DNS lookups on the control thread), a change is
    // still applied at once and PostgreSQL is not reported lost: only the queries are timed, and
    // building the result does not wait for that pool.
    const BLOCKING_THREADS: usize = 2;
    const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
    const BLOCKED: Duration = Duration::from_secs(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = TestDb::create().await;
        let mut client = t.migrated().await;
        let base = example();
        db::import_config(&mut client, &base).await.expect("import");
        let options = WatchOptions { query_timeout: QUERY_TIMEOUT, ..WatchOptions::default() };
        let watcher = ConfigWatcher::start(&t.pg, base, options).await.expect("watcher");
        let mut rx = watcher.subscribe();

        let (started_tx, mut started) = tokio::sync::mpsc::channel(BLOCKING_THREADS);
        let blockers: Vec<_> = (0..BLOCKING_THREADS)
            .map(|_| {
                let started_tx = started_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = started_tx.blocking_send(());
                    std::thread::sleep(BLOCKED);
                })
            })
            .collect();
        for _ in 0..BLOCKING_THREADS {
            started.recv().await.expect("a blocker started");
        }

        let since = Instant::now();
        client
            .batch_execute("UPDATE smppgw_customers SET throughput = 5 WHERE system_id = 'shop'")
            .await
            .unwrap();
        let (config, elapsed) = next_config(&mut rx, since).await;
        println!("applied {:.1} ms after the commit, the pool full", elapsed.as_secs_f64() * 1e3);
        let h = watcher.health();
        assert!(h.db_ok && h.disconnects == 0 && h.last_error.is_none(), "PostgreSQL reported lost: {h:?}");
        assert_eq!(config.config.customer("shop").map(|c| c.throughput), Some(5));
        assert!(elapsed < BLOCKED, "the change waited for the blocking pool: {elapsed:?}");
        for b in blockers {
            b.await.expect("blocker");
        }
        watcher.stop().await;
    });
}
