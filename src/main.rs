//! `smppgw`: the SMPP gateway binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use smppgw_control::http::{ApiState, Backend, HttpConfig, ReloadFailure, spawn_control_thread};
use smppgw_engine::config::{self, Config};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// SMPP gateway: customers bind to it as to an SMSC; it routes every message to a vendor SMSC with
/// failover and throughput limits, and carries receipts back.
///
/// With no arguments it runs on the embedded default config: SMPP on 127.0.0.1:2775, customer
/// `demo` / password `demo`, one vendor `sim` at 127.0.0.1:2776 (start `smppgw-sim` there), HTTP
/// API on 127.0.0.1:8080.
#[derive(Parser, Debug)]
#[command(name = "smppgw", version, about, long_about)]
struct Cli {
    /// TOML config file (see deploy/config/example.toml). Every setting can also be overridden by
    /// an environment variable such as SMPPGW__SERVER__LISTEN=0.0.0.0:2775.
    #[arg(long, short, env = "SMPPGW_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// PostgreSQL URL: customers, vendors, routes, number ranges and campaigns come from the
    /// database (migrated on start) and reload on every change; the TOML keeps the per-node
    /// settings (listen addresses, cores, node_id).
    #[arg(long, env = "SMPPGW_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// With --database-url: keep the last configuration PostgreSQL gave in this file, and start
    /// from it when PostgreSQL is down at start (then follow PostgreSQL as soon as it answers).
    /// Without it, PostgreSQL down at start is an error (exit 3).
    #[arg(long, env = "SMPPGW_CONFIG_CACHE")]
    config_cache: Option<PathBuf>,
    /// Keep the highest message id this node issued in this file (written at start, every
    /// second and at a clean stop), and start a minute above it: a restart with the clock behind
    /// the last ids does not issue them again. With Redis it is kept there too.
    #[arg(long, env = "SMPPGW_ID_STATE")]
    id_state: Option<PathBuf>,
    /// Keep in this file, at a clean stop, the messages still waiting for their vendor receipt
    /// and the receipts and MO still queued for customers, and take them back at the next start
    /// (then the file is removed): a vendor that sends the receipts after a restart finds their
    /// messages. Without Redis they are otherwise only in memory. With Redis the messages are
    /// there already; the file keeps what Redis could not take.
    #[arg(long, env = "SMPPGW_RECEIPT_STATE")]
    receipt_state: Option<PathBuf>,
    /// Token for the HTTP API's state-changing requests (required when it listens beyond loopback).
    #[arg(long, env = "SMPPGW_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Redis URL (redis://host:6379/0): the receipt store, receipts for customers bound on other
    /// nodes, global rate limits and bind counts are shared through it, so that several nodes act
    /// as one. Without it all state is local to this node.
    #[arg(long, env = "SMPPGW_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of every Redis key (nodes that must act as one use the same prefix).
    #[arg(long, env = "SMPPGW_REDIS_PREFIX", default_value = "smppgw")]
    redis_prefix: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file and explain every error with its line.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the password_hash for a customer password (read from stdin when not given).
    HashPassword {
        /// The password (at most 8 characters in SMPP 3.4).
        password: Option<String>,
    },
    /// Create or upgrade the PostgreSQL schema (needs --database-url).
    Migrate,
    /// Merge a TOML config's server settings, customers, number ranges, vendors, routes, brands and
    /// campaigns into PostgreSQL, keeping the items the file lacks (needs --database-url).
    ///
    /// It never deletes: an item the tables have and the file does not is kept. Delete one in SQL
    /// (DELETE FROM smppgw_routes WHERE name = '...', and the like; see README.md, "Configuration
    /// in PostgreSQL").
    ImportConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

/// A panic on an executor ends that thread and with it that core's sessions, vendor binds,
/// queues and receipt store, while the rest of the node goes on looking healthy (its vendor
/// slots still look up to the other cores, `/health` answers ok). A bug, but one the node cannot
/// recover from: the process stops at once (abort, exit status 134) so that its supervisor
/// restarts it whole. Panics elsewhere (a reload's, caught on its thread) keep unwinding, and so
/// does one on an executor's thread before its executor runs (glommio refusing to set it up when
/// io_uring is blocked): the start reports that as `cannot start executor N` and exits 1.
fn abort_on_executor_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if is_executor(std::thread::current().name()) && smppgw_engine::executor_running_here() {
            eprintln!("an executor panicked: stopping the process (its supervisor restarts it)");
            std::process::abort();
        }
    }));
}

fn is_executor(thread: Option<&str>) -> bool {
    thread.is_some_and(|n| n.starts_with(smppgw_engine::EXECUTOR_THREAD_PREFIX))
}

