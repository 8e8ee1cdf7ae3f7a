//! One line with an error's whole cause chain, for logs and for messages shown to people.

use std::error::Error;
use std::fmt;

/// Displays an error followed by every error of its [`source`](Error::source) chain, separated
/// by `": "`: `timed out connecting after 1s: error communicating with the server: Connection
/// refused (os error 111)`. A source whose text the line already contains is not repeated.
///
/// The pool's own errors print only their own side in `Display` (the driver's error is their
/// `source`, so that reporters which walk the chain print each part once); use this where a
/// single line must carry the root cause, e.g. `format!("{}", Report::new(&e))` in a handler's
/// error response or a `tracing` field.
///
/// ```
/// use pool_core::{PoolError, Report};
/// let e: PoolError<std::io::Error> =
///     PoolError::Backend(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
/// assert_eq!(
///     Report::new(&e).to_string(),
///     "could not open a database connection: connection refused"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(&'a (dyn Error + 'static));

impl<'a> Report<'a> {
    /// A report of `error` and its causes.
    pub fn new(error: &'a (dyn Error + 'static)) -> Self {
        Report(error)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&line)
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn the_whole_chain_once() {
        let e = Layer(
            "timed out connecting after 1s",
            Some(Box::new(Layer(
                "error communicating with the server: Connection refused",
                Some(Box::new(Layer("Connection refused", None))),
            ))),
        );
        assert_eq!(
            Report::new(&e).to_string(),
            "timed out connecting after 1s: error communicating with the server: Connection refused"
        );
        assert_eq!(Report::new(&Layer("alone", None)).to_string(), "alone");
    }
}
