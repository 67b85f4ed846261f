//! Measures a reload of a 10,000-route configuration from PostgreSQL: import once, then `load()`
//! (read every table in one snapshot, build, validate) several times, and `Config::validate()` alone.
//! Also times validation at growing sizes, to show how it scales.
//!
//! `cargo run --release -p smppgw-control --example reload_10k [ROUTES]`, against
//! `SMPPGW_TEST_DATABASE_URL` (default `host=127.0.0.1 port=5432 user=postgres dbname=test`). It
//! creates a database of its own and drops it at the end.

use std::time::{Duration, Instant};

use smppgw_control::db;
use smppgw_engine::config::{Config, CustomerConfig, RouteConfig, VendorConfig};

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$QoH8NzdGS4ZEetisU7d4IA$19yRMcS+CQZZpv27rPXlM3vkjfz9P0iDYhw/VnmzPic";
const LOADS: usize = 10;

/// `routes` routes over `vendors` vendors (two each, failover) and `customers` customers; every
/// `filter_every`th route is limited to one customer.
fn config(routes: usize, customers: usize, vendors: usize, filter_every: usize) -> Config {
    let vendor_list = (0..vendors)
        .map(|i| VendorConfig::new(format!("v{i}"), "smsc.example.net", 2775, "gw", "pw"))
        .collect();
    let customer_list = (0..customers).map(|i| CustomerConfig::new(format!("c{i}"), HASH)).collect();
    let route_list = (0..routes)
        .map(|i| {
            let (a, b) = (format!("v{}", i % vendors), format!("v{}", (i + 1) % vendors));
            let mut r = RouteConfig::new(format!("r{i}"), &[a.as_str(), b.as_str()]);
            r.prefixes = vec![format!("{}", 1_000_000 + i), format!("+{}", 1_000_000 + i)];
            if i % filter_every == 0 && customers > 0 {
                r.customers = vec![format!("c{}", i % customers)];
            }
            r
        })
        .collect();
    Config { customers: customer_list, vendors: vendor_list, routes: route_list, ..Config::default() }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time_validate(config: &Config) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let valid = config.validate().is_ok();
            let elapsed = started.elapsed();
            assert!(valid, "the generated configuration is valid");
            elapsed
        })
        .min()
        .unwrap_or_default()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let routes: usize = std::env::args().nth(1).map_or(Ok(10_000), |s| s.parse())?;
    let url = std::env::var("SMPPGW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let admin = db::parse_database_url(&url)?;
    let (admin_client, _driver) = db::connect(&admin).await?;
    let name = format!("smppgw_bench_{}", std::process::id());
    admin_client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let mut pg = admin.clone();
    pg.dbname(&name);

    let result = async {
        let (mut client, _driver) = db::connect(&pg).await?;
        db::migrate(&mut client).await?;
        let cfg = config(routes, 100, 10, 10);
        let started = Instant::now();
        let summary = db::import_config(&mut client, &cfg).await?;
        println!("import of {routes} routes: {:.1} ms ({summary})", ms(started.elapsed()));
        let mut loads = Vec::with_capacity(LOADS);
        for _ in 0..LOADS {
            let started = Instant::now();
            let loaded = db::load(&mut client, &cfg).await?;
            loads.push(started.elapsed());
            assert_eq!(loaded.config.routes.len(), routes);
        }
        loads.sort();
        println!(
            "load() of {routes} routes (read + build + validate), {LOADS} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(loads[0]),
            ms(loads[LOADS / 2]),
            ms(loads[LOADS - 1])
        );
        println!("Config::validate() alone: {:.1} ms", ms(time_validate(&cfg)));

        // The whole path on a running gateway (2 cores): read from PostgreSQL, validate, build
        // the snapshot, hand it to every core, and wait until every core runs it.
        let mut running = config(10, 100, 10, 10);
        running.server.listen = "127.0.0.1:0".parse()?;
        running.server.http_listen = "127.0.0.1:0".parse()?;
        running.server.cores = 2;
        let gw = smppgw_engine::start(running)?;
        let control = gw.control();
        let mut applied = Vec::with_capacity(LOADS);
        for i in 0..LOADS {
            let started = Instant::now();
            let mut loaded = db::load(&mut client, &cfg).await?.config;
            // A different limit each time, so every reload changes something.
            loaded.customers[0].throughput = 1_000 + i as u32;
            let version = control.reload(loaded).map_err(|e| e.to_string())?;
            while !control.applied_everywhere(version) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            applied.push(started.elapsed());
        }
        applied.sort();
        println!(
            "reload of {routes} routes from PostgreSQL to applied on all {} cores, {LOADS} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            control.cores(),
            ms(applied[0]),
            ms(applied[LOADS / 2]),
            ms(applied[LOADS - 1])
        );
        gw.shutdown();
        gw.join();
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;

    println!("validate() scaling (best of 3):");
    let cases = [
        (10_000, 100, 10, 10),
        (20_000, 100, 10, 10),
        (40_000, 100, 10, 10),
        (10_000, 10_000, 10, 10),
        (10_000, 40_000, 10, 10),
        (10_000, 10_000, 10, 1),
        (20_000, 20_000, 10, 1),
        (10_000, 100, 1_000, 10),
    ];
    for (routes, customers, vendors, filter_every) in cases {
        let cfg = config(routes, customers, vendors, filter_every);
        println!(
            "  {routes:>6} routes ({:>3}% limited to a customer), {customers:>6} customers, {vendors:>5} vendors: {:8.1} ms",
            100 / filter_every,
            ms(time_validate(&cfg))
        );
    }

    admin_client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    result
}
