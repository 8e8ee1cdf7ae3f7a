//! Helpers of the MySQL tests.

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::mysql_async::{Conn, Opts, OptsBuilder};

/// The URL of the machine's server, or `None` (outside CI only) when it is unreachable.
pub(crate) fn url() -> Option<String> {
    let url = pool_tests::mysql_url();
    pool_tests::require_server("MariaDB/MySQL (POOL_TEST_MYSQL_URL)", &url).then_some(url)
}

/// A plain driver connection, outside any pool.
pub(crate) async fn admin(url: &str) -> Conn {
    Conn::new(Opts::from_url(url).unwrap())
        .await
        .expect("admin connection")
}

pub(crate) use pool_tests::free_port;

/// A user of this test only (so its sessions can be counted), dropped by [`TestUser::drop_user`].
pub(crate) struct TestUser {
    pub(crate) name: String,
    pub(crate) password: String,
    url: String,
}

impl TestUser {
    pub(crate) async fn create(url: &str) -> TestUser {
        let name = pool_tests::unique_name("pu");
        let password = format!("pw-{name}");
        let mut admin = admin(url).await;
        let db = Opts::from_url(url)
            .unwrap()
            .db_name()
            .unwrap_or("test")
            .to_owned();
        for host in ["%", "localhost", "127.0.0.1"] {
            admin
                .query_drop(format!(
                    "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"
                ))
                .await
                .unwrap();
            admin
                .query_drop(format!("GRANT ALL ON `{db}`.* TO '{name}'@'{host}'"))
                .await
                .unwrap();
        }
        admin.disconnect().await.unwrap();
        TestUser {
            name,
            password,
            url: url.to_owned(),
        }
    }

    /// Options of the test URL with this user and password. TCP only: with `prefer_socket`
    /// mysql_async opens a second, Unix-socket session for every connection and briefly holds
    /// both, which would blur the session counts.
    pub(crate) fn opts(&self) -> OptsBuilder {
        OptsBuilder::from_opts(Opts::from_url(&self.url).unwrap())
            .user(Some(self.name.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
    }

    pub(crate) async fn sessions(&self, admin: &mut Conn) -> i64 {
        admin
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE user = ?",
                (self.name.as_str(),),
            )
            .await
            .unwrap()
            .unwrap()
    }

    pub(crate) async fn drop_user(self) {
        let mut admin = admin(&self.url).await;
        for host in ["%", "localhost", "127.0.0.1"] {
            let _ = admin
                .query_drop(format!("DROP USER IF EXISTS '{}'@'{host}'", self.name))
                .await;
        }
        let _ = admin.disconnect().await;
    }
}
