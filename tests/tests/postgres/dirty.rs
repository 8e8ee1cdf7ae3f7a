//! A connection returned inside a transaction must reach its next user clean.

use pool_postgres::{Manager, Pool, ResetMode};

use crate::util::{admin, url};

async fn check_no_leak(mode: ResetMode, how: &str) {
    let Some(url) = url() else { return };
    let table = pool_tests::unique_name("pg_dirty");
    let admin = admin(&url).await;
    admin
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let pool = Pool::builder(Manager::from_url(&url).unwrap().reset_mode(mode))
        .max_size(1)
        .build()
        .unwrap();

    let pid: i32 = {
        let mut client = pool.get().await.unwrap();
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let insert = format!("INSERT INTO {table} VALUES (1)");
        match how {
            "batch" => client
                .batch_execute(&format!("BEGIN; {insert}"))
                .await
                .unwrap(),
            "execute" => {
                client.execute("START TRANSACTION", &[]).await.unwrap();
                client.execute(&insert, &[]).await.unwrap();
            }
            "typed" => {
                let tx = client.transaction().await.unwrap();
                tx.execute(&insert, &[]).await.unwrap();
                std::mem::forget(tx); // not even the driver's drop-rollback runs
            }
            _ => unreachable!(),
        }
        pid
        // dropped here without COMMIT
    };

    let client = pool.get().await.unwrap();
    let again: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        pid, again,
        "max_size 1: the very same connection comes back"
    );
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the uncommitted insert must be gone ({how})");
    // Outside a transaction, no transaction id is assigned to a plain SELECT.
    crate::util::assert_outside_transaction(
        &client,
        "the next user must not be inside a transaction",
    )
    .await;
    let state: String = admin
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_ne!(state, "idle in transaction");
    let seen: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    drop(client);
    admin
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn begin_via_batch_execute_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "batch").await;
}

#[tokio::test]
async fn begin_via_execute_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "execute").await;
}

#[tokio::test]
async fn forgotten_typed_transaction_does_not_leak() {
    check_no_leak(ResetMode::Rollback, "typed").await;
}

#[tokio::test]
async fn discard_all_mode_does_not_leak_and_keeps_startup_settings() {
    check_no_leak(ResetMode::DiscardAll, "batch").await;
    let Some(url) = url() else { return };
    let app = pool_tests::unique_name("pg_discard");
    let manager = Manager::from_url(&url)
        .unwrap()
        .application_name(&app)
        .reset_mode(ResetMode::DiscardAll);
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    {
        let client = pool.get().await.unwrap();
        client
            .batch_execute("SET application_name = 'changed'")
            .await
            .unwrap();
        client.prepare_cached("SELECT 1").await.unwrap();
    }
    let client = pool.get().await.unwrap();
    assert_eq!(client.statement_cache_len(), 0);
    let name: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, app);
    client
        .prepare_cached("SELECT 1")
        .await
        .expect("prepares again after DISCARD ALL");
}

/// A pool of one connection, to count the resets of that connection.
fn counting_pool(url: &str) -> Pool {
    Pool::builder(Manager::from_url(url).unwrap())
        .max_size(1)
        .build()
        .unwrap()
}

async fn backend_pid(client: &pool_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn clean_connections_are_not_reset() {
    let Some(url) = url() else { return };
    let pool = counting_pool(&url);
    let pid = backend_pid(&pool.get().await.unwrap()).await;
    for i in 0i32..20 {
        let client = pool.get().await.unwrap();
        match i % 4 {
            0 => {
                client.query_one("SELECT 1", &[]).await.unwrap();
            }
            1 => client.batch_execute("SELECT 1; SELECT 2").await.unwrap(),
            2 => {
                // A committed transaction ends idle.
                client
                    .batch_execute("BEGIN; SELECT 1; COMMIT")
                    .await
                    .unwrap();
            }
            _ => {
                let statement = client.prepare_cached("SELECT $1::int").await.unwrap();
                client.query(&statement, &[&i]).await.unwrap();
                // An uncached statement is closed (Close + Sync) when dropped.
                client.query_one("SELECT 2", &[]).await.unwrap();
            }
        }
    }
    let client = pool.get().await.unwrap();
    assert_eq!(
        backend_pid(&client).await,
        pid,
        "the same connection all along"
    );
    assert_eq!(
        pool.manager().resets(),
        0,
        "a connection returned idle must not pay a ROLLBACK"
    );
}

#[tokio::test]
async fn connections_left_in_a_transaction_are_reset() {
    let Some(url) = url() else { return };
    let pool = counting_pool(&url);
    let cases: [(&str, &str); 4] = [
        ("open", "BEGIN"),
        ("failed", "BEGIN; SELECT 1/0"),
        ("savepoint", "BEGIN; SAVEPOINT a"),
        (
            "serializable",
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ),
    ];
    for (n, (what, sql)) in cases.into_iter().enumerate() {
        {
            let client = pool.get().await.unwrap();
            let _ = client.batch_execute(sql).await;
        }
        let client = pool.get().await.unwrap();
        crate::util::assert_outside_transaction(
            &client,
            &format!("{what}: the next user is outside a transaction"),
        )
        .await;
        assert_eq!(pool.manager().resets(), n as u64 + 1, "{what}: reset once");
    }
}

#[tokio::test]
async fn a_cancelled_query_makes_the_connection_dirty() {
    let Some(url) = url() else { return };
    let pool = counting_pool(&url);
    {
        let client = pool.get().await.unwrap();
        // Cancelled after the request reached the server, before its answer arrived.
        let slow = client.batch_execute("SELECT pg_sleep(0.5)");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(100), slow)
                .await
                .is_err()
        );
    }
    let client = pool.get().await.unwrap();
    assert_eq!(pool.manager().resets(), 1, "unanswered request: reset");
    client.query_one("SELECT 1", &[]).await.unwrap();
}
