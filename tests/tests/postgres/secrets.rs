//! The password never shows in `Debug`, `Display` or errors (log output: the `postgres_logs`
//! test binary).

use pool_postgres::{Manager, Pool};

use pool_tests::error_chain;

const MARKER: &str = "s3cr3t-marker";

#[test]
fn debug_of_manager_and_pool_redacts_the_password() {
    let url = format!("postgres://postgres:{MARKER}@127.0.0.1:5432/test");
    let manager = Manager::from_url(&url).unwrap().application_name("x");
    let text = format!("{manager:?}");
    assert!(!text.contains(MARKER), "{text}");
    assert!(
        text.contains("127.0.0.1"),
        "Debug still shows the harmless parts: {text}"
    );
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let text = format!("{pool:?}");
    assert!(!text.contains(MARKER), "{text}");
}

#[test]
fn config_errors_do_not_contain_the_password() {
    for bad in [
        format!("postgres://postgres:{MARKER}@127.0.0.1:notaport/test"),
        format!("postgres://postgres:{MARKER}@[::1/test"),
        format!("host=127.0.0.1 password={MARKER} port"),
    ] {
        let err = Manager::from_url(&bad).unwrap_err();
        let text = error_chain(&err);
        assert!(!text.contains(MARKER), "{text}");
    }
}
