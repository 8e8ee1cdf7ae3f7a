//! Opening a connection (plain, over our own sniffed socket, or with any TLS connector), and
//! owning the connection task it needs.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, SimpleQueryMessage, Socket};

use crate::sniff::{Sniffer, TxState};

/// A connected client, the task driving its socket and, when the socket is sniffed, the
/// transaction state it publishes.
pub(crate) struct Connected {
    pub(crate) client: Client,
    pub(crate) task: JoinHandle<()>,
    pub(crate) tx_state: Option<Arc<TxState>>,
    /// Where the server was reached, for cancel requests (`None`: use the driver's own).
    pub(crate) addr: Option<Addr>,
    /// How to send a cancel request through the TLS connector the session was opened with.
    pub(crate) cancel: Option<CancelFn>,
}

/// Sends a cancel request for a session with the driver's token, through a TLS connector.
pub(crate) type CancelFn = Arc<
    dyn Fn(
            tokio_postgres::CancelToken,
        ) -> Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>
        + Send
        + Sync,
>;

pub(crate) type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Connected, tokio_postgres::Error>> + Send>>;

/// Hides the `MakeTlsConnect` bounds so that [`crate::Manager`] needs no type parameter.
pub(crate) trait Connect: Send + Sync + 'static {
    fn connect(&self, config: &Config) -> ConnectFuture;

    /// Whether this connector can do TLS.
    fn tls(&self) -> bool {
        false
    }
}

pub(crate) struct TlsConnector<T>(pub(crate) T);

impl<T> Connect for TlsConnector<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn tls(&self) -> bool {
        true
    }

    fn connect(&self, config: &Config) -> ConnectFuture {
        let config = config.clone();
        let state = Arc::new(TxState::default());
        let tls = SniffingTls {
            inner: self.0.clone(),
            state: state.clone(),
        };
        let for_cancel = self.0.clone();
        let cancel: CancelFn = Arc::new(move |token| {
            let tls = for_cancel.clone();
            Box::pin(async move { token.cancel_query(tls).await })
        });
        Box::pin(async move {
            // The driver connects (hosts, DNS, keepalives, `target_session_attrs`, the TLS
            // negotiation, a cancel token that knows the server): the sniffer only sits above
            // the TLS stream, where the protocol is in plaintext.
            let (client, connection) = config.connect(tls).await?;
            let task = spawn_connection(connection, Some(state.clone()));
            Ok(Connected {
                client,
                task,
                // Not attached when `sslmode=prefer` fell back to plaintext (no TLS stream
                // was made, so no sniffer): the pool then treats the status as unknown.
                tx_state: Some(state),
                addr: None,
                cancel: Some(cancel),
            })
        })
    }
}

/// A `MakeTlsConnect` that puts a [`Sniffer`] above the TLS stream `T` makes, so that TLS
/// connections are followed like plaintext ones without re-implementing the driver's connect.
struct SniffingTls<T> {
    inner: T,
    state: Arc<TxState>,
}

impl<T> MakeTlsConnect<Socket> for SniffingTls<T>
where
    T: MakeTlsConnect<Socket>,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    type Stream = Sniffer<T::Stream>;
    type TlsConnect = SniffingTlsConnect<T::TlsConnect>;
    type Error = T::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, T::Error> {
        Ok(SniffingTlsConnect {
            inner: self.inner.make_tls_connect(domain)?,
            state: self.state.clone(),
        })
    }
}

/// The per-host half of [`SniffingTls`].
struct SniffingTlsConnect<C> {
    inner: C,
    state: Arc<TxState>,
}

impl<C> TlsConnect<Socket> for SniffingTlsConnect<C>
where
    C: TlsConnect<Socket>,
    C::Future: Send + 'static,
    C::Stream: Send + 'static,
{
    type Stream = Sniffer<C::Stream>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Sniffer<C::Stream>, C::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        let handshake = self.inner.connect(stream);
        let state = self.state;
        // Each attempt (one per host tried) starts the shared state afresh.
        Box::pin(async move { Ok(Sniffer::new(handshake.await?, state)) })
    }
}

/// The default, no-TLS connector: opens the socket itself (as `Config::connect` would) and runs
/// the session over a [`Sniffer`], so that the pool knows the transaction status for free.
pub(crate) struct PlainConnector;

impl Connect for PlainConnector {
    fn connect(&self, config: &Config) -> ConnectFuture {
        let config = config.clone();
        Box::pin(async move { connect_plain(&config).await })
    }
}

