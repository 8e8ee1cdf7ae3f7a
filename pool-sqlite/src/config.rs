//! What to open and how: database URL parsing, open flags and per-connection settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::OpenFlags;

/// Why a database URL, path or set of open flags was rejected, or a pool could not be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The URL or path names no database (`""`, `"sqlite://"`, `"sqlite:"`).
    #[error("no database path given")]
    EmptyPath,
    /// The URL is for another database (`mysql://…`, `postgres://…`).
    #[error("`{scheme}:` URLs are not SQLite databases (use `sqlite://path`, `sqlite::memory:` or a plain path)")]
    UnsupportedScheme {
        /// The URL's scheme, as given.
        scheme: String,
    },
    /// The path contains a NUL byte, which SQLite filenames cannot.
    #[error("the database path contains a NUL byte")]
    NulByte,
    /// `:memory:` with URL query parameters: an in-memory database takes no options here.
    #[error("`:memory:` takes no query parameters")]
    MemoryWithQuery,
    /// The open flags are not one of SQLite's valid access modes (`SQLITE_OPEN_READ_ONLY`,
    /// `SQLITE_OPEN_READ_WRITE` or `SQLITE_OPEN_READ_WRITE | SQLITE_OPEN_CREATE`).
    #[error("invalid open flags {flags:?}: need exactly one of READ_ONLY or READ_WRITE, and CREATE only with READ_WRITE")]
    InvalidFlags {
        /// The rejected flags.
        flags: OpenFlags,
    },
    /// The pool settings were rejected (see [`pool_core::BuildError`]).
    #[error(transparent)]
    Build(#[from] pool_core::BuildError),
    /// An environment variable read by [`Settings::from_env`](crate::Settings::from_env) has a
    /// value that does not fit its setting (the error names the variable).
    #[error(transparent)]
    Env(#[from] pool_core::EnvError),
}

/// SQLite's `PRAGMA synchronous` setting, applied to every new connection.
///
/// Default: [`Synchronous::Normal`], which is durable in WAL mode except for the last
/// transactions before a power loss (never corrupting), and much faster than `Full`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Synchronous {
    /// `OFF`: no syncs at all; an OS crash or power loss may corrupt the database.
    Off,
    /// `NORMAL`: sync at the critical moments only. The default.
    #[default]
    Normal,
    /// `FULL`: sync at every commit (SQLite's own default).
    Full,
    /// `EXTRA`: like `FULL`, and also syncs the directory after deleting a rollback journal.
    Extra,
}

impl Synchronous {
    /// The keyword `PRAGMA synchronous` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }

    /// The number `PRAGMA synchronous` reports for this setting (0 to 3).
    pub fn as_number(self) -> i64 {
        match self {
            Synchronous::Off => 0,
            Synchronous::Normal => 1,
            Synchronous::Full => 2,
            Synchronous::Extra => 3,
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = pool_core::settings::UnknownValue;

    /// Parses `off`, `normal`, `full` or `extra` (any case), or SQLite's numbers 0 to 3.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" => Synchronous::Off,
            "normal" | "1" => Synchronous::Normal,
            "full" | "2" => Synchronous::Full,
            "extra" | "3" => Synchronous::Extra,
            _ => {
                return Err(pool_core::settings::UnknownValue {
                    value: s.to_owned(),
                    expected: "off, normal, full or extra",
                })
            }
        })
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Synchronous {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pool_core::settings::deserialize_from_str(d)
    }
}

/// A per-connection initialisation hook: runs once on every new connection, after the built-in
/// settings. An error (or a panic) fails that connect.
pub type InitHook = dyn Fn(&rusqlite::Connection) -> rusqlite::Result<()> + Send + Sync;

/// What SQLite opens.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A database file.
    File(PathBuf),
    /// An in-memory database private to one manager (and its clones), shared by all its
    /// connections: `file:/<unique name>?vfs=memdb`.
    Memory(String),
    /// A URI filename (`file:…`), passed to SQLite as is with `SQLITE_OPEN_URI`.
    Uri(String),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => write!(f, "File({})", path.display()),
            Target::Memory(name) => write!(f, "Memory({name})"),
            Target::Uri(uri) => write!(f, "Uri({uri})"),
        }
    }
}

impl Target {
    /// Interprets a path as given to [`SqliteManager::new`](crate::SqliteManager::new).
    pub(crate) fn from_path(path: &Path) -> Result<Target, ConfigError> {
        let os = path.as_os_str();
        if os.is_empty() {
            return Err(ConfigError::EmptyPath);
        }
        if os.as_encoded_bytes().contains(&0) {
            return Err(ConfigError::NulByte);
        }
        match path.to_str() {
            Some(":memory:") => Ok(Target::Memory(unique_memory_name())),
            Some(s) if s.starts_with("file:") => Ok(Target::Uri(s.to_owned())),
            _ => Ok(Target::File(path.to_path_buf())),
        }
    }

