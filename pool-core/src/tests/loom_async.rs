//! The async front end's wake-ups: a request parked in `Pool::get_timeout` is woken through its
//! task's `Waker` (the core's `Wake::Task`), here a waker that unparks the model thread, so a
//! lost wake-up shows as a loom deadlock.
//!
//! As in `loom_cancel`, one model thread enters a current-thread runtime (for the request's
//! timer, which never fires) and drives the future itself.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::loom_support::{
    assert_live, assert_one_connect, check_quiescent, check_usable_then_drop, get, model, pool,
    thread, Counting, LONG,
};
use crate::{Pool, PoolError, Pooled};

/// Wakes a model thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `pool.get_timeout(LONG)` to completion on this thread: poll, park until woken, repeat.
fn get_async(
    pool: &Pool<Counting>,
    rt: &tokio::runtime::Runtime,
) -> Result<Pooled<Counting>, PoolError<std::io::Error>> {
    let _ctx = rt.enter();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(pool.get_timeout(LONG));
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(res) => return res,
            Poll::Pending => thread::park(),
        }
    }
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
    )
}

/// Pool of 1: an async request races the holder's check-in and always gets the connection.
#[test]
fn loom_async_checkout_races_checkin() {
    model(|| {
        let rt = runtime();
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || {
                let conn = get_async(&pool, &rt).expect("get");
                assert_live(&pool, &conn);
            })
        };
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
        drop(rt);
    });
}

/// Pool of 1, full: an async request waits while the holder closes the pool, then drops its
/// connection. The request gets `Closed`; the drop closes the connection.
#[test]
fn loom_async_close_while_waiting() {
    model(|| {
        let rt = runtime();
        let (pool, books) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || match get_async(&pool, &rt) {
                Err(PoolError::Closed) => {}
                Ok(conn) => panic!("got connection {} from a closed pool", *conn),
                Err(e) => panic!("expected Closed, got {e}"),
            })
        };
        pool.close();
        drop(held);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!(s.size, 0, "{s:?}");
        assert_eq!(
            books.connects(),
            books.closes(),
            "a connection was never closed"
        );
        drop(pool);
        drop(rt);
    });
}

/// Pool of 1, held: an async request gets twice in a row while this thread returns the
/// connection, takes it again (a blocking get) and returns it. In the runs where the request
/// queues both times, the second queueing reuses the grant cell the first one kept (see
/// `crate::core::cell`) while this thread's hand-over and check-in run. Every get has the live
/// connection, and nothing is lost or handed out twice.
#[test]
fn loom_async_request_reuses_its_cell() {
    model(|| {
        let rt = runtime();
        let (pool, _) = pool(1);
        let held = get(&pool);
        let b = {
            let (pool, rt) = (pool.clone(), rt.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    let conn = get_async(&pool, &rt).expect("get");
                    assert_live(&pool, &conn);
                }
            })
        };
        drop(held);
        let again = get(&pool);
        assert_live(&pool, &again);
        drop(again);
        b.join().unwrap();
        let s = check_quiescent(&pool);
        assert_eq!((s.size, s.idle), (1, 1), "{s:?}");
        assert_one_connect(&pool);
        check_usable_then_drop(pool);
        drop(rt);
    });
}
