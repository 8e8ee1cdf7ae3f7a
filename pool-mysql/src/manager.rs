//! The `pool_core::Manager` for mysql_async.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use pool_core::{CloseReason, ConnMeta};

use crate::conn::ConnWrapper;
use crate::probe::Snapshot;

/// Connects of this process take turns, so that the one socket that appears during a
/// `Conn::new` is that connection's (see `probe.rs`).
static CONNECTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a connect waits for its turn before it goes on without (and likely without a
/// probe).
const CONNECT_TURN: Duration = Duration::from_millis(250);
use crate::error::ConfigError;

/// The future an [`InitHook`] returns.
pub type InitFuture<'a> = Pin<Box<dyn Future<Output = Result<(), mysql_async::Error>> + Send + 'a>>;

/// A per-connection initialisation step, run on every new connection before the pool hands it
/// out, after `sql_mode`/`time_zone` are set (and again after [`ResetMode::ResetConnection`]).
pub type InitHook = Arc<dyn for<'a> Fn(&'a mut Conn) -> InitFuture<'a> + Send + Sync>;

/// How a connection its holder may have left dirty is cleaned before its next user gets it.
///
/// No I/O decides whether a connection needs cleaning: the [`ConnWrapper`] follows what its
/// holder did (see [its documentation](ConnWrapper#what-the-pool-cleans)). A connection whose
/// holder ran only statements that leave the session alone, through the wrapper's own
/// [`Queryable`] methods, ending outside a transaction with autocommit on, costs no extra round
/// trip.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetMode {
    /// The next user gets a clean session. `COM_RESET_CONNECTION` ([`Conn::reset`], then
    /// `sql_mode`/`time_zone`, the init hook and, if the holder may have run `USE`, `USE <the
    /// URL's database>`) when the holder may have changed session state: a statement that is
    /// not known to leave it alone (`SET`, `USE`, `CALL`, `DO`, `PREPARE`, `LOCK TABLES`, DDL, a
    /// text with `@`, `GET_LOCK` or `TEMPORARY`, several statements in one text), any
    /// `exec*` call (the wrapper cannot see a prepared statement's text), a mutable borrow of
    /// the raw `Conn`, a call cancelled or failed. It clears user variables, session variables,
    /// temporary tables, named locks, `LOCK TABLES`, SQL prepared statements and mysql_async's
    /// statement cache, and rolls back. Else `ROLLBACK` (and `SET autocommit = 1`) when the
    /// holder may have left a transaction open or autocommit off, as in [`ResetMode::Rollback`].
    /// Falls back to `Rollback` on servers without `COM_RESET_CONNECTION` (MySQL < 5.7.3,
    /// MariaDB < 10.2.4). Default.
    #[default]
    Session,
    /// `ROLLBACK` (mysql_async first reads and drops unread results), and `SET autocommit=1` if
    /// the holder turned autocommit off, for a connection left (possibly) inside a transaction,
    /// with autocommit off or with a result unread. One round trip, two in the rare second
    /// case. Session variables, temporary tables and named locks survive: for applications
    /// that never change them.
    Rollback,
    /// `COM_RESET_CONNECTION` as in [`ResetMode::Session`] for every connection its holder used
    /// at all.
    ResetConnection,
    /// Nothing: the holder promises never to leave a transaction open or change the session
    /// (mysql_async's own `Transaction` already rolls back on drop before the next command).
    Off,
}

impl std::str::FromStr for ResetMode {
    type Err = pool_core::settings::UnknownValue;

    /// Parses `session`, `rollback`, `reset-connection` (or `reset_connection`) or `off`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "session" => ResetMode::Session,
            "rollback" => ResetMode::Rollback,
            "reset-connection" | "reset_connection" => ResetMode::ResetConnection,
            "off" => ResetMode::Off,
            _ => {
                return Err(pool_core::settings::UnknownValue {
                    value: s.to_owned(),
                    expected: "session, rollback, reset-connection or off",
                })
            }
        })
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ResetMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pool_core::settings::deserialize_from_str(d)
    }
}

