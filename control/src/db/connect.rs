//! Connecting: parsing the URL, bounding the connect time, and driving the connection in a task
//! that forwards notifications over a bounded channel.

use std::future::poll_fn;
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket};

use super::{DbError, NOTIFY_CHANNEL};

/// Connect timeout used when the URL sets none: a dead address must not hang a start for minutes.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// `application_name` used when the URL sets none, so the sessions show in `pg_stat_activity`.
pub const APPLICATION_NAME_DEFAULT: &str = "smppgw";

/// Parses a database URL (`postgres://user@host:5432/db?...`) or key=value string
/// (`host=... port=... dbname=...`), as libpq does, and refuses one that names no host.
///
/// Unlike libpq, the driver has no default host (neither a Unix socket nor localhost): a string
/// without `host` or `hostaddr` (an empty `SMPPGW_DATABASE_URL`, `postgres:///db`, `dbname=db`)
/// parses, but every connection attempt fails. It is refused here, where it can be told apart
/// from a server that is down.
///
/// # Errors
/// [`DbError::BadUrl`], without repeating the URL (it may hold a password).
pub fn parse_database_url(url: &str) -> Result<tokio_postgres::Config, DbError> {
    let config =
        tokio_postgres::Config::from_str(url).map_err(|e| DbError::BadUrl { reason: e.to_string() })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(DbError::BadUrl {
            reason: "it names no host (write postgres://USER@HOST:5432/DB, or host=HOST in the key=value \
                     form; there is no default host, neither localhost nor a Unix socket)"
                .to_owned(),
        });
    }
    Ok(config)
}

/// Where a configuration points, for messages: `host=H port=P dbname=D user=U`, never the password.
#[must_use]
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut out = format!(
        "host={} port={}",
        if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") },
        if ports.is_empty() { "5432".to_owned() } else { ports.join(",") }
    );
    if let Some(db) = config.get_dbname() {
        out.push_str(&format!(" dbname={db}"));
    }
    if let Some(user) = config.get_user() {
        out.push_str(&format!(" user={user}"));
    }
    out
}

/// The task that drives a connection: it ends with the error that broke the connection, or `Ok`
/// when the connection closed or the client was dropped.
pub type Driver = JoinHandle<Result<(), tokio_postgres::Error>>;

/// Connects (TLS is not supported yet) and spawns the task that drives the connection on the
/// current tokio runtime; its handle is returned for callers that want to notice the end.
///
/// # Errors
/// [`DbError::Connect`], naming the target.
pub async fn connect(config: &tokio_postgres::Config) -> Result<(Client, Driver), DbError> {
    connect_inner(config, None).await
}

/// Like [`connect`], forwarding the payload of every notification on [`NOTIFY_CHANNEL`] to
/// `notifications`. When the channel is full a notification is dropped: the receiver has a reload
/// pending already, which will see the change.
pub(crate) async fn connect_inner(
    config: &tokio_postgres::Config,
    notifications: Option<mpsc::Sender<String>>,
) -> Result<(Client, Driver), DbError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT_DEFAULT);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME_DEFAULT);
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect { target: describe_target(&config), source })?;
    let driver = tokio::spawn(drive(connection, notifications));
    Ok((client, driver))
}

async fn drive(
    mut connection: Connection<Socket, NoTlsStream>,
    notifications: Option<mpsc::Sender<String>>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                let Some(tx) = &notifications else { continue };
                if n.channel() != NOTIFY_CHANNEL {
                    continue;
                }
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(n.payload().to_owned()) {
                    return Ok(());
                }
            }
            Some(Ok(AsyncMessage::Notice(notice))) => {
                tracing::debug!(message = notice.message(), "PostgreSQL notice");
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "PostgreSQL connection lost");
                return Err(e);
            }
            None => return Ok(()),
        }
    }
}
