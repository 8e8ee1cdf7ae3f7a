//! Reading a [`Config`] from the environment, and the duration syntax shared by the
//! environment and by serde: `"30s"`, `"250ms"`, `"1h 30m"`, `"forever"` for durations and
//! `"off"` to switch an optional one off.

use std::fmt;
use std::time::Duration;

use crate::config::Config;

/// Parses a duration: humantime syntax (`"30s"`, `"250ms"`, `"1h 30m"`), or `"forever"`
/// (also `"infinite"`, `"max"`) for [`Duration::MAX`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "forever" | "infinite" | "max" => Ok(Duration::MAX),
        t => humantime::parse_duration(t).map_err(|e| format!("{e} (e.g. \"30s\", \"250ms\")")),
    }
}

/// Parses an optional duration: as [`parse_duration`], or `"off"` (also `"none"`, `"never"`,
/// `"disabled"`) for `None`.
pub(crate) fn parse_optional(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "off" | "none" | "never" | "disabled" => Ok(None),
        t => parse_duration(t).map(Some),
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

/// serde for `Duration` fields, in the syntax of [`parse_duration`].
#[cfg(feature = "serde")]
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// serde for `Option<Duration>` fields: `"off"` (or null) is `None`.
#[cfg(feature = "serde")]
pub(crate) mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_str("off"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse_optional(&text).map_err(serde::de::Error::custom),
        }
    }
}

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
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            let Some(field) = key.strip_prefix(prefix) else {
                continue;
            };
            let err = |message: String| EnvError {
                var: key.to_owned(),
                message,
            };
            let number = |v: &str| v.trim().parse::<u64>().map_err(|e| err(e.to_string()));
            let truth = |v: &str| match v.trim() {
                "true" | "1" | "on" | "yes" => Ok(true),
                "false" | "0" | "off" | "no" => Ok(false),
                other => Err(err(format!("{other:?} is not a boolean"))),
            };
            let size = |v: &str| {
                number(v).and_then(|n| usize::try_from(n).map_err(|e| err(e.to_string())))
            };
            match field {
                "MAX_SIZE" => self.max_size = size(value)?,
                "MIN_IDLE" => self.min_idle = size(value)?,
                "WAIT_TIMEOUT" => self.wait_timeout = parse_duration(value).map_err(err)?,
                "CONNECT_TIMEOUT" => self.connect_timeout = parse_duration(value).map_err(err)?,
                "VALIDATE_TIMEOUT" => {
                    self.validate_timeout = parse_duration(value).map_err(err)?;
                }
                "VALIDATE_AFTER_IDLE" => {
                    self.validate_after_idle = parse_optional(value).map_err(err)?;
                }
                "MAX_LIFETIME" => self.max_lifetime = parse_optional(value).map_err(err)?,
                "MAX_LIFETIME_JITTER_PERCENT" => {
                    self.max_lifetime_jitter_percent =
                        u8::try_from(number(value)?).map_err(|e| err(e.to_string()))?;
                }
                "IDLE_TIMEOUT" => self.idle_timeout = parse_optional(value).map_err(err)?,
                "REAP_INTERVAL" => self.reap_interval = parse_duration(value).map_err(err)?,
                "LEAK_THRESHOLD" => self.leak_threshold = parse_optional(value).map_err(err)?,
                "RETRY_CONNECT" => self.retry_connect = truth(value)?,
                "FAIL_FAST_AFTER" => {
                    self.fail_fast_after =
                        u32::try_from(number(value)?).map_err(|e| err(e.to_string()))?;
                }
                "QUEUE_BYPASS" => self.queue_bypass = parse_optional(value).map_err(err)?,
                "NAME" => self.name = value.to_owned(),
                _ => {}
            }
        }
        Ok(())
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
}
