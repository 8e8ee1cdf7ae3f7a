//! What the secrets tests search for a password: error chains and captured log output.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// An error's `Display` and `Debug`, and those of every `source()` below it, as one string.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err} / {err:?}");
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(&format!(" / {e} / {e:?}"));
        source = e.source();
    }
    out
}

/// Everything `tracing` logs on this thread, at every level, while it lives.
#[derive(Debug)]
pub struct LogCapture {
    buf: Captured,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone, Default, Debug)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a TRACE-level subscriber for this thread. Run async code on a current-thread
    /// runtime so that its tasks log here too.
    pub fn start() -> LogCapture {
        let buf = Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        LogCapture {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self
            .buf
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
