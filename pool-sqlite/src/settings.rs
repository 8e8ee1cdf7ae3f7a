//! The whole configuration of a SQLite pool as data: from a file (serde, feature `serde`) or
//! from environment variables.

use std::fmt;
use std::time::Duration;

use pool_core::settings::apply_backend_vars;
use pool_core::{Builder, Config, EnvError};

use crate::{ConfigError, Pool, SqliteManager, Synchronous};

/// Everything a SQLite pool is built from, as plain data: the database (a URL or path, as
/// [`SqliteManager::from_url`] takes it), the per-connection settings and the pool's
/// [`Config`].
///
/// Read it from a file with serde (feature `serde`; unknown keys are errors, durations are
/// written `"30s"`, optional ones may be `"off"`) or from the environment
/// ([`Settings::from_env`]), then [`Settings::build`] the pool. In a file, the pool's knobs
/// are a `pool` table:
///
/// ```toml
/// url = "sqlite:///var/lib/app/app.db"
/// busy_timeout = "2s"
/// foreign_keys = true
/// wal = true
/// synchronous = "normal"    # off, normal, full, extra
///
/// [pool]
/// max_size = 4
/// ```
///
/// An init hook is set on the [`SqliteManager`] in code ([`SqliteManager::init`], then
/// [`Builder::from_config`] with [`Settings::pool`]).
///
/// ```
/// let settings = pool_sqlite::Settings::from_vars(
///     "APP_DB_",
///     [
///         ("APP_DB_URL", "sqlite::memory:"),
///         ("APP_DB_SYNCHRONOUS", "full"),
///         ("APP_DB_MAX_SIZE", "2"),
///     ],
/// )?;
/// let pool = settings.build()?;
/// let sync: i64 = pool.interact_blocking(|conn| {
///     conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
/// })?;
/// assert_eq!(sync, 2); // FULL
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Settings {
    /// The database, as [`SqliteManager::from_url`] takes it (`sqlite:///abs/path.db`, a
    /// plain path, `sqlite::memory:`, `file:` URIs). Required. Env: `{prefix}URL`.
    pub url: Option<String>,
    /// [`SqliteManager::busy_timeout`]. Default 5 s. Env: `{prefix}BUSY_TIMEOUT`.
    #[cfg_attr(feature = "serde", serde(with = "pool_core::settings::duration"))]
    pub busy_timeout: Duration,
    /// [`SqliteManager::foreign_keys`]. Default `true`. Env: `{prefix}FOREIGN_KEYS`.
    pub foreign_keys: bool,
    /// [`SqliteManager::wal`]. Default `true`. Env: `{prefix}WAL`.
    pub wal: bool,
    /// [`SqliteManager::synchronous`]: `"off"`, `"normal"` (default), `"full"` or `"extra"`.
    /// Env: `{prefix}SYNCHRONOUS`.
    pub synchronous: Synchronous,
    /// The pool's knobs: a `pool` table in a file; in the environment the same prefix and the
    /// field's name in upper case (`{prefix}MAX_SIZE`, see [`Config::apply_vars`]).
    pub pool: Config,
}

impl Default for Settings {
    /// No database yet, the manager's defaults, the pool's defaults.
    fn default() -> Self {
        Settings {
            url: None,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: true,
            wal: true,
            synchronous: Synchronous::default(),
            pool: Config::default(),
        }
    }
}

pool_core::settings_constructors!(Settings, ConfigError);

impl Settings {
    /// Overrides the settings named by the variables of `vars` that start with `prefix`, e.g.
    /// over settings read from a file. After the prefix: `URL`, `BUSY_TIMEOUT`,
    /// `FOREIGN_KEYS`, `WAL`, `SYNCHRONOUS`, and the pool's (`MAX_SIZE`, `WAIT_TIMEOUT`, …,
    /// see [`Config::apply_vars`]). Other names with the prefix are ignored.
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
                "BUSY_TIMEOUT" => self.busy_timeout = var.duration()?,
                "FOREIGN_KEYS" => self.foreign_keys = var.boolean()?,
                "WAL" => self.wal = var.boolean()?,
                "SYNCHRONOUS" => self.synchronous = var.parse()?,
                _ => {}
            }
            Ok::<(), EnvError>(())
        })?;
        Ok(())
    }

    /// The manager these settings describe. Opens nothing.
    ///
    /// # Errors
    /// [`ConfigError::EmptyPath`] without `url`, and the errors of
    /// [`SqliteManager::from_url`].
    pub fn manager(&self) -> Result<SqliteManager, ConfigError> {
        let url = self.url.as_deref().ok_or(ConfigError::EmptyPath)?;
        Ok(SqliteManager::from_url(url)?
            .busy_timeout(self.busy_timeout)
            .foreign_keys(self.foreign_keys)
            .wal(self.wal)
            .synchronous(self.synchronous))
    }

    /// Builds the pool. Opens nothing (unless [`Config::min_idle`] asks for connections,
    /// which are then opened in the background).
    ///
    /// # Errors
    /// As [`Settings::manager`], and [`ConfigError::Build`] when the pool's knobs are
    /// rejected.
    pub fn build(&self) -> Result<Pool, ConfigError> {
        Ok(Builder::from_config(self.manager()?, self.pool.clone()).build()?)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A `file:` URI may carry credentials of a VFS; mask like the server URLs.
        f.debug_struct("Settings")
            .field(
                "url",
                &self.url.as_deref().map(pool_core::settings::redact_url),
            )
            .field("busy_timeout", &self.busy_timeout)
            .field("foreign_keys", &self.foreign_keys)
            .field("wal", &self.wal)
            .field("synchronous", &self.synchronous)
            .field("pool", &self.pool)
            .finish()
    }
}
