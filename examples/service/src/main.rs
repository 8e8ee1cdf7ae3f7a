//! Serves the example service.
//!
//! | variable | default |
//! |---|---|
//! | `SERVICE_PG_URL` | `postgres://postgres@127.0.0.1:5432/test` |
//! | `SERVICE_SQLITE_URL` | `sqlite://example-service.db` |
//! | `SERVICE_ADDR` | `127.0.0.1:3000` |

use pool_example_service::{router, setup, BoxError, Settings};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = Settings {
        pg_url: env_or("SERVICE_PG_URL", "postgres://postgres@127.0.0.1:5432/test"),
        sqlite_url: env_or("SERVICE_SQLITE_URL", "sqlite://example-service.db"),
        pg_max_size: 8,
        sqlite_max_size: 4,
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    setup(&settings).await?;
    let addr = env_or("SERVICE_ADDR", "127.0.0.1:3000");
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "serving");
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
