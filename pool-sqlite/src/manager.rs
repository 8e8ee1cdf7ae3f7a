//! The [`Manager`] of SQLite connections.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::{CloseReason, ConnMeta, Manager};
use rusqlite::{Connection, OpenFlags};

use crate::config::{check_flags, ConfigError, InitHook, Options, Synchronous, Target};
use crate::conn::{run_blocking, SqliteConn};

/// Opens, initialises, checks and cleans SQLite connections for a [`Pool`](crate::Pool).
///
/// Every new connection gets, in this order: `busy_timeout`, `PRAGMA journal_mode = WAL` (file
/// databases opened read-write), `PRAGMA foreign_keys`, `PRAGMA synchronous`, then the
/// [`init`](SqliteManager::init) hook. The setters consume and return the manager:
///
/// ```
/// use std::time::Duration;
/// use pool_sqlite::{SqliteManager, Synchronous};
///
/// let manager = SqliteManager::from_url("sqlite::memory:")?
///     .busy_timeout(Duration::from_secs(2))
///     .synchronous(Synchronous::Full)
///     .init(|conn| conn.execute_batch("PRAGMA cache_size = -4000"));
/// let pool = pool_sqlite::Pool::new(manager, 4)?;
/// let conn = pool.get_blocking()?;
/// let sync: i64 = conn.lock().query_row("PRAGMA synchronous", [], |row| row.get(0))?;
/// assert_eq!(sync, 2); // FULL
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Clones share their settings and, for `:memory:`, their in-memory database.
#[derive(Clone)]
pub struct SqliteManager {
    opts: Arc<Options>,
    /// For in-memory databases: one connection the manager keeps open, so the database lives as
    /// long as the manager does, not only while the pool happens to hold a connection.
    anchor: Arc<Mutex<Option<Connection>>>,
}

/// The longest busy timeout SQLite can take (`i32::MAX` milliseconds, about 24.8 days).
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

impl SqliteManager {
    /// A manager for the database at `path`, opened with `flags`.
    ///
    /// `path` may be `":memory:"` (an in-memory database shared by this manager's connections and
    /// private to it) or a SQLite URI filename starting with `file:` (`SQLITE_OPEN_URI` is then
    /// added to `flags`). [`OpenFlags::default()`] is read-write, create, no mutex, URI.
    ///
    /// # Errors
    /// [`ConfigError::EmptyPath`], [`ConfigError::NulByte`], or
    /// [`ConfigError::InvalidFlags`] when `flags` are not exactly one of `READ_ONLY`,
    /// `READ_WRITE` or `READ_WRITE | CREATE` (plus any other flags).
    pub fn new(path: impl AsRef<Path>, flags: OpenFlags) -> Result<Self, ConfigError> {
        check_flags(flags)?;
        Ok(Self::with_target(Target::from_path(path.as_ref())?, flags))
    }

    /// A manager for a database URL or path, opened read-write (created if missing).
    ///
    /// Accepted forms:
    ///
    /// | input | database |
    /// |---|---|
    /// | `sqlite:///abs/path.db`, `sqlite://rel/path.db`, `sqlite:rel/path.db` | a file |
    /// | `/abs/path.db`, `rel/path.db` | a file |
    /// | `sqlite::memory:`, `sqlite://:memory:`, `:memory:` | a new in-memory database, shared by this manager's connections |
    /// | `sqlite://path.db?mode=ro` (any query) | the URI filename `file:path.db?mode=ro` |
    /// | `file:…`, `sqlite://file:…` | that SQLite URI filename |
    ///
    /// # Errors
    /// [`ConfigError::EmptyPath`] for an empty path, [`ConfigError::UnsupportedScheme`] for
    /// another database's URL (`mysql://…`), [`ConfigError::NulByte`],
    /// [`ConfigError::MemoryWithQuery`].
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::with_target(
            Target::from_url(url)?,
            OpenFlags::default(),
        ))
    }

    fn with_target(target: Target, flags: OpenFlags) -> Self {
        SqliteManager {
            opts: Arc::new(Options::new(target, flags)),
            anchor: Arc::new(Mutex::new(None)),
        }
    }

    fn opts_mut(&mut self) -> &mut Options {
        Arc::make_mut(&mut self.opts)
    }

    /// How long a statement waits for another connection's lock before failing with
    /// `SQLITE_BUSY`. Keep it well below the pool's `wait_timeout`, so a busy database surfaces
    /// as an error rather than as a pool timeout. Longer than SQLite's limit (about 24.8 days,
    /// e.g. [`Duration::MAX`]) is that limit. Default: 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.opts_mut().busy_timeout = timeout;
        self
    }

    /// `PRAGMA foreign_keys` (SQLite's own default is off). Default: `true`.
    pub fn foreign_keys(mut self, on: bool) -> Self {
        self.opts_mut().foreign_keys = on;
        self
    }

    /// Switch file databases to `journal_mode = WAL` (readers do not block the writer, and the
    /// reverse). Ignored for in-memory databases and read-only connections; `false` leaves the
    /// journal mode as it is. Default: `true`.
    pub fn wal(mut self, on: bool) -> Self {
        self.opts_mut().wal = on;
        self
    }

    /// `PRAGMA synchronous`. Default: [`Synchronous::Normal`].
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.opts_mut().synchronous = mode;
        self
    }

    /// A hook run once on every new connection, after the built-in settings (e.g. more
    /// pragmas, user functions, attached databases). An error or a panic fails that connect.
    /// Replaces an earlier hook. Default: none.
    pub fn init<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    {
        self.opts_mut().init = Some(Arc::new(hook) as Arc<InitHook>);
        self
    }

    /// The filename handed to SQLite: the path, the URI filename, or for `:memory:` the
    /// generated `file:/pool-sqlite-<pid>-<n>?vfs=memdb` name.
    pub fn filename(&self) -> &Path {
        self.opts.target.filename()
    }

    /// The flags connections are opened with.
    pub fn flags(&self) -> OpenFlags {
        self.opts.flags
    }

    /// Opens and initialises one connection on the current thread (blocking).
    ///
    /// This is what [`Manager::connect`] runs, on a blocking thread when in a runtime. Use it
    /// for a connection outside any pool with the same settings.
    ///
    /// # Errors
    /// The driver error of opening or of a setting (including the init hook's).
    pub fn open(&self) -> rusqlite::Result<Connection> {
        open(&self.opts, &self.anchor)
    }
}

