//! The pooled connection: a `tokio_postgres::Client`, the task that drives its socket, and a
//! statement cache.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use crate::connect::{Addr, Connected};
use crate::sniff::TxState;

/// One pooled PostgreSQL connection.
///
/// It derefs to [`tokio_postgres::Client`], so every driver method is available, and adds
/// [`prepare_cached`](ClientWrapper::prepare_cached).
///
/// It owns the task that drives the connection's socket: dropping the wrapper aborts that task
/// (the pool's own close first lets it say goodbye to the server, see [`crate::Manager`]).
///
/// The wrapper knows the server's transaction status and whether the holder changed session
/// state for free (the stream, plaintext or above TLS, is read through a protocol-framing
/// sniffer, see the crate documentation): a connection returned dirty is cleaned (see
/// [`crate::ResetMode`]) before the pool hands it to its next user; a clean one is handed out as
/// it is. Where no sniffer could be attached (a TLS connector with `sslmode=prefer` that fell
/// back to plaintext), any use of the client through `Deref`/`DerefMut` counts as dirty.
pub struct ClientWrapper {
    client: Client,
    task: Option<JoinHandle<()>>,
    statements: Mutex<HashMap<String, Statement>>,
    cache_capacity: usize,
    used: AtomicBool,
    tx_state: Option<Arc<TxState>>,
    /// Where the socket was opened to, for cancel requests (`None`: the driver opened it).
    addr: Option<Addr>,
    /// Cancels through the TLS connector the session was opened with (`None`: plaintext).
    cancel: Option<crate::connect::CancelFn>,
    /// PgBouncer-safe mode (`crate::bouncer`): `Some` when the manager's `pgbouncer` is on.
    pub(crate) bouncer: Option<crate::bouncer::Bouncer>,
    /// The manager's generation when this connection was opened (see `Manager::is_broken`).
    pub(crate) generation: u64,
}

impl ClientWrapper {
    pub(crate) fn new(connected: Connected, cache_capacity: usize) -> Self {
        ClientWrapper {
            client: connected.client,
            task: Some(connected.task),
            statements: Mutex::new(HashMap::new()),
            cache_capacity,
            used: AtomicBool::new(false),
            tx_state: connected.tx_state,
            addr: connected.addr,
            cancel: connected.cancel,
            bouncer: None,
            generation: 0,
        }
    }

    /// Prepares `sql`, reusing the statement this connection prepared earlier for the same text.
    ///
    /// In PgBouncer mode ([`crate::Manager::pgbouncer`]) it returns a statement *handle*: its
    /// parameter and column types are right, but its server-side statement was deallocated
    /// before the describing transaction ended. This wrapper's query methods (`query`,
    /// `execute`, …) run it as an unnamed statement; do not pass it to the driver's methods
    /// (`Transaction::query`, `Client::query` through `Deref`), which would bind it by name.
    ///
    /// With the cache turned off ([`crate::Manager::statement_cache_capacity`] of 0) this is a
    /// plain [`Client::prepare`]. When the cache is full an
    /// arbitrary entry is evicted (its server-side statement is closed once unused).
    ///
    /// # Errors
    ///
    /// The driver's error when the server cannot prepare `sql` or the connection is lost.
    ///
    /// # Cancel safety
    ///
    /// Cancelling it leaves the cache unchanged (the statement is only cached once prepared).
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.mark_used();
        if let Some(bouncer) = &self.bouncer {
            return self.bouncer_prepare_cached(bouncer, sql).await;
        }
        if self.cache_capacity == 0 {
            return self.client.prepare(sql).await;
        }
        if let Some(statement) = self.statements.lock().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut cache = self.statements.lock();
        if cache.len() >= self.cache_capacity && !cache.contains_key(sql) {
            if let Some(evict) = cache.keys().next().cloned() {
                cache.remove(&evict);
            }
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Empties this connection's statement cache.
    pub fn clear_statement_cache(&self) {
        self.statements.lock().clear();
    }

    /// How many statements this connection's cache holds.
    pub fn statement_cache_len(&self) -> usize {
        self.statements.lock().len()
    }

    /// Asks the server to cancel the query this connection is running, if any.
    ///
    /// Use it instead of `Client::cancel_token().cancel_query(..)`, which cannot find the server
    /// of a connection whose socket the manager opened (the default, no-TLS case). The returned
    /// future does not borrow the connection: create it, then await or spawn it while the query
    /// runs. The cancelled query fails with SQLSTATE `57014`; cancelling is inherently racy.
    /// For connections whose socket the manager opened, the future completes only once the
    /// server closed the cancel connection, i.e. after the session was signalled.
    ///
    /// # Errors
    ///
    /// The driver's error when the cancel request cannot be delivered.
    pub fn cancel_query(
        &self,
    ) -> impl std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static {
        let token = self.client.cancel_token();
        let addr = self.addr.clone();
        let through_tls = self.cancel.clone();
        async move {
            if let Some(cancel) = through_tls {
                return cancel(token).await;
            }
            match addr {
                Some(addr) => match addr.open_bare().await {
                    Ok(stream) => {
                        let stream = crate::connect::UntilEof(stream);
                        let cancel = token.cancel_query_raw(stream, tokio_postgres::NoTls);
                        match tokio::time::timeout(Duration::from_secs(5), cancel).await {
                            Ok(done) => done,
                            Err(_) => Err(crate::connect::io_error(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "the server did not close the cancel connection within 5 s",
                            ))
                            .await),
                        }
                    }
                    Err(e) => Err(crate::connect::io_error(e).await),
                },
                None => token.cancel_query(tokio_postgres::NoTls).await,
            }
        }
    }

