//! An axum service on PostgreSQL and SQLite, built the way the pool is meant to be used in a
//! real service:
//!
//! - two configure-once global pools (`pool_postgres::global()`, `pool_sqlite::global()`), set
//!   up by [`setup`] at startup and used from any handler;
//! - a connection scope per request ([`pool_postgres::ScopeLayer`]): a handler at any depth
//!   takes the request's PostgreSQL connection with `pg()?.scoped()`; the connection is opened
//!   on first use and goes back when the response is ready (or the client hangs up);
//! - SQLite work runs on blocking threads through `interact`, never on the runtime's workers;
//! - `/metrics` in Prometheus text, the pools' state under OpenTelemetry's
//!   `db.client.connection.*` names;
//! - errors answered with their whole cause chain ([`pool_postgres::Report`]): `503` when the
//!   pool says the database is down or every connection stayed busy (`ErrorKind::Unavailable`,
//!   `ErrorKind::Exhausted`), else `500`.
//!
//! It depends on the backend crates alone (`pool-postgres` with its `tower` and `metrics`
//! features, `pool-sqlite`).
//!
//! Its configuration ([`Settings`]) is a TOML file of the backends' own `Settings` (the server,
//! the manager's options, the pool's knobs) with environment variables on top.
//!
//! `cargo run -p pool-example-service` serves it (`SERVICE_CONFIG=examples/service/service.toml`
//! to read the sample file; see `src/main.rs`); `cargo test -p pool-example-service` runs it
//! against the machine's PostgreSQL with a few hundred real HTTP requests.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use pool_postgres::{MetricsExporter, Report, ScopeLayer};
use serde::{Deserialize, Serialize};

/// The PostgreSQL pool, configured by [`setup`] (`pool_postgres::global()`).
///
/// # Errors
/// `PoolError::NotConfigured` before [`setup`].
pub fn pg() -> Result<&'static pool_postgres::Pool, pool_postgres::Error> {
    pool_postgres::global().pool()
}

/// The SQLite pool, configured by [`setup`] (`pool_sqlite::global()`).
///
/// # Errors
/// `PoolError::NotConfigured` before [`setup`].
pub fn sqlite() -> Result<&'static pool_sqlite::Pool, pool_sqlite::Error> {
    pool_sqlite::global().pool()
}

/// The service's whole configuration: a TOML file (see `service.toml` next to this crate's
/// `Cargo.toml`) whose `[postgres]` and `[sqlite]` tables are the backends' own
/// [`pool_postgres::Settings`] and [`pool_sqlite::Settings`] (each with its `pool` table),
/// then environment variables on top: `SERVICE_ADDR`, `SERVICE_PG_*` (`SERVICE_PG_URL`,
/// `SERVICE_PG_PASSWORD`, `SERVICE_PG_MAX_SIZE`, …) and `SERVICE_SQLITE_*`.
///
/// `Debug` shows no password.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The address to listen on. Default `127.0.0.1:3000`.
    pub addr: Option<String>,
    /// The PostgreSQL pool. Without `url` or `host`: `postgres://postgres@127.0.0.1:5432/test`;
    /// without `application_name`: `pool-example-service`.
    pub postgres: pool_postgres::Settings,
    /// The SQLite pool. Without `url`: `sqlite://example-service.db`. Pools without a `name`
    /// are named `postgres` and `sqlite`.
    pub sqlite: pool_sqlite::Settings,
}

/// The prefix of the PostgreSQL pool's environment variables.
pub const PG_ENV_PREFIX: &str = "SERVICE_PG_";
/// The prefix of the SQLite pool's environment variables.
pub const SQLITE_ENV_PREFIX: &str = "SERVICE_SQLITE_";

impl Settings {
    /// Reads the TOML text `file` (if any), lays the variables of `vars` over it (e.g.
    /// `std::env::vars()`) and fills in the service's defaults.
    ///
    /// # Errors
    /// A file that is not valid TOML or names an unknown setting; a variable whose value does
    /// not fit (the error names it).
    pub fn load<K, V>(
        file: Option<&str>,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Settings, BoxError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut settings: Settings = match file {
            Some(text) => toml::from_str(text)?,
            None => Settings::default(),
        };
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let pairs = || vars.iter().map(|(k, v)| (k, v));
        settings.postgres.apply_vars(PG_ENV_PREFIX, pairs())?;
        settings.sqlite.apply_vars(SQLITE_ENV_PREFIX, pairs())?;
        if let Some((_, addr)) = vars.iter().find(|(k, _)| k == "SERVICE_ADDR") {
            settings.addr = Some(addr.clone());
        }
        let pg = &mut settings.postgres;
        if pg.url.is_none() && pg.host.is_none() {
            pg.url = Some("postgres://postgres@127.0.0.1:5432/test".to_owned());
        }
        pg.application_name
            .get_or_insert_with(|| "pool-example-service".to_owned());
        settings
            .sqlite
            .url
            .get_or_insert_with(|| "sqlite://example-service.db".to_owned());
        // The names its logs and `/metrics` use.
        for (name, default) in [
            (&mut settings.postgres.pool.name, "postgres"),
            (&mut settings.sqlite.pool.name, "sqlite"),
        ] {
            if name.is_empty() {
                default.clone_into(name);
            }
        }
        Ok(settings)
    }

    /// The address to listen on.
    pub fn addr(&self) -> &str {
        self.addr.as_deref().unwrap_or("127.0.0.1:3000")
    }
}

