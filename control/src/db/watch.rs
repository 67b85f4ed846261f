//! Hot reload: a task on the control thread's runtime that keeps the newest valid configuration of
//! the database published.
//!
//! It LISTENs on [`NOTIFY_CHANNEL`] (the connection's driver task forwards notifications on a
//! bounded channel), waits [`WatchOptions::debounce`] after the first notification of a burst so
//! that a transaction touching several tables costs one reload, then loads and validates. It also
//! reloads every [`WatchOptions::full_reload_interval`] as a safety net (a lost notification, a
//! silently dead connection), and on [`ConfigWatcher::request_reload`].
//!
//! What it publishes, through `tokio::sync::watch` channels (latest value wins, so a slow reader
//! never holds up the watcher and never sees a backlog):
//! - the configuration: a new `Arc<DbConfig>` only when a reload gives a valid configuration that
//!   differs from the last one. A change that does not validate is logged (once per distinct
//!   reason) and recorded in [`Health::rejected`]; the last good configuration stays.
//! - its [`Health`]: whether the database answers (`db_ok`) and the last error, for `/ready` and
//!   /metrics ([`render_health_metrics`]).
//! - what each reload came to ([`ReloadOutcome`]), numbered, so that [`ConfigWatcher::reload`]
//!   can wait for the first reload that started after it was called (`POST /api/v1/config/reload`
//!   answers with its outcome instead of before anything was loaded).
//!
//! On a lost connection it keeps the last good configuration, reconnects with a jittered backoff
//! between [`WatchOptions::retry_backoff_min`] and [`WatchOptions::retry_backoff_max`], and
//! reloads as soon as it is back (notifications sent meanwhile were lost).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smppgw_engine::config::Config;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::connect::{Driver, connect_inner};
use super::{DbConfig, DbError, NOTIFY_CHANNEL, load};

/// Notifications buffered between the connection's driver and the watcher. One pending is enough
/// to cause a reload; the rest only name tables for the log, so overflow is dropped.
const NOTIFY_QUEUE_MAX: usize = 256;

/// Table names kept for the log line of one reload.
const TABLES_LOGGED_MAX: usize = 16;

/// `application_name` of the watcher's session when the URL sets none.
pub const WATCH_APPLICATION_NAME: &str = "smppgw-config-watch";

/// Timing of a [`ConfigWatcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Quiet time after the first notification of a burst before reloading (default 50 ms).
    pub debounce: Duration,
    /// Full reload period, whatever the notifications say (default 30 s).
    pub full_reload_interval: Duration,
    /// A reload's queries, a connect or the LISTEN after it, that take longer count as a lost
    /// connection (default 10 s). Building and validating what a reload read is not counted: it
    /// does not wait for PostgreSQL.
    pub query_timeout: Duration,
    /// First delay before reconnecting (default 100 ms); doubles on each failure.
    pub retry_backoff_min: Duration,
    /// Longest delay before reconnecting (default 10 s).
    pub retry_backoff_max: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            full_reload_interval: Duration::from_secs(30),
            query_timeout: Duration::from_secs(10),
            retry_backoff_min: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
        }
    }
}

/// The watcher's view of the database, for `/ready` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// The database answered the last reload (or connect) and the schema is there.
    pub db_ok: bool,
    /// The last connection or query error, kept after recovery.
    pub last_error: Option<String>,
    /// Why the database's current contents are refused, while they are (the last good
    /// configuration is running meanwhile); `None` once a reload validates again.
    pub rejected: Option<String>,
    /// Reloads attempted after the first load.
    pub reloads: u64,
    /// New configurations published after the first.
    pub applied: u64,
    /// Reloads whose result did not validate.
    pub rejections: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// When the configuration in force was published: the first load, or the last change
    /// applied. `None` until the watcher has loaded one.
    pub applied_at: Option<SystemTime>,
}

