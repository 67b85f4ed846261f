//! The smppgw binary on PostgreSQL: `import-config` moves a TOML config into the database, the
//! gateway starts from it, and a change to each kind of table is applied on its own (no reload
//! asked for) while a customer keeps submitting on the same session, which is never dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Client, http_get, http_post, pw_hash, sim, wait_for};
use smppgw_codec::CommandStatus;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `N` distinct free ports: every listener is held until all ports are known, so two calls in a
/// row cannot get the same port back.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

fn sql(url: &str, statements: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pg = smppgw_control::db::parse_database_url(url).unwrap();
        let (client, driver) = smppgw_control::db::connect(&pg).await.expect("PostgreSQL reachable");
        tokio::spawn(driver);
        client.batch_execute(statements).await.unwrap_or_else(|e| panic!("{statements}: {e}"));
    });
}

fn config_version(http: SocketAddr) -> u64 {
    ready(http)["config_version"].as_u64().unwrap()
}

/// The node's `/ready` body.
fn ready(http: SocketAddr) -> serde_json::Value {
    let (_, body) = http_get(http, "/ready");
    serde_json::from_str(&body).unwrap()
}

/// Writes a node's TOML (customer c1, vendor v1 at `vendor_port`, one catch-all route) in `dir`.
fn node_toml(
    dir: &std::path::Path,
    smpp: u16,
    http: u16,
    cores: u32,
    vendor_port: u16,
) -> std::path::PathBuf {
    let toml = dir.join("node.toml");
    std::fs::write(
        &toml,
        format!(
            "[server]\nlisten = \"127.0.0.1:{smpp}\"\nhttp_listen = \"127.0.0.1:{http}\"\ncores = {cores}\n\n\
             [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\n\n\
             [[vendor]]\nname = \"v1\"\nhost = \"127.0.0.1\"\nport = {vendor_port}\nsystem_id = \"smppgw\"\npassword = \"secret\"\n\n\
             [[route]]\nname = \"default\"\nprefixes = [\"\"]\nvendors = [\"v1\"]\n",
            pw_hash(),
        ),
    )
    .unwrap();
    toml
}