/// Opens, checks and cleans raw [`mysql_async::Conn`]s for [`pool_core::Pool`].
///
/// | pool step | what this manager does |
/// |---|---|
/// | `connect` | [`Conn::new`], then `SET SESSION sql_mode = …, time_zone = …` (one statement) and the init hook |
/// | `is_broken` (check-in, checkout) | [`Conn::is_disconnected`] (an I/O error or a cancelled command broke it), or the dead-peer probe: one non-blocking `recv(MSG_PEEK)` on a duplicate of the socket sees the server's close (`KILL`, `wait_timeout`, shutdown) or a network reset. No round trip |
/// | `needs_reset` (check-in) | per [`ResetMode`], from what the holder did. No I/O |
/// | `reset` (next checkout) | `COM_RESET_CONNECTION` or `ROLLBACK`, per [`ResetMode`]; `COM_PING` for a connection without a probe |
/// | `validate` (checkout after idling) | `COM_PING` |
/// | a call cancelled while the server ran it | `KILL QUERY <id>` from a side connection, before the reset or at close (mysql_async marks such a connection broken), so that neither the next user nor the server waits for it |
/// | `close` | `disconnect()` (`COM_QUIT`) in a spawned task, bounded to 5 s, off the caller's path |
///
/// # The dead-peer probe
///
/// mysql_async keeps its socket private, so on Linux the manager keeps a duplicate of it, taken
/// when the connection is opened (the one socket that appeared during `Conn::new`, duplicated
/// with `pidfd_getfd(2)`; connects of this process's managers take turns for up to 250 ms so
/// that the new socket can be told apart). It works over TCP and over the Unix socket that
/// `prefer_socket` moves loopback URLs to. A connection whose socket could not be told apart,
/// or on another platform, gets a `COM_PING` at each checkout after use instead (correct, one
/// round trip).
///
/// Its `Debug` output never shows the password.
pub struct Manager {
    opts: Opts,
    sql_mode: Option<String>,
    time_zone: Option<String>,
    init: Option<InitHook>,
    reset_mode: ResetMode,
}

impl Manager {
    /// A manager for `opts` (an [`Opts`] or an [`mysql_async::OptsBuilder`]).
    pub fn new(opts: impl Into<Opts>) -> Self {
        Manager {
            opts: opts.into(),
            sql_mode: None,
            time_zone: None,
            init: None,
            reset_mode: ResetMode::default(),
        }
    }

    /// A manager for `url`, parsed by [`Opts::from_url`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Url`] when mysql_async rejects the URL. The error never contains the password.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Opts::from_url(url).map(Self::new).map_err(ConfigError::Url)
    }

    /// Sets `sql_mode` on every connection (`SET SESSION sql_mode = '…'`), e.g.
    /// `"STRICT_ALL_TABLES,NO_ZERO_DATE"`. Default: the server's.
    pub fn sql_mode(mut self, mode: impl Into<String>) -> Self {
        self.sql_mode = Some(mode.into());
        self
    }

    /// Sets `time_zone` on every connection (`SET SESSION time_zone = '…'`), e.g. `"+00:00"`.
    /// Default: the server's.
    pub fn time_zone(mut self, zone: impl Into<String>) -> Self {
        self.time_zone = Some(zone.into());
        self
    }

    /// Runs `hook` on every new connection before it is handed out. A failing hook fails the
    /// connect. Default: none.
    ///
    /// ```no_run
    /// use pool_mysql::mysql_async::prelude::*;
    ///
    /// let _manager = pool_mysql::Manager::from_url("mysql://root@localhost/test")?
    ///     .init(|conn| Box::pin(async move { conn.query_drop("SET SESSION max_execution_time = 5000").await }));
    /// # Ok::<(), pool_mysql::ConfigError>(())
    /// ```
    pub fn init<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut Conn) -> InitFuture<'a> + Send + Sync + 'static,
    {
        self.init = Some(Arc::new(hook));
        self
    }

    /// How a used connection is cleaned before its next user. Default: [`ResetMode::Session`].
    pub fn reset_mode(mut self, mode: ResetMode) -> Self {
        self.reset_mode = mode;
        self
    }

    /// The driver options connections are opened with (their `Debug` shows the password: do not
    /// log them).
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    async fn run_init(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let mut sets = Vec::new();
        if let Some(mode) = &self.sql_mode {
            sets.push(format!("sql_mode = {}", quote(mode)));
        }
        if let Some(zone) = &self.time_zone {
            sets.push(format!("time_zone = {}", quote(zone)));
        }
        if !sets.is_empty() {
            conn.query_drop(format!("SET SESSION {}", sets.join(", ")))
                .await?;
        }
        if let Some(hook) = &self.init {
            hook(conn).await?;
        }
        Ok(())
    }
}

