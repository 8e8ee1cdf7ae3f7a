//! Read/write routing over a primary pool and read-replica pools.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{Manager, Pool, PoolError, Pooled, Status};

/// Which member of a [`ReadWrite`] handle served a read.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// The primary pool.
    Primary,
    /// The replica pool at this index (in the order given to [`ReadWrite::new`]).
    Replica(usize),
}

/// One handle over a primary pool (writes, and reads that must see them) and any number of
/// read-replica pools.
///
/// - [`get`](ReadWrite::get) always reaches the primary.
/// - [`get_read`](ReadWrite::get_read) takes a connection from a replica, round-robin, and falls
///   back to the primary when no replica can serve within the *replica budget*
///   ([`ReadWrite::replica_wait`]); the whole call stays bounded by the primary's `wait_timeout`.
///
/// A replica is healthy when its pool can hand out a connection: a replica that is down fails
/// fast (its pool returns [`PoolError::Unavailable`] while connects keep failing) and one that
/// is saturated times out within the replica budget; either way the read falls back. How far a
/// replica may lag behind is the backend manager's business, checked when it validates a
/// connection (e.g. `pool_postgres::Manager::max_replication_lag`).
///
/// Each member is an ordinary [`Pool`] with its own configuration, metrics and maintenance;
/// [`ReadWrite::members`] lists them with their [`Status`].
///
/// ```
/// # use std::convert::Infallible;
/// # struct Db;
/// # impl pool_core::Manager for Db {
/// #     type Connection = ();
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_core::{Member, Pool, ReadWrite};
///
/// let handle = ReadWrite::new(Pool::new(Db, 4)?, vec![Pool::new(Db, 4)?]);
/// let _write = handle.get().await?; // always the primary
/// let (_read, served_by) = handle.get_read().await?;
/// assert_eq!(served_by, Member::Replica(0));
/// # Ok(()) }
/// ```
pub struct ReadWrite<M: Manager> {
    inner: Arc<Inner<M>>,
}

struct Inner<M: Manager> {
    primary: Pool<M>,
    replicas: Vec<Pool<M>>,
    next: AtomicUsize,
    replica_wait: Duration,
    replica_reads: AtomicU64,
    fallbacks: AtomicU64,
}

impl<M: Manager> Clone for ReadWrite<M> {
    fn clone(&self) -> Self {
        ReadWrite {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for ReadWrite<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadWrite")
            .field("replicas", &self.inner.replicas.len())
            .field("replica_wait", &self.inner.replica_wait)
            .field("replica_reads", &self.replica_reads())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

/// Default of [`ReadWrite::replica_wait`].
const DEFAULT_REPLICA_WAIT: Duration = Duration::from_millis(250);

impl<M: Manager> ReadWrite<M> {
    /// A handle over `primary` and `replicas` (which may be empty: then every read goes to the
    /// primary).
    pub fn new(primary: Pool<M>, replicas: Vec<Pool<M>>) -> Self {
        ReadWrite {
            inner: Arc::new(Inner {
                primary,
                replicas,
                next: AtomicUsize::new(0),
                replica_wait: DEFAULT_REPLICA_WAIT,
                replica_reads: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
            }),
        }
    }

    /// How long a read may spend on the replicas in all before it falls back to the primary.
    /// Default: 250 ms. `Duration::ZERO` takes a replica's connection only if one is idle now.
    ///
    /// Call it before cloning the handle: it applies to this handle only when it is the sole
    /// owner, and is otherwise ignored (the handle's settings are shared by its clones).
    #[must_use]
    pub fn replica_wait(mut self, wait: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.replica_wait = wait;
        }
        self
    }

    /// The primary pool.
    pub fn primary(&self) -> &Pool<M> {
        &self.inner.primary
    }

    /// The replica pools, in the order given to [`ReadWrite::new`].
    pub fn replicas(&self) -> &[Pool<M>] {
        &self.inner.replicas
    }

    /// Every member with its status snapshot: the primary first, then the replicas.
    pub fn members(&self) -> Vec<(Member, Status)> {
        std::iter::once((Member::Primary, self.inner.primary.status()))
            .chain(
                self.inner
                    .replicas
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (Member::Replica(i), p.status())),
            )
            .collect()
    }

    /// Reads served by a replica so far.
    pub fn replica_reads(&self) -> u64 {
        self.inner.replica_reads.load(Ordering::Relaxed)
    }

    /// Reads that fell back to the primary so far (no replica could serve in time).
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// A connection to the primary, for writes and for reads that must see them.
    ///
    /// # Errors
    /// As [`Pool::get`].
    ///
    /// # Cancel safety
    /// As [`Pool::get`].
    pub async fn get(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        self.inner.primary.get().await
    }

    /// A connection for a read: from a replica when one can serve within the replica budget
    /// (tried round-robin, each with an equal share of what is left of the budget, a failing or
    /// saturated one skipped), else from the primary. The
    /// whole call is bounded by the primary's `wait_timeout`.
    ///
    /// # Errors
    /// The primary's error (as [`Pool::get`]) when no replica could serve and the primary could
    /// not either.
    ///
    /// # Cancel safety
    /// As [`Pool::get`]: dropping the future loses no connection of any member.
    pub async fn get_read(&self) -> Result<(Pooled<M>, Member), PoolError<M::Error>> {
        let inner = &*self.inner;
        let total = inner.primary.config().wait_timeout;
        // tokio's clock, so that the budget follows a paused test clock too.
        let start = tokio::time::Instant::now();
        let n = inner.replicas.len();
        if n > 0 {
            let first = inner.next.fetch_add(1, Ordering::Relaxed) % n;
            let budget = inner.replica_wait.min(total);
            // Each replica in turn, with an equal share of what is left of the budget, so that a
            // dead or saturated one cannot use up the others' time.
            for k in 0..n {
                let left = budget.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                let share = left / u32::try_from(n - k).unwrap_or(u32::MAX);
                let i = (first + k) % n;
                // The call's deadline bounds queueing, checks and connecting alike.
                match inner.replicas[i].get_timeout(share).await {
                    Ok(conn) => {
                        inner.replica_reads.fetch_add(1, Ordering::Relaxed);
                        return Ok((conn, Member::Replica(i)));
                    }
                    Err(error) => {
                        tracing::debug!(
                            target: "pool_core",
                            replica = i,
                            %error,
                            "a replica could not serve a read; trying the next member"
                        );
                    }
                }
            }
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let left = total.saturating_sub(start.elapsed());
        let conn = inner.primary.get_timeout(left).await?;
        Ok((conn, Member::Primary))
    }
}