/// A boxed error of the set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds both pools from `settings`, installs them as the global ones and creates the
/// service's tables.
///
/// # Errors
/// A malformed URL, a pool that is configured already, or a database that cannot be reached.
pub async fn setup(settings: &Settings) -> Result<(), BoxError> {
    let pg = settings.postgres.build()?;
    let sqlite = settings.sqlite.build()?;
    pool_postgres::global().configure(pg)?;
    pool_sqlite::global().configure(sqlite)?;
    self::pg()?
        .get()
        .await?
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS example_notes (id bigserial PRIMARY KEY, body text NOT NULL)",
        )
        .await?;
    self::sqlite()?
        .interact(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS visits (page TEXT PRIMARY KEY, n INTEGER NOT NULL)",
            )
        })
        .await?;
    Ok(())
}

/// The service's routes, each request in a PostgreSQL connection scope; `metrics` renders
/// `/metrics`.
///
/// # Panics
/// When [`setup`] has not configured the PostgreSQL pool.
pub fn router(metrics: PrometheusHandle) -> Router {
    let pg = pg().expect("setup() configures the pools first").clone();
    Router::new()
        .route("/notes", post(create_note))
        .route("/notes/{id}", get(read_note))
        .route("/visits/{page}", post(visit))
        .route("/healthz", get(health))
        .route("/metrics", get(move || render_metrics(metrics.clone())))
        .layer(ScopeLayer::new(pg))
}

/// A note, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id (ignored on creation).
    #[serde(default)]
    pub id: i64,
    /// Its text.
    pub body: String,
}

/// Visits of a page so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visits {
    /// The page.
    pub page: String,
    /// How many visits it had, this one included.
    pub visits: i64,
}

/// A handler's failure: its status (`503` when the database is down or every connection stayed
/// busy, else `500`) and the error's whole cause chain.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    message: String,
}

impl AppError {
    /// The status the response gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// What the pool's error says about the database, if the error is one of the pools'.
fn pool_error_kind(e: &(dyn std::any::Any + 'static)) -> Option<pool_postgres::ErrorKind> {
    if let Some(e) = e.downcast_ref::<pool_postgres::Error>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<pool_sqlite::Error>() {
        return Some(e.kind());
    }
    match e.downcast_ref::<pool_sqlite::InteractError>() {
        Some(pool_sqlite::InteractError::Pool(e)) => Some(e.kind()),
        _ => None,
    }
}

impl<E: std::error::Error + 'static> From<E> for AppError {
    fn from(e: E) -> Self {
        let message = Report::new(&e).to_string();
        let status = match pool_error_kind(&e) {
            Some(pool_postgres::ErrorKind::Unavailable | pool_postgres::ErrorKind::Exhausted) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %message, %status, "request failed");
        AppError { status, message }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

async fn create_note(Json(note): Json<Note>) -> Result<Json<Note>, AppError> {
    let conn = pg()?.scoped().await?;
    let row = conn
        .query_one(
            "INSERT INTO example_notes (body) VALUES ($1) RETURNING id, body",
            &[&note.body],
        )
        .await?;
    Ok(Json(Note {
        id: row.get(0),
        body: row.get(1),
    }))
}

async fn read_note(Path(id): Path<i64>) -> Result<Response, AppError> {
    let conn = pg()?.scoped().await?;
    let row = conn
        .query_opt("SELECT id, body FROM example_notes WHERE id = $1", &[&id])
        .await?;
    Ok(match row {
        Some(row) => Json(Note {
            id: row.get(0),
            body: row.get(1),
        })
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

async fn visit(Path(page): Path<String>) -> Result<Json<Visits>, AppError> {
    let key = page.clone();
    let visits = sqlite()?
        .interact(move |c| {
            c.query_row(
                "INSERT INTO visits (page, n) VALUES (?1, 1)
                 ON CONFLICT (page) DO UPDATE SET n = n + 1 RETURNING n",
                [&key],
                |row| row.get(0),
            )
        })
        .await?;
    Ok(Json(Visits { page, visits }))
}

async fn health() -> Result<&'static str, AppError> {
    let conn = pg()?.scoped().await?;
    conn.simple_query("SELECT 1").await?;
    sqlite()?
        .interact(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
        .await?;
    Ok("ok")
}

async fn render_metrics(handle: PrometheusHandle) -> String {
    if let Ok(pool) = pg() {
        MetricsExporter::new("postgres").record(pool);
    }
    if let Ok(pool) = sqlite() {
        MetricsExporter::new("sqlite").record(pool);
    }
    handle.render()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_outage_is_503_and_other_failures_500() {
        let down: pool_postgres::Error = pool_postgres::PoolError::Unavailable {
            failures: 3,
            last_error: None,
        };
        assert_eq!(
            AppError::from(down).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let busy: pool_sqlite::InteractError =
            pool_sqlite::InteractError::Pool(pool_sqlite::PoolError::Timeout {
                phase: pool_sqlite::Phase::Wait,
                waited: Duration::from_secs(1),
                last_error: None,
            });
        assert_eq!(
            AppError::from(busy).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let closed: pool_postgres::Error = pool_postgres::PoolError::Closed;
        assert_eq!(
            AppError::from(closed).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let io = std::io::Error::other("disk full");
        let e = AppError::from(io);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "disk full");
    }
}