/// A single-quoted SQL string literal (backslashes and quotes escaped; safe under
/// `NO_BACKSLASH_ESCAPES` too, since no backslash is left alone before a quote).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // mysql_async's `Opts` Debug prints the password: list the harmless fields only.
        f.debug_struct("Manager")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .field("socket", &self.opts.socket())
            .field("user", &self.opts.user())
            .field("password", &self.opts.pass().map(|_| "<redacted>"))
            .field("db_name", &self.opts.db_name())
            .field("sql_mode", &self.sql_mode)
            .field("time_zone", &self.time_zone)
            .field("init", &self.init.as_ref().map(|_| "<hook>"))
            .field("reset_mode", &self.reset_mode)
            .finish_non_exhaustive()
    }
}

impl pool_core::Manager for Manager {
    type Connection = ConnWrapper;
    type Error = mysql_async::Error;

    async fn connect(&self) -> Result<ConnWrapper, mysql_async::Error> {
        let (mut conn, probe) = {
            let _turn = tokio::time::timeout(CONNECT_TURN, CONNECTING.lock())
                .await
                .ok();
            let before = Snapshot::take();
            let conn = Conn::new(self.opts.clone()).await?;
            let probe = before
                .as_ref()
                .and_then(|b| Snapshot::adopt_new(b, self.opts.tcp_port()));
            (conn, probe)
        };
        if probe.is_none() {
            tracing::debug!(
                target: "pool_mysql",
                "no dead-peer probe for a new connection: it is pinged at checkout after use"
            );
        }
        if let Err(e) = self.run_init(&mut conn).await {
            drop(probe);
            spawn_disconnect(conn);
            return Err(e);
        }
        Ok(ConnWrapper::new(conn, probe))
    }

    fn is_broken(&self, conn: &mut ConnWrapper, _meta: &ConnMeta) -> bool {
        conn.raw().is_disconnected() || conn.peer_gone() == Some(true)
    }

    fn needs_reset(&self, conn: &mut ConnWrapper) -> bool {
        let clean = match self.reset_mode {
            ResetMode::Session => !conn.may_be_in_transaction() && !conn.may_have_changed_session(),
            ResetMode::Rollback => !conn.may_be_in_transaction(),
            ResetMode::ResetConnection => !conn.was_used(),
            ResetMode::Off => true,
        };
        !clean || !conn.has_probe()
    }

