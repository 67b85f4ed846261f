//! `smppgw`: the SMPP gateway binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use smppgw_engine::config::{self, Config};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// SMPP gateway: customers bind to it as to an SMSC; it routes every message to a vendor SMSC with
/// failover and throughput limits, and carries receipts back.
///
/// With no arguments it runs on the embedded default config: SMPP on 127.0.0.1:2775, customer
/// `demo` / password `demo`, one vendor `sim` at 127.0.0.1:2776 (start `smppgw-sim` there).
#[derive(Parser, Debug)]
#[command(name = "smppgw", version, about, long_about)]
struct Cli {
    /// TOML config file (see deploy/config/example.toml). Every setting can also be overridden by
    /// an environment variable such as SMPPGW__SERVER__LISTEN=0.0.0.0:2775.
    #[arg(long, short, env = "SMPPGW_CONFIG")]
    config: Option<PathBuf>,
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
        None => run(cli.config),
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, String> {
    let env = config::process_env();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Config::load(&text, &p.display().to_string(), env).map_err(|e| e.to_string())
        }
        None => Config::load(config::DEFAULT_CONFIG_TOML, "<embedded default>", env).map_err(|e| e.to_string()),
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SMPPGW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let embedded = path.is_none();
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if embedded {
        tracing::info!("running on the embedded default config (customer demo/demo, vendor sim at 127.0.0.1:2776)");
    }
    let gw = match smppgw_engine::start(cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("smppgw: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    tracing::info!("smppgw stopped");
    ExitCode::SUCCESS
}
