//! The pooled connection: a raw `mysql_async::Conn` and what its holder did with it.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::Poll;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::{AsQuery, FromRow, Queryable, StatementLike};
use mysql_async::{
    BinaryProtocol, Conn, Params, QueryResult, ResultSetStream, Statement, TextProtocol,
};

/// The future type of [`Queryable`]'s methods.
type QueryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, mysql_async::Error>> + Send + 'a>>;

/// One pooled MySQL/MariaDB connection: a raw [`mysql_async::Conn`] (never one of mysql_async's
/// own pool).
///
/// It implements [`Queryable`] itself, so `conn.query_drop(…)`, `conn.exec_first(…)` and the
/// other `Queryable` methods work on a pooled connection directly, and it derefs to [`Conn`] for
/// everything else (use [`ConnWrapper::conn_mut`] or `&mut **conn` where a `&mut Conn` is
/// needed).
///
/// # What the pool cleans
///
/// The pool cleans a connection before its next user only when the holder may have left a
/// transaction behind (see [`crate::ResetMode`]), and tells so without asking the server:
///
/// - a `Queryable` method called on the wrapper that reads its whole result (every method but
///   `query_iter`, `exec_iter`, `query_stream`, `exec_stream` and `query_map`; use `query` or
///   `query_fold` instead of the last) leaves the server's status
///   flags of its last reply in [`Conn::last_ok_packet`]; when the last such call ended with the
///   server outside a transaction, autocommit on and no result pending, the connection is clean;
/// - anything the wrapper cannot follow makes the connection *dirty*: a mutable borrow of the
///   raw `Conn` (`conn_mut`, `DerefMut`, `AsMut`, e.g. `start_transaction`), a call that may leave
///   a result unread (`query_iter`, `exec_iter`, the streams) or `query_map`, a call whose future was dropped
///   before it finished, or a call that failed (the server's status is then unknown).
///
/// Unlike `Conn`'s, its `Debug` output never shows the connection options (which hold the
/// password).
pub struct ConnWrapper {
    conn: Conn,
    state: UseState,
}

/// What the current holder did with the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UseState {
    /// A tracked call read its whole result: the last reply's status flags tell the state.
    queried: bool,
    /// A tracked call started and has not finished (its future may have been dropped).
    in_flight: bool,
    /// The holder did something the wrapper cannot follow.
    dirty: bool,
}

impl ConnWrapper {
    pub(crate) fn new(conn: Conn) -> Self {
        ConnWrapper {
            conn,
            state: UseState::default(),
        }
    }

    /// The raw connection (marks this connection dirty: it is cleaned before its next user).
    pub fn conn_mut(&mut self) -> &mut Conn {
        self.state.dirty = true;
        &mut self.conn
    }

    /// Takes the raw connection out (it then no longer belongs to any pool; see
    /// `pool_core::Pooled::detach`).
    pub fn into_inner(self) -> Conn {
        self.conn
    }

    pub(crate) fn raw(&self) -> &Conn {
        &self.conn
    }

    pub(crate) fn raw_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Whether the holder used the connection at all.
    pub(crate) fn was_used(&self) -> bool {
        self.state != UseState::default()
    }

    /// Whether the holder may have left a transaction open (or autocommit off, or a result
    /// unread), as far as can be told without I/O.
    pub(crate) fn may_be_in_transaction(&self) -> bool {
        let UseState {
            queried,
            in_flight,
            dirty,
        } = self.state;
        if dirty || in_flight {
            return true;
        }
        if !queried {
            return false;
        }
        self.conn.last_ok_packet().is_none_or(|ok| {
            let flags = ok.status_flags();
            flags.intersects(
                StatusFlags::SERVER_STATUS_IN_TRANS | StatusFlags::SERVER_MORE_RESULTS_EXISTS,
            ) || !flags.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)
        })
    }

    pub(crate) fn set_clean(&mut self) {
        self.state = UseState::default();
    }

    /// Runs a call that reads its whole result, with the connection counted in flight until the
    /// call has finished (a dropped future leaves it dirty).
    fn tracked<'b, T, F>(&'b mut self, call: F) -> QueryFuture<'b, T>
    where
        T: 'b,
        F: FnOnce(&'b mut Conn) -> QueryFuture<'b, T>,
    {
        let ConnWrapper { conn, state } = self;
        state.in_flight = true;
        let mut fut = call(conn);
        Box::pin(std::future::poll_fn(move |cx| {
            let result = std::task::ready!(fut.as_mut().poll(cx));
            state.in_flight = false;
            state.queried = true;
            if result.is_err() {
                state.dirty = true;
            }
            Poll::Ready(result)
        }))
    }
}

impl Deref for ConnWrapper {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for ConnWrapper {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn_mut()
    }
}

impl AsMut<Conn> for ConnWrapper {
    fn as_mut(&mut self) -> &mut Conn {
        self.conn_mut()
    }
}

impl fmt::Debug for ConnWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnWrapper")
            .field("id", &self.conn.id())
            .field("server_version", &self.conn.server_version())
            .field("disconnected", &self.conn.is_disconnected())
            .field("used", &self.was_used())
            .finish_non_exhaustive()
    }
}

