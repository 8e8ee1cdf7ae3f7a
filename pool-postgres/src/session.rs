//! Which SQL texts may change session state that outlives their transaction, so that the pool
//! resets a session only when its holder may have changed it.
//!
//! The scan is lexical and errs on the safe side: a statement it cannot rule out counts as a
//! change (the price is one `DISCARD ALL`, never a leak). String literals, quoted identifiers,
//! dollar-quoted bodies and comments are skipped.
//!
//! A statement changes the session when
//! - it starts with `SET` (but not `SET LOCAL` / `SET TRANSACTION`, which end with the
//!   transaction), `RESET`, `LISTEN`, `PREPARE`, `DEALLOCATE`, `DECLARE` (a cursor may be
//!   `WITH HOLD`), `LOAD`, or `DO` / `CALL` (code that may do any of these);
//! - or it names, anywhere, `TEMP` / `TEMPORARY` / `pg_temp` (temporary tables,
//!   `SELECT … INTO TEMP`, `CREATE TABLE pg_temp.t`),
//!   `set_config`, a session-level advisory lock function (`pg_advisory_lock`,
//!   `pg_try_advisory_lock`, and their `_shared` forms), or `dblink_connect`.
//!
//! What it cannot see: a function the holder calls that changes settings inside (the server
//! still reports the settings it reports, such as `TimeZone`, `DateStyle`, `search_path`
//! on recent versions, `is_superuser`, `session_authorization`, through `ParameterStatus`,
//! which also counts as a change).

/// Whether `sql` may change session state (see the module documentation).
pub(crate) fn changes_session(sql: &[u8]) -> bool {
    let mut scan = Scanner { sql, at: 0 };
    // The current statement's first word, and whether its second is still to come.
    let mut first: Option<Word<'_>> = None;
    let mut second_pending = false;
    while let Some(token) = scan.next_token() {
        match token {
            Token::End => {
                if second_pending {
                    return true; // a bare `SET`: let the server judge, count it
                }
                first = None;
            }
            Token::Word(w) => {
                if second_pending {
                    second_pending = false;
                    if !(w.is("local") || w.is("transaction")) {
                        return true;
                    }
                    continue;
                }
                if ANYWHERE.iter().any(|k| w.is(k)) {
                    return true;
                }
                if first.is_none() {
                    first = Some(w);
                    if w.is("set") {
                        second_pending = true;
                    } else if STARTS.iter().any(|k| w.is(k)) {
                        return true;
                    }
                }
            }
        }
    }
    second_pending
}

/// First words of statements that change the session.
const STARTS: &[&str] = &[
    "reset",
    "listen",
    "prepare",
    "deallocate",
    "declare",
    "load",
    "do",
    "call",
];

/// Words that change the session wherever they appear.
const ANYWHERE: &[&str] = &[
    "temp",
    "temporary",
    "pg_temp",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "dblink_connect",
    "dblink_connect_u",
];

/// A word of the text, by position (compared case-insensitively).
#[derive(Debug, Clone, Copy)]
struct Word<'a>(&'a [u8]);

impl Word<'_> {
    fn is(&self, keyword: &str) -> bool {
        self.0.eq_ignore_ascii_case(keyword.as_bytes())
    }
}

enum Token<'a> {
    Word(Word<'a>),
    /// `;`: the end of a statement.
    End,
}

