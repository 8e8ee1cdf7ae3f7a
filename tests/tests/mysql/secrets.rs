//! The password never shows in `Debug`, `Display`, errors or log output.

use std::time::Duration;

use pool_mysql::mysql_async::prelude::*;
use pool_mysql::mysql_async::{Opts, OptsBuilder};
use pool_mysql::{Manager, Pool};

use crate::util::{free_port, url, TestUser};

use pool_tests::{error_chain, LogCapture};

const MARKER: &str = "s3cr3t-marker";

#[test]
fn debug_of_manager_and_pool_redacts_the_password() {
    let url = format!("mysql://root:{MARKER}@127.0.0.1:3306/test");
    let manager = Manager::from_url(&url).unwrap().time_zone("+00:00");
    let text = format!("{manager:?}");
    assert!(!text.contains(MARKER), "{text}");
    assert!(
        text.contains("127.0.0.1") && text.contains("redacted"),
        "{text}"
    );
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let text = format!("{pool:?}");
    assert!(!text.contains(MARKER), "{text}");
}

#[test]
fn config_errors_do_not_contain_the_password() {
    for bad in [
        format!("mysql://root:{MARKER}@127.0.0.1:notaport/test"),
        format!("mysql://root:{MARKER}@127.0.0.1/test?no_such_option=1"),
        format!("mysql://root:{MARKER}@127.0.0.1/test?pool_min=9&pool_max=1"),
    ] {
        let err = Manager::from_url(&bad).unwrap_err();
        let text = error_chain(&err);
        assert!(!text.contains(MARKER), "{text}");
    }
}

#[test]
fn connect_errors_and_logs_do_not_contain_the_password() {
    let Some(url) = url() else { return };
    let logs = LogCapture::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Unreachable port.
        let unreachable = format!("mysql://root:{MARKER}@127.0.0.1:{}/test", free_port());
        let pool = Pool::builder(Manager::from_url(&unreachable).unwrap())
            .connect_timeout(Duration::from_millis(500))
            .wait_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let err = pool.get().await.unwrap_err();
        assert!(!error_chain(&err).contains(MARKER), "{}", error_chain(&err));

        // Wrong password on the real server.
        let user = TestUser::create(&url).await;
        let pool = Pool::builder(Manager::new(user.opts().pass(Some(MARKER))))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let err = pool.get().await.unwrap_err();
        assert!(!error_chain(&err).contains(MARKER), "{}", error_chain(&err));
        drop(pool);

        // A working connection with the marker as its real password.
        let mut admin = crate::util::admin(&url).await;
        for host in ["%", "localhost", "127.0.0.1"] {
            admin
                .query_drop(format!(
                    "ALTER USER '{}'@'{host}' IDENTIFIED BY '{MARKER}'",
                    user.name
                ))
                .await
                .unwrap();
        }
        let opts = OptsBuilder::from_opts(Opts::from(user.opts())).pass(Some(MARKER));
        let pool = Pool::builder(Manager::new(opts))
            .max_size(1)
            .build()
            .unwrap();
        {
            let conn = pool.get().await.unwrap();
            let text = format!("{conn:?} {:?}", &*conn);
            assert!(!text.contains(MARKER), "{text}");
        }
        pool.close();
        tokio::time::sleep(Duration::from_millis(100)).await;
        user.drop_user().await;
    });
    drop(rt);
    let logs = logs.text();
    assert!(
        !logs.is_empty(),
        "the subscriber must have captured something"
    );
    assert!(!logs.contains(MARKER), "{logs}");
}