fn open(opts: &Options, anchor: &Mutex<Option<Connection>>) -> rusqlite::Result<Connection> {
    let filename = opts.target.filename();
    if opts.target.is_memory() {
        let mut anchor = anchor.lock();
        if anchor.is_none() {
            *anchor = Some(Connection::open_with_flags(filename, opts.flags)?);
        }
    }
    let conn = Connection::open_with_flags(filename, opts.flags)?;
    // First, so that switching the journal mode waits for other connections' locks.
    // SQLite takes milliseconds as a C int (rusqlite panics above it): longer is "forever".
    conn.busy_timeout(opts.busy_timeout.min(MAX_BUSY_TIMEOUT))?;
    if opts.wal
        && !opts.target.is_memory()
        && !opts.flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY)
    {
        // Returns the resulting mode ("memory" for in-memory URIs); not an error when it is not
        // WAL. A read-only URI (`?mode=ro`) cannot switch: keep its mode.
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(_mode) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) => {}
            Err(e) => return Err(e),
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = {}; PRAGMA synchronous = {};",
        if opts.foreign_keys { "ON" } else { "OFF" },
        opts.synchronous.as_str()
    ))?;
    if let Some(hook) = &opts.init {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&conn))) {
            Ok(result) => result?,
            Err(payload) => {
                return Err(crate::conn::TaskFailure::Panicked(format!(
                    "init hook: {}",
                    crate::conn::panic_message(&*payload)
                ))
                .into())
            }
        }
    }
    Ok(conn)
}

impl fmt::Debug for SqliteManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteManager")
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

impl pool_core::BlockingManager for SqliteManager {}

impl Manager for SqliteManager {
    type Connection = SqliteConn;
    type Error = rusqlite::Error;

    /// Opens and initialises a connection; on a blocking thread inside a tokio runtime, inline
    /// otherwise.
    fn connect(&self) -> impl Future<Output = Result<SqliteConn, rusqlite::Error>> + Send {
        let opts = Arc::clone(&self.opts);
        let anchor = Arc::clone(&self.anchor);
        async move {
            let conn = run_blocking(move || open(&opts, &anchor)).await??;
            Ok(SqliteConn::new(conn))
        }
    }

    /// Marked broken (a panic while it was in use), or still used by a closure whose `interact`
    /// was cancelled. No I/O.
    fn is_broken(&self, conn: &mut SqliteConn, _meta: &ConnMeta) -> bool {
        conn.is_broken()
    }

    /// Inside a transaction (`!is_autocommit()`). No I/O.
    fn needs_reset(&self, conn: &mut SqliteConn) -> bool {
        conn.needs_reset()
    }

    /// `ROLLBACK` of the transaction left open by the previous user.
    fn reset(
        &self,
        conn: &mut SqliteConn,
    ) -> impl Future<Output = Result<(), rusqlite::Error>> + Send {
        let shared = conn.shared();
        async move {
            run_blocking(move || {
                let conn = shared.lock();
                if conn.is_autocommit() {
                    Ok(())
                } else {
                    conn.execute_batch("ROLLBACK")
                }
            })
            .await?
        }
    }

    /// `SELECT 1`.
    fn validate(
        &self,
        conn: &mut SqliteConn,
        _meta: &ConnMeta,
    ) -> impl Future<Output = Result<(), rusqlite::Error>> + Send {
        let shared = conn.shared();
        async move { run_blocking(move || shared.lock().query_row("SELECT 1", [], |_| Ok(()))).await? }
    }

    /// `false` for errors that do not heal by retrying (cannot open the file, permissions,
    /// not a database, bad settings in the init hook); `true` for busy, locked and I/O errors.
    fn is_retryable(&self, err: &rusqlite::Error) -> bool {
        crate::error::is_retryable(err)
    }

    /// Drops the connection; on a blocking thread when inside a tokio runtime, since closing the
    /// last connection of a WAL database checkpoints it (file I/O).
    fn close(&self, conn: SqliteConn, _reason: CloseReason) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || drop(conn))),
            Err(_) => drop(conn),
        }
    }
}
