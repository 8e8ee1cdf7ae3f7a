//! PgBouncer-safe mode ([`crate::Manager::pgbouncer`]): every query path of [`ClientWrapper`]
//! uses the unnamed statement only.
//!
//! Behind PgBouncer in transaction mode a client owns a server connection only until the server
//! is idle again (`ReadyForQuery` with status `I`). tokio-postgres's `query(&str)` and `prepare`
//! send `Parse` of a *named* statement, then a `Sync`, then `Bind`/`Execute`: the two halves may
//! reach different servers ("prepared statement does not exist", or another client's statement of
//! the same name and its rows). In this mode the wrapper's query methods instead send one
//! `Parse`(unnamed) + `Bind` + `Describe` + `Execute` + `Sync` batch (`query_typed`), which PgBouncer
//! never splits, with the parameter types the server itself reported for that SQL text: learned
//! once per pool (described inside an explicit transaction, which pins one server, with the
//! named statement closed before `COMMIT`) and cached.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{BorrowToSql, FromSqlOwned, ToSql, Type};
use tokio_postgres::{Client, Error, Row, RowStream, Statement, ToStatement};

use crate::client::ClientWrapper;
use crate::error::ConfigError;

/// The most SQL texts whose parameter types a pool remembers in PgBouncer mode; beyond it an
/// arbitrary entry is forgotten (and learned again when used).
const TYPE_CACHE_CAPACITY: usize = 4096;

/// The parameter types of SQL texts, shared by all connections of one manager.
#[derive(Default)]
pub(crate) struct Shared {
    types: Mutex<HashMap<Arc<str>, Arc<[Type]>>>,
}

impl Shared {
    fn get(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.types.lock().get(sql).cloned()
    }

    fn insert(&self, sql: &str, types: Arc<[Type]>) {
        let mut map = self.types.lock();
        if map.len() >= TYPE_CACHE_CAPACITY && !map.contains_key(sql) {
            if let Some(evict) = map.keys().next().cloned() {
                map.remove(&evict);
            }
        }
        map.insert(Arc::from(sql), types);
    }

    /// How many SQL texts have their parameter types cached.
    pub(crate) fn len(&self) -> usize {
        self.types.lock().len()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncerTypes")
            .field("sql_texts", &self.len())
            .finish()
    }
}

/// The PgBouncer-mode state of one connection: the statement handles its `prepare_cached` gave
/// out, by SQL text and by the driver's statement name.
pub(crate) struct Bouncer {
    shared: Arc<Shared>,
    capacity: usize,
    handles: Mutex<Handles>,
    /// Held while a SQL text is described: two first uses on one connection must not interleave
    /// their `BEGIN`/`COMMIT`.
    learning: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Handles {
    by_sql: HashMap<Arc<str>, Statement>,
    /// Name -> (SQL text, the statement, to check a handle given back is this one).
    by_name: HashMap<String, (Arc<str>, Statement)>,
}

impl Bouncer {
    /// The state of a new connection of a manager whose statement cache holds `capacity`
    /// statements (at least one handle is always kept).
    pub(crate) fn new(shared: Arc<Shared>, capacity: usize) -> Self {
        Bouncer {
            shared,
            capacity: capacity.max(1),
            handles: Mutex::new(Handles::default()),
            learning: tokio::sync::Mutex::new(()),
        }
    }

    fn handle(&self, sql: &str) -> Option<Statement> {
        self.handles.lock().by_sql.get(sql).cloned()
    }

    /// The SQL text of a handle this connection gave out. A statement of another connection
    /// may carry the same name: it is recognised only if its types are the same too (the driver
    /// itself would bind it by name to whatever this connection has under that name).
    fn sql_of(&self, statement: &Statement) -> Option<Arc<str>> {
        let name = statement_name(statement)?;
        let handles = self.handles.lock();
        let (sql, ours) = handles.by_name.get(&name)?;
        let same = ours.params() == statement.params()
            && ours.columns().len() == statement.columns().len()
            && ours
                .columns()
                .iter()
                .zip(statement.columns())
                .all(|(a, b)| a.name() == b.name() && a.type_() == b.type_());
        same.then(|| Arc::clone(sql))
    }

