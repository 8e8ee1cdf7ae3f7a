//! The example service against the machine's PostgreSQL and a temporary SQLite file, driven by
//! real HTTP requests over loopback TCP.

use std::sync::Arc;
use std::time::Duration;

use pool_example_service::{pg, router, setup, sqlite, Note, Settings, Visits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// One HTTP/1.1 request with `Connection: close`; returns the status code and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_requests_through_the_layer_the_global_pools_and_metrics() {
    let pg_url = pool_tests::pg_url();
    if !pool_tests::require_server("PostgreSQL (POOL_TEST_PG_URL)", &pg_url) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The repository's sample settings file, with the environment on top (as `main` does).
    let sqlite_url = format!("sqlite://{}", dir.path().join("service.db").display());
    let settings = Settings::load(
        Some(include_str!("../service.toml")),
        [
            ("SERVICE_PG_URL", pg_url.as_str()),
            ("SERVICE_PG_MAX_SIZE", "4"),
            ("SERVICE_SQLITE_URL", sqlite_url.as_str()),
            ("SERVICE_SQLITE_MAX_SIZE", "2"),
        ],
    )
    .expect("settings");
    assert_eq!(settings.postgres.pool.max_size, 4);
    assert_eq!(settings.postgres.pool.wait_timeout, Duration::from_secs(5));
    assert_eq!(settings.sqlite.pool.idle_timeout, None);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the test's recorder");
    assert!(
        matches!(pg(), Err(pool_postgres::PoolError::NotConfigured)),
        "not configured before setup"
    );
    setup(&settings).await.expect("setup");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router(metrics)).await });

    // 200 notes created by 32 concurrent clients (4 PostgreSQL connections), then read back.
    let limit = Arc::new(Semaphore::new(32));
    let mut created = Vec::new();
    for i in 0..200 {
        let limit = limit.clone();
        created.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let text = format!("note {i} \u{1F4DD}");
            let body = serde_json::to_string(&Note {
                id: 0,
                body: text.clone(),
            })
            .unwrap();
            let (status, answer) = http(addr, "POST", "/notes", Some(&body)).await;
            assert_eq!(status, 200, "{answer}");
            let note: Note = serde_json::from_str(&answer).unwrap();
            assert_eq!(note.body, text);
            note
        }));
    }
    let mut notes = Vec::new();
    for c in created {
        notes.push(c.await.unwrap());
    }
    for note in &notes {
        let (status, answer) = http(addr, "GET", &format!("/notes/{}", note.id), None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(&serde_json::from_str::<Note>(&answer).unwrap(), note);
    }
    let (status, _) = http(addr, "GET", "/notes/-1", None).await;
    assert_eq!(status, 404);

    // 100 concurrent visits of one page on SQLite: every one counted exactly once.
    let mut visits = Vec::new();
    for _ in 0..100 {
        visits.push(tokio::spawn(async move {
            let (status, answer) = http(addr, "POST", "/visits/home", None).await;
            assert_eq!(status, 200, "{answer}");
            serde_json::from_str::<Visits>(&answer).unwrap().visits
        }));
    }
    let mut counts = Vec::new();
    for v in visits {
        counts.push(v.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<i64>>());

    let (status, answer) = http(addr, "GET", "/healthz", None).await;
    assert_eq!((status, answer.as_str()), (200, "ok"));

    let (status, text) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for needle in [
        "db_client_connection_count{db_client_connection_pool_name=\"postgres\",db_client_connection_state=\"idle\"}",
        "db_client_connection_max{db_client_connection_pool_name=\"postgres\"} 4",
        "db_client_connection_max{db_client_connection_pool_name=\"sqlite\"} 2",
        "db_client_connection_creates{db_client_connection_pool_name=\"postgres\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics:\n{text}");
    }

    // Every request's connection went back; the pools never opened more than their maximum.
    let pg = pg().unwrap();
    let status = pg.status();
    assert_eq!(status.in_use, 0);
    assert!(status.size <= 4);
    assert!(pg.metrics().connects <= 4, "{:?}", pg.metrics());
    assert_eq!(sqlite().unwrap().status().in_use, 0);
    server.abort();
}

#[test]
fn settings_load_from_the_sample_file_and_the_environment_and_hide_passwords() {
    let settings = Settings::load(
        Some(include_str!("../service.toml")),
        [
            ("SERVICE_PG_PASSWORD", "hunter2"),
            ("SERVICE_ADDR", "127.0.0.1:0"),
        ],
    )
    .expect("settings");
    assert_eq!(settings.addr(), "127.0.0.1:0");
    assert_eq!(settings.postgres.password.as_deref(), Some("hunter2"));
    assert_eq!(settings.postgres.statement_cache_capacity, Some(128));
    assert_eq!(
        settings.postgres.pool.leak_threshold,
        Some(Duration::from_secs(10))
    );
    assert!(!format!("{settings:?}").contains("hunter2"));

    let defaults = Settings::load(None, std::iter::empty::<(&str, &str)>()).expect("defaults");
    assert_eq!(
        defaults.postgres.application_name.as_deref(),
        Some("pool-example-service")
    );
    assert_eq!(
        defaults.sqlite.url.as_deref(),
        Some("sqlite://example-service.db")
    );

    let err = Settings::load(Some("[postgres]\nurll = \"x\"\n"), [("A", "b")]).unwrap_err();
    assert!(err.to_string().contains("urll"), "{err}");
    let err = Settings::load(None, [("SERVICE_SQLITE_MAX_SIZE", "many")]).unwrap_err();
    assert!(err.to_string().contains("SERVICE_SQLITE_MAX_SIZE"), "{err}");
}
