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

use crate::probe::{Peek, Probe};

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
/// The wrapper follows what its holder did, without I/O, so that the pool cleans a connection
/// only when its next user could otherwise inherit something (see [`crate::ResetMode`] and the
/// crate's README for the table of session state):
///
/// - a `Queryable` method called on the wrapper that reads its whole result (every method but
///   `query_iter`, `exec_iter`, `query_stream`, `exec_stream` and `query_map`; use `query` or
///   `query_fold` instead of the last) leaves the server's status flags of its last reply in
///   [`Conn::last_ok_packet`]: they tell whether a transaction is open or autocommit off;
/// - the text of each `query*` statement tells whether it may change session state (`SET`,
///   `USE`, `@`, `GET_LOCK`, `TEMPORARY`, several statements…); an `exec*` call may (its
///   prepared statement's text is not seen);
/// - anything the wrapper cannot follow makes the connection *dirty*: a mutable borrow of the
///   raw `Conn` (`conn_mut`, `DerefMut`, `AsMut`, e.g. `start_transaction`), a call that may leave
///   a result unread (`query_iter`, `exec_iter`, the streams) or `query_map`, a call whose future
///   was dropped before it finished, or a call that failed (the server's status is then unknown).
///
/// Unlike `Conn`'s, its `Debug` output never shows the connection options (which hold the
/// password).
pub struct ConnWrapper {
    conn: Conn,
    state: UseState,
    /// A duplicate of the socket, to see a peer close without a round trip (`None`: unknown,
    /// the manager pings at checkout instead). Dropped with the connection.
    probe: Option<Probe>,
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
    /// A statement may have changed session state (variables, temporary tables, named locks,
    /// the default database…): see [`session_effect`].
    session: bool,
    /// A statement may have changed the default database (`USE`).
    database: bool,
}

impl ConnWrapper {
    pub(crate) fn new(conn: Conn, probe: Option<Probe>) -> Self {
        ConnWrapper {
            conn,
            state: UseState::default(),
            probe,
        }
    }

    /// The raw connection (marks this connection dirty: it is cleaned before its next user, by
    /// `COM_RESET_CONNECTION` under the default [`crate::ResetMode::Session`]).
    pub fn conn_mut(&mut self) -> &mut Conn {
        self.state.dirty = true;
        &mut self.conn
    }

    /// Takes the raw connection out (it then no longer belongs to any pool; see
    /// `pool_core::Pooled::detach`).
    pub fn into_inner(self) -> Conn {
        // The probe's duplicate socket must not outlive the pool's hold on the connection.
        drop(self.probe);
        self.conn
    }

    /// Whether the server closed the connection or the network reset it, seen without a round
    /// trip (see `probe.rs`): end of stream or a socket error, or bytes waiting on a connection
    /// with no request outstanding. `None` when the connection has no probe.
    pub(crate) fn peer_gone(&self) -> Option<bool> {
        let probe = self.probe.as_ref()?;
        Some(match probe.peek() {
            Peek::Idle => false,
            Peek::Closed => true,
            // Unread bytes are expected only while a result is pending.
            Peek::Data => !(self.state.dirty || self.state.in_flight),
        })
    }

    /// Whether the socket can be probed (else the manager pings at checkout).
    pub(crate) fn has_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Whether the holder may have changed session state (see [`session_effect`]), or done
    /// something the wrapper cannot follow.
    pub(crate) fn may_have_changed_session(&self) -> bool {
        self.state.session || self.state.dirty || self.state.in_flight
    }

    /// Whether the holder may have changed the default database.
    pub(crate) fn may_have_changed_database(&self) -> bool {
        self.state.database || self.state.dirty || self.state.in_flight
    }

    /// Whether a call's future was dropped before its reply was read (the statement may still
    /// be running on the server).
    pub(crate) fn was_cancelled(&self) -> bool {
        self.state.in_flight
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
            ..
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
    fn tracked<'b, T, F>(&'b mut self, effect: Effect, call: F) -> QueryFuture<'b, T>
    where
        T: 'b,
        F: FnOnce(&'b mut Conn) -> QueryFuture<'b, T>,
    {
        let ConnWrapper { conn, state, .. } = self;
        state.in_flight = true;
        state.session |= effect.session;
        state.database |= effect.database;
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
        self.tracked(Effect::NONE, |c| c.ping())
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
        self.tracked(Effect::NONE, |c| c.prep(query))
    }

    fn close(&mut self, stmt: Statement) -> QueryFuture<'_, ()> {
        self.tracked(Effect::NONE, |c| c.close(stmt))
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
        self.tracked(session_effect(&query.as_query()), |c| c.query(query))
    }