    /// Whether a completed [`cancel_query`](ClientWrapper::cancel_query) proves the session was
    /// signalled (the manager opened the socket and waited for the server to close the cancel
    /// connection); through a TLS connector the driver sends it and does not wait.
    pub(crate) fn cancel_is_confirmed(&self) -> bool {
        self.addr.is_some() && self.cancel.is_none()
    }

    /// Whether the connection task has ended (the socket is closed). Does no I/O.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn mark_used(&self) {
        // Relaxed: the flag is read by the pool at check-in through `&mut self`.
        self.used.store(true, Ordering::Relaxed);
    }

    pub(crate) fn raw(&self) -> &Client {
        &self.client
    }

    /// Whether the server's transaction status is tracked (the socket is sniffed), and if so
    /// whether the connection is idle with nothing in flight: `None` when it is not tracked.
    pub(crate) fn is_idle(&self) -> Option<bool> {
        self.tx_state
            .as_ref()
            .filter(|s| s.is_attached())
            .map(|s| s.is_clean())
    }

    /// The sniffed session state, when a sniffer follows this connection's stream.
    pub(crate) fn sniffed(&self) -> Option<&TxState> {
        self.tx_state.as_deref().filter(|s| s.is_attached())
    }

    pub(crate) fn was_used(&mut self) -> bool {
        *self.used.get_mut()
    }

    pub(crate) fn set_clean(&mut self) {
        *self.used.get_mut() = false;
    }

    pub(crate) fn take_task(&mut self) -> Option<JoinHandle<()>> {
        self.task.take()
    }
}

impl Deref for ClientWrapper {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.mark_used();
        &self.client
    }
}

impl DerefMut for ClientWrapper {
    fn deref_mut(&mut self) -> &mut Client {
        *self.used.get_mut() = true;
        &mut self.client
    }
}

impl Drop for ClientWrapper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for ClientWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientWrapper")
            .field("closed", &self.client.is_closed())
            .field("cached_statements", &self.statements.lock().len())
            .field("cache_capacity", &self.cache_capacity)
            .field("used", &self.used.load(Ordering::Relaxed))
            .field(
                "transaction_status",
                &self.tx_state.as_ref().map(|s| char::from(s.status())),
            )
            .field(
                "outstanding",
                &self.tx_state.as_ref().map(|s| s.outstanding()),
            )
            .finish_non_exhaustive()
    }
}