    fn remember(&self, sql: &str, name: String, statement: &Statement) {
        let mut handles = self.handles.lock();
        if handles.by_sql.len() >= self.capacity && !handles.by_sql.contains_key(sql) {
            if let Some(evict) = handles.by_sql.keys().next().cloned() {
                handles.by_sql.remove(&evict);
                handles.by_name.retain(|_, (s, _)| *s != evict);
            }
        }
        let sql: Arc<str> = Arc::from(sql);
        handles
            .by_name
            .insert(name, (Arc::clone(&sql), statement.clone()));
        handles.by_sql.insert(sql, statement.clone());
    }
}

impl fmt::Debug for Bouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bouncer")
            .field("handles", &self.handles.lock().by_sql.len())
            .field("types", &self.shared)
            .finish()
    }
}

/// The driver's name of a prepared statement (`s0`, `s1`, … per connection).
///
/// tokio-postgres keeps the name private; its `Debug` output starts with it. A driver that
/// changes that output makes this `None`: the statement is then refused in PgBouncer mode
/// (never bound by name), and the live tests of `tests/tests/postgres/pgbouncer.rs` fail.
fn statement_name(statement: &Statement) -> Option<String> {
    let debug = format!("{statement:?}");
    let rest = debug.strip_prefix("Statement { name: \"")?;
    let name = &rest[..rest.find('"')?];
    (!name.is_empty()).then(|| name.to_owned())
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for tokio_postgres::Statement {}
}

/// What the query methods of [`ClientWrapper`] accept: a SQL text (`str`, `String`) or a
/// [`Statement`], like the driver's [`ToStatement`].
///
/// It exists so that, in PgBouncer mode, the wrapper can see which of the two it was given. It is
/// sealed: it is implemented for exactly the types the driver's `ToStatement` is. Code generic
/// over `T: ToStatement` can call the driver's methods directly (`Client::query(&client, …)`).
pub trait ToQuery: ToStatement + sealed::Sealed {
    /// Which of the two this is.
    #[doc(hidden)]
    fn to_query(&self) -> QueryRef<'_>;
}

/// A SQL text or a prepared statement ([`ToQuery`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum QueryRef<'a> {
    /// A SQL text.
    Sql(&'a str),
    /// A prepared statement.
    Statement(&'a Statement),
}

impl ToQuery for str {
    fn to_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

impl ToQuery for String {
    fn to_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

impl ToQuery for Statement {
    fn to_query(&self) -> QueryRef<'_> {
        QueryRef::Statement(self)
    }
}

/// A SQL text with its parameter types, ready for `query_typed`.
struct Resolved<'a> {
    sql: Text<'a>,
    types: Types<'a>,
}

enum Text<'a> {
    Borrowed(&'a str),
    Shared(Arc<str>),
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
        }
    }
}

enum Types<'a> {
    Borrowed(&'a [Type]),
    Shared(Arc<[Type]>),
}

impl Deref for Types<'_> {
    type Target = [Type];
    fn deref(&self) -> &[Type] {
        match self {
            Types::Borrowed(t) => t,
            Types::Shared(t) => t,
        }
    }
}

/// The one value of a one-column row. A row of several columns is an error too (the driver's
/// "column count" error is private: the "invalid column" error of the first extra column).
fn scalar<R: FromSqlOwned>(row: &Row) -> Result<R, Error> {
    if row.len() > 1 {
        row.try_get::<_, R>(row.len())
    } else {
        row.try_get::<_, R>(0)
    }
}

fn typed<'p>(
    params: &[&'p (dyn ToSql + Sync)],
    types: &[Type],
) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
    params.iter().copied().zip(types.iter().cloned()).collect()
}

/// The error a `Statement` the wrapper does not know gets in PgBouncer mode.
const REFUSE: &str = "DO $pool_postgres$BEGIN RAISE EXCEPTION USING ERRCODE = '26000', \
    MESSAGE = 'pool-postgres PgBouncer mode: this Statement was not prepared by this connection''s \
    prepare_cached, and binding it by name is unsafe behind PgBouncer', \
    HINT = 'pass the SQL text, or a Statement from prepare_cached of the same connection'; \
    END$pool_postgres$";

/// The savepoint that probes for an open transaction before a SQL text is described.
const PROBE: &str = "SAVEPOINT pool_postgres_describe";

