//! Opening a connection with any TLS connector, and owning the connection task it needs.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, Socket};

pub(crate) type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send>>;

/// Hides the `MakeTlsConnect` bounds so that [`crate::Manager`] needs no type parameter.
pub(crate) trait Connect: Send + Sync + 'static {
    fn connect(&self, config: &Config) -> ConnectFuture;
}

pub(crate) struct TlsConnector<T>(pub(crate) T);

impl<T> Connect for TlsConnector<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(&self, config: &Config) -> ConnectFuture {
        let config = config.clone();
        let tls = self.0.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            Ok((client, spawn_connection(connection)))
        })
    }
}

/// Spawns the task that drives the socket. Its handle is kept by [`crate::ClientWrapper`], which
/// aborts it when the connection is closed; its error is logged, never dropped silently.
fn spawn_connection<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
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