    fn query_first<'a, T, Q>(&'a mut self, query: Q) -> QueryFuture<'a, Option<T>>
    where
        Q: AsQuery + 'a,
        T: FromRow + Send + 'static,
    {
        self.tracked(session_effect(&query.as_query()), |c| c.query_first(query))
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
        self.tracked(session_effect(&query.as_query()), |c| {
            c.query_fold(query, init, f)
        })
    }

    fn query_drop<'a, Q>(&'a mut self, query: Q) -> QueryFuture<'a, ()>
    where
        Q: AsQuery + 'a,
    {
        self.tracked(session_effect(&query.as_query()), |c| c.query_drop(query))
    }

    fn exec_batch<'a: 'b, 'b, S, P, I>(&'a mut self, stmt: S, params_iter: I) -> QueryFuture<'b, ()>
    where
        S: StatementLike + 'b,
        I: IntoIterator<Item = P> + Send + 'b,
        I::IntoIter: Send,
        P: Into<Params> + Send,
    {
        self.tracked(Effect::DOUBT, |c| c.exec_batch(stmt, params_iter))
    }

    fn exec<'a: 'b, 'b, T, S, P>(&'a mut self, stmt: S, params: P) -> QueryFuture<'b, Vec<T>>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
        T: FromRow + Send + 'static,
    {
        self.tracked(Effect::DOUBT, |c| c.exec(stmt, params))
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
        self.tracked(Effect::DOUBT, |c| c.exec_first(stmt, params))
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
        self.tracked(Effect::DOUBT, |c| c.exec_map(stmt, params, f))
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
        self.tracked(Effect::DOUBT, |c| c.exec_fold(stmt, params, init, f))
    }

    fn exec_drop<'a: 'b, 'b, S, P>(&'a mut self, stmt: S, params: P) -> QueryFuture<'b, ()>
    where
        S: StatementLike + 'b,
        P: Into<Params> + Send + 'b,
    {
        self.tracked(Effect::DOUBT, |c| c.exec_drop(stmt, params))
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

/// What a statement may do to the session beyond its transaction (which the status flags of the
/// server's reply tell exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    /// It may have changed session state.
    pub(crate) session: bool,
    /// It may have changed the default database.
    pub(crate) database: bool,
}

impl Effect {
    /// Leaves the session as it was.
    pub(crate) const NONE: Effect = Effect {
        session: false,
        database: false,
    };
    /// May change session state but not the default database (a prepared statement, whose text
    /// the wrapper does not see; `USE` cannot be prepared).
    pub(crate) const DOUBT: Effect = Effect {
        session: true,
        database: false,
    };
    /// May change anything.
    pub(crate) const ALL: Effect = Effect {
        session: true,
        database: true,
    };
}

/// Reads a statement's text to tell whether it may change session state, erring on the side of
/// "may" (the cost of a wrong "may" is one `COM_RESET_CONNECTION`; of a wrong "no", a leak).
///
/// mysql_async does not ask for `CLIENT_SESSION_TRACK`, so the server never sets
/// `SERVER_SESSION_STATE_CHANGED` for it: the text is all there is. A statement leaves the
/// session alone only when it is one statement (no `;` but trailing ones), starts (no leading
/// comment) with `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `WITH`, `VALUES`, `TABLE`,
/// `SHOW`, `DESC[RIBE]`, `EXPLAIN`, `BEGIN`, `START`, `COMMIT`, `ROLLBACK`, `SAVEPOINT` or
/// `RELEASE`, and contains no `@` (user variables, `INTO @x`), no `GET_LOCK` and no
/// `TEMPORARY`. Anything else (`SET`, `USE`, `CALL`, `DO`, `PREPARE`, `LOCK TABLES`, DDL…) may.
/// Not seen: a stored function called from a `SELECT` that sets a variable or takes a named lock.
pub(crate) fn session_effect(sql: &[u8]) -> Effect {
    let text = sql.trim_ascii();
    let mut body = text;
    while let Some(rest) = body.strip_suffix(b";") {
        body = rest.trim_ascii_end();
    }
    if body.contains(&b';') {
        return Effect::ALL;
    }
    let word_end = body
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(body.len());
    let word = body[..word_end].to_ascii_uppercase();
    if word == b"USE" {
        return Effect::ALL;
    }
    const HARMLESS: &[&[u8]] = &[
        b"SELECT",
        b"INSERT",
        b"UPDATE",
        b"DELETE",
        b"REPLACE",
        b"WITH",
        b"VALUES",
        b"TABLE",
        b"SHOW",
        b"DESC",
        b"DESCRIBE",
        b"EXPLAIN",
        b"BEGIN",
        b"START",
        b"COMMIT",
        b"ROLLBACK",
        b"SAVEPOINT",
        b"RELEASE",
    ];
    if !HARMLESS.contains(&word.as_slice()) {
        return Effect::DOUBT;
    }
    let upper = body.to_ascii_uppercase();
    let has = |needle: &[u8]| upper.windows(needle.len()).any(|w| w == needle);
    if body.contains(&b'@') || has(b"GET_LOCK") || has(b"TEMPORARY") {
        return Effect::DOUBT;
    }
    Effect::NONE
}

#[cfg(test)]
mod tests {
    use super::{session_effect, Effect};

    #[test]
    fn classifies_statements() {
        for harmless in [
            "SELECT 1",
            "  select * from t where id = 1 ;  ",
            "INSERT INTO t VALUES (1)",
            "update t set a = 2",
            "BEGIN",
            "COMMIT",
            "SELECT * FROM t FOR UPDATE",
        ] {
            assert_eq!(
                session_effect(harmless.as_bytes()),
                Effect::NONE,
                "{harmless}"
            );
        }
        for doubt in [
            "SET @x = 1",
            "SELECT @x := 1",
            "SELECT 1 INTO @x",
            "SET SESSION sql_mode = ''",
            "set autocommit = 0",
            "CREATE TEMPORARY TABLE t (a INT)",
            "SELECT GET_LOCK('a', 0)",
            "DO get_lock('a', 0)",
            "CALL p()",
            "PREPARE s FROM 'SELECT 1'",
            "LOCK TABLES t WRITE",
            "/* hint */ SELECT 1",
            "",
        ] {
            assert!(session_effect(doubt.as_bytes()).session, "{doubt}");
        }
        for all in ["USE mysql", "SELECT 1; SET @x = 1", "use`test`"] {
            assert_eq!(session_effect(all.as_bytes()), Effect::ALL, "{all}");
        }
    }
}
