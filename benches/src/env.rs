//! Where the live-database benchmarks find their servers.
//!
//! The URLs come from `POOL_BENCH_PG_URL` / `POOL_BENCH_MYSQL_URL`, then the test suite's
//! `POOL_TEST_PG_URL` / `POOL_TEST_MYSQL_URL`, then the machine's defaults (the servers that
//! `scripts/` sets up on 127.0.0.1). Benches are not tests: an unreachable server skips its
//! group with a printed notice instead of failing.

use std::time::Duration;

/// Default PostgreSQL URL: trust authentication, user `postgres`, database `test`.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default MariaDB/MySQL URL: user `root` without a password, database `test`.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// How long a bench or `loadgen` waits for a first connection before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

fn first_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The PostgreSQL URL for live benches.
pub fn pg_url() -> String {
    first_var(&["POOL_BENCH_PG_URL", "POOL_TEST_PG_URL"]).unwrap_or_else(|| DEFAULT_PG_URL.into())
}

/// The MariaDB/MySQL URL for live benches.
pub fn mysql_url() -> String {
    first_var(&["POOL_BENCH_MYSQL_URL", "POOL_TEST_MYSQL_URL"])
        .unwrap_or_else(|| DEFAULT_MYSQL_URL.into())
}

/// `url` with every password replaced by `***`, for printing: the one in the user part
/// (`scheme://user:secret@host`) and any `password=` parameter, whether in the query string
/// (`?password=…`, `&password=…`) or in a key/value connection string
/// (`host=h password=… dbname=d`, also quoted: `password='a b'`). The key is matched without
/// regard to case.
pub fn redact(url: &str) -> String {
    mask_password_params(&mask_user_password(url))
}

fn mask_user_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

/// Replaces the value of every `password=` parameter that starts the text or follows `?`, `&`,
/// `;` or whitespace.
fn mask_password_params(s: &str) -> String {
    const KEY: &str = "password=";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(KEY) {
        let key_at = search + found;
        let value_at = key_at + KEY.len();
        search = value_at;
        let boundary = key_at == 0
            || matches!(s.as_bytes()[key_at - 1], b'?' | b'&' | b';')
            || s.as_bytes()[key_at - 1].is_ascii_whitespace();
        if !boundary {
            continue;
        }
        let value = &s[value_at..];
        if value.starts_with("***") {
            // Already masked: masking is idempotent.
            continue;
        }
        let len = match value.as_bytes().first() {
            // A quoted key/value value: up to the closing quote (backslash escapes it).
            Some(&q @ (b'\'' | b'"')) => {
                let mut escaped = false;
                value[1..]
                    .char_indices()
                    .find(|&(_, c)| {
                        let end = !escaped && c == char::from(q);
                        escaped = !escaped && c == '\\';
                        end
                    })
                    .map_or(value.len(), |(i, _)| i + 2)
            }
            _ => value
                .find(|c: char| matches!(c, '&' | ';' | '#') || c.is_whitespace())
                .unwrap_or(value.len()),
        };
        out.push_str(&s[copied..value_at]);
        out.push_str("***");
        copied = value_at + len;
        search = copied;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn redacts_password_in_query_string() {
        assert_eq!(
            redact("postgres://u@h/db?password=secret"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=secret&application_name=x"),
            "postgres://u@h/db?sslmode=disable&password=***&application_name=x"
        );
        assert_eq!(
            redact("mysql://u:one@h/db?PassWord=two#frag"),
            "mysql://u:***@h/db?PassWord=***#frag"
        );
        // A password in the user part and one in the query that holds `@` and `:`.
        assert_eq!(
            redact("postgres://u:a@h/db?password=b:c@d"),
            "postgres://u:***@h/db?password=***"
        );
        // Other parameters that merely end in `password` are left alone.
        assert_eq!(
            redact("postgres://h/db?old_password=x&password="),
            "postgres://h/db?old_password=x&password=***"
        );
    }

    #[test]
    fn redacts_password_in_key_value_form() {
        assert_eq!(
            redact("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact("password='with space\\' quote' host=h"),
            "password=*** host=h"
        );
        assert_eq!(
            redact("Server=h;Password=p;Database=d"),
            "Server=h;Password=***;Database=d"
        );
        assert_eq!(redact("no secret here"), "no secret here");
        // Idempotent, also for a masked URL inside a longer message.
        let url = redact("postgres://u:a@h/db?password=b");
        let message = format!("cannot reach postgres ({url}): refused");
        assert_eq!(redact(&message), message);
    }
}