struct Scanner<'a> {
    sql: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.at + ahead).copied()
    }

    fn next_token(&mut self) -> Option<Token<'a>> {
        loop {
            let c = self.peek(0)?;
            match c {
                b';' => {
                    self.at += 1;
                    return Some(Token::End);
                }
                b'-' if self.peek(1) == Some(b'-') => {
                    while self.peek(0).is_some_and(|c| c != b'\n') {
                        self.at += 1;
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(),
                b'\'' => self.skip_string(false),
                b'"' => self.skip_quoted_identifier(),
                b'$' => self.skip_dollar(),
                c if is_word_start(c) => {
                    let start = self.at;
                    while self.peek(0).is_some_and(is_word_char) {
                        self.at += 1;
                    }
                    // E'…' (escape string) and similar prefixes: the literal follows at once.
                    if self.peek(0) == Some(b'\'') {
                        let prefix = &self.sql[start..self.at];
                        let escapes = prefix.eq_ignore_ascii_case(b"e");
                        self.skip_string(escapes);
                        continue;
                    }
                    return Some(Token::Word(Word(&self.sql[start..self.at])));
                }
                _ => self.at += 1,
            }
        }
    }

    fn skip_block_comment(&mut self) {
        // Block comments nest in PostgreSQL.
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.at += 2;
            } else if c == b'*' && self.peek(1) == Some(b'/') {
                depth -= 1;
                self.at += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.at += 1;
            }
        }
    }

    /// At a `'`: skips the literal (`''` is a quote; with `escapes`, `\` escapes too).
    fn skip_string(&mut self, escapes: bool) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if escapes && c == b'\\' {
                self.at += 1;
            } else if c == b'\'' {
                if self.peek(0) == Some(b'\'') {
                    self.at += 1;
                } else {
                    return;
                }
            }
        }
    }

    fn skip_quoted_identifier(&mut self) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if c == b'"' {
                if self.peek(0) == Some(b'"') {
                    self.at += 1;
                } else {
                    return;
                }
            }
        }
    }

    /// At a `$`: a parameter (`$1`), or a dollar-quoted body (`$$…$$`, `$tag$…$tag$`) skipped
    /// whole.
    fn skip_dollar(&mut self) {
        let start = self.at;
        self.at += 1;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.at += 1;
        }
        if self.peek(0) != Some(b'$')
            || self.sql[start + 1..self.at]
                .first()
                .is_some_and(u8::is_ascii_digit)
        {
            return; // a parameter or a stray `$`
        }
        self.at += 1;
        let tag = &self.sql[start..self.at];
        match self.sql[self.at..]
            .windows(tag.len())
            .position(|w| w == tag)
        {
            Some(end) => self.at += end + tag.len(),
            None => self.at = self.sql.len(),
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

#[cfg(test)]
mod tests {
    use super::changes_session;

    fn changes(sql: &str) -> bool {
        changes_session(sql.as_bytes())
    }

    #[test]
    fn session_changes_are_seen() {
        for sql in [
            "SET statement_timeout = 5",
            "set role reader",
            "SET SESSION AUTHORIZATION other",
            "BEGIN; SET search_path TO x; COMMIT",
            "RESET ALL",
            "LISTEN jobs",
            "PREPARE p AS SELECT 1",
            "DEALLOCATE ALL",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "CREATE TEMP TABLE t (x int)",
            "create temporary table t (x int)",
            "CREATE TABLE pg_temp.t (x int)",
            "SELECT 1 INTO TEMP t",
            "SELECT set_config('a.b', 'c', false)",
            "SELECT pg_catalog.set_config('a.b', 'c', false)",
            "SELECT pg_advisory_lock(1)",
            "select PG_TRY_ADVISORY_LOCK_SHARED(1)",
            "DO $$BEGIN PERFORM 1; END$$",
            "CALL proc()",
            "LOAD 'auto_explain'",
            "SELECT 1; SET x.y = 1",
            "SET",
        ] {
            assert!(changes(sql), "{sql}");
        }
    }

    #[test]
    fn ordinary_statements_are_not() {
        for sql in [
            "SELECT 1",
            "UPDATE t SET x = 1 WHERE id = $1",
            "INSERT INTO t (x) VALUES ($1) ON CONFLICT (x) DO UPDATE SET x = 2",
            "BEGIN; SET LOCAL statement_timeout = 5; SELECT 1; COMMIT",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SELECT 'SET role x; temp', \"temp\" FROM t -- set role\n",
            "SELECT E'it\\'s temp' /* LISTEN /* nested */ x */",
            "CREATE FUNCTION f() RETURNS void AS $body$ BEGIN SET x = 1; END $body$ LANGUAGE plpgsql",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT $1::int",
            "DISCARD ALL",
            "",
        ] {
            assert!(!changes(sql), "{sql}");
        }
    }
}
