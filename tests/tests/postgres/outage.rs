//! The server goes down while tasks use the pool, stays down, and comes back (the shared
//! scenario in `pool_tests::outage`), against a throwaway PostgreSQL server.

use pool_postgres::Manager;
use pool_tests::outage::{survives_a_server_restart, Restartable};

use crate::server::{PgServer, PASSWORD};

impl Restartable for PgServer {
    fn stop(&mut self) {
        PgServer::stop(self);
    }

    fn resume(&mut self) {
        PgServer::resume(self);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_a_server_restart() {
    let server = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let manager = Manager::from_url(&server.url_with(PASSWORD, "postgres")).unwrap();
    survives_a_server_restart(server, manager, |pool| async move {
        let client = pool
            .get()
            .await
            .map_err(|e| pool_core::Report::new(&e).to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
}
