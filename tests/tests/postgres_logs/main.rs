//! The pool's log output never contains the password, and the connection task's errors are
//! logged. In a test binary of its own: `tracing` caches per call site whether anyone listens, and
//! the other PostgreSQL tests, hitting the same call sites on other threads while this test's
//! thread-local subscriber is being installed, can leave a call site cached as unheard.

use std::time::Duration;

use pool_postgres::tokio_postgres::{Config, NoTls};
use pool_postgres::{Manager, Pool};
use pool_tests::{error_chain, free_port, LogCapture};

const MARKER: &str = "s3cr3t-marker";

fn url() -> Option<String> {
    let url = pool_tests::pg_url();
    pool_tests::require_server("PostgreSQL (POOL_TEST_PG_URL)", &url).then_some(url)
}

async fn admin(url: &str) -> pool_postgres::tokio_postgres::Client {
    let (client, connection) = pool_postgres::tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[test]
fn connect_errors_and_logs_do_not_contain_the_password() {
    let Some(url) = url() else { return };
    let logs = LogCapture::start();
    // A current-thread runtime, so every task logs to this thread's subscriber.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Unreachable port.
        let pool = Pool::builder(
            Manager::from_url(&format!(
                "postgres://postgres:{MARKER}@127.0.0.1:{}/test",
                free_port()
            ))
            .unwrap(),
        )
        .connect_timeout(Duration::from_millis(500))
        .wait_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
        let err = pool.get().await.unwrap_err();
        assert!(!error_chain(&err).contains(MARKER), "{}", error_chain(&err));

        // Unknown database, password given (the local server trusts it).
        let mut config: Config = url.parse().unwrap();
        config.password(MARKER);
        let mut no_db = config.clone();
        no_db.dbname(pool_tests::unique_name("nodb"));
        let pool = Pool::builder(Manager::new(no_db)).build().unwrap();
        let err = pool.get().await.unwrap_err();
        assert!(!error_chain(&err).contains(MARKER), "{}", error_chain(&err));

        // A working connection that the server kills: its task logs the error.
        let pool = Pool::builder(Manager::new(config))
            .max_size(1)
            .build()
            .unwrap();
        let pid: i32 = {
            let client = pool.get().await.unwrap();
            let text = format!("{client:?} {:?}", &*client);
            assert!(!text.contains(MARKER), "{text}");
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0)
        };
        let admin = admin(&url).await;
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        // Wait (bounded) until the connection task has seen the termination and logged it.
        for _ in 0..200 {
            if logs.text().contains("connection ended with an error") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(pool.get().await.unwrap());
        pool.close();
    });
    drop(rt);
    let logs = logs.text();
    assert!(
        logs.contains("connection ended with an error"),
        "the connection task's error must be logged: {logs}"
    );
    assert!(!logs.contains(MARKER), "{logs}");
    // The connect-failed event carries the root cause, not only the driver's top line.
    let refused = logs
        .lines()
        .find(|l| l.contains("connect failed"))
        .unwrap_or_else(|| panic!("no connect-failed event: {logs}"));
    assert!(
        refused.to_lowercase().contains("refused"),
        "the event must name the root cause: {refused}"
    );
}
