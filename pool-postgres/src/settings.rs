//! The whole configuration of a PostgreSQL pool as data: from a file (serde, feature
//! `serde`) or from environment variables.

use std::fmt;
use std::time::Duration;

use pool_core::settings::{apply_backend_vars, redact_url};
use pool_core::{Builder, Config, EnvError};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use crate::manager::parse_url;
use crate::{ConfigError, Manager, Pool, ResetMode, TargetRole};

/// Everything a PostgreSQL pool is built from, as plain data: the server (a connection
/// string, or its parts, or both: a URL without the password and the password on its own),
/// the [`Manager`]'s options and the pool's [`Config`].
///
/// Read it from a file with serde (feature `serde`; unknown keys are errors, durations are
/// written `"30s"`, optional ones may be `"off"`) or from the environment
/// ([`Settings::from_env`]), then [`Settings::build`] the pool. `Debug` never shows a
/// password (neither the `password` field nor one inside `url`).
///
/// In a file, the pool's knobs are a `pool` table:
///
/// ```toml
/// url = "postgres://app@127.0.0.1:5432/app"
/// password = "from a secret store"
/// application_name = "orders"
/// search_path = ["orders", "public"]
/// reset_mode = "auto"            # auto, rollback, discard-all, off
/// statement_cache_capacity = 256
/// pgbouncer = false
/// target_role = "any"            # any, read-write, read-only, prefer-standby
/// max_replication_lag = "off"
///
/// [pool]
/// max_size = 16
/// wait_timeout = "5s"
/// idle_timeout = "10m"
/// ```
///
/// TLS is data with the `rustls` feature (`tls_ca_file`); any other connector is given in
/// code ([`Settings::manager_with_tls`], [`Settings::build_with_tls`]). An init hook is set on
/// the [`Manager`] in code ([`Manager::init`], then [`Builder::from_config`] with
/// [`Settings::pool`]).
///
/// ```
/// let settings = pool_postgres::Settings::from_vars(
///     "APP_DB_",
///     [
///         ("APP_DB_URL", "postgres://app:secret@127.0.0.1:5432/app"),
///         ("APP_DB_APPLICATION_NAME", "orders"),
///         ("APP_DB_MAX_SIZE", "16"),
///         ("APP_DB_IDLE_TIMEOUT", "off"),
///     ],
/// )?;
/// assert_eq!(settings.pool.max_size, 16);
/// assert!(!format!("{settings:?}").contains("secret"));
/// let pool = settings.build()?; // opens nothing yet
/// assert_eq!(pool.status().max_size, 16);
/// # Ok::<(), pool_postgres::ConfigError>(())
/// ```
#[derive(Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Settings {
    /// A connection string as [`Manager::from_url`] takes it (URL or key/value), with its
    /// `pgbouncer` and `target_session_attrs` parameters. Env: `{prefix}URL`.
    pub url: Option<String>,
    /// The server's host name, IP address or Unix socket directory, when `url` names none.
    /// Env: `{prefix}HOST`.
    pub host: Option<String>,
    /// The server's port, when `url` names none. Default 5432. Env: `{prefix}PORT`.
    pub port: Option<u16>,
    /// The user; overrides the URL's. Env: `{prefix}USER`.
    pub user: Option<String>,
    /// The password; overrides the URL's (so the URL can live in a file and the password in a
    /// secret). Never shown by `Debug`. Env: `{prefix}PASSWORD`.
    pub password: Option<String>,
    /// The database; overrides the URL's. Env: `{prefix}DBNAME`.
    pub dbname: Option<String>,
    /// [`Manager::application_name`]. Env: `{prefix}APPLICATION_NAME`.
    pub application_name: Option<String>,
    /// [`Manager::search_path`], empty for the server's. Env: `{prefix}SEARCH_PATH`,
    /// comma-separated.
    pub search_path: Vec<String>,
    /// [`Manager::reset_mode`]: `"auto"` (default), `"rollback"`, `"discard-all"` or `"off"`.
    /// Env: `{prefix}RESET_MODE`.
    pub reset_mode: ResetMode,
    /// [`Manager::statement_cache_capacity`], `None` for the default.
    /// Env: `{prefix}STATEMENT_CACHE_CAPACITY`.
    pub statement_cache_capacity: Option<usize>,
    /// [`Manager::pgbouncer`]; `None` leaves the URL's `pgbouncer` parameter (default off).
    /// Env: `{prefix}PGBOUNCER`.
    pub pgbouncer: Option<bool>,
    /// [`Manager::target_role`]; `None` leaves the URL's `target_session_attrs`.
    /// Env: `{prefix}TARGET_ROLE`.
    pub target_role: Option<TargetRole>,
    /// [`Manager::max_replication_lag`]; `None` (`"off"`) for no bound.
    /// Env: `{prefix}MAX_REPLICATION_LAG`.
    #[cfg_attr(
        feature = "serde",
        serde(with = "pool_core::settings::optional_duration")
    )]
    pub max_replication_lag: Option<Duration>,
    /// TLS through rustls (feature `rustls`): a PEM file of the certificates (CAs, or the
    /// server's own) to trust. When set, [`Settings::build`] connects with rustls: the
    /// server's certificate must chain to one of them and name the host connected to
    /// (`sslmode=require` in the URL refuses a server without TLS; the default `prefer` falls
    /// back to plaintext). Needs a process-wide rustls `CryptoProvider` installed (e.g.
    /// `rustls::crypto::ring::default_provider().install_default()`). Env:
    /// `{prefix}TLS_CA_FILE` (an error without the feature, never ignored).
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The pool's knobs: a `pool` table in a file; in the environment the same prefix and the
    /// field's name in upper case (`{prefix}MAX_SIZE`, see [`Config::apply_vars`]).
    pub pool: Config,
}

