//! Serves the example service.
//!
//! | variable | what |
//! |---|---|
//! | `SERVICE_CONFIG` | a TOML settings file (e.g. `examples/service/service.toml`); none by default |
//! | `SERVICE_ADDR` | the address to listen on, default `127.0.0.1:3000` |
//! | `SERVICE_PG_URL`, `SERVICE_PG_PASSWORD`, `SERVICE_PG_MAX_SIZE`, … | the PostgreSQL pool's settings (`pool_postgres::Settings::apply_vars`), default URL `postgres://postgres@127.0.0.1:5432/test` |
//! | `SERVICE_SQLITE_URL`, `SERVICE_SQLITE_MAX_SIZE`, … | the SQLite pool's settings (`pool_sqlite::Settings::apply_vars`), default URL `sqlite://example-service.db` |
//! | `RUST_LOG` | the log filter, default `info` (`pool_core=debug` shows each checkout) |

use pool_example_service::{router, setup, BoxError, Settings};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // With `RUST_LOG=pool_core=debug`: one line per checkout as its `pool.get` span closes
        // (the pool, the connection, whether it queued, how long it took).
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    let file = match std::env::var_os("SERVICE_CONFIG") {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| format!("SERVICE_CONFIG {}: {e}", path.to_string_lossy()))?,
        ),
        None => None,
    };
    let settings = Settings::load(file.as_deref(), std::env::vars())?;
    tracing::info!(?settings, "settings");
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    setup(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.addr()).await?;
    tracing::info!(addr = settings.addr(), "serving");
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
