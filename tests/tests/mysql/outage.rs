//! The server goes down while tasks use the pool, stays down, and comes back (the shared
//! scenario in `pool_tests::outage`), against a throwaway MariaDB server.

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::Manager;
use pool_tests::outage::{survives_a_server_restart, Restartable};

use crate::server::MariaServer;

impl Restartable for MariaServer {
    fn stop(&mut self) {
        MariaServer::stop(self);
    }

    fn resume(&mut self) {
        MariaServer::resume(self);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_a_server_restart() {
    let server = tokio::task::spawn_blocking(MariaServer::start)
        .await
        .unwrap();
    let manager = Manager::from_url(&server.url()).unwrap();
    survives_a_server_restart(server, manager, |pool| async move {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| pool_core::Report::new(&e).to_string())?;
        conn.query_drop("SELECT 1").await.map_err(|e| e.to_string())
    })
    .await;
}
