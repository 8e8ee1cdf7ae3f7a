//! TLS: a throwaway PostgreSQL with `ssl=on`, a certificate the test generates, and a pool
//! connecting through rustls. The session is followed above TLS like a plaintext one: clean
//! connections cost no round trip at checkout, dirty ones are cleaned, cancels reach the server.

use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pool_postgres::tokio_postgres::Config;
use pool_postgres::{Manager, Pool};
use pool_tests::ServerProcess;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::replica::{run, start_server};
use crate::server::{bin, command, is_root};

struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
    _server: ServerProcess,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::Builder::new()
            .prefix("pool-pg-tls-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown",
            );
        }
        run(
            command(&bin("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]),
            "initdb",
        );
        // A self-signed certificate for 127.0.0.1, made as the server's user (the key must be
        // private to it).
        run(
            command("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=pool-test", "-addext"])
                .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
                // An end-entity certificate (rustls refuses a CA one used as the server's).
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(data.join("server.key"))
                .arg("-out")
                .arg(data.join("server.crt")),
            "openssl req",
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let port = crate::util::free_port();
        let server = start_server(
            dir.path(),
            &data,
            port,
            "tls",
            &[
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
            ],
        );
        TlsServer {
            dir,
            port,
            _server: server,
        }
    }

    fn config(&self, sslmode: &str) -> Config {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={sslmode}",
            self.port
        )
        .parse()
        .unwrap()
    }

    fn rustls(&self) -> rustls::ClientConfig {
        let cert = CertificateDer::from_pem_file(self.dir.path().join("data/server.crt"))
            .expect("the generated certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    fn pool(&self, max_size: usize) -> Pool {
        let manager = Manager::with_rustls(self.config("require"), self.rustls());
        Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    }
}

/// Asserts that the server sees `client`'s session over TLS.
async fn assert_tls_session(client: &pool_postgres::tokio_postgres::Client) {
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session runs over TLS");
}

fn poll_once_and_drop<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let _ = matches!(
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_are_followed_without_a_round_trip_per_checkout() {
    let server = tokio::task::spawn_blocking(TlsServer::start).await.unwrap();
    let pool = server.pool(2);

    {
        let client = pool.get().await.expect("a TLS connection");
        assert_tls_session(&client).await;
        client
            .batch_execute("CREATE TABLE tls_t (id int)")
            .await
            .unwrap();
    }

    // Used, clean connections: no ROLLBACK at checkout (before, every one got one).
    for _ in 0..100 {
        let client = pool.get().await.unwrap();
        client.query_one("SELECT 1", &[]).await.unwrap();
        client
            .batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .unwrap();
    }
    assert_eq!(
        pool.manager().resets(),
        0,
        "clean TLS sessions cost no round trip"
    );

    // A holder that leaves a transaction open, and one whose request was only queued.
    for i in 0..20 {
        {
            let client = pool.get().await.unwrap();
            if i % 2 == 0 {
                client
                    .batch_execute("BEGIN; INSERT INTO tls_t VALUES (1)")
                    .await
                    .unwrap();
            } else {
                poll_once_and_drop(client.batch_execute("BEGIN; INSERT INTO tls_t VALUES (1)"));
            }
        }
        let client = pool.get().await.unwrap();
        crate::util::assert_outside_transaction(
            &client,
            &format!("round {i}: the next user is outside any transaction"),
        )
        .await;
    }
    let leaked: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM tls_t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no abandoned insert was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_reach_a_tls_server_and_a_running_statement_does_not_block_the_next_user() {
    let server = tokio::task::spawn_blocking(TlsServer::start).await.unwrap();
    let pool = server.pool(1);

    // The wrapper's cancel, through the same TLS connector.
    {
        let client = pool.get().await.unwrap();
        let cancel = client.cancel_query();
        let sleeping = client.batch_execute("SELECT pg_sleep(10)");
        let canceller = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.await
        };
        let (slept, cancelled) = tokio::join!(sleeping, canceller);
        cancelled.expect("the cancel request is delivered");
        let err = slept.expect_err("the sleep was cancelled");
        assert_eq!(
            err.code(),
            Some(&pool_postgres::tokio_postgres::error::SqlState::QUERY_CANCELED)
        );
    }

    // Give up on a long statement: the next get (1 s... here 2 s deadline) is not stuck behind it.
    {
        let client = pool.get().await.unwrap();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(200),
            client.batch_execute("SELECT pg_sleep(5)"),
        )
        .await;
        assert!(gave_up.is_err());
    }
    let client = pool
        .get()
        .await
        .expect("served within the 2 s deadline although 4.8 s of sleep were left");
    client.query_one("SELECT 1", &[]).await.unwrap();
}

/// TLS from settings data: `tls_ca_file` (the PEM file of the certificate to trust) and
/// `sslmode=require` in the URL give a pool whose sessions run over rustls; a file without a
/// certificate is a typed error, not a plaintext pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_with_a_ca_file_connect_over_tls() {
    let server = tokio::task::spawn_blocking(TlsServer::start).await.unwrap();
    // The process-wide provider `Settings` uses (another test may have installed it first).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = server.dir.path().join("data/server.crt");
    let settings = pool_postgres::Settings::from_vars(
        "TLS_DB_",
        [
            (
                "TLS_DB_URL".to_owned(),
                format!(
                    "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
                    server.port
                ),
            ),
            ("TLS_DB_TLS_CA_FILE".to_owned(), ca.display().to_string()),
            ("TLS_DB_WAIT_TIMEOUT".to_owned(), "5s".to_owned()),
        ],
    )
    .expect("settings");
    let pool = settings.build().expect("pool");
    let client = pool.get().await.expect("a TLS connection from settings");
    assert_tls_session(&client).await;

    let not_pem = server.dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut bad = settings.clone();
    bad.tls_ca_file = Some(not_pem);
    let err = bad.build().expect_err("no certificate in the file");
    assert!(matches!(err, pool_postgres::ConfigError::Tls(_)), "{err:?}");
    let mut missing = settings;
    missing.tls_ca_file = Some(server.dir.path().join("nowhere.pem"));
    assert!(matches!(
        missing.build(),
        Err(pool_postgres::ConfigError::Tls(_))
    ));
}