/// A server address, as resolved by [`connect_plain`].
#[derive(Debug, Clone)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// A TCP or Unix-domain socket.
#[derive(Debug)]
pub(crate) enum PlainStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Addr {
    /// Opens a socket to this address, bounded by `config`'s connect timeout, with its TCP
    /// options (no delay, user timeout, keepalives).
    pub(crate) async fn open(&self, config: &Config) -> io::Result<PlainStream> {
        let timeout = config.get_connect_timeout().copied();
        match self {
            Addr::Tcp(addr) => {
                let stream = with_timeout(TcpStream::connect(addr), timeout).await?;
                stream.set_nodelay(true)?;
                let sock = socket2::SockRef::from(&stream);
                #[cfg(target_os = "linux")]
                if let Some(t) = config.get_tcp_user_timeout() {
                    sock.set_tcp_user_timeout(Some(*t))?;
                }
                if config.get_keepalives() {
                    let mut keepalive =
                        socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    #[cfg(not(any(
                        target_os = "openbsd",
                        target_os = "redox",
                        target_os = "solaris"
                    )))]
                    if let Some(interval) = config.get_keepalives_interval() {
                        keepalive = keepalive.with_interval(interval);
                    }
                    #[cfg(not(any(
                        target_os = "openbsd",
                        target_os = "redox",
                        target_os = "solaris",
                        target_os = "windows"
                    )))]
                    if let Some(retries) = config.get_keepalives_retries() {
                        keepalive = keepalive.with_retries(retries);
                    }
                    sock.set_tcp_keepalive(&keepalive)?;
                }
                Ok(PlainStream::Tcp(stream))
            }
            #[cfg(unix)]
            Addr::Unix(path) => Ok(PlainStream::Unix(
                with_timeout(UnixStream::connect(path), timeout).await?,
            )),
        }
    }
}

impl Addr {
    /// A bare socket to this address (for a cancel request).
    pub(crate) async fn open_bare(&self) -> io::Result<PlainStream> {
        match self {
            Addr::Tcp(addr) => TcpStream::connect(addr).await.map(PlainStream::Tcp),
            #[cfg(unix)]
            Addr::Unix(path) => UnixStream::connect(path).await.map(PlainStream::Unix),
        }
    }
}

async fn with_timeout<T>(
    connect: impl Future<Output = io::Result<T>>,
    timeout: Option<Duration>,
) -> io::Result<T> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            }),
        None => connect.await,
    }
}

/// The hosts of `config` in the order `Config::connect` tries them: `hostaddr` over `host`,
/// the port of the same index (or the only port, or 5432), shuffled with
/// `load_balance_hosts=random`. `None` for a configuration `Config::connect` rejects.
fn targets(config: &Config) -> Option<Vec<(Host, u16)>> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let n = hosts.len().max(hostaddrs.len());
    if n == 0
        || (!hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len())
        || (ports.len() > 1 && ports.len() != n)
    {
        return None;
    }
    let mut targets: Vec<(Host, u16)> = (0..n)
        .map(|i| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            let host = match hostaddrs.get(i) {
                Some(ip) => Host::Tcp(ip.to_string()),
                None => hosts[i].clone(),
            };
            (host, port)
        })
        .collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut targets);
    }
    Some(targets)
}

/// Connects like `Config::connect(NoTls)`: each host in turn (each address of a name in turn),
/// the first that accepts the session and matches `target_session_attrs` wins; the last error is
/// returned.
async fn connect_plain(config: &Config) -> Result<Connected, tokio_postgres::Error> {
    let Some(targets) = targets(config) else {
        // Let the driver produce its own configuration error (no I/O happens).
        return match config.connect(NoTls).await {
            Err(e) => Err(e),
            Ok(_) => Err(io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid host configuration",
            ))
            .await),
        };
    };
    let mut last = None;
    for (host, port) in targets {
        let addrs = match host {
            Host::Tcp(name) => match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(addrs) => {
                    let mut addrs: Vec<Addr> = addrs.map(Addr::Tcp).collect();
                    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
                        fastrand::shuffle(&mut addrs);
                    }
                    addrs
                }
                Err(e) => {
                    last = Some(io_error(e).await);
                    continue;
                }
            },
            #[cfg(unix)]
            Host::Unix(dir) => vec![Addr::Unix(dir.join(format!(".s.PGSQL.{port}")))],
        };
        if addrs.is_empty() {
            last = Some(
                io_error(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "could not resolve any addresses",
                ))
                .await,
            );
        }
        for addr in addrs {
            match connect_addr(config, addr).await {
                Ok(connected) => return Ok(connected),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.expect("at least one host"))
}

