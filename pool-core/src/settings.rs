//! The settings syntax shared by [`Config`] and by every backend's `Settings`: durations
//! (`"30s"`, `"250ms"`, `"1h 30m"`, `"forever"`; optional ones also `"off"`) in serde and in
//! environment variables, reading prefixed environment variables ([`for_each_var`]), and
//! masking passwords in connection strings ([`redact_url`]).
//!
//! Backend crates build on these so that a setting is written the same way whichever backend
//! reads it; applications rarely need them directly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::Config;

/// Parses a duration: humantime syntax (`"30s"`, `"250ms"`, `"1h 30m"`), or `"forever"`
/// (also `"infinite"`, `"max"`) for [`Duration::MAX`].
///
/// # Errors
/// A message saying what is wrong, for text that is neither.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "forever" | "infinite" | "max" => Ok(Duration::MAX),
        t => humantime::parse_duration(t).map_err(|e| format!("{e} (e.g. \"30s\", \"250ms\")")),
    }
}

/// Parses an optional duration: as [`parse_duration`], or `"off"` (also `"none"`, `"never"`,
/// `"disabled"`) for `None`.
///
/// # Errors
/// A message saying what is wrong, for text that is none of these.
pub fn parse_optional(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "off" | "none" | "never" | "disabled" => Ok(None),
        t => parse_duration(t).map(Some),
    }
}

/// Parses a boolean, in any case: `true`/`1`/`on`/`yes` or `false`/`0`/`off`/`no`.
///
/// # Errors
/// A message naming the text, for anything else.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    let text = text.trim();
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (true or false)")),
    }
}

#[cfg(any(feature = "serde", test))]
fn format_duration(d: Duration) -> String {
    if d == Duration::MAX {
        "forever".to_owned()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// serde for `Duration` fields, in the syntax of [`parse_duration`]:
/// `#[serde(with = "pool_core::settings::duration")]`.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as `"30s"`, or `"forever"` for [`Duration::MAX`].
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a duration in the syntax of [`parse_duration`](super::parse_duration).
    ///
    /// # Errors
    /// The deserializer's, or a custom one saying why the text is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// serde for `Option<Duration>` fields: `"off"` (or null) is `None`:
/// `#[serde(with = "pool_core::settings::optional_duration")]`.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as `"30s"`, `"forever"`, or `"off"` for `None`.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_str("off"),
        }
    }

    /// Reads an optional duration in the syntax of
    /// [`parse_optional`](super::parse_optional); null is `None` too.
    ///
    /// # Errors
    /// The deserializer's, or a custom one saying why the text is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_optional(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// Deserializes a value from its text through [`FromStr`], for enums whose settings are words
/// (`"rollback"`, `"read-write"`): a backend implements `Deserialize` with it so that a file
/// and an environment variable take the same words.
///
/// # Errors
/// The deserializer's, or the type's parse error as a custom one.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub fn deserialize_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = <String as serde::Deserialize>::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// A setting's word that is not one of those it takes (the `FromStr` error of backends' enum
/// settings, e.g. a reset mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// The text given.
    pub value: String,
    /// The words it could have been, e.g. `"auto, rollback, discard-all or off"`.
    pub expected: &'static str,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not one of {}", self.value, self.expected)
    }
}

impl std::error::Error for UnknownValue {}

/// An environment variable whose value does not fit its setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// The variable's name.
    pub var: String,
    /// What is wrong with its value.
    pub message: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {}: {}", self.var, self.message)
    }
}

impl std::error::Error for EnvError {}

/// One environment variable handed to [`for_each_var`]'s callback, with parsers whose errors
/// name it.
#[derive(Debug, Clone, Copy)]
pub struct Var<'a> {
    /// The variable's whole name (prefix included).
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
}