/// Every method runs on the raw [`Conn`]. Those that read their whole result are tracked (see
/// [the type's documentation](ConnWrapper#what-the-pool-cleans)); the others mark the
/// connection dirty.
impl Queryable for ConnWrapper {
    fn ping(&mut self) -> QueryFuture<'_, ()> {
        self.tracked(|c| c.ping())
    }

    fn query_iter<'a, Q>(
        &'a mut self,
        query: Q,
    ) -> QueryFuture<'a, QueryResult<'a, 'static, TextProtocol>>
    where
        Q: AsQuery + 'a,
    {
        self.conn_mut().query_iter(query)
    }

    fn prep<'a, Q>(&'a mut self, query: Q) -> QueryFuture<'a, Statement>
    where
        Q: AsQuery + 'a,
    {
        self.tracked(|c| c.prep(query))
    }

    fn close(&mut self, stmt: Statement) -> QueryFuture<'_, ()> {
        self.tracked(|c| c.close(stmt))
    }

    fn exec_iter<'a: 's, 's, Q, P>(
        &'a mut self,
        stmt: Q,
        params: P,
    ) -> QueryFuture<'s, QueryResult<'a, 'static, BinaryProtocol>>
    where
        Q: StatementLike + 's,
        P: Into<Params>,
    {
        self.conn_mut().exec_iter(stmt, params)
    }

    fn query<'a, T, Q>(&'a mut self, query: Q) -> QueryFuture<'a, Vec<T>>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
    {
        self.tracked(|c| c.query(query))
    }

    fn query_first<'a, T, Q>(&'a mut self, query: Q) -> QueryFuture<'a, Option<T>>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
    {
        self.tracked(|c| c.query_first(query))
    }

    fn query_map<'a, T, F, Q, U>(&'a mut self, query: Q, f: F) -> QueryFuture<'a, Vec<U>>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
        F: FnMut(T) -> U + Send + 'a,
        U: Send,
    {
        // Untracked: `U` need not outlive `'a` here, which a wrapping future would need.
        self.conn_mut().query_map(query, f)
    }

    fn query_fold<'a, T, F, Q, U>(&'a mut self, query: Q, init: U, f: F) -> QueryFuture<'a, U>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
        F: FnMut(U, T) -> U + Send + 'a,
        U: Send + 'a,
    {
        self.tracked(|c| c.query_fold(query, init, f))
    }

    fn query_drop<'a, Q>(&'a mut self, query: Q) -> QueryFuture<'a, ()>
    where
        Q: AsQuery + 'a,
    {
        self.tracked(|c| c.query_drop(query))
    }

    fn exec_batch<'a: 'b, 'b, S, P, I>(&'a mut self, stmt: S, params_iter: I) -> QueryFuture<'b, ()>
    where
        S: StatementLike + 'b,
        I: IntoIterator<Item = P> + Send + 'b,
        I::IntoIter: Send,
        P: Into<Params> + Send,
    {
        self.tracked(|c| c.exec_batch(stmt, params_iter))
    }

    fn exec<'a: 'b, 'b, T, S, P>(&'a mut self, stmt: S, params: P) -> QueryFuture<'b, Vec<T>>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
        T: FromRow + Send + 'static,
    {
        self.tracked(|c| c.exec(stmt, params))
    }

    fn exec_first<'a: 'b, 'b, T, S, P>(
        &'a mut self,
        stmt: S,
        params: P,
    ) -> QueryFuture<'b, Option<T>>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
        T: FromRow + Send + 'static,
    {
        self.tracked(|c| c.exec_first(stmt, params))
    }

    fn exec_map<'a: 'b, 'b, T, S, P, U, F>(
        &'a mut self,
        stmt: S,
        params: P,
        f: F,
    ) -> QueryFuture<'b, Vec<U>>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
        T: FromRow + Send + 'static,
        F: FnMut(T) -> U + Send + 'a,
        U: Send + 'a,
    {
        self.tracked(|c| c.exec_map(stmt, params, f))
    }

    fn exec_fold<'a: 'b, 'b, T, S, P, U, F>(
        &'a mut self,
        stmt: S,
        params: P,
        init: U,
        f: F,
    ) -> QueryFuture<'b, U>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
        T: FromRow + Send + 'static,
        F: FnMut(U, T) -> U + Send + 'a,
        U: Send + 'a,
    {
        self.tracked(|c| c.exec_fold(stmt, params, init, f))
    }

    fn exec_drop<'a: 'b, 'b, S, P>(&'a mut self, stmt: S, params: P) -> QueryFuture<'b, ()>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
    {
        self.tracked(|c| c.exec_drop(stmt, params))
    }

    fn query_stream<'a, T, Q>(
        &'a mut self,
        query: Q,
    ) -> QueryFuture<'a, ResultSetStream<'a, 'a, 'static, T, TextProtocol>>
    where
        T: Unpin + FromRow + Send + 'static,
        Q: AsQuery + 'a,
    {
        self.conn_mut().query_stream(query)
    }

    fn exec_stream<'a: 's, 's, T, Q, P>(
        &'a mut self,
        stmt: Q,
        params: P,
    ) -> QueryFuture<'s, ResultSetStream<'a, 'a, 'static, T, BinaryProtocol>>
    where
        T: Unpin + FromRow + Send + 'static,
        Q: StatementLike + 's,
        P: Into<Params> + Send + 's,
    {
        self.conn_mut().exec_stream(stmt, params)
    }
}