/// `smppgw import-config` of `toml` into the database at `url`.
fn import_config(bin: &str, url: &str, toml: &std::path::Path) {
    let out = Command::new(bin).args(["import-config", "--database-url", url]).arg(toml).output().unwrap();
    assert!(out.status.success(), "import-config: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn import_config_runs_with_an_environment_variable_that_is_not_utf8() {
    // Goal: import-config read the environment with std::env::vars(), which panics on any
    // variable that is not UTF-8 (one of the shell's, not even ours); the loader takes them
    // lossily, and so must the import, which still sees the SMPPGW__SERVER__ ones.
    use std::os::unix::ffi::OsStrExt;
    let admin = std::env::var("SMPPGW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let db = format!("smppgw_import_env_{}", std::process::id());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    sql(&admin, &format!("CREATE DATABASE {db}"));
    let pg = smppgw_control::db::parse_database_url(&admin).unwrap();
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{db}",
        pg.get_user().unwrap_or("postgres"),
        pg.get_ports().first().copied().unwrap_or(5432)
    );
    let dir = std::env::temp_dir().join(format!("smppgw-pg-import-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let [smpp, http, vendor] = free_ports();
    let toml = node_toml(&dir, smpp, http, 1, vendor);
    let out = Command::new(env!("CARGO_BIN_EXE_smppgw"))
        .args(["import-config", "--database-url", &url])
        .arg(&toml)
        .env("LANG_OF_SOME_TOOL", std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .env("SMPPGW__SERVER__WINDOW", "32")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import-config: {err}");
    // The override was seen: the cluster-wide window it sets is in the settings row.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let window: Option<i64> = rt.block_on(async {
        let pg = smppgw_control::db::parse_database_url(&url).unwrap();
        let (client, driver) = smppgw_control::db::connect(&pg).await.expect("PostgreSQL reachable");
        tokio::spawn(driver);
        let row = client.query_one("SELECT window_size::bigint FROM smppgw_settings", &[]).await.unwrap();
        row.get::<_, Option<i64>>(0)
    });
    assert_eq!(window, Some(32), "SMPPGW__SERVER__WINDOW imported");
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_table_reloads_under_traffic_without_dropping_the_session() {
    // Goal: a committed change to each kind of configuration table is applied by the node on its
    // own (LISTEN/NOTIFY, no reload asked for) while a customer keeps submitting on one session:
    // every submit is accepted and the session is never dropped; a change the gateway refuses is
    // refused with its problem named and leaves the running configuration in place.
    let admin = std::env::var("SMPPGW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let db = format!("smppgw_reload_{}", std::process::id());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    sql(&admin, &format!("CREATE DATABASE {db}"));
    let pg = smppgw_control::db::parse_database_url(&admin).unwrap();
    let url = format!(
        "postgres://{}@{}:{}/{db}",
        pg.get_user().unwrap_or("postgres"),
        "127.0.0.1",
        pg.get_ports().first().copied().unwrap_or(5432)
    );

    let v1 = sim(|_| {});
    let v2 = sim(|_| {});
    let [smpp, http] = free_ports();
    let dir = std::env::temp_dir().join(format!("smppgw-pg-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("node.toml");
    std::fs::write(
        &toml,
        format!(
            "[server]\nlisten = \"127.0.0.1:{smpp}\"\nhttp_listen = \"127.0.0.1:{http}\"\ncores = 2\n\n\
             [[customer]]\nsystem_id = \"c1\"\npassword_hash = \"{}\"\n\n\
             [[vendor]]\nname = \"v1\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"smppgw\"\npassword = \"secret\"\nbinds = 2\n\n\
             [[vendor]]\nname = \"v2\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"smppgw\"\npassword = \"secret\"\nbinds = 2\n\n\
             [[route]]\nname = \"default\"\nprefixes = [\"\"]\nvendors = [\"v1\"]\n",
            pw_hash(),
            v1.local_addr().port(),
            v2.local_addr().port()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_smppgw");
    let out = Command::new(bin).args(["import-config", "--database-url", &url]).arg(&toml).output().unwrap();
    assert!(out.status.success(), "import-config: {}", String::from_utf8_lossy(&out.stderr));

    let mut gw = Command::new(bin)
        .args(["--database-url", &url, "--config"])
        .arg(&toml)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let smpp_addr = SocketAddr::from(([127, 0, 0, 1], smpp));
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(smpp_addr).is_ok()), "gateway up");
    // The HTTP API starts after the engine: the SMPP port and the vendor binds can be up first.
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(http_addr).is_ok()), "HTTP API up");
    assert!(wait_for(Duration::from_secs(15), || v1.stats().binds_current >= 2), "vendor binds up");
    let all_binds_up = || {
        let r = ready(http_addr);
        r["vendor_binds"].as_u64().is_some_and(|n| n > 0) && r["vendor_binds_up"] == r["vendor_binds"]
    };
    assert!(wait_for(Duration::from_secs(15), all_binds_up), "the node sees its vendor binds up");

    // One customer session submitting all along (paused, on the same session, while v1's binds
    // are replaced: see below).
    let stop = Arc::new(AtomicBool::new(false));
    let (pause, paused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (ok, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, pause, paused) = (stop.clone(), pause.clone(), paused.clone());
        let (ok, other) = (ok.clone(), other.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(smpp_addr);
            assert_eq!(c.bind("tx", "c1", "pw"), CommandStatus::ESME_ROK);
            while !stop.load(Ordering::SeqCst) {
                if pause.load(Ordering::SeqCst) {
                    paused.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                paused.store(false, Ordering::SeqCst);
                let (st, _) = c.submit("15551230000", "under reload");
                let counter = if st == CommandStatus::ESME_ROK { &ok } else { &other };
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            // Still the same session: it answers an unbind.
            c.unbind()
        })
    };

    let changes: [(&str, &str); 9] = [
        ("customer", "UPDATE smppgw_customers SET throughput = 5000 WHERE system_id = 'c1'"),
        ("vendor (binds replaced)", "UPDATE smppgw_vendors SET window_size = 32 WHERE name = 'v1'"),
        ("route vendor", "INSERT INTO smppgw_route_vendors (route, vendor, priority) VALUES ('default', 'v2', 1)"),
        (
            "route",
            "BEGIN; INSERT INTO smppgw_routes (name, prefixes) VALUES ('uk', '{44}');
             INSERT INTO smppgw_route_vendors (route, vendor) VALUES ('uk', 'v2'); COMMIT",
        ),
        ("number range", "INSERT INTO smppgw_number_ranges (prefix, system_id) VALUES ('447700', 'c1')"),
        ("brand", "INSERT INTO smppgw_brands (brand_id, daily_cap_segments) VALUES ('B1', 1000000)"),
        (
            "campaign",
            "BEGIN; INSERT INTO smppgw_campaigns (campaign_id, brand_id, segments_per_minute) VALUES ('C1', 'B1', 600000);
             INSERT INTO smppgw_campaign_numbers (source_prefix, campaign_id) VALUES ('1555999', 'C1'); COMMIT",
        ),
        ("settings", "UPDATE smppgw_settings SET window_size = 48"),
        ("route deleted", "DELETE FROM smppgw_routes WHERE name = 'uk'"),
    ];
    for (what, statement) in changes {
        // v1 is the default route's only vendor until the next change, and replacing its binds
        // leaves it briefly unbound: a submit then would wait for the new binds, and be refused
        // if they took longer than NO_VENDOR_HOLD_MS (a test of its own in tests/routing.rs).
        // The session submits again once the node has v1's new binds up.
        let rebinds = what.starts_with("vendor");
        if rebinds {
            pause.store(true, Ordering::SeqCst);
            assert!(wait_for(Duration::from_secs(30), || paused.load(Ordering::SeqCst)), "load paused");
        }
        let before = config_version(http_addr);
        let at = Instant::now();
        sql(&url, statement);
        // Generous: a fresh connection, the watcher's debounce and a full load, on a busy machine.
        assert!(
            wait_for(Duration::from_secs(10), || config_version(http_addr) > before),
            "{what}: never applied"
        );
        println!("{what}: applied within {:.0} ms", at.elapsed().as_secs_f64() * 1e3);
        if rebinds {
            assert!(wait_for(Duration::from_secs(15), all_binds_up), "{what}: v1 bound again");
            pause.store(false, Ordering::SeqCst);
        }
        // Some submits between two changes.
        let seen = ok.load(Ordering::SeqCst) + other.load(Ordering::SeqCst);
        assert!(
            wait_for(Duration::from_secs(10), || ok.load(Ordering::SeqCst) + other.load(Ordering::SeqCst)
                >= seen + 10),
            "{what}: the session submits"
        );
    }
    // A change the engine refuses (a route with no vendor) leaves the last good config running,
    // and a reload of it is answered with the problem.
    let before = config_version(http_addr);
    sql(&url, "INSERT INTO smppgw_routes (name, prefixes) VALUES ('bad', '{33}')");
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 400, "the bad change is refused: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reasons = v["reasons"].as_array().unwrap_or_else(|| panic!("reasons: {body}"));
    assert!(reasons.iter().any(|r| r.as_str().is_some_and(|r| r.contains("bad"))), "names the route: {body}");
    assert_eq!(config_version(http_addr), before, "the bad change was not applied");
    sql(&url, "DELETE FROM smppgw_routes WHERE name = 'bad'");
    assert!(
        wait_for(Duration::from_secs(30), || ok.load(Ordering::SeqCst) + other.load(Ordering::SeqCst) > 100),
        "the session submits"
    );
    stop.store(true, Ordering::SeqCst);
    let unbind = load.join().expect("the session was never dropped");
    assert_eq!(unbind, CommandStatus::ESME_ROK);
    let (ok, other) = (ok.load(Ordering::SeqCst), other.load(Ordering::SeqCst));
    assert!(ok > 100, "{ok} submits accepted");
    assert_eq!(other, 0, "every submit accepted through every reload ({other} refused)");
    // The vendor change rebound v1 gracefully and it is back.
    assert!(wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 2));

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(gw.id() as i32, libc::SIGTERM) };
    assert!(gw.wait().unwrap().success());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

#[test]
fn a_node_starts_from_its_cached_configuration_while_postgresql_is_down() {
    let admin = std::env::var("SMPPGW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let db = format!("smppgw_cache_{}", std::process::id());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    sql(&admin, &format!("CREATE DATABASE {db}"));
    let pg = smppgw_control::db::parse_database_url(&admin).unwrap();
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("postgres").to_owned();
    let url = format!("postgres://{user}@127.0.0.1:{port}/{db}");
    // Nothing listens there: PostgreSQL is "down".
    let down = format!("postgres://{user}@127.0.0.1:{}/{db}?connect_timeout=1", free_ports::<1>()[0]);

    let v1 = sim(|_| {});
    let dir = std::env::temp_dir().join(format!("smppgw-pg-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("last-good.json");
    let _ = std::fs::remove_file(&cache);
    let [smpp, http] = free_ports();
    let toml = node_toml(&dir, smpp, http, 1, v1.local_addr().port());
    let bin = env!("CARGO_BIN_EXE_smppgw");
    import_config(bin, &url, &toml);
    // The database names a second customer the TOML does not have: a node started from the cache
    // must know it.
    sql(
        &url,
        &format!("INSERT INTO smppgw_customers (system_id, password_hash) VALUES ('c9', '{}')", pw_hash()),
    );
    let smpp_addr = SocketAddr::from(([127, 0, 0, 1], smpp));
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    let start = |db_url: &str, with_cache: bool, stderr: Stdio| {
        let mut cmd = Command::new(bin);
        cmd.args(["--database-url", db_url, "--config"]).arg(&toml);
        if with_cache {
            cmd.arg("--config-cache").arg(&cache);
        }
        cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap()
    };
    let stop = |mut child: std::process::Child| {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    };

    // With PostgreSQL up, the node keeps what it loaded.
    let gw = start(&url, true, Stdio::null());
    assert!(wait_for(Duration::from_secs(15), || cache.exists()), "the cache is written");
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(smpp_addr).is_ok()));
    stop(gw);

    // PostgreSQL down and no cache: a clear error, exit 3.
    let out = start(&down, false, Stdio::piped()).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config-cache"), "says how to start anyway");

    // PostgreSQL down with the cache: the node starts on what PostgreSQL last said.
    let gw = start(&down, true, Stdio::null());
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(smpp_addr).is_ok()), "starts");
    let mut c = Client::connect(smpp_addr);
    assert_eq!(c.bind("tx", "c9", "pw"), CommandStatus::ESME_ROK, "the database's customer");
    assert!(wait_for(Duration::from_secs(10), || v1.stats().binds_current >= 1));
    let (st, _) = c.submit("15551230000", "from the cache");
    assert_eq!(st, CommandStatus::ESME_ROK);
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(http_addr).is_ok()), "HTTP API up");
    let (status, body) = http_get(http_addr, "/ready");
    assert_eq!(status, 200, "serving from the cache while PostgreSQL is down: {body}");
    assert!(body.contains(r#""name":"postgres","ok":false"#), "PostgreSQL reported down: {body}");
    let (_, m) = http_get(http_addr, "/metrics");
    assert!(m.lines().any(|l| l == "smppgw_postgres_up 0"), "an alert on the gauge sees it:\n{m}");
    drop(c);
    stop(gw);

    // PostgreSQL up but holding a configuration that does not validate: the node starts on the
    // cache, and a reload is answered with the problems (it said "not reachable yet", 503).
    sql(&url, "UPDATE smppgw_customers SET window_size = 5000 WHERE system_id = 'c9'");
    let gw = start(&url, true, Stdio::null());
    assert!(
        wait_for(Duration::from_secs(15), || TcpStream::connect(smpp_addr).is_ok()),
        "starts on the cache"
    );
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(http_addr).is_ok()), "HTTP API up");
    let mut answer = (0, String::new());
    assert!(
        wait_for(Duration::from_secs(10), || {
            answer = http_post(http_addr, "/api/v1/config/reload");
            answer.0 == 400
        }),
        "the reload names what is wrong: {answer:?}"
    );
    assert!(answer.1.contains("c9") && answer.1.contains("window"), "{answer:?}");
    // An alert on the gauge sees it, though the node never followed PostgreSQL yet.
    let (_, m) = http_get(http_addr, "/metrics");
    assert!(m.lines().any(|l| l == "smppgw_config_refused 1"), "refused at start:\n{m}");
    // The operator fixes the database and asks again: the reload reads it now and applies it
    // (it answered with the last attempt's stale problems until the next retry, up to 10 s on).
    // By now the retries are seconds apart: one reload right away must do.
    std::thread::sleep(Duration::from_secs(2));
    sql(&url, "UPDATE smppgw_customers SET window_size = 50 WHERE system_id = 'c9'");
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 200, "the fixed database is read and applied: {body}");
    assert!(
        wait_for(Duration::from_secs(5), || http_get(http_addr, "/metrics")
            .1
            .lines()
            .any(|l| l == "smppgw_config_refused 0")),
        "no longer refused"
    );
    let (_, m) = http_get(http_addr, "/metrics");
    assert!(m.lines().any(|l| l == "smppgw_postgres_up 1"), "followed now:\n{m}");
    assert!(m.contains("\nsmppgw_config_last_applied_timestamp_seconds "), "{m}");
    stop(gw);
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn post_reload_answers_what_the_database_reload_came_to() {
    // Goal: in database mode POST /api/v1/config/reload waits for the reload it asked for:
    // contents the gateway refuses answer 400 with one reason per problem (and the running
    // configuration stays); a valid change answers 200 with the version every core then runs.
    let admin = std::env::var("SMPPGW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let db = format!("smppgw_post_reload_{}", std::process::id());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    sql(&admin, &format!("CREATE DATABASE {db}"));
    let pg = smppgw_control::db::parse_database_url(&admin).unwrap();
    let user = pg.get_user().unwrap_or("postgres").to_owned();
    let url = format!("postgres://{user}@127.0.0.1:{}/{db}", pg.get_ports().first().copied().unwrap_or(5432));

    let v1 = sim(|_| {});
    let [smpp, http] = free_ports();
    let dir = std::env::temp_dir().join(format!("smppgw-pg-post-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = node_toml(&dir, smpp, http, 2, v1.local_addr().port());
    let bin = env!("CARGO_BIN_EXE_smppgw");
    import_config(bin, &url, &toml);
    let mut gw = Command::new(bin)
        .args(["--database-url", &url, "--config"])
        .arg(&toml)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect(http_addr).is_ok()), "HTTP API up");
    // The watcher connects after the API is up.
    assert!(
        wait_for(Duration::from_secs(15), || http_post(http_addr, "/api/v1/config/reload").0 == 200),
        "a reload of unchanged contents succeeds"
    );
    let running = config_version(http_addr);

    // Two problems the database accepts and the gateway refuses: routes with no vendor.
    sql(&url, "INSERT INTO smppgw_routes (name, prefixes) VALUES ('bad1', '{33}'), ('bad2', '{34}')");
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 400, "refused: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "configuration refused", "{body}");
    let reasons = v["reasons"].as_array().unwrap_or_else(|| panic!("reasons: {body}"));
    assert!(reasons.len() >= 2, "one reason per problem: {body}");
    assert!(reasons.iter().any(|r| r.as_str().is_some_and(|r| r.contains("bad1"))), "{body}");
    assert!(reasons.iter().any(|r| r.as_str().is_some_and(|r| r.contains("bad2"))), "{body}");
    assert!(reasons.iter().all(|r| r.as_str().is_some_and(|r| !r.contains('\n'))), "{body}");
    assert_eq!(config_version(http_addr), running, "the running configuration stays");
    // Operators see it without having asked for the reload: /ready's postgres backend says why
    // (the node stays ready, on its last good configuration), and /metrics has a gauge to alert on.
    let postgres = |r: &serde_json::Value| {
        r["backends"].as_array().and_then(|b| b.iter().find(|b| b["name"] == "postgres").cloned())
    };
    // (Told to the API by a task of its own: soon, not necessarily before the reload's answer.)
    wait_for(Duration::from_secs(5), || postgres(&ready(http_addr)).is_some_and(|b| b["ok"] == false));
    let r = ready(http_addr);
    let pg_backend = postgres(&r).unwrap_or_else(|| panic!("a postgres backend: {r}"));
    assert_eq!(pg_backend["ok"], false, "{r}");
    assert!(pg_backend["error"].as_str().is_some_and(|e| e.contains("refused") && e.contains("bad1")), "{r}");
    assert_eq!(r["ready"], true, "{r}");
    let metric = |name: &str| {
        let (_, m) = http_get(http_addr, "/metrics");
        m.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<u64>().ok())
    };
    assert_eq!(metric("smppgw_config_refused"), Some(1));
    assert!(metric("smppgw_config_reloads_total{result=\"refused\"}").is_some_and(|n| n >= 1));

    // A valid change: the answer is the version every core runs once it returns.
    sql(
        &url,
        "DELETE FROM smppgw_routes WHERE name IN ('bad1', 'bad2'); UPDATE smppgw_customers SET throughput = 777 WHERE system_id = 'c1'",
    );
    let (status, body) = http_post(http_addr, "/api/v1/config/reload");
    assert_eq!(status, 200, "applied: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = v["version"].as_u64().unwrap_or_else(|| panic!("a version: {body}"));
    assert!(version > running, "a new version: {body}");
    assert_eq!(v["applied_everywhere"], true, "{body}");
    assert_eq!(config_version(http_addr), version, "the version the node runs");
    let (_, customers) = http_get(http_addr, "/api/v1/customers");
    assert!(customers.contains("\"throughput_limit\":777"), "the change is in force: {customers}");
    assert_eq!(metric("smppgw_config_refused"), Some(0));
    assert!(metric("smppgw_config_reloads_total{result=\"applied\"}").is_some_and(|n| n >= 1));
    wait_for(Duration::from_secs(5), || postgres(&ready(http_addr)).is_some_and(|b| b["ok"] == true));
    let r = ready(http_addr);
    assert_eq!(postgres(&r).map(|b| b["ok"].clone()), Some(serde_json::Value::Bool(true)), "{r}");

    // SAFETY: a signal to our own child.
    unsafe { libc::kill(gw.id() as i32, libc::SIGTERM) };
    assert!(gw.wait().unwrap().success());
    sql(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    let _ = std::fs::remove_dir_all(&dir);
}
