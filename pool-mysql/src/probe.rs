//! The dead-peer probe: tells, without a round trip, whether the server closed or the network
//! reset an idle connection.
//!
//! mysql_async keeps its socket private (its own pool probes it through a crate-private
//! `Stream::check`), and `Conn::is_disconnected` only flips after a failed I/O. So on Linux the
//! pool takes a *duplicate* of the connection's socket when it opens the connection: the socket
//! inodes the process has open are listed (`/proc/self/fd`) before and after `Conn::new`, the one
//! new socket is duplicated with `pidfd_getfd(2)` on the process's own pidfd, and its inode is
//! checked again on the duplicate. The probe is then one `recv(MSG_PEEK | MSG_DONTWAIT)` on the
//! duplicate: no bytes taken from the driver, no round trip, one system call. It works for TCP
//! and for the Unix socket that `prefer_socket` moves loopback URLs to (mysql_async's own check
//! only writes 0 bytes on a Unix socket, which does not see a peer close).
//!
//! When the one new socket cannot be told apart (another socket opened in the same window, a
//! platform without `/proc` or `pidfd_getfd`), the connection has no probe and the manager pings
//! it at checkout instead (see `Manager`): correct, one round trip.
//!
//! All of it is safe Rust: `rustix` wraps the system calls.

/// What a peek on an idle connection's socket saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Nothing to read: the peer is there as far as can be told.
    Idle,
    /// Bytes wait to be read (on a connection with no request outstanding, the server said
    /// something unasked: an error before closing, e.g. a kill or an inactivity timeout).
    Data,
    /// End of stream or a socket error (reset, timed out): the connection is dead.
    Closed,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashSet;
    use std::os::fd::OwnedFd;

    use rustix::io::Errno;
    use rustix::net::RecvFlags;
    use rustix::process::{PidfdFlags, PidfdGetfdFlags};

    use super::Peek;

    /// A duplicate of one connection's socket (closed with the connection: it must never outlive
    /// the `Conn`, or the socket would stay open after the driver closed its own descriptor).
    #[derive(Debug)]
    pub(crate) struct Probe {
        fd: OwnedFd,
    }

    /// The socket inodes open in this process, with one descriptor number each.
    #[derive(Debug, Default)]
    pub(crate) struct Snapshot {
        sockets: Vec<(i32, u64)>,
    }

    impl Snapshot {
        /// Lists the process's sockets; `None` when `/proc/self/fd` cannot be read.
        pub(crate) fn take() -> Option<Snapshot> {
            let mut sockets = Vec::new();
            for entry in std::fs::read_dir("/proc/self/fd").ok()? {
                let Ok(entry) = entry else { continue };
                let Some(fd) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                let Ok(target) = std::fs::read_link(entry.path()) else {
                    continue;
                };
                let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
                else {
                    continue;
                };
                sockets.push((fd, inode));
            }
            Some(Snapshot { sockets })
        }

        /// The probe of the one socket that is open now, was not open in `before` and leads to
        /// the server (a TCP peer on `tcp_port`, or a Unix socket peer); `None` when there is not
        /// exactly one such socket or it cannot be duplicated.
        pub(crate) fn adopt_new(before: &Snapshot, tcp_port: u16) -> Option<Probe> {
            let after = Snapshot::take()?;
            let old: HashSet<u64> = before.sockets.iter().map(|&(_, ino)| ino).collect();
            let mut seen = HashSet::new();
            let pidfd =
                rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty()).ok()?;
            let mut found = None;
            for &(fd, inode) in &after.sockets {
                if old.contains(&inode) || !seen.insert(inode) {
                    continue;
                }
                let Ok(dup) = rustix::process::pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())
                else {
                    continue;
                };
                // The number may have been closed and reused since the listing: check the inode.
                if rustix::fs::fstat(&dup).ok()?.st_ino != inode || !leads_to_server(&dup, tcp_port)
                {
                    continue;
                }
                if found.is_some() {
                    return None;
                }
                found = Some(Probe { fd: dup });
            }
            found
        }
    }

    /// Whether a socket's peer can be the server: a TCP peer on `tcp_port` or a Unix socket.
    fn leads_to_server(fd: &OwnedFd, tcp_port: u16) -> bool {
        let Ok(Some(peer)) = rustix::net::getpeername(fd) else {
            return false;
        };
        if let Ok(addr) = std::net::SocketAddr::try_from(peer.clone()) {
            return addr.port() == tcp_port;
        }
        rustix::net::SocketAddrUnix::try_from(peer).is_ok()
    }

    impl Probe {
        /// Peeks at the socket without blocking and without taking any byte.
        pub(crate) fn peek(&self) -> Peek {
            let mut byte = [0_u8; 1];
            match rustix::net::recv(&self.fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                Ok((_, 0)) => Peek::Closed,
                Ok(_) => Peek::Data,
                Err(Errno::AGAIN | Errno::INTR) => Peek::Idle,
                Err(_) => Peek::Closed,
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Peek;

    /// No probe on this platform: the manager pings at checkout instead.
    #[derive(Debug)]
    pub(crate) struct Probe(());

    /// Nothing to list on this platform.
    #[derive(Debug, Default)]
    pub(crate) struct Snapshot(());

    impl Snapshot {
        pub(crate) fn take() -> Option<Snapshot> {
            None
        }

        pub(crate) fn adopt_new(_before: &Snapshot, _tcp_port: u16) -> Option<Probe> {
            None
        }
    }

    impl Probe {
        pub(crate) fn peek(&self) -> Peek {
            Peek::Idle
        }
    }
}

pub(crate) use imp::{Probe, Snapshot};