/// The watcher's families for /metrics: whether PostgreSQL answers and how often the connection
/// was lost, reloads by outcome, whether the database's contents are refused now, and when the
/// configuration in force was applied. The gauges are alerts' conditions: the node runs on its
/// last good configuration while PostgreSQL is down or refused, and `/ready` stays 200 meanwhile.
pub fn render_health_metrics(h: &Health, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP smppgw_postgres_up 1 while PostgreSQL answers the configuration watcher\n\
         # TYPE smppgw_postgres_up gauge\n\
         smppgw_postgres_up {}\n\
         # HELP smppgw_postgres_disconnects_total Connections to PostgreSQL the configuration watcher lost\n\
         # TYPE smppgw_postgres_disconnects_total counter\n\
         smppgw_postgres_disconnects_total {}\n\
         # HELP smppgw_config_reloads_total Configurations from PostgreSQL after the first load: applied (changed and valid) or refused (invalid)\n\
         # TYPE smppgw_config_reloads_total counter\n\
         smppgw_config_reloads_total{{result=\"applied\"}} {}\n\
         smppgw_config_reloads_total{{result=\"refused\"}} {}\n\
         # HELP smppgw_config_refused 1 while the configuration in PostgreSQL does not validate (the last good one runs)\n\
         # TYPE smppgw_config_refused gauge\n\
         smppgw_config_refused {}\n\
         # HELP smppgw_config_last_applied_timestamp_seconds Unix time the configuration from PostgreSQL in force was applied (the first load or the last change)\n\
         # TYPE smppgw_config_last_applied_timestamp_seconds gauge",
        u8::from(h.db_ok),
        h.disconnects,
        h.applied,
        h.rejections,
        u8::from(h.rejected.is_some()),
    );
    // No sample before a configuration came from PostgreSQL: 0 would read as 1970.
    if let Some(secs) = h.applied_at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        let _ = writeln!(out, "smppgw_config_last_applied_timestamp_seconds {:.3}", secs.as_secs_f64());
    }
}

/// What one reload of the database came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The contents are valid: the configuration in force now (a new one, or the same as before
    /// when nothing changed). It is published to [`ConfigWatcher::subscribe`] before this is seen.
    Loaded(Arc<DbConfig>),
    /// The contents do not validate; the last good configuration stays. One reason per problem.
    Refused(Vec<String>),
    /// The database could not be read (unreachable, timed out, schema missing).
    Failed(String),
}

/// The newest reload's outcome and the requests it answers.
#[derive(Debug, Clone, Default)]
struct Served {
    /// Every [`ConfigWatcher::reload`] ticket up to this one was taken before that reload
    /// started, so its outcome answers them.
    upto: u64,
    /// `None` until the first reload after the start.
    outcome: Option<ReloadOutcome>,
}

/// Watches the configuration tables and publishes each new valid configuration. Dropping it stops
/// its task.
#[derive(Debug)]
pub struct ConfigWatcher {
    config: watch::Receiver<Arc<DbConfig>>,
    health: watch::Receiver<Health>,
    served: watch::Receiver<Served>,
    /// Tickets handed out by [`ConfigWatcher::reload`].
    tickets: Arc<AtomicU64>,
    reload: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

impl ConfigWatcher {
    /// Connects, LISTENs, loads the configuration (per-node settings from `base`, as in [`load`])
    /// and spawns the watching task on the current tokio runtime.
    ///
    /// # Errors
    /// Whatever stops the first load: [`DbError::Connect`] when the database is down (the gateway
    /// should exit non-zero), [`DbError::NotMigrated`], [`DbError::Invalid`], [`DbError::Timeout`].
    pub async fn start(
        database: &tokio_postgres::Config,
        base: Config,
        options: WatchOptions,
    ) -> Result<ConfigWatcher, DbError> {
        let mut database = database.clone();
        if database.get_application_name().is_none() {
            database.application_name(WATCH_APPLICATION_NAME);
        }
        let mut conn = open(&database, &options).await?;
        let first =
            load_within(&mut conn.client, &base, options.query_timeout, "loading the configuration").await?;
        tracing::info!(
            customers = first.config.customers.len(),
            vendors = first.config.vendors.len(),
            routes = first.config.routes.len(),
            campaigns = first.config.campaigns.len(),
            "configuration loaded from PostgreSQL"
        );
        let (config_tx, config) = watch::channel(Arc::new(first));
        let (health_tx, health) =
            watch::channel(Health { db_ok: true, applied_at: Some(SystemTime::now()), ..Health::default() });
        let (reload, reload_rx) = mpsc::channel(1);
        let (served_tx, served) = watch::channel(Served::default());
        let tickets = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            database,
            base,
            options,
            config: config_tx,
            health: health_tx,
            served: served_tx,
            tickets: tickets.clone(),
        };
        let task = tokio::spawn(worker.run(conn, reload_rx));
        Ok(ConfigWatcher { config, health, served, tickets, reload, task })
    }

    /// The configuration in force: the last one that loaded and validated.
    #[must_use]
    pub fn current(&self) -> Arc<DbConfig> {
        Arc::clone(&self.config.borrow())
    }

