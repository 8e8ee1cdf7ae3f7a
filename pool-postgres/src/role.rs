//! Which server a connection must reach, beyond what tokio-postgres's `target_session_attrs`
//! knows (`primary`, `standby`, `prefer-standby`), and how far a standby may lag behind.

use std::time::Duration;

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

/// Which server a connection must reach, as libpq's `target_session_attrs`.
///
/// tokio-postgres knows `any`, `read-write` and `read-only`; the URL parser of this crate also
/// takes `primary`, `standby` and `prefer-standby` (and `prefer-primary` is not a libpq value),
/// which it maps onto them:
///
/// | value | a server qualifies when |
/// |---|---|
/// | `any` (default) | it accepts the session |
/// | `read-write`, `primary` | its sessions are not read-only (a primary in read-only mode, e.g. while being demoted, does not qualify) |
/// | `read-only`, `standby` | its sessions are read-only (a hot standby) |
/// | `prefer-standby` | a read-only server if any of the hosts is one, else any server |
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetRole {
    /// Any server that accepts the session.
    #[default]
    Any,
    /// A server whose sessions may write (`read-write`, `primary`).
    ReadWrite,
    /// A server whose sessions are read-only (`read-only`, `standby`).
    ReadOnly,
    /// A read-only server if one of the hosts is, else any.
    PreferStandby,
}

impl TargetRole {
    fn parse(value: &str) -> Option<TargetRole> {
        Some(match value {
            "any" => TargetRole::Any,
            "read-write" | "primary" => TargetRole::ReadWrite,
            "read-only" | "standby" => TargetRole::ReadOnly,
            "prefer-standby" => TargetRole::PreferStandby,
            _ => return None,
        })
    }

    /// The setting's words, for errors.
    pub(crate) const WORDS: &'static str =
        "any, read-write (primary), read-only (standby) or prefer-standby";

    /// What the driver is asked for (the first attempt, for `PreferStandby`).
    pub(crate) fn driver_attrs(self) -> TargetSessionAttrs {
        match self {
            TargetRole::Any => TargetSessionAttrs::Any,
            TargetRole::ReadWrite => TargetSessionAttrs::ReadWrite,
            TargetRole::ReadOnly | TargetRole::PreferStandby => TargetSessionAttrs::ReadOnly,
        }
    }

    /// The role a config's own `target_session_attrs` asks for.
    pub(crate) fn of(config: &Config) -> TargetRole {
        match config.get_target_session_attrs() {
            TargetSessionAttrs::ReadWrite => TargetRole::ReadWrite,
            TargetSessionAttrs::ReadOnly => TargetRole::ReadOnly,
            _ => TargetRole::Any,
        }
    }
}

impl std::str::FromStr for TargetRole {
    type Err = pool_core::settings::UnknownValue;

    /// Parses the words of `target_session_attrs`: `any`, `read-write` or `primary`,
    /// `read-only` or `standby`, `prefer-standby`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetRole::parse(s.trim()).ok_or_else(|| pool_core::settings::UnknownValue {
            value: s.to_owned(),
            expected: TargetRole::WORDS,
        })
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TargetRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pool_core::settings::deserialize_from_str(d)
    }
}

/// Takes `target_session_attrs` out of a connection string (URL query parameter or key/value
/// pair) when its value is one tokio-postgres does not know, returning the rest and the role.
/// Values the driver knows, and strings without the parameter, are left as they are (`None`).
pub(crate) fn split_target_role(url: &str) -> (String, Option<TargetRole>) {
    const KEY: &str = "target_session_attrs";
    let driver_knows = |v: &str| matches!(v, "any" | "read-write" | "read-only");
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None);
        };
        let mut role = None;
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((KEY, v)) if !driver_knows(v) => match TargetRole::parse(v) {
                    Some(r) => role = Some(r),
                    None => kept.push(pair),
                },
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, role)
    } else {
        let mut role = None;
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if k.trim() == KEY && !driver_knows(v.trim()) => {
                    match TargetRole::parse(v.trim()) {
                        Some(r) => role = Some(r),
                        None => kept.push(token),
                    }
                }
                _ => kept.push(token),
            }
        }
        (kept.join(" "), role)
    }
}

