//! The `pool_core::Manager` for tokio-postgres.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{CloseReason, ConnMeta};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls, Socket};

use crate::client::ClientWrapper;
use crate::connect::{Connect, PlainConnector, TlsConnector};
use crate::error::ConfigError;
use crate::role::{mismatch, server_role, split_target_role, TargetRole};
use crate::sniff::{READ_ONLY_ERROR, SERVER_GONE, SESSION_CHANGED};

/// The future an [`InitHook`] returns.
pub type InitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>>;

/// A per-connection initialisation step, run on every new connection before the pool hands it
/// out (and again after `DISCARD ALL`, see [`ResetMode::DiscardAll`]).
pub type InitHook = Arc<dyn for<'a> Fn(&'a tokio_postgres::Client) -> InitFuture<'a> + Send + Sync>;

/// How a used connection is cleaned before its next user gets it.
///
/// A holder can open a transaction or change session state through any method
/// (`batch_execute("BEGIN")`, `execute("SET ROLE …")`, …), and tokio-postgres exposes neither. The
/// manager reads them off the wire itself (plaintext or above TLS): every `ReadyForQuery` carries
/// the transaction status, the requests still awaiting theirs are counted (including requests a
/// cancelled future queued but the connection task has not written yet), the SQL text sent is
/// scanned for session-changing statements, and reported settings changes are seen. See the crate
/// documentation for the table of what is cleaned how. Where no sniffer could be attached, a
/// connection whose client was touched at all is cleaned as by [`ResetMode::DiscardAll`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetMode {
    /// Cleans exactly what the holder may have left behind, as the sniffer saw it (without a
    /// sniffer, e.g. through a TLS connector that fell back to plaintext: like `DiscardAll`).
    /// Default.
    ///
    /// - a transaction open or failed, or a request unanswered: `ROLLBACK` (a statement still
    ///   running is cancelled first);
    /// - session state that may have changed (the SQL text the holder sent, or a setting the
    ///   server reported changed; see the crate documentation for the list): `DISCARD ALL`,
    ///   then the statement cache and the driver's type cache are emptied and the init hook
    ///   runs again;
    /// - neither: nothing, no round trip.
    #[default]
    Auto,
    /// Transactions only: `ROLLBACK` when a transaction may be open or a request is unanswered.
    /// Session settings (`SET`), roles, temporary tables, advisory locks, `LISTEN`s and prepared
    /// statements survive for the next user: for applications that rely on that.
    Rollback,
    /// `ROLLBACK`, then `DISCARD ALL`: also drops session settings made with `SET`, temporary
    /// tables, advisory locks, `LISTEN`s and prepared statements (the statement cache is emptied
    /// and the init hook runs again). `application_name` and `search_path` from the startup
    /// packet survive. Two round trips, for every connection whose client was used.
    DiscardAll,
    /// Nothing: the holder promises never to leave a transaction open, e.g. because it only uses
    /// tokio-postgres's `Transaction` (whose drop sends `ROLLBACK` before any later query).
    Off,
}

impl std::str::FromStr for ResetMode {
    type Err = pool_core::settings::UnknownValue;

