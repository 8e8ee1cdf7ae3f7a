//! `Pool::retry`: a unit of work reruns on a fresh connection while it fails transiently.

mod common;

use std::time::Duration;

use common::{builder, Behavior, Fake, FakeError};
use pool_core::{ErrorClass, PoolError, Pooled, RetryPolicy, WorkError};

fn classify(e: &FakeError) -> ErrorClass {
    if e.retryable {
        ErrorClass::ConnectionLost
    } else {
        ErrorClass::UniqueViolation
    }
}

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).delays(Duration::from_millis(1), Duration::from_millis(2))
}

fn lost(call: u64) -> WorkError<FakeError> {
    WorkError::Db(FakeError {
        op: "query",
        call,
        retryable: true,
    })
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_is_retried_on_a_fresh_one() {
    let fake = Fake::new();
    let pool = builder(&fake, 2).build().unwrap();
    let mut seen = Vec::new();
    let out = pool
        .retry(&policy(3), classify, |mut conn| {
            seen.push(conn.id);
            let first = seen.len() == 1;
            async move {
                if first {
                    // The connection broke under the work: it must not come back.
                    Pooled::mark_broken(&mut conn);
                    return Err(lost(1));
                }
                Ok(conn.id)
            }
        })
        .await
        .expect("the second attempt succeeds");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0], seen[1], "the rerun got a fresh connection");
    assert_eq!(out, seen[1]);
    assert_eq!(fake.connects(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried_and_attempts_are_bounded() {
    let fake = Fake::new();
    let pool = builder(&fake, 2).build().unwrap();
    let mut calls = 0;
    let err = pool
        .retry(&policy(5), classify, |_conn| {
            calls += 1;
            async {
                Err::<(), _>(WorkError::Db(FakeError {
                    op: "query",
                    call: 1,
                    retryable: false,
                }))
            }
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 1);
    assert!(
        matches!(err, WorkError::Db(ref e) if !e.retryable),
        "{err:?}"
    );

    let mut calls = 0;
    let err = pool
        .retry(&policy(3), classify, |_conn| {
            calls += 1;
            let n = calls;
            async move { Err::<(), _>(lost(n)) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls, 3, "max_attempts in all");
    assert_eq!(
        err.db().map(|e| e.call),
        Some(3),
        "the last attempt's error"
    );
}

#[tokio::test(start_paused = true)]
async fn a_database_that_cannot_be_reached_counts_as_transient() {
    let fake = Fake::new();
    fake.set_connect(Behavior::FAIL);
    let pool = builder(&fake, 2)
        .retry_connect(false)
        .fail_fast_after(100)
        .build()
        .unwrap();
    let mut ran = 0;
    let err = pool
        .retry(&policy(3), classify, |_conn| {
            ran += 1;
            async { Ok::<(), WorkError<FakeError>>(()) }
        })
        .await
        .unwrap_err();
    assert_eq!(ran, 0, "no connection, no work");
    assert!(
        matches!(err, WorkError::Pool(PoolError::Unavailable { .. })),
        "{err:?}"
    );
    assert_eq!(fake.connect_calls(), 3, "one get per attempt");
    // `?` converts both kinds of error inside the work.
    fn uses_question_mark(r: Result<(), FakeError>) -> Result<(), WorkError<FakeError>> {
        r?;
        Err(PoolError::Closed)?
    }
    assert!(matches!(
        uses_question_mark(Ok(())),
        Err(WorkError::Pool(PoolError::Closed))
    ));
}