impl Var<'_> {
    /// An [`EnvError`] for this variable.
    pub fn error(&self, message: impl fmt::Display) -> EnvError {
        EnvError {
            var: self.name.to_owned(),
            message: message.to_string(),
        }
    }

    /// The value as a duration ([`parse_duration`]).
    ///
    /// # Errors
    /// [`EnvError`] naming the variable.
    pub fn duration(&self) -> Result<Duration, EnvError> {
        parse_duration(self.value).map_err(|m| self.error(m))
    }

    /// The value as an optional duration ([`parse_optional`]: `"off"` is `None`).
    ///
    /// # Errors
    /// [`EnvError`] naming the variable.
    pub fn optional_duration(&self) -> Result<Option<Duration>, EnvError> {
        parse_optional(self.value).map_err(|m| self.error(m))
    }

    /// The value as a boolean ([`parse_bool`]).
    ///
    /// # Errors
    /// [`EnvError`] naming the variable.
    pub fn boolean(&self) -> Result<bool, EnvError> {
        parse_bool(self.value).map_err(|m| self.error(m))
    }

    /// The value, trimmed, parsed as `T` (numbers, and enums whose settings are words).
    ///
    /// # Errors
    /// [`EnvError`] naming the variable, with `T`'s parse error.
    pub fn parse<T>(&self) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.value.trim().parse().map_err(|e| self.error(e))
    }

    /// The value as it is, owned.
    pub fn text(&self) -> String {
        self.value.to_owned()
    }

    /// The value as a comma-separated list, each item trimmed, empty items dropped.
    pub fn list(&self) -> Vec<String> {
        self.value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Calls `f` with the name after `prefix` (e.g. `MAX_SIZE` for `APP_DB_MAX_SIZE` and prefix
/// `APP_DB_`) and the variable, for every one of `vars` (name, value pairs, e.g.
/// `std::env::vars()`) whose name starts with `prefix`; the others are skipped. Stops at the
/// first error `f` returns.
///
/// # Errors
/// The first one `f` returned.
pub fn for_each_var<K, V>(
    prefix: &str,
    vars: impl IntoIterator<Item = (K, V)>,
    mut f: impl FnMut(&str, Var<'_>) -> Result<(), EnvError>,
) -> Result<(), EnvError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    for (name, value) in vars {
        let (name, value) = (name.as_ref(), value.as_ref());
        if let Some(field) = name.strip_prefix(prefix) {
            f(field, Var { name, value })?;
        }
    }
    Ok(())
}

/// `url` with every password replaced by `***`, for printing: the one in the user part
/// (`scheme://user:secret@host`) and any `password=` parameter, whether in the query string
/// (`?password=…`, `&password=…`) or in a key/value connection string
/// (`host=h password=… dbname=d`, also quoted: `password='a b'`). The key is matched without
/// regard to case.
pub fn redact_url(url: &str) -> String {
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

/// A backend's `Settings::apply_vars` in one call: `f` gets every variable of `vars` that
/// starts with `prefix` (as [`for_each_var`]) for the backend's own settings, then `pool` takes
/// its own ([`Config::apply_vars`], same prefix). Names neither knows are ignored.
///
/// # Errors
/// The first [`EnvError`], from `f` or from the pool's settings.
pub fn apply_backend_vars<K, V>(
    prefix: &str,
    vars: impl IntoIterator<Item = (K, V)>,
    pool: &mut Config,
    f: impl FnMut(&str, Var<'_>) -> Result<(), EnvError>,
) -> Result<(), EnvError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let vars: Vec<(K, V)> = vars.into_iter().collect();
    let pairs = || vars.iter().map(|(k, v)| (k.as_ref(), v.as_ref()));
    for_each_var(prefix, pairs(), f)?;
    pool.apply_vars(prefix, pairs())
}

/// Declares, on a backend's `Settings` type (one with `Default` and an inherent
/// `apply_vars(&mut self, prefix, vars) -> Result<(), Error>`), the two constructors every
/// backend offers: `from_env(prefix)` and `from_vars(prefix, vars)`, both over the defaults.
/// Inherent methods, so that users call them without importing anything.
///
/// `pool_core::settings_constructors!(Settings, ConfigError);` in the backend's settings file.
#[macro_export]
macro_rules! settings_constructors {
    ($settings:ty, $error:ty) => {
        impl $settings {
            /// Settings read from the environment variables that start with `prefix` (see
            /// [`apply_vars`](Self::apply_vars)), over the defaults.
            ///
            /// # Errors
            /// The error of the first variable whose value does not fit (it names the variable).
            pub fn from_env(prefix: &str) -> ::std::result::Result<Self, $error> {
                Self::from_vars(prefix, ::std::env::vars())
            }

            /// Settings read from `vars` (name, value pairs) over the defaults: the environment
            /// without touching it, e.g. in tests.
            ///
            /// # Errors
            /// The error of the first variable whose value does not fit (it names the variable).
            pub fn from_vars<K, V>(
                prefix: &str,
                vars: impl ::std::iter::IntoIterator<Item = (K, V)>,
            ) -> ::std::result::Result<Self, $error>
            where
                K: ::std::convert::AsRef<str>,
                V: ::std::convert::AsRef<str>,
            {
                let mut settings = <Self as ::std::default::Default>::default();
                settings.apply_vars(prefix, vars)?;
                ::std::result::Result::Ok(settings)
            }
        }
    };
}

impl Config {
    /// The default configuration with every setting the environment names overridden:
    /// `{prefix}MAX_SIZE`, `{prefix}WAIT_TIMEOUT`, … — the field's name in upper case (see
    /// [`Config::apply_vars`]).
    ///
    /// # Errors
    /// [`EnvError`] for the first variable whose value does not parse.
    pub fn from_env(prefix: &str) -> Result<Config, EnvError> {
        let mut config = Config::default();
        config.apply_vars(prefix, std::env::vars())?;
        Ok(config)
    }

    /// Overrides the settings named by `vars` (name, value pairs, e.g. `std::env::vars()`)
    /// that start with `prefix`; others are ignored (so a backend's own variables can share the
    /// prefix). The name after the prefix is the field's name in upper case: `MAX_SIZE`,
    /// `MIN_IDLE`, `WAIT_TIMEOUT`, `CONNECT_TIMEOUT`, `VALIDATE_TIMEOUT`,
    /// `VALIDATE_AFTER_IDLE`, `MAX_LIFETIME`, `MAX_LIFETIME_JITTER_PERCENT`, `IDLE_TIMEOUT`,
    /// `REAP_INTERVAL`, `LEAK_THRESHOLD`, `RETRY_CONNECT`, `FAIL_FAST_AFTER`, `QUEUE_BYPASS`,
    /// `NAME`. Durations are written `"30s"`, `"250ms"`, `"forever"`; optional ones also
    /// `"off"`; booleans `true`/`false`/`1`/`0`.
    ///
    /// ```
    /// let mut config = pool_core::Config::default();
    /// config
    ///     .apply_vars(
    ///         "APP_DB_",
    ///         [("APP_DB_MAX_SIZE", "32"), ("APP_DB_IDLE_TIMEOUT", "off"), ("HOME", "/root")],
    ///     )
    ///     .unwrap();
    /// assert_eq!((config.max_size, config.idle_timeout), (32, None));
    /// ```
    ///
    /// # Errors
    /// [`EnvError`] for the first variable whose value does not parse.
    pub fn apply_vars<K, V>(
        &mut self,
        prefix: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), EnvError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for_each_var(prefix, vars, |field, var| {
            match field {
                "MAX_SIZE" => self.max_size = var.parse()?,
                "MIN_IDLE" => self.min_idle = var.parse()?,
                "WAIT_TIMEOUT" => self.wait_timeout = var.duration()?,
                "CONNECT_TIMEOUT" => self.connect_timeout = var.duration()?,
                "VALIDATE_TIMEOUT" => self.validate_timeout = var.duration()?,
                "VALIDATE_AFTER_IDLE" => self.validate_after_idle = var.optional_duration()?,
                "MAX_LIFETIME" => self.max_lifetime = var.optional_duration()?,
                "MAX_LIFETIME_JITTER_PERCENT" => {
                    self.max_lifetime_jitter_percent = var.parse()?;
                }
                "IDLE_TIMEOUT" => self.idle_timeout = var.optional_duration()?,
                "REAP_INTERVAL" => self.reap_interval = var.duration()?,
                "LEAK_THRESHOLD" => self.leak_threshold = var.optional_duration()?,
                "RETRY_CONNECT" => self.retry_connect = var.boolean()?,
                "FAIL_FAST_AFTER" => self.fail_fast_after = var.parse()?,
                "QUEUE_BYPASS" => self.queue_bypass = var.optional_duration()?,
                "NAME" => self.name = var.text(),
                _ => {}
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("forever"), Ok(Duration::MAX));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_optional("off"), Ok(None));
        assert_eq!(parse_optional("2s"), Ok(Some(Duration::from_secs(2))));
        assert_eq!(format_duration(Duration::MAX), "forever");
    }

    #[test]
    fn vars_override_defaults_and_bad_values_name_their_variable() {
        let mut c = Config::default();
        c.apply_vars(
            "DB_",
            [
                ("DB_MAX_SIZE", "4"),
                ("DB_WAIT_TIMEOUT", "forever"),
                ("DB_MAX_LIFETIME", "off"),
                ("DB_RETRY_CONNECT", "false"),
                ("DB_NAME", "orders"),
                ("DB_URL", "postgres://ignored-here"),
                ("OTHER_MAX_SIZE", "99"),
            ],
        )
        .unwrap();
        assert_eq!(c.max_size, 4);
        assert_eq!(c.wait_timeout, Duration::MAX);
        assert_eq!(c.max_lifetime, None);
        assert!(!c.retry_connect);
        assert_eq!(c.name, "orders");
        let e = c
            .apply_vars("DB_", [("DB_IDLE_TIMEOUT", "sometimes")])
            .unwrap_err();
        assert_eq!(e.var, "DB_IDLE_TIMEOUT");
        assert!(e.to_string().contains("DB_IDLE_TIMEOUT"));
        assert!(c.apply_vars("DB_", [("DB_MAX_SIZE", "-1")]).is_err());
    }

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn redacts_password_in_query_string() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=secret"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=secret&application_name=x"),
            "postgres://u@h/db?sslmode=disable&password=***&application_name=x"
        );
        assert_eq!(
            redact_url("mysql://u:one@h/db?PassWord=two#frag"),
            "mysql://u:***@h/db?PassWord=***#frag"
        );
        // A password in the user part and one in the query that holds `@` and `:`.
        assert_eq!(
            redact_url("postgres://u:a@h/db?password=b:c@d"),
            "postgres://u:***@h/db?password=***"
        );
        // Other parameters that merely end in `password` are left alone.
        assert_eq!(
            redact_url("postgres://h/db?old_password=x&password="),
            "postgres://h/db?old_password=x&password=***"
        );
    }

    #[test]
    fn redacts_password_in_key_value_form() {
        assert_eq!(
            redact_url("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact_url("password='with space\\' quote' host=h"),
            "password=*** host=h"
        );
        assert_eq!(
            redact_url("Server=h;Password=p;Database=d"),
            "Server=h;Password=***;Database=d"
        );
        assert_eq!(redact_url("no secret here"), "no secret here");
        // Idempotent, also for a masked URL inside a longer message.
        let url = redact_url("postgres://u:a@h/db?password=b");
        let message = format!("cannot reach postgres ({url}): refused");
        assert_eq!(redact_url(&message), message);
    }
}