fn main() -> ExitCode {
    abort_on_executor_panic();
    let cli = Cli::parse();
    match cli.command {
        // As the node that is to run it: a non-loopback http_listen needs an admin token, an
        // error at its line with the others.
        Some(Command::CheckConfig { file }) => {
            match config::check_node_config_file(&file, cli.admin_token.is_some()) {
                Ok(c) => {
                    // The token itself (empty, too long, not visible ASCII), which would otherwise
                    // stop the node only once it is starting.
                    let mut http = HttpConfig::new(c.server.http_listen);
                    if let Some(t) = &cli.admin_token {
                        http = http.with_admin_token(t.clone());
                    }
                    if let Err(e) = http.validate() {
                        eprintln!("refused: --admin-token / SMPPGW_ADMIN_TOKEN: {e}");
                        return ExitCode::from(2);
                    }
                    println!(
                        "{}: ok ({} customers, {} vendors, {} routes)",
                        file.display(),
                        c.customers.len(),
                        c.vendors.len(),
                        c.routes.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::HashPassword { password }) => {
            let pw = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    if std::io::stdin().read_line(&mut line).is_err() {
                        eprintln!("cannot read the password from stdin");
                        return ExitCode::from(2);
                    }
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            // What a bind can carry: SMPP 3.4 gives the password 9 octets with its NUL. A hash
            // of anything else is one no customer could ever bind with.
            if pw.is_empty() || pw.len() > 8 {
                eprintln!(
                    "refused: an SMPP password is 1 to 8 octets (bind password field), this one has {}",
                    pw.len()
                );
                return ExitCode::from(2);
            }
            println!("{}", config::hash_password(&pw));
            ExitCode::SUCCESS
        }
        Some(Command::Migrate) => db_command(cli.database_url, None),
        Some(Command::ImportConfig { file }) => db_command(cli.database_url, Some(file)),
        None => {
            // What cannot work is refused before anything starts, with the status that stops a
            // supervisor from restarting it (2), rather than found out later.
            if let Some(url) = &cli.database_url
                && let Err(e) = smppgw_control::db::parse_database_url(url)
            {
                eprintln!("refused: --database-url / SMPPGW_DATABASE_URL: {e}");
                return ExitCode::from(2);
            }
            if let Some(url) = &cli.redis_url
                && let Err(e) = smppgw_control::redis::check_url(url)
            {
                eprintln!("refused: --redis-url / SMPPGW_REDIS_URL: {e}");
                return ExitCode::from(2);
            }
            let redis = cli
                .redis_url
                .map(|u| smppgw_control::redis::RedisOptions::new(u).with_prefix(cli.redis_prefix));
            run(Opts {
                path: cli.config,
                database_url: cli.database_url,
                admin_token: cli.admin_token,
                redis,
                config_cache: cli.config_cache,
                id_state: cli.id_state,
                receipt_state: cli.receipt_state,
            })
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// The cluster-wide `[server]` settings `file` (or an `SMPPGW__SERVER__*` variable) sets: the
/// ones an import writes; the others stay NULL in the tables, each node's own.
fn server_settings_set(file: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: toml::Table = text.parse().map_err(|e| format!("{}: {e}", file.display()))?;
    let in_file: Vec<String> = match doc.get("server") {
        Some(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    };
    // As the loader reads them (lossily): std::env::vars() panics on any variable that is not
    // UTF-8, even one that is none of ours.
    let from_env: Vec<String> = config::process_env()
        .into_iter()
        .filter_map(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.strip_prefix("smppgw__server__").map(str::to_owned)
        })
        .collect();
    Ok(smppgw_control::db::DB_SERVER_SETTINGS
        .iter()
        .filter(|key| in_file.iter().chain(&from_env).any(|k| k == *key))
        .map(|key| (*key).to_owned())
        .collect())
}

fn db_command(url: Option<String>, import: Option<PathBuf>) -> ExitCode {
    let Some(url) = url else {
        eprintln!("this command needs --database-url (or SMPPGW_DATABASE_URL)");
        return ExitCode::from(2);
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let pg = smppgw_control::db::parse_database_url(&url).map_err(|e| e.to_string())?;
            let (mut client, driver) = smppgw_control::db::connect(&pg).await.map_err(|e| e.to_string())?;
            tokio::spawn(driver);
            let applied = smppgw_control::migrate(&mut client).await.map_err(|e| e.to_string())?;
            println!("migrations applied: {applied:?}");
            if let Some(file) = import {
                let cfg = config::check_config_file(&file)?;
                let set = server_settings_set(&file)?;
                let summary = smppgw_control::db::import_config_setting(&mut client, &cfg, Some(&set))
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{summary}");
            }
            Ok::<(), String>(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smppgw: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the node's TOML configuration could not be loaded.
#[derive(Debug)]
enum LoadError {
    /// The file could not be read (missing, unreadable): the source, not its contents (contents
    /// that are not UTF-8 are [`LoadError::Invalid`]).
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The contents do not parse or validate.
    Invalid(config::ConfigErrors),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::Invalid(errors) => std::fmt::Display::fmt(errors, f),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<LoadError> for ReloadFailure {
    /// A file that cannot be read is a source that is unavailable (503, retry); contents that do
    /// not validate are refused (400) with one reason per error.
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Read { .. } => ReloadFailure::Unavailable(e.to_string()),
            LoadError::Invalid(errors) => errors.into(),
        }
    }
}

/// Loads the node's configuration (`admin_token`: the node has one for its HTTP API), at start
/// and at every reload of the file.
fn load(path: Option<&PathBuf>, admin_token: bool) -> Result<Config, LoadError> {
    let env = config::process_env();
    match path {
        Some(p) => {
            let name = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|source| LoadError::Read { path: p.clone(), source })?;
            // Contents that are not UTF-8 are invalid (400 to a reload), not unreadable (503).
            let text = config::text_of(bytes, &name).map_err(LoadError::Invalid)?;
            Config::load_for_node(&text, &name, env, admin_token).map_err(LoadError::Invalid)
        }
        None => {
            Config::load_for_node(config::DEFAULT_CONFIG_TOML, config::DEFAULT_SOURCE_NAME, env, admin_token)
                .map_err(LoadError::Invalid)
        }
    }
}

/// The directives of an `SMPPGW_LOG` filter that name no level and no module this program logs
/// from: `inof` for `info` is valid syntax (a target named `inof`) and would silence everything.
fn log_directives_without_level(filter: &str) -> Vec<&str> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    const MODULES: [&str; 6] = ["smppgw", "glommio", "tokio", "hyper", "redis", "tokio_postgres"];
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains("::") && !d.contains('['))
        .filter(|d| {
            !LEVELS.iter().any(|l| d.eq_ignore_ascii_case(l)) && !MODULES.iter().any(|m| d.starts_with(m))
        })
        .collect()
}

/// How long a stopping node waits for its last writes to reach Redis (Redis down or
/// reconnecting at the stop included).
const REDIS_DRAIN_SECS: u64 = 3;

/// How long the first load from PostgreSQL may take, migrations included, before the node gives
/// up on it (and starts from its configuration cache when it has one): a PostgreSQL that accepts
/// connections but does not answer (a pooler in front of a dead server, a lock held by an open
/// transaction) must not hold the start for ever.
const DB_START_TIMEOUT_SECS: u64 = 30;

/// Loads the first configuration from PostgreSQL (migrating the schema first).
fn load_from_db(url: &str, base: &Config, stop: &std::sync::atomic::AtomicBool) -> Result<Config, String> {
    runtime()?.block_on(async {
        let pg = smppgw_control::db::parse_database_url(url).map_err(|e| e.to_string())?;
        let target = smppgw_control::db::describe_target(&pg);
        let first_load = async {
            let (mut client, driver) =
                smppgw_control::db::connect(&pg).await.map_err(|e| format!("PostgreSQL at {target}: {e}"))?;
            tokio::spawn(driver);
            smppgw_control::migrate(&mut client).await.map_err(|e| e.to_string())?;
            let db = smppgw_control::load(&mut client, base).await.map_err(|e| e.to_string())?;
            Ok(db.config)
        };
        // A SIGTERM or SIGINT meanwhile ends the wait: there is nothing to drain yet.
        let stopped = async {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(std::time::Duration::from_secs(DB_START_TIMEOUT_SECS), first_load) => match r {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "PostgreSQL at {target}: no configuration within {DB_START_TIMEOUT_SECS} s (connected, but \
                     the migration or the load did not finish)"
                )),
            },
            () = stopped => Err(STOPPED_WHILE_LOADING.to_owned()),
        }
    })
}

/// [`load_from_db`]'s answer when a signal came first.
const STOPPED_WHILE_LOADING: &str = "stopped by a signal before the configuration was loaded";

/// What `smppgw` (no subcommand) runs with.
struct Opts {
    path: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    redis: Option<smppgw_control::redis::RedisOptions>,
    config_cache: Option<PathBuf>,
    id_state: Option<PathBuf>,
    receipt_state: Option<PathBuf>,
}

/// Reads the receipt state an earlier run kept in `file` for `cfg` (see
/// [`smppgw_control::receipt_state`]). A file that cannot be used is said, set aside as
/// `FILE.bad`, and the node starts without it.
fn read_receipt_state(file: &std::path::Path, cfg: &Config) -> Option<smppgw_engine::carryover::Carried> {
    let cores = smppgw_engine::runtime::core_count(cfg);
    let snap = smppgw_engine::snapshot::Snapshot::build(cfg.clone(), cores);
    let records_max = (cfg.server.receipt_store_max as usize).saturating_mul(cores);
    let started = std::time::Instant::now();
    match smppgw_control::receipt_state::load(file, &snap, records_max) {
        Ok(None) => None,
        Ok(Some(l)) => {
            tracing::info!(
                file = %file.display(),
                records = l.carried.records.len(),
                deliveries = l.carried.deliveries.len(),
                expired = l.expired,
                unknown_customer_or_vendor = l.unknown,
                over_bound = l.over_bound,
                ms = started.elapsed().as_millis() as u64,
                "receipt state read"
            );
            if l.unknown + l.over_bound > 0 {
                tracing::warn!(
                    unknown_customer_or_vendor = l.unknown,
                    over_bound = l.over_bound,
                    "receipt state: entries dropped (their customer or vendor is no longer configured, or beyond the stores' bounds)"
                );
            }
            Some(l.carried)
        }
        Err(e) => {
            let aside = smppgw_control::receipt_state::set_aside(file, true);
            tracing::warn!(
                "receipt state file {} not used, starting without it: {e} ({})",
                file.display(),
                match aside {
                    Ok(()) => "kept as .bad".to_owned(),
                    Err(e) => format!("cannot set it aside: {e}"),
                }
            );
            None
        }
    }
}

/// What a stop's state file kept and lost (see [`write_receipt_state`]).
#[derive(Debug, Default, Clone, Copy)]
struct StateWritten {
    /// Messages kept, with their receipts still to come.
    records: u64,
    /// Messages and deliveries the cores gave up for the file that it could not keep.
    lost: u64,
}

/// Keeps what the cores left at their stop in `file` (see [`read_receipt_state`]), or says what
/// nothing keeps.
fn write_receipt_state(
    file: Option<&std::path::Path>,
    snap: &smppgw_engine::snapshot::Snapshot,
    left: &[smppgw_engine::carryover::LeftAtExit],
) -> StateWritten {
    let Some(file) = file else {
        let forgotten: u64 = left.iter().map(|l| l.forgotten_records).sum();
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                "messages still waiting for their vendor receipt are forgotten: receipts the vendor sends after a restart will match nothing (keep them with --receipt-state FILE)"
            );
        }
        return StateWritten::default();
    };
    let started = std::time::Instant::now();
    match smppgw_control::receipt_state::save(file, snap, left.iter().map(|l| &l.carried)) {
        Ok(saved) => {
            tracing::info!(
                file = %file.display(),
                records = saved.records,
                deliveries = saved.deliveries,
                bytes = saved.bytes,
                ms = started.elapsed().as_millis() as u64,
                "receipt state written"
            );
            if saved.unknown > 0 {
                tracing::warn!(
                    unknown = saved.unknown,
                    "receipt state: entries of customers or vendors no longer configured left out"
                );
            }
            StateWritten { records: saved.records, lost: 0 }
        }
        Err(e) => {
            // The cores gave these up for the file: nothing else holds them now.
            let lost: usize = left.iter().map(|l| l.carried.records.len() + l.carried.deliveries.len()).sum();
            tracing::error!(lost, "cannot write the receipt state to {}: {e}", file.display());
            StateWritten { records: 0, lost: lost as u64 }
        }
    }
}

/// How long the start waits for Redis to read the id watermark before going on without it.
const IDS_REDIS_WAIT_MS: u64 = 1_000;

/// The highest id counter an earlier run of node `node` issued, from the id state file and
/// Redis (whichever is higher); what cannot be read is said and left out.
fn ids_issued_before(
    id_state: Option<&std::path::Path>,
    redis: Option<&smppgw_control::redis::RedisOptions>,
    node: u32,
) -> Option<u64> {
    let from_file = id_state.and_then(|p| {
        smppgw_control::ids::load(p)
            .inspect_err(|e| tracing::error!("message id state not read, ids start from the clock: {e}"))
            .ok()
            .flatten()
    });
    let from_redis = redis.and_then(|r| {
        let wait = std::time::Duration::from_millis(IDS_REDIS_WAIT_MS);
        smppgw_control::ids::load_redis(&r.url, &r.prefix, node, wait)
            .inspect_err(|e| tracing::warn!("message id watermark not read from Redis: {e}"))
            .ok()
            .flatten()
    });
    from_file.max(from_redis)
}

fn run(opts: Opts) -> ExitCode {
    let Opts { path, database_url, admin_token, redis, config_cache, id_state, receipt_state } = opts;
    // Registered first: a SIGTERM while the node is still starting waits here and then drains,
    // instead of killing the process.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]);
    // Also seen while the first configuration loads (before the drain's handler runs).
    let stop_requested = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, stop_requested.clone());
    }
    let filter = match std::env::var("SMPPGW_LOG") {
        Ok(v) => {
            for d in log_directives_without_level(&v) {
                eprintln!(
                    "warning: SMPPGW_LOG: '{d}' is neither a level (error, warn, info, debug, trace, off) nor a \
                     module: it is taken as a target, and the gateway's own logs are off"
                );
            }
            tracing_subscriber::EnvFilter::try_new(&v).unwrap_or_else(|e| {
                eprintln!("warning: SMPPGW_LOG={v} is not a log filter ({e}): logging at info");
                tracing_subscriber::EnvFilter::new("info")
            })
        }
        Err(_) => tracing_subscriber::EnvFilter::new("info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let has_token = admin_token.is_some();
    let base = match load(path.as_ref(), has_token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match &database_url {
        Some(url) => match (load_from_db(url, &base, &stop_requested), &config_cache) {
            (Err(e), _) if e == STOPPED_WHILE_LOADING => {
                tracing::info!("{e}: nothing started, nothing to drain");
                return ExitCode::SUCCESS;
            }
            (Ok(c), cache) => {
                if let Some(file) = cache
                    && let Err(e) = smppgw_control::db::cache::save(file, &c)
                {
                    tracing::warn!("cannot keep the configuration in {}: {e}", file.display());
                }
                c
            }
            (Err(e), Some(file)) => match smppgw_control::db::cache::load(file, &base) {
                Ok(c) => {
                    tracing::warn!(
                        "PostgreSQL: {e}; starting from the last good configuration in {} and following PostgreSQL when it answers",
                        file.display()
                    );
                    c
                }
                Err(why) => {
                    eprintln!(
                        "smppgw: cannot load the configuration from PostgreSQL: {e}; nor from the cache: {why}"
                    );
                    return ExitCode::from(3);
                }
            },
            (Err(e), None) => {
                // Documented: PostgreSQL down at start is a clear error and a non-zero exit.
                eprintln!(
                    "smppgw: cannot load the configuration from PostgreSQL: {e} (--config-cache FILE lets a node start from the last good one)"
                );
                return ExitCode::from(3);
            }
        },
        None => base.clone(),
    };
    if path.is_none() && database_url.is_none() {
        tracing::info!(
            "running on the embedded default config (customer demo/demo, vendor sim at 127.0.0.1:2776)"
        );
    }
    let mut http = HttpConfig::new(cfg.server.http_listen);
    if let Some(t) = admin_token {
        http = http.with_admin_token(t);
    }
    // Before anything listens or connects: a configuration error, as the loader's are (the
    // loader already refused a non-loopback address without a token; here the token itself).
    if let Err(e) = http.validate() {
        eprintln!("smppgw: HTTP API: {e}");
        return ExitCode::from(2);
    }
    // The HTTP port is tried before the engine binds vendors and accepts customers: found in
    // use only afterwards, every restart would bind and unbind the vendors once more.
    if cfg.server.http_listen.port() != 0
        && let Err(e) = std::net::TcpListener::bind(cfg.server.http_listen)
    {
        eprintln!("smppgw: HTTP API: cannot listen on {}: {e}", cfg.server.http_listen);
        return ExitCode::FAILURE;
    }
    let ids_issued = ids_issued_before(id_state.as_deref(), redis.as_ref(), cfg.server.node_id);
    // Kept before the first id is issued: a crash before the first periodic write is covered too,
    // and a file that cannot be written is said at once.
    if let Some(file) = &id_state {
        let start = smppgw_engine::msgid::IdWatermark::start_counter(ids_issued);
        if let Err(e) = smppgw_control::ids::save(file, start) {
            tracing::error!(
                "cannot write the message id state to {}: {e} (a restart with the clock stepped back could issue ids again)",
                file.display()
            );
        }
    }
    // Before anything listens: every bind is a descriptor, and runtimes often start a process
    // at 1,024 while allowing far more.
    match smppgw_engine::fdlimit::raise_open_files() {
        Some(lim) if lim.soft < smppgw_engine::fdlimit::needed(&cfg) => tracing::warn!(
            open_files = lim.soft,
            needed = smppgw_engine::fdlimit::needed(&cfg),
            "the open-file limit is below what server.max_binds and the vendor binds may need: connections past it wait unanswered (raise LimitNOFILE / the container runtime's nofile, see deploy/TUNING.md)"
        ),
        Some(lim) => tracing::info!(open_files = lim.soft, "open-file limit"),
        None => tracing::warn!("cannot read the open-file limit"),
    }
    let restore = receipt_state.as_deref().and_then(|f| read_receipt_state(f, &cfg));
    let restored = restore.is_some();
    let options = smppgw_engine::StartOptions {
        shared: redis.is_some(),
        ids_issued,
        keep_state: receipt_state.is_some(),
        restore,
        ..Default::default()
    };
    let started = smppgw_engine::start_with_options(cfg, options);
    let (gw, remote_end) = match started {
        Ok(g) => g,
        Err(e) => {
            // The file stays for the next attempt.
            eprintln!("smppgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    // In the cores now: never applied twice (the next clean stop writes it anew).
    if restored
        && let Some(file) = &receipt_state
        && let Err(e) = smppgw_control::receipt_state::set_aside(file, false)
    {
        tracing::error!(
            "cannot remove the receipt state file {} once read: {e} (the next start would apply it again)",
            file.display()
        );
    }
    let gw_control = gw.control();
    let control = gw.control();
    let metrics = gw.metrics.clone();
    let exit_metrics = gw.metrics.clone();
    let ids = gw.ids.clone();
    let shared = redis.zip(remote_end);
    let (health_tx, health_rx) = std::sync::mpsc::sync_channel(1);
    let id_file = id_state.clone();
    let control_thread = spawn_control_thread(http, move || {
        if let Some(file) = id_file {
            tokio::spawn(smppgw_control::ids::keep_file(file, control.ids()));
        }
        control_plane(
            control,
            metrics,
            base,
            (path, has_token, database_url, config_cache),
            shared,
            health_tx,
        )
    });
    let control_thread = match control_thread {
        Ok(t) => t,
        Err(e) => {
            eprintln!("smppgw: HTTP API: {e}");
            gw.shutdown();
            gw.join();
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(http = %control_thread.local_addr(), "HTTP API listening");
    let flag = gw.shutdown_flag();
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                let mut draining = false;
                for sig in signals.forever() {
                    if sig == signal_hook::consts::SIGHUP {
                        // A closed terminal, or tooling that expects a reload: not a reason to
                        // stop (its default action killed the node without a drain).
                        tracing::info!(
                            "SIGHUP ignored (a configuration file is reloaded with POST /api/v1/config/reload)"
                        );
                    } else if !draining {
                        draining = true;
                        tracing::info!(
                            signal = sig,
                            "signal received: draining (a second one stops at once)"
                        );
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        tracing::warn!(
                            signal = sig,
                            "second signal: stopping now, without finishing the drain"
                        );
                        std::process::exit(1);
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot install signal handlers: {e}"),
    }
    let left = gw.join_left();
    let state = write_receipt_state(receipt_state.as_deref(), &gw_control.current(), &left);
    drop(left);
    // Messages acknowledged in the last moments, and receipts for customers no longer bound
    // here, must reach Redis before the node goes.
    // Redis down or reconnecting then: they wait for it, up to the same deadline.
    let (mut redis_records, mut redis_receipts) = (0, 0);
    if let Ok(health) = health_rx.try_recv() {
        let health: Arc<smppgw_control::redis::RedisHealth> = health;
        if !health.wait_written(std::time::Duration::from_secs(REDIS_DRAIN_SECS)) {
            (redis_records, redis_receipts) = health.unwritten();
            // Record writes Redis did not get are not lost when the state file kept the
            // messages (Redis down at the stop: the cores gave them to the file too).
            redis_records = redis_records.saturating_sub(state.records);
            if redis_records + redis_receipts > 0 {
                tracing::warn!(
                    records = redis_records,
                    receipts_and_mo = redis_receipts,
                    up = health.is_up(),
                    "not everything reached Redis before exit: these record writes and receipts/MO for the shared queues are lost"
                );
            } else {
                tracing::info!(up = health.is_up(), "the leased rate units were not given back to Redis");
            }
        }
        // So that this node's restart uses the shared state at once, not after the claim expires.
        if !health.release_node_id(std::time::Duration::from_secs(1)) {
            tracing::warn!("could not give up the node id's claim in Redis: it expires by itself");
        }
    }
    if let Err(e) = control_thread.stop() {
        tracing::warn!("control thread: {e}");
    }
    // Every core has stopped, and the periodic writer with the control thread: exactly what
    // was issued.
    if let Some(file) = &id_state
        && let Err(e) = smppgw_control::ids::save(file, ids.issued())
    {
        tracing::warn!("cannot write the message id state to {}: {e}", file.display());
    }
    let lost = &exit_metrics.lost_at_exit;
    if lost.total() + redis_records + redis_receipts + state.lost > 0 {
        tracing::error!(
            receipts_and_mo_queued = lost.undelivered.load(std::sync::atomic::Ordering::Acquire),
            state_file_not_written = state.lost,
            receipts_parked = lost.parked.load(std::sync::atomic::Ordering::Acquire),
            writes_not_handed_over = lost.not_handed_over.load(std::sync::atomic::Ordering::Acquire),
            redis_records = redis_records,
            redis_receipts_and_mo = redis_receipts,
            "smppgw stopped, but lost what it had acknowledged (exit status {EXIT_STOPPED_WITH_LOSS}): receipts/MO queued for customers not bound, receipts parked for another node's message, record writes and receipts/MO that did not reach Redis"
        );
        return ExitCode::from(EXIT_STOPPED_WITH_LOSS);
    }
    tracing::info!("smppgw stopped");
    ExitCode::SUCCESS
}

/// The exit status of a stop (signal, drain) that dropped something the node had acknowledged:
/// a receipt or MO no customer got nor Redis holds, a receipt still parked for another node's
/// message, a record write that reached neither the control thread nor Redis. 1 is a failed
/// start or a second signal, 2 a configuration error, 3 PostgreSQL unreachable at the start.
const EXIT_STOPPED_WITH_LOSS: u8 = 4;

/// The configuration from PostgreSQL that [`follow_database`] handed to the cores last (the
/// watcher's `Arc`, compared by identity) and the version it became, or why it was not taken.
type Applied = Option<(Arc<smppgw_control::DbConfig>, Result<u64, ReloadFailure>)>;

/// How long `POST /api/v1/config/reload` waits for PostgreSQL's reload and its application: less
/// than the API's own bound, so that the answer says what it was waiting for.
const DB_RELOAD_WAIT_MS: u64 = smppgw_control::http::RELOAD_TIMEOUT_MS - 1_000;

/// `POST /api/v1/config/reload` in database mode: asks the watcher for a reload and answers with
/// what it came to: the version the cores run once the configuration it found is applied, its
/// problems when the contents are refused, or why PostgreSQL could not be read.
async fn reload_from_database(
    slot: Arc<std::sync::OnceLock<Arc<smppgw_control::ConfigWatcher>>>,
    mut applied: tokio::sync::watch::Receiver<Applied>,
    start_refused: tokio::sync::watch::Receiver<Option<Vec<String>>>,
    attempts: Attempts,
) -> Result<u64, ReloadFailure> {
    // One deadline for the whole answer, under the API's own.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(DB_RELOAD_WAIT_MS);
    if slot.get().is_none() {
        // Not followed yet: PostgreSQL answered with contents that do not validate (the node runs
        // on its cache), or it has not answered. Try again now rather than at the next retry (an
        // operator who fixed the database and asks for a reload wants it read now), and answer
        // with what an attempt that starts after this request came to (one under way may have
        // read the database before the fix).
        let Attempts { mut started, mut finished, retry } = attempts;
        let wanted = *started.borrow_and_update() + 1;
        retry.notify_one();
        let next = async {
            // Or the watcher started (by the attempt under way): it answers from here.
            while *finished.borrow_and_update() < wanted && slot.get().is_none() {
                if finished.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, next).await;
    }
    let Some(watcher) = slot.get().cloned() else {
        if let Some(reasons) = start_refused.borrow().clone() {
            return Err(ReloadFailure::Invalid(reasons));
        }
        return Err(ReloadFailure::Unavailable("PostgreSQL is not reachable yet".into()));
    };
    let work = async {
        match watcher.reload().await {
            smppgw_control::ReloadOutcome::Loaded(_) => {}
            smppgw_control::ReloadOutcome::Refused(reasons) => return Err(ReloadFailure::Invalid(reasons)),
            smppgw_control::ReloadOutcome::Failed(why) => {
                return Err(ReloadFailure::Unavailable(format!("PostgreSQL: {why}")));
            }
            other => return Err(ReloadFailure::Unavailable(format!("PostgreSQL: {other:?}"))),
        }
        // The watcher's configuration now is what the reload found, or newer: wait until the
        // cores were handed it. Read what was applied before what is current, so that an apply
        // in between is seen as a change instead of missed.
        loop {
            let last = applied.borrow_and_update().clone();
            let current = watcher.current();
            if let Some((config, result)) = last
                && Arc::ptr_eq(&config, &current)
            {
                return result;
            }
            if applied.changed().await.is_err() {
                return Err(ReloadFailure::Unavailable("the configuration is no longer followed".into()));
            }
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(ReloadFailure::Unavailable(format!(
            "the reload from PostgreSQL did not finish within {DB_RELOAD_WAIT_MS} ms"
        ))),
    }
}

/// The start attempts of [`follow_database`], for a reload that waits for one.
#[derive(Clone)]
struct Attempts {
    /// Attempts started so far.
    started: tokio::sync::watch::Receiver<u64>,
    /// The last attempt finished (its number), or the one that started the watcher.
    finished: tokio::sync::watch::Receiver<u64>,
    /// Starts the next attempt now.
    retry: Arc<tokio::sync::Notify>,
}

/// Follows PostgreSQL: connects (retrying while it is down: the node runs on the configuration it
/// started with), applies what the database holds, then every change, keeping the cache file up
/// to date and saying in `applied` what became of each.
/// What [`follow_database`] reports to the HTTP API.
struct Following {
    /// PostgreSQL's state, for `/ready`.
    status: tokio::sync::watch::Sender<Result<(), String>>,
    /// The watcher, once PostgreSQL was read.
    slot: Arc<std::sync::OnceLock<Arc<smppgw_control::ConfigWatcher>>>,
    /// What became of each configuration the watcher found.
    applied: tokio::sync::watch::Sender<Applied>,
    /// Until the watcher starts: the problems of what PostgreSQL holds, when it answered with a
    /// configuration that does not validate (a reload is then answered with them, not 503).
    start_refused: tokio::sync::watch::Sender<Option<Vec<String>>>,
    /// Attempts to start the watcher: started, finished, and a way to make the next one now.
    attempts: (tokio::sync::watch::Sender<u64>, tokio::sync::watch::Sender<u64>, Arc<tokio::sync::Notify>),
}

async fn follow_database(
    pg: tokio_postgres::Config,
    base: Config,
    control: Arc<smppgw_engine::runtime::GatewayControl>,
    follow: Following,
    cache: Option<PathBuf>,
) {
    let Following { status, slot, applied, start_refused, attempts: (started, finished, retry) } = follow;
    let mut wait = std::time::Duration::from_millis(500);
    let watcher = loop {
        started.send_modify(|n| *n += 1);
        match smppgw_control::ConfigWatcher::start(&pg, base.clone(), smppgw_control::WatchOptions::default())
            .await
        {
            Ok(w) => {
                start_refused.send_replace(None);
                break w;
            }
            Err(e) => {
                tracing::warn!(
                    "PostgreSQL: {e}; running on the configuration in force, retrying in {wait:?}"
                );
                start_refused.send_replace(e.invalid().map(|i| i.messages()));
                let _ = status.send(Err(e.to_string()));
                finished.send_replace(*started.borrow());
                // The next attempt after the backoff, or at once when a reload asks for it.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = retry.notified() => {}
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(10));
            }
        }
    };
    // The cache is written off the control thread (a slow fsync must not hold up the HTTP API
    // and the Redis quotas it also serves), one save at a time, the latest configuration winning.
    let (to_cache, mut cached) = tokio::sync::watch::channel::<Option<Config>>(None);
    if let Some(file) = cache.clone() {
        tokio::spawn(async move {
            while cached.changed().await.is_ok() {
                let Some(config) = cached.borrow_and_update().clone() else { continue };
                let to = file.clone();
                let saved =
                    tokio::task::spawn_blocking(move || smppgw_control::db::cache::save(&to, &config)).await;
                match saved {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("cannot keep the configuration in {}: {e}", file.display()),
                    Err(e) => tracing::warn!("cannot keep the configuration in {}: {e}", file.display()),
                }
            }
        });
    }
    // Validating and building a snapshot takes tens of milliseconds for a large configuration:
    // off the control thread, whose runtime also serves the HTTP API and tops up the Redis
    // quotas every 10 ms. One at a time, in order.
    let apply = |db: Arc<smppgw_control::DbConfig>| async {
        let config = &db.config;
        let (c, next) = (control.clone(), config.clone());
        let reloaded = match tokio::task::spawn_blocking(move || c.reload(next)).await {
            Ok(r) => r,
            Err(e) => {
                // A panic in the engine's reload: the running configuration stays.
                tracing::error!("configuration from PostgreSQL not applied: the reload task failed: {e}");
                return;
            }
        };
        let result = match reloaded {
            Ok(v) => {
                tracing::info!(version = v, "configuration from PostgreSQL applied");
                to_cache.send_replace(Some(config.clone()));
                Ok(v)
            }
            Err(e) => {
                tracing::warn!("configuration from PostgreSQL refused: {e}");
                Err(ReloadFailure::from(e))
            }
        };
        applied.send_replace(Some((db, result)));
    };
    // What the database holds now may be newer than what the node started on (a cache).
    apply(watcher.current()).await;
    let mut health = watcher.subscribe_health();
    let mut changes = watcher.subscribe();
    let watcher = Arc::new(watcher);
    let _ = slot.set(watcher.clone());
    // A reload waiting for this attempt goes on with the watcher.
    finished.send_replace(*started.borrow());
    tokio::spawn(async move {
        loop {
            let now = {
                let h = health.borrow_and_update();
                match (&h.db_ok, &h.last_error, &h.rejected) {
                    // Reachable, but what it holds does not validate: the operator must know,
                    // though the node runs on (its last good configuration).
                    (true, _, Some(why)) => {
                        Err(format!("its configuration is refused (the last good one runs): {why}"))
                    }
                    (true, _, None) => Ok(()),
                    (false, e, _) => Err(e.clone().unwrap_or_else(|| "not connected".into())),
                }
            };
            let _ = status.send(now);
            if health.changed().await.is_err() {
                break;
            }
        }
    });
    let _keep = watcher;
    while changes.changed().await.is_ok() {
        let db = changes.borrow_and_update().clone();
        apply(db).await;
    }
}

/// Runs on the control thread's runtime: the PostgreSQL watcher feeding reloads, and the API state.
async fn control_plane(
    control: Arc<smppgw_engine::runtime::GatewayControl>,
    metrics: Arc<smppgw_engine::metrics::Metrics>,
    base: Config,
    (path, has_token, database_url, config_cache): (Option<PathBuf>, bool, Option<String>, Option<PathBuf>),
    shared: Option<(smppgw_control::redis::RedisOptions, smppgw_engine::remote::RemoteEnd)>,
    health_tx: std::sync::mpsc::SyncSender<Arc<smppgw_control::redis::RedisHealth>>,
) -> Result<ApiState, String> {
    let mut state = ApiState::new(control.clone(), metrics);
    if let Some((opts, end)) = shared {
        let (s, redis) = smppgw_control::redis::attach(state, opts, control.clone(), end);
        state = s;
        let _ = health_tx.try_send(redis.health());
    }
    match database_url {
        Some(url) => {
            let pg = smppgw_control::db::parse_database_url(&url).map_err(|e| e.to_string())?;
            // /ready says why until the watcher is connected, then what the watcher says.
            let (status_tx, status_rx) =
                tokio::sync::watch::channel::<Result<(), String>>(Err("connecting".into()));
            state = state.with_backend(Backend::new("postgres", move || status_rx.borrow().clone()));
            let slot: Arc<std::sync::OnceLock<Arc<smppgw_control::ConfigWatcher>>> = Arc::default();
            let (applied_tx, applied_rx) = tokio::sync::watch::channel::<Applied>(None);
            let (refused_tx, refused_rx) = tokio::sync::watch::channel::<Option<Vec<String>>>(None);
            let (watched, start_refused) = (slot.clone(), refused_rx.clone());
            state = state.with_extra_metrics(move |out| {
                let health = match watched.get() {
                    Some(w) => w.health(),
                    // Not following PostgreSQL yet: its contents were refused at start (the node
                    // runs on its cache), or it has not answered. Rendered all the same, so
                    // that alerts see the refusal, and PostgreSQL down (`smppgw_postgres_up 0`).
                    None => smppgw_control::db::Health {
                        rejected: start_refused.borrow().as_ref().map(|r| r.join("; ")),
                        ..Default::default()
                    },
                };
                smppgw_control::db::render_health_metrics(&health, out);
            });
            let s = slot.clone();
            let (started_tx, started) = tokio::sync::watch::channel(0u64);
            let (finished_tx, finished) = tokio::sync::watch::channel(0u64);
            let retry = Arc::new(tokio::sync::Notify::new());
            let attempts = Attempts { started, finished, retry: retry.clone() };
            state = state.with_reload(move || {
                reload_from_database(s.clone(), applied_rx.clone(), refused_rx.clone(), attempts.clone())
            });
            let follow = Following {
                status: status_tx,
                slot,
                applied: applied_tx,
                start_refused: refused_tx,
                attempts: (started_tx, finished_tx, retry),
            };
            tokio::spawn(follow_database(pg, base, control, follow, config_cache));
        }
        None => {
            // Without a database, a reload re-reads the TOML file (or the embedded default).
            // One at a time, from the read to the publication: two reloads around a rewrite of
            // the file could otherwise publish the older read last, and leave it running.
            let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
            state = state.with_reload(move || {
                let c = control.clone();
                let path = path.clone();
                let lock = one_at_a_time.clone();
                async move {
                    // Held by the blocking task itself: a request that times out does not let
                    // the next reload start while this one may still publish.
                    let turn = lock.lock_owned().await;
                    // Reading, validating and building: off the control thread (see above).
                    tokio::task::spawn_blocking(move || {
                        let _turn = turn;
                        let cfg = load(path.as_ref(), has_token).map_err(ReloadFailure::from)?;
                        c.reload(cfg).map_err(ReloadFailure::from)
                    })
                    .await
                    .unwrap_or_else(|e| Err(ReloadFailure::Unavailable(format!("reload task: {e}"))))
                }
            });
        }
    }
    Ok(state)
}