/// Splits the `pgbouncer` parameter off a connection string: a URL query parameter
/// (`postgres://…?pgbouncer=true&…`) or a `pgbouncer=true` key/value pair. Returns the string
/// tokio-postgres should parse and the flag, if it was there.
pub(crate) fn split_pgbouncer_flag(url: &str) -> Result<(String, Option<bool>), ConfigError> {
    fn flag(value: &str) -> Result<bool, ConfigError> {
        pool_core::settings::parse_bool(value).map_err(|_| ConfigError::PgBouncerFlag)
    }
    let mut found = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (head, fragment) = match url.split_once('#') {
            Some((h, f)) => (h, Some(f)),
            None => (url, None),
        };
        let Some((base, query)) = head.split_once('?') else {
            return Ok((url.to_owned(), None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("pgbouncer", value)) => found = Some(flag(value)?),
                _ if pair == "pgbouncer" => return Err(ConfigError::PgBouncerFlag),
                _ => kept.push(pair),
            }
        }
        let mut out = base.to_owned();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        return Ok((out, found));
    }
    // Key/value form: cut the `pgbouncer=…` tokens out, leaving the rest (quoting, spacing) as
    // it was.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |n| start + n);
        match rest[start..end].split_once('=') {
            Some(("pgbouncer", value)) => {
                found = Some(flag(value)?);
                out.push_str(&rest[..start]);
            }
            _ => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    if found.is_none() {
        return Ok((url.to_owned(), None));
    }
    Ok((out.trim().to_owned(), found))
}

/// # PgBouncer-safe query methods
///
/// These inherent methods shadow the driver's methods of the same name (reached through `Deref`)
/// and take the same arguments. Without [`crate::Manager::pgbouncer`] each one *is* the driver's
/// method (one branch more). In PgBouncer mode each one sends a single unnamed-statement batch
/// (`query_typed`), so no `Bind` ever names a statement, inside a transaction or not:
///
/// * given a SQL text, with the parameter types the server reported for that text. The first use
///   of a text in a pool describes it: `BEGIN`, `Parse`/`Describe` of a named statement, its
///   `Close`, `COMMIT` (three round trips, all on the one server connection the transaction pins;
///   inside the holder's own transaction it is described there, without `BEGIN`/`COMMIT`; when
///   the transaction status is not sniffed, a `SAVEPOINT` probes for it first).
///   Later uses cost one round trip, but the server parses and plans an unnamed statement at
///   every execution (no plan reuse);
/// * given a [`Statement`] from this connection's [`ClientWrapper::prepare_cached`] (or the
///   shadowing [`ClientWrapper::prepare`]), with that statement's SQL text and parameter types.
///   Any other `Statement` (e.g. from `Client::prepare` through `Deref`) is refused with SQLSTATE
///   `26000` instead of being bound by name.
///
/// A wrong number of parameters is the driver's own error, raised before anything is sent.
impl ClientWrapper {
    /// Whether this connection runs in PgBouncer-safe mode ([`crate::Manager::pgbouncer`]).
    pub fn is_pgbouncer(&self) -> bool {
        self.bouncer.is_some()
    }

    /// Executes a statement and returns its rows: [`Client::query`], PgBouncer-safe in PgBouncer
    /// mode (see the section above).
    ///
    /// # Errors
    ///
    /// The driver's error: the server rejected the statement, a parameter could not be
    /// converted, the parameter count is wrong, the connection is lost.
    ///
    /// # Cancel safety
    ///
    /// Like the driver's. In PgBouncer mode, cancelling the first use of a SQL text may leave the
    /// connection inside the describing transaction: the pool rolls it back at check-in, but do
    /// not keep using a connection whose request you cancelled.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToQuery,
    {
        let client: &Client = self;
        let Some(bouncer) = &self.bouncer else {
            return client.query(statement, params).await;
        };
        let resolved = self.resolve(bouncer, statement).await?;
        if params.len() != resolved.types.len() {
            let handle = self.handle_for(bouncer, &resolved.sql).await?;
            return client.query(&handle, params).await;
        }
        client
            .query_typed(&resolved.sql, &typed(params, &resolved.types))
            .await
    }