pool_core::settings_constructors!(Settings, ConfigError);

impl Settings {
    /// Overrides the settings named by the variables of `vars` that start with `prefix`, e.g.
    /// over settings read from a file. After the prefix: `URL`, `HOST`, `PORT`, `USER`,
    /// `PASSWORD`, `DBNAME`, `APPLICATION_NAME`, `SEARCH_PATH` (comma-separated),
    /// `RESET_MODE`, `STATEMENT_CACHE_CAPACITY`, `PGBOUNCER`, `TARGET_ROLE`,
    /// `MAX_REPLICATION_LAG`, `TLS_CA_FILE` (feature `rustls`), and the pool's (`MAX_SIZE`,
    /// `WAIT_TIMEOUT`, …, see [`Config::apply_vars`]). Other names with the prefix are
    /// ignored.
    ///
    /// # Errors
    /// [`ConfigError::Env`] for the first variable whose value does not fit.
    pub fn apply_vars<K, V>(
        &mut self,
        prefix: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        apply_backend_vars(prefix, vars, &mut self.pool, |field, var| {
            match field {
                "URL" => self.url = Some(var.text()),
                "HOST" => self.host = Some(var.text()),
                "PORT" => self.port = Some(var.parse()?),
                "USER" => self.user = Some(var.text()),
                "PASSWORD" => self.password = Some(var.text()),
                "DBNAME" => self.dbname = Some(var.text()),
                "APPLICATION_NAME" => self.application_name = Some(var.text()),
                "SEARCH_PATH" => self.search_path = var.list(),
                "RESET_MODE" => self.reset_mode = var.parse()?,
                "STATEMENT_CACHE_CAPACITY" => self.statement_cache_capacity = Some(var.parse()?),
                "PGBOUNCER" => self.pgbouncer = Some(var.boolean()?),
                "TARGET_ROLE" => self.target_role = Some(var.parse()?),
                "MAX_REPLICATION_LAG" => self.max_replication_lag = var.optional_duration()?,
                #[cfg(feature = "rustls")]
                "TLS_CA_FILE" => self.tls_ca_file = Some(var.text().into()),
                #[cfg(not(feature = "rustls"))]
                "TLS_CA_FILE" => {
                    return Err(var.error("TLS settings need pool-postgres's `rustls` feature"))
                }
                _ => {}
            }
            Ok::<(), EnvError>(())
        })?;
        Ok(())
    }