async fn connect_addr(config: &Config, addr: Addr) -> Result<Connected, tokio_postgres::Error> {
    let stream = match addr.open(config).await {
        Ok(stream) => stream,
        Err(e) => return Err(io_error(e).await),
    };
    let state = Arc::new(TxState::default());
    let (client, connection) = config
        .connect_raw(Sniffer::new(stream, state.clone()), NoTls)
        .await?;
    let task = spawn_connection(connection, Some(state.clone()));
    let attrs = config.get_target_session_attrs();
    if attrs != TargetSessionAttrs::Any {
        // Dropping `task` on an early return would not stop it; abort it explicitly.
        let read_only = match client.simple_query("SHOW transaction_read_only").await {
            Ok(messages) => messages.into_iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
                _ => None,
            }),
            Err(e) => {
                task.abort();
                return Err(e);
            }
        };
        let wrong = match attrs {
            TargetSessionAttrs::ReadWrite => read_only != Some(false),
            TargetSessionAttrs::ReadOnly => read_only != Some(true),
            _ => false,
        };
        if wrong {
            task.abort();
            let what = if attrs == TargetSessionAttrs::ReadWrite {
                "database does not allow writes"
            } else {
                "database is not read only"
            };
            return Err(io_error(io::Error::new(io::ErrorKind::PermissionDenied, what)).await);
        }
    }
    Ok(Connected {
        client,
        task,
        tx_state: Some(state),
        addr: Some(addr),
        cancel: None,
    })
}

/// tokio-postgres has no public constructor for its error type: get one around `error` by
/// starting a session on a stream that fails at once (no I/O happens). The result is an I/O
/// error of the driver ("error communicating with the server: …") with `error` as its source.
pub(crate) async fn io_error(error: io::Error) -> tokio_postgres::Error {
    let mut config = Config::new();
    config.user("-").ssl_mode(SslMode::Disable);
    match config.connect_raw(Failing(Some(error)), NoTls).await {
        Err(e) => e,
        Ok(_) => unreachable!("a session over a failing stream cannot start"),
    }
}

/// A cancel-request stream whose shutdown completes only once the server closed the connection.
///
/// The server closes a cancel connection after it has signalled the session, so when
/// tokio-postgres's `cancel_query_raw` (which writes, flushes and shuts the stream down) returns
/// over this stream, the session has the signal: a cancel sent before a reset's `ROLLBACK` can
/// no longer arrive late and cancel a statement of the connection's next user.
pub(crate) struct UntilEof(pub(crate) PlainStream);

impl AsyncRead for UntilEof {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for UntilEof {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(Pin::new(&mut this.0).poll_shutdown(cx))?;
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match std::task::ready!(Pin::new(&mut this.0).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {}
                // A reset connection is closed as well.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// A stream whose first operation fails with the given error.
struct Failing(Option<io::Error>);

impl Failing {
    fn fail<T>(&mut self) -> Poll<io::Result<T>> {
        Poll::Ready(Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::NotConnected))))
    }
}

impl AsyncRead for Failing {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().fail()
    }
}

impl AsyncWrite for Failing {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().fail()
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().fail()
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().fail()
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            PlainStream::Tcp($s) => $e,
            #[cfg(unix)]
            PlainStream::Unix($s) => $e,
        }
    };
}

impl AsyncRead for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PlainStream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            PlainStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Spawns the task that drives the socket. Its handle is kept by [`crate::ClientWrapper`], which
/// aborts it when the connection is closed; its error is logged, never dropped silently.
///
/// When the stream is sniffed (`state`), each poll of the driver is bracketed by
/// [`TxState::begin_poll`] / [`TxState::end_poll`] and the driver gets a waker that records its
/// wake-ups, so that the pool can tell whether every request a holder queued has been written
/// (see [`TxState`]).
pub(crate) fn spawn_connection<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    state: Option<Arc<TxState>>,
) -> JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        /// Marks the task ended however it ends (error, end of stream, abort).
        struct Ended(Option<Arc<TxState>>);
        impl Drop for Ended {
            fn drop(&mut self) {
                if let Some(state) = &self.0 {
                    state.task_ended();
                }
            }
        }
        let _ended = Ended(state.clone());
        let flagging = state.as_ref().map(TxState::flagging_waker);
        loop {
            let polled = std::future::poll_fn(|cx| match (&state, &flagging) {
                (Some(state), Some(flagging)) => {
                    state.begin_poll(cx.waker());
                    let r = connection.poll_message(&mut Context::from_waker(flagging));
                    if r.is_pending() {
                        state.end_poll();
                    }
                    r
                }
                _ => connection.poll_message(cx),
            })
            .await;
            match polled {
                Some(Ok(AsyncMessage::Notice(notice))) => tracing::debug!(
                    target: "pool_postgres",
                    severity = notice.severity(),
                    code = notice.code().code(),
                    "server notice: {}",
                    notice.message()
                ),
                Some(Ok(AsyncMessage::Notification(n))) => tracing::debug!(
                    target: "pool_postgres",
                    channel = n.channel(),
                    "dropping a LISTEN notification: pooled connections do not deliver them"
                ),
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(
                        target: "pool_postgres",
                        error = %error,
                        code = error.code().map(|c| c.code()),
                        "PostgreSQL connection ended with an error"
                    );
                    return;
                }
                None => return,
            }
        }
    })
}