    /// Executes a statement that returns exactly one row: [`Client::query_one`], PgBouncer-safe
    /// in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`], and when the statement returns no row or more than one.
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        T: ?Sized + ToQuery,
    {
        let client: &Client = self;
        let Some(bouncer) = &self.bouncer else {
            return client.query_one(statement, params).await;
        };
        let resolved = self.resolve(bouncer, statement).await?;
        if params.len() != resolved.types.len() {
            let handle = self.handle_for(bouncer, &resolved.sql).await?;
            return client.query_one(&handle, params).await;
        }
        client
            .query_typed_one(&resolved.sql, &typed(params, &resolved.types))
            .await
    }

    /// Executes a statement that returns at most one row: [`Client::query_opt`], PgBouncer-safe
    /// in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`], and when the statement returns more than one row.
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToQuery,
    {
        let client: &Client = self;
        let Some(bouncer) = &self.bouncer else {
            return client.query_opt(statement, params).await;
        };
        let resolved = self.resolve(bouncer, statement).await?;
        if params.len() != resolved.types.len() {
            let handle = self.handle_for(bouncer, &resolved.sql).await?;
            return client.query_opt(&handle, params).await;
        }
        client
            .query_typed_opt(&resolved.sql, &typed(params, &resolved.types))
            .await
    }

    /// Executes a statement returning one column and returns that column's values:
    /// [`Client::query_scalar`], PgBouncer-safe in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`], and when the rows do not have exactly one column or a value
    /// cannot be converted to `R` (in PgBouncer mode, a row of several columns is reported as
    /// the driver's "invalid column" error).
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_scalar<R, T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<R>, Error>
    where
        R: FromSqlOwned,
        T: ?Sized + ToQuery + fmt::Debug,
    {
        if self.bouncer.is_none() {
            let client: &Client = self;
            return client.query_scalar(statement, params).await;
        }
        self.query(statement, params)
            .await?
            .iter()
            .map(scalar)
            .collect()
    }

    /// Executes a statement returning one row of one column and returns the value:
    /// [`Client::query_one_scalar`], PgBouncer-safe in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query_scalar`], and when the statement returns no row or several.
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_one_scalar<R, T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<R, Error>
    where
        R: FromSqlOwned,
        T: ?Sized + ToQuery + fmt::Debug,
    {
        if self.bouncer.is_none() {
            let client: &Client = self;
            return client.query_one_scalar(statement, params).await;
        }
        scalar(&self.query_one(statement, params).await?)
    }

    /// Executes a statement returning at most one row of one column and returns the value:
    /// [`Client::query_opt_scalar`], PgBouncer-safe in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query_scalar`], and when the statement returns several rows.
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_opt_scalar<R, T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<R>, Error>
    where
        R: FromSqlOwned,
        T: ?Sized + ToQuery + fmt::Debug,
    {
        if self.bouncer.is_none() {
            let client: &Client = self;
            return client.query_opt_scalar(statement, params).await;
        }
        self.query_opt(statement, params)
            .await?
            .as_ref()
            .map(scalar)
            .transpose()
    }

    /// Executes a statement and returns the number of rows it modified: [`Client::execute`],
    /// PgBouncer-safe in PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error>
    where
        T: ?Sized + ToQuery,
    {
        let client: &Client = self;
        let Some(bouncer) = &self.bouncer else {
            return client.execute(statement, params).await;
        };
        let resolved = self.resolve(bouncer, statement).await?;
        if params.len() != resolved.types.len() {
            let handle = self.handle_for(bouncer, &resolved.sql).await?;
            return client.execute(&handle, params).await;
        }
        client
            .execute_typed(&resolved.sql, &typed(params, &resolved.types))
            .await
    }