    /// Interprets a database URL (see [`SqliteManager::from_url`](crate::SqliteManager::from_url)).
    pub(crate) fn from_url(url: &str) -> Result<Target, ConfigError> {
        let rest = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
        } else if let Some(scheme) = foreign_scheme(url) {
            return Err(ConfigError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        } else {
            url
        };
        if rest.is_empty() {
            return Err(ConfigError::EmptyPath);
        }
        if rest.contains('\0') {
            return Err(ConfigError::NulByte);
        }
        if rest.starts_with("file:") {
            return Ok(Target::Uri(rest.to_owned()));
        }
        match rest.split_once('?') {
            None => Target::from_path(Path::new(rest)),
            Some((":memory:", _)) => Err(ConfigError::MemoryWithQuery),
            Some(("", _)) => Err(ConfigError::EmptyPath),
            // `sqlite://data.db?mode=ro`: let SQLite interpret the parameters as a URI filename.
            Some((path, query)) => Ok(Target::Uri(format!(
                "file:{}?{query}",
                escape_uri_path(path)
            ))),
        }
    }

    /// The filename handed to `sqlite3_open_v2`.
    pub(crate) fn filename(&self) -> &Path {
        match self {
            Target::File(path) => path,
            Target::Memory(uri) | Target::Uri(uri) => Path::new(uri),
        }
    }

    pub(crate) fn is_memory(&self) -> bool {
        matches!(self, Target::Memory(_))
    }
}

/// `scheme` of `scheme://…` when it is not SQLite's.
fn foreign_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Escapes the characters that end or change the path part of a SQLite URI filename.
fn escape_uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

/// A process-unique name for an in-memory database, in the `memdb` VFS (see the crate docs).
fn unique_memory_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("file:/pool-sqlite-{}-{n}?vfs=memdb", std::process::id())
}

/// Checks that `flags` hold one of SQLite's three valid access modes.
pub(crate) fn check_flags(flags: OpenFlags) -> Result<(), ConfigError> {
    let ro = flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY);
    let rw = flags.contains(OpenFlags::SQLITE_OPEN_READ_WRITE);
    let create = flags.contains(OpenFlags::SQLITE_OPEN_CREATE);
    if ro == rw || (create && !rw) {
        return Err(ConfigError::InvalidFlags { flags });
    }
    Ok(())
}

/// Everything needed to open and initialise one connection; shared by the connect futures.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) target: Target,
    pub(crate) flags: OpenFlags,
    pub(crate) busy_timeout: Duration,
    pub(crate) foreign_keys: bool,
    pub(crate) wal: bool,
    pub(crate) synchronous: Synchronous,
    pub(crate) init: Option<Arc<InitHook>>,
}

impl Options {
    pub(crate) fn new(target: Target, mut flags: OpenFlags) -> Options {
        if !matches!(target, Target::File(_)) {
            flags |= OpenFlags::SQLITE_OPEN_URI;
        }
        Options {
            target,
            flags,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: true,
            wal: true,
            synchronous: Synchronous::Normal,
            init: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("target", &self.target)
            .field("flags", &self.flags)
            .field("busy_timeout", &self.busy_timeout)
            .field("foreign_keys", &self.foreign_keys)
            .field("wal", &self.wal)
            .field("synchronous", &self.synchronous)
            .field("init", &self.init.as_ref().map(|_| "Fn(&Connection)"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let file = |s: &str| Target::from_url(s).unwrap();
        assert_eq!(file("sqlite:///tmp/a.db"), Target::File("/tmp/a.db".into()));
        assert_eq!(file("sqlite://a.db"), Target::File("a.db".into()));
        assert_eq!(file("sqlite:a.db"), Target::File("a.db".into()));
        assert_eq!(file("/tmp/b.db"), Target::File("/tmp/b.db".into()));
        assert_eq!(
            file("C:\\data\\b.db"),
            Target::File("C:\\data\\b.db".into())
        );
        assert!(file("sqlite::memory:").is_memory());
        assert!(file(":memory:").is_memory());
        assert!(file("sqlite://:memory:").is_memory());
        assert_eq!(
            file("sqlite://a%#.db?mode=ro"),
            Target::Uri("file:a%25%23.db?mode=ro".into())
        );
        assert_eq!(
            file("file:x?mode=memory&cache=shared"),
            Target::Uri("file:x?mode=memory&cache=shared".into())
        );
    }

    #[test]
    fn memory_names_are_unique() {
        assert_ne!(
            Target::from_url(":memory:").unwrap(),
            Target::from_url(":memory:").unwrap()
        );
    }

    #[test]
    fn bad_urls() {
        let err = |s: &str| Target::from_url(s).unwrap_err();
        assert_eq!(err(""), ConfigError::EmptyPath);
        assert_eq!(err("sqlite://"), ConfigError::EmptyPath);
        assert_eq!(err("sqlite:"), ConfigError::EmptyPath);
        assert_eq!(err("sqlite://?mode=ro"), ConfigError::EmptyPath);
        assert_eq!(
            err("mysql://root@127.0.0.1/test"),
            ConfigError::UnsupportedScheme {
                scheme: "mysql".into()
            }
        );
        assert_eq!(err("sqlite://a\0b"), ConfigError::NulByte);
        assert_eq!(
            err("sqlite::memory:?cache=shared"),
            ConfigError::MemoryWithQuery
        );
    }

    #[test]
    fn flags() {
        assert!(check_flags(OpenFlags::default()).is_ok());
        assert!(check_flags(OpenFlags::SQLITE_OPEN_READ_ONLY).is_ok());
        assert!(check_flags(OpenFlags::SQLITE_OPEN_URI).is_err());
        assert!(
            check_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_CREATE).is_err()
        );
        assert!(
            check_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_READ_WRITE)
                .is_err()
        );
    }
}