    /// A receiver of every new configuration (`changed().await`, then `borrow_and_update()`).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<DbConfig>> {
        self.config.clone()
    }

    /// The health now.
    #[must_use]
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// A receiver of health changes.
    #[must_use]
    pub fn subscribe_health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Asks for a full reload now. Returns at once; when one is pending already this one joins
    /// it. [`ConfigWatcher::reload`] also waits for what it came to.
    pub fn request_reload(&self) {
        let _already_pending = self.reload.try_send(());
    }

    /// Asks for a full reload (`POST /api/v1/config/reload`) and waits for the outcome of the
    /// first reload that starts after this call, whatever triggered it: its contents are at least
    /// as new as the database's when this was called. While the database is unreachable that is
    /// the next connection attempt's failure. The caller bounds the wait (a reload's queries take
    /// up to [`WatchOptions::query_timeout`], then building the result milliseconds).
    pub async fn reload(&self) -> ReloadOutcome {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        self.request_reload();
        let mut served = self.served.clone();
        let outcome = served.wait_for(|s| s.upto >= ticket && s.outcome.is_some()).await;
        match outcome.ok().and_then(|s| s.outcome.clone()) {
            Some(o) => o,
            None => ReloadOutcome::Failed("the configuration watcher has stopped".into()),
        }
    }

    /// Stops the task and waits for it to end.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection of the watcher: its client, the notifications its driver forwards, the driver.
struct Conn {
    client: Client,
    notifications: mpsc::Receiver<String>,
    driver: Driver,
}

struct Worker {
    database: tokio_postgres::Config,
    base: Config,
    options: WatchOptions,
    config: watch::Sender<Arc<DbConfig>>,
    health: watch::Sender<Health>,
    served: watch::Sender<Served>,
    tickets: Arc<AtomicU64>,
}

/// Why a reload happened, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Notify,
    Timer,
    Request,
    Reconnect,
}

/// Connects and LISTENs: from here on no committed change goes unnoticed.
async fn open(database: &tokio_postgres::Config, options: &WatchOptions) -> Result<Conn, DbError> {
    let (tx, notifications) = mpsc::channel(NOTIFY_QUEUE_MAX);
    // The socket's connect_timeout does not cover the login: a server (or a pooler) that accepts
    // the connection and never answers would hold the watcher here for good.
    let (client, driver) =
        within(options.query_timeout, "connecting", connect_inner(database, Some(tx))).await?;
    let listen = format!("LISTEN {NOTIFY_CHANNEL}");
    within(options.query_timeout, "starting to LISTEN", async {
        client.batch_execute(&listen).await.map_err(DbError::query("starting to LISTEN"))
    })
    .await?;
    Ok(Conn { client, notifications, driver })
}

impl Worker {
    fn health(&self, f: impl FnOnce(&mut Health)) {
        self.health.send_modify(f);
    }

    /// The tickets an attempt starting now answers: every one taken so far.
    fn tickets_now(&self) -> u64 {
        self.tickets.load(Ordering::SeqCst)
    }

    /// Publishes what an attempt that started when [`Worker::tickets_now`] was `upto` came to.
    fn serve_tickets(&self, upto: u64, outcome: ReloadOutcome) {
        self.served.send_replace(Served { upto, outcome: Some(outcome) });
    }

    async fn run(mut self, first: Conn, mut requests: mpsc::Receiver<()>) {
        let mut conn = Some(first);
        let mut reload_first = false;
        let mut backoff = self.options.retry_backoff_min;
        loop {
            let upto = self.tickets_now();
            let outcome = match conn.take() {
                Some(c) => Ok(c),
                None => open(&self.database, &self.options).await,
            };
            match outcome {
                Ok(mut c) => {
                    if reload_first {
                        tracing::info!("PostgreSQL connection restored");
                    }
                    let served_since = Instant::now();
                    let Some(e) = self.serve(&mut c, &mut requests, reload_first).await else { return };
                    c.driver.abort();
                    self.failed(&e);
                    self.health(|h| h.disconnects += 1);
                    reload_first = true;
                    // A connection that lasted is a new outage, not the same one flapping.
                    if served_since.elapsed() >= self.options.retry_backoff_max {
                        backoff = self.options.retry_backoff_min;
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    // Whoever waits for a reload learns now that none can happen.
                    self.serve_tickets(upto, ReloadOutcome::Failed(e.to_string()));
                }
            }
            let delay = jittered(backoff);
            backoff = (backoff * 2).min(self.options.retry_backoff_max);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                request = requests.recv() => if request.is_none() { return },
            }
        }
    }

    fn failed(&self, e: &DbError) {
        tracing::warn!(error = %e, "PostgreSQL unavailable; keeping the last good configuration");
        let text = e.to_string();
        self.health(|h| {
            h.db_ok = false;
            h.last_error = Some(text);
        });
    }