    /// Parses `auto`, `rollback`, `discard-all` (or `discard_all`) or `off`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "auto" => ResetMode::Auto,
            "rollback" => ResetMode::Rollback,
            "discard-all" | "discard_all" => ResetMode::DiscardAll,
            "off" => ResetMode::Off,
            _ => {
                return Err(pool_core::settings::UnknownValue {
                    value: s.to_owned(),
                    expected: "auto, rollback, discard-all or off",
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

/// Opens, checks and cleans tokio-postgres connections for [`pool_core::Pool`].
///
/// Build it from a URL ([`Manager::from_url`]) or a [`tokio_postgres::Config`]
/// ([`Manager::new`]), then set per-connection options with the `self`-returning setters.
///
/// | pool step | what this manager does |
/// |---|---|
/// | `connect` | connects (no TLS unless [`Manager::with_tls`]), spawns and keeps the connection task, runs the init hook |
/// | `is_broken` (check-in, checkout) | the connection task has ended, the server said it is going away, or (write pools) the session turned read-only; the last two retire the older connections too. No I/O |
/// | `needs_reset` (check-in) | a transaction or request may be open, or session state may have changed (see [`ResetMode`]). No I/O |
/// | `reset` (next checkout) | nothing, `ROLLBACK` (a running statement cancelled first) and/or `DISCARD ALL`, per [`ResetMode`] |
/// | `validate` (checkout after idling) | an empty simple query, or the role/lag check: one real round trip |
/// | `close` | drops the client so the task sends `Terminate`; aborts the task if it lingers |
///
/// Its `Debug` output never shows the password.
pub struct Manager {
    config: Config,
    connector: Box<dyn Connect>,
    init: Option<InitHook>,
    reset_mode: ResetMode,
    cache_capacity: usize,
    resets: AtomicU64,
    role: TargetRole,
    max_lag: Option<Duration>,
    /// Connections opened before this generation are retired (see `is_broken`).
    generation: AtomicU64,
    /// PgBouncer-safe mode ([`Manager::pgbouncer`]): the parameter types learned per SQL text.
    bouncer: Option<Arc<crate::bouncer::Shared>>,
}

/// A connection string taken apart: the driver's configuration and the parameters this crate
/// reads itself.
pub(crate) struct ParsedUrl {
    pub(crate) config: Config,
    pub(crate) pgbouncer: Option<bool>,
    pub(crate) role: Option<TargetRole>,
}

/// Parses a connection string as [`Manager::from_url`] does.
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, ConfigError> {
    let (url, pgbouncer) = crate::bouncer::split_pgbouncer_flag(url)?;
    let (url, role) = split_target_role(&url);
    let config = url.parse::<Config>().map_err(ConfigError::Url)?;
    Ok(ParsedUrl {
        config,
        pgbouncer,
        role,
    })
}

impl Manager {
    /// A manager for `config`, without TLS.
    ///
    /// It opens the sockets itself (TCP `host`/`hostaddr`/`port` lists tried in order, Unix
    /// socket directories, `connect_timeout`, `tcp_user_timeout`, keepalives,
    /// `load_balance_hosts`, `target_session_attrs`, as `Config::connect` does) and hands them
    /// to `Config::connect_raw`, so that it can follow the session on the wire: tokio-postgres
    /// offers no hook to wrap a plaintext stream it opened itself (its TLS hook, used by
    /// [`Manager::with_tls`], only sees streams it upgrades), so this is the one place where
    /// the manager re-does part of the driver's connect.
    ///
    /// Because the driver did not open the socket, `Client::cancel_token().cancel_query(NoTls)`
    /// does not know the server's address; use [`ClientWrapper::cancel_query`] instead.
    pub fn new(config: Config) -> Self {
        Self::with_connector(config, Box::new(PlainConnector))
    }

    fn with_connector(config: Config, connector: Box<dyn Connect>) -> Self {
        Manager {
            role: TargetRole::of(&config),
            max_lag: None,
            generation: AtomicU64::new(0),
            config,
            connector,
            init: None,
            reset_mode: ResetMode::default(),
            cache_capacity: 256,
            resets: AtomicU64::new(0),
            bouncer: None,
        }
    }

    /// A manager for the connection string `url`, without TLS. The string is parsed by
    /// tokio-postgres (`"…".parse::<tokio_postgres::Config>()`): URLs and key/value strings both work.
    ///
    /// A `pgbouncer=true` parameter (`postgres://…/db?pgbouncer=true`, or a `pgbouncer=true`
    /// key/value pair) is taken off the string before the driver parses it and turns on
    /// [`Manager::pgbouncer`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Url`] when tokio-postgres rejects the string. The error never contains the
    /// password. [`ConfigError::PgBouncerFlag`] when `pgbouncer` is not a boolean,
    /// [`ConfigError::PgBouncerStartupOptions`] when it is on and the string has `options`.
    ///
    /// Besides the driver's values, `target_session_attrs` may be `primary`, `standby` or
    /// `prefer-standby` (see [`TargetRole`]).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Self::from_parsed(parse_url(url)?, Self::new)
    }

    /// A manager made by `make` from a parsed connection string, with its `pgbouncer` flag
    /// and role applied.
    pub(crate) fn from_parsed(
        parsed: ParsedUrl,
        make: impl FnOnce(Config) -> Manager,
    ) -> Result<Self, ConfigError> {
        let ParsedUrl {
            config,
            pgbouncer,
            role,
        } = parsed;
        let pgbouncer = pgbouncer.unwrap_or(false);
        if pgbouncer && config.get_options().is_some_and(|o| !o.trim().is_empty()) {
            return Err(ConfigError::PgBouncerStartupOptions);
        }
        let manager = make(config).pgbouncer(pgbouncer);
        Ok(match role {
            Some(role) => manager.target_role(role),
            None => manager,
        })
    }

    /// Which server every connection must reach, among the configured hosts; re-checked
    /// whenever a connection is validated (after `validate_after_idle`), so that a connection
    /// to a server that changed role (a demoted primary, a promoted standby) is replaced.
    /// Default: the connection string's `target_session_attrs`, else [`TargetRole::Any`].
    pub fn target_role(mut self, role: TargetRole) -> Self {
        self.role = role;
        self.config.target_session_attrs(role.driver_attrs());
        self
    }

    /// The most a standby's replay may lag behind its primary for its connections to be used:
    /// checked on connect and whenever a connection is validated; a connection over the bound
    /// fails its check and is replaced (so a read through [`pool_core::ReadWrite`] falls back to
    /// another member). Lag counts only while the standby has received WAL it has not replayed,
    /// so an idle primary does not make its standbys look late. Default: no bound.
    pub fn max_replication_lag(mut self, lag: Duration) -> Self {
        self.max_lag = Some(lag);
        self
    }

    /// Whether connections need a role or lag check on connect and validation.
    fn checks_role(&self) -> bool {
        matches!(self.role, TargetRole::ReadWrite | TargetRole::ReadOnly) || self.max_lag.is_some()
    }

    /// Fails when `client`'s server does not match [`Manager::target_role`] or lags more than
    /// [`Manager::max_replication_lag`].
    async fn check_role(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        let server = server_role(client).await?;
        match mismatch(self.role, self.max_lag, server) {
            None => Ok(()),
            Some(why) => Err(crate::connect::io_error(std::io::Error::other(why)).await),
        }
    }

    /// A manager for `config` that connects through the TLS connector `tls` (e.g.
    /// `tokio_postgres_rustls::MakeRustlsConnect` with the `rustls` feature, or
    /// `postgres-native-tls`).
    ///
    /// tokio-postgres connects (`Config::connect`: hosts, DNS, keepalives,
    /// `target_session_attrs`); the session is followed above the TLS stream exactly as a
    /// plaintext one, so a clean TLS connection costs no round trip at checkout either, and
    /// [`ClientWrapper::cancel_query`] cancels through the same connector.
    /// `with_tls(config, NoTls)` is the same as [`Manager::new`].
    pub fn with_tls<T>(config: Config, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        if (&tls as &dyn std::any::Any).is::<NoTls>() {
            return Self::new(config);
        }
        Self::with_connector(config, Box::new(TlsConnector(tls)))
    }

    /// A manager for `config` that connects with rustls, configured by `tls`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn with_rustls(config: Config, tls: rustls::ClientConfig) -> Self {
        Self::with_tls(config, tokio_postgres_rustls::MakeRustlsConnect::new(tls))
    }

    /// Sets the `application_name` every connection reports (in `pg_stat_activity`), sent in the
    /// startup packet. Default: the one in the URL/config, if any.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.config.application_name(name.into());
        self
    }

    /// Sets the schema search path of every connection, sent in the startup packet as
    /// `-c search_path=…` (so it survives `DISCARD ALL`). Each schema is quoted as an identifier:
    /// pass names as they are, e.g. `["app", "public"]`. Default: the server's.
    ///
    /// Not behind PgBouncer ([`Manager::pgbouncer`]): PgBouncer refuses startup `options`
    /// (SQLSTATE 08P01) and a session `SET` would leak between its clients. Set it on the role
    /// or database (`ALTER ROLE app SET search_path = app, public`) or in PgBouncer's
    /// `connect_query`, or qualify names with their schema.
    pub fn search_path<I, S>(mut self, schemas: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = schemas
            .into_iter()
            .map(|s| format!("\"{}\"", s.as_ref().replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(",");
        let mut option = String::from("-c search_path=");
        for c in list.chars() {
            if c == ' ' || c == '\\' {
                option.push('\\');
            }
            option.push(c);
        }
        let options = match self.config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {option}"),
            _ => option,
        };
        self.config.options(options);
        self
    }

    /// Runs `hook` on every new connection before it is handed out (e.g. `SET` statements,
    /// `LOAD`, registering types). A failing hook fails the connect. Default: none.
    ///
    /// ```no_run
    /// let _manager = pool_postgres::Manager::from_url("postgres://postgres@localhost/test")?
    ///     .init(|client| Box::pin(async move { client.batch_execute("SET TIME ZONE 'UTC'").await }));
    /// # Ok::<(), pool_postgres::ConfigError>(())
    /// ```
    pub fn init<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a tokio_postgres::Client) -> InitFuture<'a> + Send + Sync + 'static,
    {
        self.init = Some(Arc::new(hook));
        self
    }

    /// How a used connection is cleaned before its next user. Default: [`ResetMode::Auto`].
    pub fn reset_mode(mut self, mode: ResetMode) -> Self {
        self.reset_mode = mode;
        self
    }

    /// The most statements each connection's [`ClientWrapper::prepare_cached`] keeps; 0 turns
    /// the cache off. Turning it off does not make named statements safe behind PgBouncer in
    /// transaction mode: use [`Manager::pgbouncer`] (where this is the number of statement
    /// handles each connection keeps, at least 1). Default: 256.
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// PgBouncer-safe mode, for a server reached through PgBouncer in transaction (or statement)
    /// pooling mode. Also turned on by `pgbouncer=true` in the URL ([`Manager::from_url`]).
    /// Default: off.
    ///
    /// In this mode no query method of [`ClientWrapper`] binds a named statement: `query`,
    /// `query_one`, `query_opt`, `query_raw`, the `query*_scalar` methods, `execute`,
    /// `execute_raw`, `prepare` and
    /// [`prepare_cached`](ClientWrapper::prepare_cached) send the unnamed statement with the
    /// parameter types the server reported for the SQL text (learned once per pool inside an
    /// explicit transaction), one round trip per query like the driver's `query_typed`. See
    /// the crate documentation for what raw driver access (`Deref`, `Transaction`) does behind
    /// PgBouncer, and why [`Manager::search_path`] cannot be used.
    ///
    /// The clean-session guarantee is unchanged: PgBouncer forwards the server's
    /// `ReadyForQuery` status, so a connection returned inside a transaction is rolled back. But
    /// session state (`SET` without `LOCAL`, temporary tables, advisory locks, `LISTEN`) lives on
    /// whatever server connection PgBouncer picked and leaks to its other clients: use
    /// `SET LOCAL` inside a transaction.
    pub fn pgbouncer(mut self, on: bool) -> Self {
        self.bouncer = on.then(|| Arc::new(crate::bouncer::Shared::default()));
        self
    }

    /// Whether PgBouncer-safe mode is on ([`Manager::pgbouncer`]).
    pub fn is_pgbouncer(&self) -> bool {
        self.bouncer.is_some()
    }

    /// How many times this manager has cleaned a connection before handing it out again
    /// ([`ResetMode`]): a measure of how often holders return connections dirty.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// The driver configuration connections are opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `ROLLBACK` on a connection whose last holder left a request unanswered: the statement
    /// still running is cancelled first (a cancel request on a separate socket), and again every
    /// 250 ms while one of the holder's requests is still ahead of the `ROLLBACK` (a cancel that
    /// reached the server before the statement started is lost). The caller bounds the whole.
    async fn rollback_cancelling(&self, conn: &ClientWrapper) -> Result<(), tokio_postgres::Error> {
        let send_cancel = || {
            let cancel = conn.cancel_query();
            async move {
                if let Err(error) = cancel.await {
                    tracing::debug!(target: "pool_postgres", %error, "cancel request failed");
                }
            }
        };
        send_cancel().await;
        if !conn.cancel_is_confirmed() {
            // The driver sent the cancel without waiting for the server to act on it: let the
            // holder's requests finish (cancelled or not), then give a late signal time to
            // arrive while the session is idle (where the server ignores it) rather than during
            // the ROLLBACK or the next user's first statement.
            while conn.sniffed().is_some_and(|s| s.outstanding() > 0) && !conn.raw().is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rollback = conn.raw().batch_execute("ROLLBACK");
        tokio::pin!(rollback);
        loop {
            tokio::select! {
                done = &mut rollback => return done,
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    // Ahead of the ROLLBACK (which counts itself once written): still the
                    // holder's.
                    if conn.sniffed().is_some_and(|s| s.outstanding() > 1) {
                        send_cancel().await;
                    }
                }
            }
        }
    }

    async fn run_init(&self, client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
        match &self.init {
            Some(hook) => hook(client).await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Manager")
            .field("config", &self.config)
            .field("init", &self.init.as_ref().map(|_| "<hook>"))
            .field("reset_mode", &self.reset_mode)
            .field("statement_cache_capacity", &self.cache_capacity)
            .field("target_role", &self.role)
            .field("max_replication_lag", &self.max_lag)
            .field("pgbouncer", &self.bouncer.is_some())
            .finish_non_exhaustive()
    }
}

impl pool_core::Manager for Manager {
    type Connection = ClientWrapper;
    type Error = tokio_postgres::Error;

    fn connect(&self) -> impl Future<Output = Result<ClientWrapper, tokio_postgres::Error>> + Send {
        let connecting = self.connector.connect(&self.config);
        async move {
            let connected = match connecting.await {
                Ok(connected) => connected,
                // No read-only host among them: any will do.
                Err(_) if self.role == TargetRole::PreferStandby => {
                    let mut any = self.config.clone();
                    any.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::Any);
                    self.connector.connect(&any).await?
                }
                Err(e) => return Err(e),
            };
            let mut conn = ClientWrapper::new(connected, self.cache_capacity);
            conn.generation = self.generation.load(Ordering::Acquire);
            if let Some(shared) = &self.bouncer {
                conn.bouncer = Some(crate::bouncer::Bouncer::new(
                    Arc::clone(shared),
                    self.cache_capacity,
                ));
            }
            if self.max_lag.is_some() {
                self.check_role(conn.raw()).await?;
            }
            // If the hook fails, dropping `conn` aborts the connection task.
            self.run_init(conn.raw()).await?;
            if let Some(state) = conn.sniffed() {
                // What the init hook set is the session's starting point.
                state.clear_flags(SESSION_CHANGED);
            }
            Ok(conn)
        }
    }

    fn is_broken(&self, conn: &mut ClientWrapper, _meta: &ConnMeta) -> bool {
        if conn.raw().is_closed() || conn.generation < self.generation.load(Ordering::Acquire) {
            return true;
        }
        let flags = conn.sniffed().map_or(0, |s| s.flags());
        let wrong_role = flags & SERVER_GONE != 0
            || (self.role == TargetRole::ReadWrite && flags & READ_ONLY_ERROR != 0);
        if wrong_role {
            // The server is going away or is no longer the primary: the other connections to
            // it are no better. Retire every connection opened so far, so the next gets
            // connect anew and `target_session_attrs` finds the right server.
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            tracing::info!(
                target: "pool_postgres",
                generation,
                server_gone = flags & SERVER_GONE != 0,
                "the server is in the wrong role or going away: retiring its connections"
            );
        }
        wrong_role
    }

    fn needs_reset(&self, conn: &mut ClientWrapper) -> bool {
        let sniffed = conn.sniffed().map(|s| (s.is_clean(), s.flags()));
        match (self.reset_mode, sniffed) {
            (ResetMode::Off, _) => false,
            (ResetMode::DiscardAll, _) | (_, None) => conn.was_used(),
            // Dirty when a request may be unwritten or unanswered, or the session is not idle
            // (the touched flag is not needed: an untouched client sent nothing).
            (ResetMode::Rollback, Some((clean, _))) => !clean,
            (_, Some((clean, flags))) => !clean || flags & SESSION_CHANGED != 0,
        }
    }

    async fn reset(&self, conn: &mut ClientWrapper) -> Result<(), tokio_postgres::Error> {
        // What to do: (cancel a running statement, roll back, discard session state).
        let plan = match (self.reset_mode, conn.sniffed()) {
            (ResetMode::Auto | ResetMode::Rollback, Some(state)) => {
                // Check-in could not prove the session clean, often only because the connection
                // task had not yet written what the last holder queued (or had not finished its
                // poll). Let it catch up (no I/O), then look again.
                state.settle().await;
                if state.outstanding() > 0 {
                    // Most often an answered error whose `ReadyForQuery` is a moment behind:
                    // give it that moment before treating the request as still running.
                    state.answered_within(Duration::from_millis(5)).await;
                }
                let session =
                    self.reset_mode == ResetMode::Auto && state.flags() & SESSION_CHANGED != 0;
                // A request of the last holder still unanswered: its statement may still run
                // on the server, and a ROLLBACK would wait behind it.
                // Settled: everything the holder queued is written, so the wire state is the
                // whole truth (the task may be polling again by now, for its own reasons).
                (state.outstanding() > 0, !state.is_idle_on_wire(), session)
            }
            (ResetMode::Rollback, None) => (false, true, false),
            _ => (false, true, true),
        };
        let (cancel, rollback, discard) = plan;
        // Behind PgBouncer a session command reaches whichever server the next statement
        // lands on: there is no session of ours to discard.
        let discard = discard && self.bouncer.is_none();
        if !rollback && !discard {
            conn.set_clean();
            return Ok(());
        }
        self.resets.fetch_add(1, Ordering::Relaxed);
        if cancel {
            self.rollback_cancelling(conn).await?;
        } else if rollback {
            conn.raw().batch_execute("ROLLBACK").await?;
        }
        if discard {
            conn.raw().batch_execute("DISCARD ALL").await?;
            conn.clear_statement_cache();
            // DISCARD ALL deallocated the driver's cached type-lookup statements too.
            conn.raw().clear_type_cache();
            self.run_init(conn.raw()).await?;
        }
        if let Some(state) = conn.sniffed() {
            // The init hook's own settings are the session's starting point.
            state.clear_flags(SESSION_CHANGED);
        }
        conn.set_clean();
        Ok(())
    }

    async fn validate(
        &self,
        conn: &mut ClientWrapper,
        _meta: &ConnMeta,
    ) -> Result<(), tokio_postgres::Error> {
        if self.checks_role() {
            // One round trip either way: the role query also proves the connection alive.
            return self.check_role(conn.raw()).await;
        }
        conn.raw().simple_query("").await?;
        Ok(())
    }

    fn is_retryable(&self, err: &tokio_postgres::Error) -> bool {
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            // A server refusing a session says why. Transient: the connection broke (class
            // 08), too many connections or out of resources (53), the server is starting or
            // shutting down (57), an OS-level error (58), an internal error (XX). Everything
            // else answers what the startup packet asked for, and retrying sends the same
            // again: authorization (28: wrong password, unknown role, pg_hba), an unknown
            // database (3D000), an unknown setting in `options` (42704), a startup parameter
            // PgBouncer refuses (08P01 "unsupported startup parameter").
            if *code == SqlState::PROTOCOL_VIOLATION {
                return !db.message().contains("startup parameter");
            }
            let class = &code.code()[..2];
            return matches!(class, "08" | "53" | "57" | "58" | "XX");
        }
        if err.code().is_some() {
            return true;
        }
        // tokio-postgres keeps its error kind private. Final: client-side authentication errors
        // ("password missing"), invalid configurations, a TLS handshake that this manager
        // cannot do (`sslmode=require` without a TLS connector), and no host of the right role
        // (`target_session_attrs`: the pool fails fast and the next request looks again).
        // I/O errors and timeouts are not.
        let message = err.to_string();
        let wrong_role = has_io_kind(err, std::io::ErrorKind::PermissionDenied);
        !(message.starts_with("authentication error")
            || message.starts_with("invalid configuration")
            || (message.starts_with("error performing TLS handshake") && !self.connector.tls())
            || wrong_role)
    }

    fn close(&self, mut conn: ClientWrapper, reason: CloseReason) {
        tracing::trace!(target: "pool_postgres", %reason, "closing a PostgreSQL connection");
        let task = conn.take_task();
        // Dropping the client closes its request channel: the task then sends `Terminate` and
        // ends by itself. Give it a moment, then abort it.
        drop(conn);
        if let Some(mut task) = task {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        if tokio::time::timeout(Duration::from_secs(5), &mut task)
                            .await
                            .is_err()
                        {
                            task.abort();
                        }
                    });
                }
                Err(_) => task.abort(),
            }
        }
    }
}

/// Whether an I/O error of `kind` is in `err`'s source chain.
fn has_io_kind(err: &tokio_postgres::Error, kind: std::io::ErrorKind) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == kind {
                return true;
            }
        }
        source = e.source();
    }
    false
}