/// A server's role as one of its sessions sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ServerRole {
    /// `transaction_read_only` of the session.
    pub(crate) read_only: bool,
    /// How far behind its primary a standby's replay is; `None` on a primary. Zero when it has
    /// replayed everything it received; 10^9 s (so: over any bound) when it has WAL to replay
    /// but has not replayed a single transaction since it started.
    pub(crate) lag: Option<Duration>,
}

/// Asks the session for its server's role (one simple-protocol round trip, safe behind
/// PgBouncer).
pub(crate) async fn server_role(client: &Client) -> Result<ServerRole, tokio_postgres::Error> {
    let rows = client
        .simple_query(
            "SELECT current_setting('transaction_read_only'), pg_is_in_recovery(), \
             CASE WHEN NOT pg_is_in_recovery() THEN NULL \
                  WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
                  ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 1e9) END",
        )
        .await?;
    let row = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let read_only = row.and_then(|r| r.get(0)).is_some_and(|v| v == "on");
    let lag = row
        .and_then(|r| r.get(2))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|secs| Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX));
    Ok(ServerRole { read_only, lag })
}

/// Why a session does not (or no longer) match what the pool is for.
pub(crate) fn mismatch(
    role: TargetRole,
    max_lag: Option<Duration>,
    server: ServerRole,
) -> Option<String> {
    if role == TargetRole::ReadWrite && server.read_only {
        return Some("the server no longer accepts writes (read-only session)".to_owned());
    }
    if role == TargetRole::ReadOnly && !server.read_only {
        return Some("the server is not read-only (no longer a standby)".to_owned());
    }
    match (max_lag, server.lag) {
        (Some(max), Some(lag)) if lag > max => Some(format!(
            "replication lag {:.1} s exceeds the allowed {:.1} s",
            lag.as_secs_f64(),
            max.as_secs_f64()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_the_driver_lacks_are_taken_out_of_urls_and_key_value_strings() {
        assert_eq!(
            split_target_role("postgresql://u@a,b/db?target_session_attrs=primary&sslmode=disable"),
            (
                "postgresql://u@a,b/db?sslmode=disable".to_owned(),
                Some(TargetRole::ReadWrite)
            )
        );
        assert_eq!(
            split_target_role("postgres://u@a/db?target_session_attrs=prefer-standby"),
            (
                "postgres://u@a/db".to_owned(),
                Some(TargetRole::PreferStandby)
            )
        );
        assert_eq!(
            split_target_role("host=a,b user=u target_session_attrs=standby"),
            ("host=a,b user=u".to_owned(), Some(TargetRole::ReadOnly))
        );
        // Values the driver knows stay for the driver; unknown ones stay for its error.
        for url in [
            "postgres://u@a/db?target_session_attrs=read-write",
            "postgres://u@a/db?target_session_attrs=bogus",
            "postgres://u@a/db",
            "host=a target_session_attrs=read-only",
        ] {
            assert_eq!(split_target_role(url), (url.to_owned(), None), "{url}");
        }
    }

    #[test]
    fn mismatches() {
        let primary = ServerRole {
            read_only: false,
            lag: None,
        };
        let demoted = ServerRole {
            read_only: true,
            lag: None,
        };
        let lagging = ServerRole {
            read_only: true,
            lag: Some(Duration::from_secs(5)),
        };
        assert!(mismatch(TargetRole::ReadWrite, None, primary).is_none());
        assert!(mismatch(TargetRole::ReadWrite, None, demoted).is_some());
        assert!(mismatch(TargetRole::ReadOnly, None, primary).is_some());
        assert!(mismatch(TargetRole::ReadOnly, Some(Duration::from_secs(10)), lagging).is_none());
        assert!(mismatch(TargetRole::ReadOnly, Some(Duration::from_secs(1)), lagging).is_some());
        assert!(mismatch(TargetRole::Any, None, demoted).is_none());
        assert!(mismatch(TargetRole::PreferStandby, None, primary).is_none());
    }
}