    /// Serves one connection until it fails (the error) or the watcher is dropped (`None`).
    async fn serve(
        &mut self,
        c: &mut Conn,
        requests: &mut mpsc::Receiver<()>,
        reload_first: bool,
    ) -> Option<DbError> {
        let period = self.options.full_reload_interval;
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if reload_first && let Err(e) = self.reload(c, Trigger::Reconnect, &BTreeSet::new()).await {
            return Some(e);
        }
        loop {
            let mut tables = BTreeSet::new();
            let trigger = tokio::select! {
                table = c.notifications.recv() => match table {
                    Some(table) => {
                        tables.insert(table);
                        tokio::time::sleep(self.options.debounce).await;
                        while let Ok(table) = c.notifications.try_recv() {
                            if tables.len() < TABLES_LOGGED_MAX {
                                tables.insert(table);
                            }
                        }
                        Trigger::Notify
                    }
                    None => return Some(lost(&mut c.driver).await),
                },
                _ = timer.tick() => Trigger::Timer,
                request = requests.recv() => match request {
                    Some(()) => Trigger::Request,
                    None => return None,
                },
            };
            if let Err(e) = self.reload(c, trigger, &tables).await {
                return Some(e);
            }
        }
    }

    /// Loads, validates and publishes. Returns only the errors that mean the connection is gone.
    async fn reload(
        &mut self,
        c: &mut Conn,
        trigger: Trigger,
        tables: &BTreeSet<String>,
    ) -> Result<(), DbError> {
        let upto = self.tickets_now();
        let started = Instant::now();
        let result =
            load_within(&mut c.client, &self.base, self.options.query_timeout, "reloading the configuration")
                .await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        self.health(|h| h.reloads += 1);
        match result {
            Ok(db) => {
                self.health(|h| {
                    h.db_ok = true;
                    h.rejected = None;
                });
                if **self.config.borrow() == db {
                    tracing::debug!(?trigger, ?tables, elapsed_ms, "configuration unchanged");
                    let current = Arc::clone(&self.config.borrow());
                    self.serve_tickets(upto, ReloadOutcome::Loaded(current));
                    return Ok(());
                }
                tracing::info!(
                    ?trigger,
                    ?tables,
                    elapsed_ms,
                    customers = db.config.customers.len(),
                    vendors = db.config.vendors.len(),
                    routes = db.config.routes.len(),
                    campaigns = db.config.campaigns.len(),
                    "configuration changed; applying"
                );
                let db = Arc::new(db);
                self.config.send_replace(Arc::clone(&db));
                self.health(|h| {
                    h.applied += 1;
                    h.applied_at = Some(SystemTime::now());
                });
                self.serve_tickets(upto, ReloadOutcome::Loaded(db));
                Ok(())
            }
            Err(DbError::Invalid(invalid)) => {
                let reason = invalid.to_string();
                let repeated = self.health.borrow().rejected.as_ref() == Some(&reason);
                if !repeated {
                    tracing::warn!(
                        ?trigger,
                        ?tables,
                        problems = invalid.problems.len(),
                        "configuration change rejected; the last good configuration stays:\n{reason}"
                    );
                }
                self.health(|h| {
                    h.db_ok = true;
                    h.rejected = Some(reason);
                    h.rejections += 1;
                });
                self.serve_tickets(upto, ReloadOutcome::Refused(invalid.messages()));
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.serve_tickets(upto, ReloadOutcome::Failed(e.to_string()));
                Err(e)
            }
            Err(e) => {
                // The database answers but cannot be used (the schema is missing): not a
                // connection problem, so keep the connection and try again on the next trigger.
                self.failed(&e);
                self.serve_tickets(upto, ReloadOutcome::Failed(e.to_string()));
                Ok(())
            }
        }
    }
}

/// [`load`], with its queries bounded by `limit`. Building and validating what they read is not
/// timed: it waits for a thread and the CPU, not for PostgreSQL, and a slow build taken for a lost
/// connection would mark a healthy database down and drop its connection. The build is bounded
/// anyway: linear in the rows the queries returned within `limit`, with no IO.
async fn load_within(
    client: &mut Client,
    base: &Config,
    limit: Duration,
    what: &'static str,
) -> Result<DbConfig, DbError> {
    let tables = within(limit, what, load::fetch(client)).await?;
    load::build_checked(tables, base).await
}

/// Runs `f`, failing with [`DbError::Timeout`] after `limit`.
async fn within<T>(
    limit: Duration,
    what: &'static str,
    f: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    match tokio::time::timeout(limit, f).await {
        Ok(result) => result,
        Err(_) => {
            Err(DbError::Timeout { what, timeout_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX) })
        }
    }
}

/// Why the driver ended, once its notification channel closed.
async fn lost(driver: &mut Driver) -> DbError {
    const CONTEXT: &str = "listening for configuration changes";
    match driver.await {
        Ok(Err(source)) => DbError::Query { context: CONTEXT, source },
        Ok(Ok(())) | Err(_) => DbError::Disconnected { context: CONTEXT },
    }
}

/// `d` scaled by a random factor in [0.5, 1.0], so that nodes that lost the database together do
/// not all come back in the same millisecond.
fn jittered(d: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let permille = 500 + u32::try_from(random % 501).unwrap_or(500);
    d * permille / 1000
}
