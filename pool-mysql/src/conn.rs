//! The pooled connection: a raw `mysql_async::Conn` and a "used" flag.

use std::fmt;
use std::ops::{Deref, DerefMut};

use mysql_async::Conn;

/// One pooled MySQL/MariaDB connection: a raw [`mysql_async::Conn`] (never one of mysql_async's
/// own pool).
///
/// It derefs to [`Conn`], so `conn.query_drop(…)` and every other `Queryable` method work (use
/// `&mut **conn` or [`ConnWrapper::conn_mut`] where a `&mut Conn` is needed). Any mutable use
/// marks it *used*, and a used connection is cleaned before its next user (see
/// [`crate::ResetMode`]).
///
/// Unlike `Conn`'s, its `Debug` output never shows the connection options (which hold the
/// password).
pub struct ConnWrapper {
    conn: Conn,
    used: bool,
}

impl ConnWrapper {
    pub(crate) fn new(conn: Conn) -> Self {
        ConnWrapper { conn, used: false }
    }

    /// The raw connection (marks this connection used).
    pub fn conn_mut(&mut self) -> &mut Conn {
        self.used = true;
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

    pub(crate) fn was_used(&self) -> bool {
        self.used
    }

    pub(crate) fn set_clean(&mut self) {
        self.used = false;
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
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}