    async fn reset(&self, conn: &mut ConnWrapper) -> Result<(), mysql_async::Error> {
        let full = match self.reset_mode {
            ResetMode::Session => conn.may_have_changed_session(),
            ResetMode::ResetConnection => conn.was_used(),
            ResetMode::Rollback | ResetMode::Off => false,
        };
        let rollback = match self.reset_mode {
            ResetMode::Session | ResetMode::Rollback | ResetMode::ResetConnection => {
                conn.may_be_in_transaction()
            }
            ResetMode::Off => false,
        };
        let database = conn.may_have_changed_database();
        if conn.was_cancelled() {
            // The statement may still run on the server, and the reset would wait behind it.
            kill_query(self.opts.clone(), conn.raw().id()).await;
        }
        let raw = conn.raw_mut();
        let reset_done = full && raw.reset().await?;
        if reset_done {
            if database {
                if let Some(db) = self.opts.db_name() {
                    raw.query_drop(format!("USE `{}`", db.replace('`', "``")))
                        .await?;
                }
            }
            self.run_init(raw).await?;
        } else if full || rollback {
            raw.query_drop("ROLLBACK").await?;
            let autocommit = raw.last_ok_packet().is_none_or(|ok| {
                ok.status_flags()
                    .contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)
            });
            if !autocommit {
                raw.query_drop("SET autocommit = 1").await?;
            }
        } else {
            // Only here because the connection has no dead-peer probe.
            raw.ping().await?;
        }
        conn.set_clean();
        Ok(())
    }

    async fn validate(
        &self,
        conn: &mut ConnWrapper,
        _meta: &ConnMeta,
    ) -> Result<(), mysql_async::Error> {
        conn.raw_mut().ping().await
    }

    fn is_retryable(&self, err: &mysql_async::Error) -> bool {
        use mysql_async::DriverError as D;
        match err {
            // 1044/1045/1698: access denied; 1049: unknown database; 1130: host not allowed;
            // 1251: auth protocol; 1862: password expired; 3118: account locked; 3159: secure
            // transport required.
            mysql_async::Error::Server(e) => !matches!(
                e.code,
                1044 | 1045 | 1049 | 1130 | 1251 | 1698 | 1862 | 3118 | 3159
            ),
            mysql_async::Error::Url(_) => false,
            // TLS asked for but the server has none, or an auth method or transport the client
            // will not use: no retry can change that.
            mysql_async::Error::Driver(
                D::NoClientSslFlagFromServer
                | D::UnknownAuthPlugin { .. }
                | D::MysqlOldPasswordDisabled
                | D::CleartextPluginDisabled
                | D::NamedPipesDisabled
                | D::NoKeyFound,
            ) => false,
            _ => true,
        }
    }

    fn close(&self, conn: ConnWrapper, reason: CloseReason) {
        tracing::trace!(target: "pool_mysql", %reason, "closing a MySQL connection");
        if conn.was_cancelled() {
            // A cancelled call broke the connection (mysql_async marks it disconnected): stop its
            // statement on the server too, rather than let it run for a client that is gone.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(kill_query(self.opts.clone(), conn.raw().id()));
            }
        }
        spawn_disconnect(conn.into_inner());
    }
}

/// `KILL QUERY <id>` from a side connection (opened and closed here), bounded to 5 s; failures
/// (the statement or session already gone, the server unreachable) are only logged.
async fn kill_query(opts: Opts, id: u32) {
    let kill = async {
        let mut side = Conn::new(opts).await?;
        let killed = side.query_drop(format!("KILL QUERY {id}")).await;
        side.disconnect().await?;
        killed
    };
    match tokio::time::timeout(Duration::from_secs(5), kill).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(target: "pool_mysql", error = %error, id, "KILL QUERY failed");
        }
        Err(_) => tracing::debug!(target: "pool_mysql", id, "KILL QUERY timed out"),
    }
}

/// Says goodbye (`COM_QUIT`) in a spawned task when a runtime is present, bounded in time; else
/// drops the connection (closing the socket).
fn spawn_disconnect(conn: Conn) {
    if conn.is_disconnected() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                match tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(
                        target: "pool_mysql",
                        error = %error,
                        "MySQL disconnect failed"
                    ),
                    Err(_) => tracing::debug!(target: "pool_mysql", "MySQL disconnect timed out"),
                }
            });
        }
        Err(_) => drop(conn),
    }
}
