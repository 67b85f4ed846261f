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
    /// Copy a TOML config's customers, vendors and routes into PostgreSQL (needs --database-url).
    ImportConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => match config::check_config_file(&file) {
            Ok(c) => {
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
        },
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
            println!("{}", config::hash_password(&pw));
            ExitCode::SUCCESS
        }
        Some(Command::Migrate) => db_command(cli.database_url, None),
        Some(Command::ImportConfig { file }) => db_command(cli.database_url, Some(file)),
        None => {
            let redis = cli
                .redis_url
                .map(|u| smppgw_control::redis::RedisOptions::new(u).with_prefix(cli.redis_prefix));
            run(cli.config, cli.database_url, cli.admin_token, redis)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
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
                let summary =
                    smppgw_control::import_config(&mut client, &cfg).await.map_err(|e| e.to_string())?;
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

fn load(path: Option<&PathBuf>) -> Result<Config, String> {
    let env = config::process_env();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Config::load(&text, &p.display().to_string(), env).map_err(|e| e.to_string())
        }
        None => Config::load(config::DEFAULT_CONFIG_TOML, config::DEFAULT_SOURCE_NAME, env)
            .map_err(|e| e.to_string()),
    }
}

/// How long a stopping node waits for its last writes to reach Redis.
const REDIS_DRAIN_SECS: u64 = 3;

/// Loads the first configuration from PostgreSQL (migrating the schema first).
fn load_from_db(url: &str, base: &Config) -> Result<Config, String> {
    runtime()?.block_on(async {
        let pg = smppgw_control::db::parse_database_url(url).map_err(|e| e.to_string())?;
        let target = smppgw_control::db::describe_target(&pg);
        let (mut client, driver) =
            smppgw_control::db::connect(&pg).await.map_err(|e| format!("PostgreSQL at {target}: {e}"))?;
        tokio::spawn(driver);
        smppgw_control::migrate(&mut client).await.map_err(|e| e.to_string())?;
        let db = smppgw_control::load(&mut client, base).await.map_err(|e| e.to_string())?;
        Ok(db.config)
    })
}

fn run(
    path: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    redis: Option<smppgw_control::redis::RedisOptions>,
) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SMPPGW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let base = match load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match &database_url {
        Some(url) => match load_from_db(url, &base) {
            Ok(c) => c,
            Err(e) => {
                // Documented: PostgreSQL down at start is a clear error and a non-zero exit.
                eprintln!("smppgw: cannot load the configuration from PostgreSQL: {e}");
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
    let http_listen = cfg.server.http_listen;
    let started = match &redis {
        Some(_) => smppgw_engine::start_shared(cfg).map(|(g, end)| (g, Some(end))),
        None => smppgw_engine::start(cfg).map(|g| (g, None)),
    };
    let (gw, remote_end) = match started {
        Ok(g) => g,
        Err(e) => {
            eprintln!("smppgw: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut http = HttpConfig::new(http_listen);
    if let Some(t) = admin_token {
        http = http.with_admin_token(t);
    }
    let control = gw.control();
    let metrics = gw.metrics.clone();
    let shared = redis.zip(remote_end);
    let (health_tx, health_rx) = std::sync::mpsc::sync_channel(1);
    let control_thread = spawn_control_thread(http, move || {
        control_plane(control, metrics, base, path, database_url, shared, health_tx)
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
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "signal received: draining");
                    flag.store(true, std::sync::atomic::Ordering::Release);
                }
            });
        }
        Err(e) => tracing::warn!("cannot install signal handlers: {e}"),
    }
    gw.join();
    // Messages acknowledged in the last moments must reach Redis before the node goes.
    if let Ok(health) = health_rx.try_recv() {
        let health: Arc<smppgw_control::redis::RedisHealth> = health;
        health.flush_now();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(REDIS_DRAIN_SECS);
        while health.is_up() && health.backlog() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    if let Err(e) = control_thread.stop() {
        tracing::warn!("control thread: {e}");
    }
    tracing::info!("smppgw stopped");
    ExitCode::SUCCESS
}

/// Runs on the control thread's runtime: the PostgreSQL watcher feeding reloads, and the API state.
async fn control_plane(
    control: Arc<smppgw_engine::runtime::GatewayControl>,
    metrics: Arc<smppgw_engine::metrics::Metrics>,
    base: Config,
    path: Option<PathBuf>,
    database_url: Option<String>,
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
            let watcher =
                smppgw_control::ConfigWatcher::start(&pg, base, smppgw_control::WatchOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
            let health = watcher.subscribe_health();
            state = state.with_backend(Backend::new("postgres", move || {
                let h = health.borrow();
                match (&h.db_ok, &h.last_error) {
                    (true, _) => Ok(()),
                    (false, e) => Err(e.clone().unwrap_or_else(|| "not connected".into())),
                }
            }));
            let mut changes = watcher.subscribe();
            let watcher = Arc::new(watcher);
            let w = watcher.clone();
            let c = control.clone();
            state = state.with_reload(move || {
                w.request_reload();
                let c = c.clone();
                async move { Ok::<u64, ReloadFailure>(c.current().version) }
            });
            tokio::spawn(async move {
                let _keep = watcher;
                while changes.changed().await.is_ok() {
                    let db = changes.borrow_and_update().clone();
                    match control.reload(db.config.clone()) {
                        Ok(v) => tracing::info!(version = v, "configuration from PostgreSQL applied"),
                        Err(e) => tracing::warn!("configuration from PostgreSQL refused: {e}"),
                    }
                }
            });
        }
        None => {
            // Without a database, a reload re-reads the TOML file (or the embedded default).
            state = state.with_reload(move || {
                let c = control.clone();
                let path = path.clone();
                async move {
                    let cfg = load(path.as_ref()).map_err(|e| ReloadFailure::Invalid(vec![e]))?;
                    c.reload(cfg).map_err(ReloadFailure::from)
                }
            });
        }
    }
    Ok(state)
}