    /// The manager these settings describe: without TLS, or with rustls when
    /// `tls_ca_file` is set (feature `rustls`). Opens nothing.
    ///
    /// # Errors
    /// [`ConfigError::NoServer`] without `url` and `host`; [`ConfigError::SetTwice`] when
    /// `host` or `port` is also in `url`; the errors of [`Manager::from_url`];
    /// [`ConfigError::PgBouncerStartupOptions`] for a search path behind PgBouncer;
    /// [`ConfigError::Tls`] when the CA file cannot be used.
    pub fn manager(&self) -> Result<Manager, ConfigError> {
        #[cfg(feature = "rustls")]
        if let Some(path) = &self.tls_ca_file {
            let tls = crate::tls::client_config(path)?;
            return self.manager_with(|config| Manager::with_rustls(config, tls));
        }
        self.manager_with(Manager::new)
    }

    /// The manager these settings describe, connecting through the TLS connector `tls` (see
    /// [`Manager::with_tls`]). Opens nothing.
    ///
    /// # Errors
    /// As [`Settings::manager`].
    pub fn manager_with_tls<T>(&self, tls: T) -> Result<Manager, ConfigError>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.manager_with(|config| Manager::with_tls(config, tls))
    }

    /// Builds the pool (TLS as [`Settings::manager`]). Opens nothing (unless
    /// [`Config::min_idle`] asks for connections, which are then opened in the background).
    ///
    /// # Errors
    /// As [`Settings::manager`], and [`ConfigError::Pool`] when the pool's knobs are rejected.
    pub fn build(&self) -> Result<Pool, ConfigError> {
        Builder::from_config(self.manager()?, self.pool.clone())
            .build()
            .map_err(ConfigError::Pool)
    }

    /// Builds the pool, connecting through the TLS connector `tls` (see
    /// [`Manager::with_tls`]).
    ///
    /// # Errors
    /// As [`Settings::build`].
    pub fn build_with_tls<T>(&self, tls: T) -> Result<Pool, ConfigError>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        Builder::from_config(self.manager_with_tls(tls)?, self.pool.clone())
            .build()
            .map_err(ConfigError::Pool)
    }

    fn manager_with(
        &self,
        make: impl FnOnce(tokio_postgres::Config) -> Manager,
    ) -> Result<Manager, ConfigError> {
        let mut parsed = match &self.url {
            Some(url) => parse_url(url)?,
            None => crate::manager::ParsedUrl {
                config: tokio_postgres::Config::new(),
                pgbouncer: None,
                role: None,
            },
        };
        let config = &mut parsed.config;
        if let Some(host) = &self.host {
            if !config.get_hosts().is_empty() {
                return Err(ConfigError::SetTwice("host"));
            }
            config.host(host);
        }
        if config.get_hosts().is_empty() {
            return Err(ConfigError::NoServer);
        }
        if let Some(port) = self.port {
            if !config.get_ports().is_empty() {
                return Err(ConfigError::SetTwice("port"));
            }
            config.port(port);
        }
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
        if let Some(on) = self.pgbouncer {
            parsed.pgbouncer = Some(on);
        }
        if let Some(role) = self.target_role {
            parsed.role = Some(role);
        }
        if parsed.pgbouncer == Some(true) && !self.search_path.is_empty() {
            return Err(ConfigError::PgBouncerStartupOptions);
        }
        let mut manager = Manager::from_parsed(parsed, make)?.reset_mode(self.reset_mode);
        if let Some(name) = &self.application_name {
            manager = manager.application_name(name.clone());
        }
        if !self.search_path.is_empty() {
            manager = manager.search_path(&self.search_path);
        }
        if let Some(capacity) = self.statement_cache_capacity {
            manager = manager.statement_cache_capacity(capacity);
        }
        if let Some(lag) = self.max_replication_lag {
            manager = manager.max_replication_lag(lag);
        }
        Ok(manager)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Settings");
        f.field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("search_path", &self.search_path)
            .field("reset_mode", &self.reset_mode)
            .field("statement_cache_capacity", &self.statement_cache_capacity)
            .field("pgbouncer", &self.pgbouncer)
            .field("target_role", &self.target_role)
            .field("max_replication_lag", &self.max_replication_lag);
        #[cfg(feature = "rustls")]
        f.field("tls_ca_file", &self.tls_ca_file);
        f.field("pool", &self.pool).finish()
    }
}
