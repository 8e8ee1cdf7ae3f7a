//! The whole configuration of a MySQL/MariaDB pool as data: from a file (serde, feature
//! `serde`) or from environment variables.

use std::fmt;

use mysql_async::{Opts, OptsBuilder};
use pool_core::settings::{apply_backend_vars, redact_url};
use pool_core::{Builder, Config, EnvError};

use crate::{ConfigError, Manager, Pool, ResetMode};

/// Everything a MySQL/MariaDB pool is built from, as plain data: the server (a URL, or its
/// parts, or both: parts override the URL's, e.g. a URL without the password and the password
/// on its own), the [`Manager`]'s options and the pool's [`Config`].
///
/// Read it from a file with serde (feature `serde`; unknown keys are errors, durations are
/// written `"30s"`, optional ones may be `"off"`) or from the environment
/// ([`Settings::from_env`]), then [`Settings::build`] the pool. `Debug` never shows a
/// password (neither the `password` field nor one inside `url`).
///
/// In a file, the pool's knobs are a `pool` table:
///
/// ```toml
/// url = "mysql://app@127.0.0.1:3306/app"
/// password = "from a secret store"
/// sql_mode = "STRICT_ALL_TABLES"
/// time_zone = "+00:00"
/// reset_mode = "session"    # session, rollback, reset-connection, off
///
/// [pool]
/// max_size = 16
/// wait_timeout = "5s"
/// ```
///
/// An init hook is set on the [`Manager`] in code ([`Manager::init`], then
/// [`Builder::from_config`] with [`Settings::pool`]). TLS is the URL's parameters
/// (`require_ssl=true`, `verify_ca`, `verify_identity`, as [`Opts::from_url`] reads them), once a
/// TLS feature of mysql_async is enabled by depending on it yourself (this crate builds it with
/// `minimal`).
///
/// ```
/// let settings = pool_mysql::Settings::from_vars(
///     "APP_DB_",
///     [
///         ("APP_DB_URL", "mysql://app:secret@127.0.0.1:3306/app"),
///         ("APP_DB_TIME_ZONE", "+00:00"),
///         ("APP_DB_MAX_SIZE", "16"),
///     ],
/// )?;
/// assert!(!format!("{settings:?}").contains("secret"));
/// let pool = settings.build()?; // opens nothing yet
/// assert_eq!(pool.status().max_size, 16);
/// # Ok::<(), pool_mysql::ConfigError>(())
/// ```
#[derive(Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Settings {
    /// A URL as [`Opts::from_url`] takes it. Env: `{prefix}URL`.
    pub url: Option<String>,
    /// The server's host name or IP address; overrides the URL's. Env: `{prefix}HOST`.
    pub host: Option<String>,
    /// The server's port; overrides the URL's. Default 3306. Env: `{prefix}PORT`.
    pub port: Option<u16>,
    /// The user; overrides the URL's. Env: `{prefix}USER`.
    pub user: Option<String>,
    /// The password; overrides the URL's. Never shown by `Debug`. Env: `{prefix}PASSWORD`.
    pub password: Option<String>,
    /// The database; overrides the URL's. Env: `{prefix}DBNAME`.
    pub dbname: Option<String>,
    /// [`Manager::sql_mode`]. Env: `{prefix}SQL_MODE`.
    pub sql_mode: Option<String>,
    /// [`Manager::time_zone`]. Env: `{prefix}TIME_ZONE`.
    pub time_zone: Option<String>,
    /// [`Manager::reset_mode`]: `"session"` (default), `"rollback"`, `"reset-connection"` or
    /// `"off"`. Env: `{prefix}RESET_MODE`.
    pub reset_mode: ResetMode,
    /// The pool's knobs: a `pool` table in a file; in the environment the same prefix and the
    /// field's name in upper case (`{prefix}MAX_SIZE`, see [`Config::apply_vars`]).
    pub pool: Config,
}

pool_core::settings_constructors!(Settings, ConfigError);

impl Settings {
    /// Overrides the settings named by the variables of `vars` that start with `prefix`, e.g.
    /// over settings read from a file. After the prefix: `URL`, `HOST`, `PORT`, `USER`,
    /// `PASSWORD`, `DBNAME`, `SQL_MODE`, `TIME_ZONE`, `RESET_MODE`, and the pool's
    /// (`MAX_SIZE`, `WAIT_TIMEOUT`, …, see [`Config::apply_vars`]). Other names with the
    /// prefix are ignored.
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
                "SQL_MODE" => self.sql_mode = Some(var.text()),
                "TIME_ZONE" => self.time_zone = Some(var.text()),
                "RESET_MODE" => self.reset_mode = var.parse()?,
                _ => {}
            }
            Ok::<(), EnvError>(())
        })?;
        Ok(())
    }

    /// The manager these settings describe. Opens nothing.
    ///
    /// # Errors
    /// [`ConfigError::NoServer`] without `url` and `host`; [`ConfigError::Url`] when
    /// mysql_async rejects the URL.
    pub fn manager(&self) -> Result<Manager, ConfigError> {
        let opts = match &self.url {
            Some(url) => Opts::from_url(url).map_err(ConfigError::Url)?,
            None if self.host.is_some() => Opts::default(),
            None => return Err(ConfigError::NoServer),
        };
        let mut builder = OptsBuilder::from_opts(opts);
        if let Some(host) = &self.host {
            builder = builder.ip_or_hostname(host.clone());
        }
        if let Some(port) = self.port {
            builder = builder.tcp_port(port);
        }
        if let Some(user) = &self.user {
            builder = builder.user(Some(user.clone()));
        }
        if let Some(password) = &self.password {
            builder = builder.pass(Some(password.clone()));
        }
        if let Some(dbname) = &self.dbname {
            builder = builder.db_name(Some(dbname.clone()));
        }
        let mut manager = Manager::new(builder).reset_mode(self.reset_mode);
        if let Some(mode) = &self.sql_mode {
            manager = manager.sql_mode(mode.clone());
        }
        if let Some(zone) = &self.time_zone {
            manager = manager.time_zone(zone.clone());
        }
        Ok(manager)
    }

    /// Builds the pool. Opens nothing (unless [`Config::min_idle`] asks for connections,
    /// which are then opened in the background).
    ///
    /// # Errors
    /// As [`Settings::manager`], and [`ConfigError::Pool`] when the pool's knobs are rejected.
    pub fn build(&self) -> Result<Pool, ConfigError> {
        Builder::from_config(self.manager()?, self.pool.clone())
            .build()
            .map_err(ConfigError::Pool)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sql_mode", &self.sql_mode)
            .field("time_zone", &self.time_zone)
            .field("reset_mode", &self.reset_mode)
            .field("pool", &self.pool)
            .finish()
    }
}