    /// Executes a statement and streams its rows: [`Client::query_raw`], PgBouncer-safe in
    /// PgBouncer mode.
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn query_raw<T, P, I>(&self, statement: &T, params: I) -> Result<RowStream, Error>
    where
        T: ?Sized + ToQuery,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let client: &Client = self;
        let Some(bouncer) = &self.bouncer else {
            return client.query_raw(statement, params).await;
        };
        let resolved = self.resolve(bouncer, statement).await?;
        let params = params.into_iter();
        if params.len() != resolved.types.len() {
            let handle = self.handle_for(bouncer, &resolved.sql).await?;
            return client.query_raw(&handle, params).await;
        }
        let types = resolved.types.iter().cloned();
        client
            .query_typed_raw(&resolved.sql, params.zip(types))
            .await
    }

    /// Executes a statement and returns the number of rows it modified: [`Client::execute_raw`],
    /// PgBouncer-safe in PgBouncer mode (where it reads and drops any rows the statement returns).
    ///
    /// # Errors
    ///
    /// As [`ClientWrapper::query`].
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn execute_raw<T, P, I>(&self, statement: &T, params: I) -> Result<u64, Error>
    where
        T: ?Sized + ToQuery,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let client: &Client = self;
        if self.bouncer.is_none() {
            return client.execute_raw(statement, params).await;
        }
        let mut rows = std::pin::pin!(self.query_raw(statement, params).await?);
        while std::future::poll_fn(|cx| futures_core::Stream::poll_next(rows.as_mut(), cx))
            .await
            .transpose()?
            .is_some()
        {}
        Ok(rows.rows_affected().unwrap_or(0))
    }

    /// Prepares `sql`: [`Client::prepare`]; in PgBouncer mode the same as
    /// [`ClientWrapper::prepare_cached`] (a statement handle for this wrapper's query methods).
    ///
    /// # Errors
    ///
    /// The driver's error when the server cannot prepare `sql` or the connection is lost.
    ///
    /// # Cancel safety
    ///
    /// As [`ClientWrapper::query`].
    pub async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        if self.bouncer.is_some() {
            return self.prepare_cached(sql).await;
        }
        let client: &Client = self;
        client.prepare(sql).await
    }

    /// [`ClientWrapper::prepare_cached`] in PgBouncer mode: a statement handle whose parameter and
    /// column types are right but whose server-side statement was deallocated before the
    /// describing transaction ended; this wrapper's query methods run it as an unnamed statement.
    pub(crate) async fn bouncer_prepare_cached(
        &self,
        bouncer: &Bouncer,
        sql: &str,
    ) -> Result<Statement, Error> {
        self.handle_for(bouncer, sql).await
    }

    async fn handle_for(&self, bouncer: &Bouncer, sql: &str) -> Result<Statement, Error> {
        if let Some(statement) = bouncer.handle(sql) {
            return Ok(statement);
        }
        let _learning = bouncer.learning.lock().await;
        if let Some(statement) = bouncer.handle(sql) {
            return Ok(statement);
        }
        // A handle: its server-side statement is deallocated while the server is still ours; the
        // handle's own `Close`, sent when it is dropped, is a no-op wherever it lands.
        let (own_tx, statement) = self.prepare_pinned(sql).await?;
        let types: Arc<[Type]> = Arc::from(statement.params());
        let name = statement_name(&statement);
        let deallocate = match &name {
            Some(name) => format!("DEALLOCATE \"{}\"; ", name.replace('"', "\"\"")),
            // Without its name the handle cannot be tracked (the wrapper will refuse it), but
            // it must not outlive the transaction on the server either.
            None => "DEALLOCATE ALL; ".to_owned(),
        };
        self.unpin(own_tx, &deallocate).await?;
        bouncer.shared.insert(sql, types);
        if let Some(name) = name {
            bouncer.remember(sql, name, &statement);
        }
        Ok(statement)
    }

    async fn resolve<'a, T>(
        &self,
        bouncer: &Bouncer,
        statement: &'a T,
    ) -> Result<Resolved<'a>, Error>
    where
        T: ?Sized + ToQuery,
    {
        match statement.to_query() {
            QueryRef::Sql(sql) => {
                let types = match bouncer.shared.get(sql) {
                    Some(types) => types,
                    None => self.learn_types(bouncer, sql).await?,
                };
                Ok(Resolved {
                    sql: Text::Borrowed(sql),
                    types: Types::Shared(types),
                })
            }
            QueryRef::Statement(prepared) => match bouncer.sql_of(prepared) {
                Some(sql) => Ok(Resolved {
                    sql: Text::Shared(sql),
                    types: Types::Borrowed(prepared.params()),
                }),
                None => Err(self.refuse_statement(prepared).await),
            },
        }
    }

    /// Learns the parameter types of `sql` for the pool: described on one pinned server
    /// connection, the named statement closed before the transaction ends.
    async fn learn_types(&self, bouncer: &Bouncer, sql: &str) -> Result<Arc<[Type]>, Error> {
        let _learning = bouncer.learning.lock().await;
        if let Some(types) = bouncer.shared.get(sql) {
            return Ok(types);
        }
        let (own_tx, statement) = self.prepare_pinned(sql).await?;
        let types: Arc<[Type]> = Arc::from(statement.params());
        // The driver queues the `Close` now, so it reaches the server before the end below.
        drop(statement);
        self.unpin(own_tx, "").await?;
        bouncer.shared.insert(sql, Arc::clone(&types));
        Ok(types)
    }

    /// Prepares `sql` (a named statement) inside a transaction, which pins one server connection
    /// behind PgBouncer: the holder's own when one is open (then a savepoint marks our part),
    /// else one of ours. Returns whether the transaction is ours.
    async fn prepare_pinned(&self, sql: &str) -> Result<(bool, Statement), Error> {
        let client: &Client = self;
        // The sniffer knows when the session is idle; otherwise a savepoint probes (it fails
        // outside a transaction).
        let own_tx = match self.is_idle() {
            Some(true) => true,
            _ => match client.batch_execute(PROBE).await {
                Ok(()) => false,
                Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => true,
                Err(e) => return Err(e),
            },
        };
        if own_tx {
            client.batch_execute("BEGIN").await?;
        }
        match client.prepare(sql).await {
            Ok(statement) => Ok((own_tx, statement)),
            Err(e) => {
                if own_tx {
                    // The error is the caller's answer; a failed ROLLBACK leaves the session in
                    // a transaction, which the pool rolls back at check-in.
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                Err(e)
            }
        }
    }

    /// Ends what [`Self::prepare_pinned`] began, after running `before` (SQL ending in `; `).
    async fn unpin(&self, own_tx: bool, before: &str) -> Result<(), Error> {
        let client: &Client = self;
        let end = if own_tx {
            "COMMIT"
        } else {
            "RELEASE SAVEPOINT pool_postgres_describe"
        };
        client.batch_execute(&format!("{before}{end}")).await
    }

    /// Refuses a statement this wrapper cannot run without binding it by name: a real server
    /// error (SQLSTATE `26000`, invalid SQL statement name) with a message that says what to do.
    async fn refuse_statement(&self, statement: &Statement) -> Error {
        let client: &Client = self;
        if let Err(e) = client.batch_execute(REFUSE).await {
            return e;
        }
        // A PostgreSQL server always raises above. Whatever answered instead, the driver's own
        // parameter-count error (raised before anything is sent) refuses the statement.
        loop {
            let too_many =
                std::iter::repeat_n(&0i32 as &(dyn ToSql + Sync), statement.params().len() + 1);
            if let Err(e) = client.execute_raw(statement, too_many).await {
                return e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_pgbouncer_flag() {
        let split = |url: &str| split_pgbouncer_flag(url).unwrap();
        assert_eq!(
            split("postgres://u@h:6432/db?pgbouncer=true"),
            ("postgres://u@h:6432/db".to_owned(), Some(true))
        );
        assert_eq!(
            split("postgresql://h/db?application_name=a&pgbouncer=0&connect_timeout=3"),
            (
                "postgresql://h/db?application_name=a&connect_timeout=3".to_owned(),
                Some(false)
            )
        );
        assert_eq!(
            split("postgres://h/db?sslmode=disable"),
            ("postgres://h/db?sslmode=disable".to_owned(), None)
        );
        assert_eq!(
            split("host=h port=6432 pgbouncer=on dbname=db"),
            ("host=h port=6432  dbname=db".to_owned(), Some(true))
        );
        assert_eq!(split("host=h user=u"), ("host=h user=u".to_owned(), None));
        assert_eq!(
            split("pgbouncer=1 host=h password='a  b'"),
            ("host=h password='a  b'".to_owned(), Some(true))
        );
        assert!(matches!(
            split_pgbouncer_flag("postgres://h/db?pgbouncer=maybe"),
            Err(ConfigError::PgBouncerFlag)
        ));
        assert!(matches!(
            split_pgbouncer_flag("postgres://h/db?pgbouncer"),
            Err(ConfigError::PgBouncerFlag)
        ));
    }
}
