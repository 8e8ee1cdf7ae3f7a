//! Free, precise dirty-state detection: a byte-stream adapter that follows the framing of the
//! PostgreSQL wire protocol and publishes the server's transaction status.
//!
//! [`Sniffer`] sits between tokio-postgres's `Connection` and the socket (above TLS when there
//! is TLS). It never buffers or copies anything: for each direction it only keeps the framing
//! state (the header bytes of the current message seen so far and how many payload bytes of it
//! are still to come).
//!
//! * Backend → frontend: every message is a type byte and a 4-byte big-endian length that counts
//!   itself. For each `ReadyForQuery` (`'Z'`, length 5) the one payload byte is the transaction
//!   status: `'I'` idle, `'T'` in a transaction, `'E'` in a failed transaction.
//! * Frontend → backend: the first message (the startup packet) has no type byte, the others do.
//!   Each simple `Query` (`'Q'`), `Sync` (`'S'`) and `FunctionCall` (`'F'`), and the startup
//!   packet, is answered by exactly one `ReadyForQuery`, in order. A `Sync` whose batch held only
//!   `Parse`, `Describe`, `Close` or `Flush` cannot change the transaction status.
//!
//! So a connection is clean exactly when every request that may change the status has been
//! answered and the last answer said `'I'`. Anything unexpected (a malformed length, a `'Z'` of another length) poisons
//! the tracker for good, which makes the connection count as dirty forever (the safe side).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `ReadyForQuery` status: not in a transaction.
pub(crate) const IDLE: u8 = b'I';

const POISONED: u64 = 1 << 8;
const OUTSTANDING_SHIFT: u32 = 16;

/// The connection task is inside `Connection::poll_message`.
const POLLING: u8 = 1;
/// Something woke the connection task since its last poll began (a request queued on the
/// driver's channel, the socket became ready).
const WOKEN: u8 = 2;
/// The last poll ended with the request channel found empty and everything taken from it
/// flushed through the sniffer.
const DRAINED: u8 = 4;

/// What the sniffer knows, shared between the connection task and the pooled connection.
///
/// `word`: bits 0–7 the last `ReadyForQuery` status (0 before the first one), bit 8 poisoned,
/// bits 16– the number of `ReadyForQuery` messages still to be read before the status is final
/// (0 when only requests that cannot change it, such as closing a statement, are in flight),
/// published as one word so that a reader always sees a consistent snapshot.
///
/// `task`: whether every request the holder *queued* has been written, not only those written.
/// tokio-postgres queues a request on an unbounded channel during the first poll of its future;
/// the connection task writes it later. A future dropped in between leaves a request that the
/// sniffer has not counted yet. The connection task (see `connect::spawn_connection`) polls the
/// driver with a waker that sets [`WOKEN`] before waking the task, marks [`POLLING`] while it
/// polls, and marks [`DRAINED`] when a poll ended `Pending` after a flush reached the sniffer:
/// the driver only flushes after it found the channel empty, and its framed writer only
/// flushes the stream once its buffer is written. A request queued after the channel was found
/// empty wakes the registered waker, so [`WOKEN`] is set; one queued before is written (and
/// counted) within that poll. So `task == DRAINED` proves the counts complete.
#[derive(Debug, Default)]
pub(crate) struct TxState {
    word: AtomicU64,
    task: AtomicU8,
    /// A flush reached the sniffer during the current poll.
    flushed: AtomicBool,
    /// A sniffer was put on the stream (not so for a TLS mode that fell back to plaintext).
    attached: AtomicBool,
    /// The connection task's own waker, to make it poll once more.
    waker: Mutex<Option<Waker>>,
    /// Notified when a poll ends drained, and when the connection task ends.
    settled: Notify,
    /// The connection task has ended.
    ended: AtomicBool,
    /// [`SESSION_CHANGED`], [`SERVER_GONE`], [`READ_ONLY_ERROR`], accumulated by the sniffer.
    flags: AtomicU8,
}

/// The holder may have changed session state (`SET`, `SET ROLE`, temporary tables, advisory
/// locks, `LISTEN`, SQL `PREPARE`, cursors, …): seen in the SQL text it sent, or a
/// `ParameterStatus` after the session started.
pub(crate) const SESSION_CHANGED: u8 = 1;
/// The server said it is going away or cannot serve this session (SQLSTATE class `08`,
/// `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now).
pub(crate) const SERVER_GONE: u8 = 2;
/// A statement failed because the session is read-only (`25006`): on a pool meant for writes,
/// the server is no longer (or not) the primary.
pub(crate) const READ_ONLY_ERROR: u8 = 4;

impl TxState {
    /// Whether a sniffer follows this connection's stream at all.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    /// Whether the connection is certainly outside any transaction with nothing in flight:
    /// every request queued has been written and answered, and the last answer said idle.
    pub(crate) fn is_clean(&self) -> bool {
        // Acquire pairs with the connection task's AcqRel updates of `task`, which follow the
        // sniffer's Release stores of `word` in the same poll.
        let mut task = self.task.load(Ordering::Acquire);
        // The driver hands a response to its caller in the middle of a poll, so on a
        // multi-threaded runtime the holder often checks in while the connection task is still
        // finishing that poll (a flush, a microsecond). Wait for it briefly rather than make
        // the next checkout settle.
        let mut spins = 0;
        while task == POLLING && spins < 256 {
            std::hint::spin_loop();
            spins += 1;
            task = self.task.load(Ordering::Acquire);
        }
        task == DRAINED && self.is_idle_on_wire()
    }

    /// Whether everything written has been answered and the last answer said idle (requests
    /// still queued on the driver's channel are not seen here: see [`TxState::is_clean`]; after
    /// [`TxState::settle`] nothing queued before it is left unwritten).
    pub(crate) fn is_idle_on_wire(&self) -> bool {
        self.word.load(Ordering::Acquire) == u64::from(IDLE)
    }

    /// Waits until the connection task has drained the driver's channel since this call began,
    /// waking it if needed, so that [`TxState::is_clean`] and [`TxState::outstanding`] count
    /// every request queued before. No I/O: at most a trip through the scheduler. Returns at
    /// once when the connection task has ended.
    pub(crate) async fn settle(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let task = self.task.load(Ordering::Acquire);
            if task == DRAINED || self.ended.load(Ordering::Acquire) {
                return;
            }
            if task & POLLING == 0 {
                // Idle but not provably drained (woken, or its last flush did not complete):
                // make it poll again.
                if let Some(waker) = self.waker.lock().as_ref() {
                    waker.wake_by_ref();
                }
            }
            notified.await;
        }
    }

    /// Waits at most `grace` for every request written to be answered (the driver hands an
    /// error to its caller before it has read the `ReadyForQuery` behind it). Returns whether
    /// nothing is outstanding any more.
    pub(crate) async fn answered_within(&self, grace: std::time::Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.outstanding() == 0 || self.ended.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.outstanding() == 0
    }

    /// The connection task begins a poll of the driver with `waker` as its own waker.
    pub(crate) fn begin_poll(&self, waker: &Waker) {
        {
            let mut slot = self.waker.lock();
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
        self.flushed.store(false, Ordering::Relaxed);
        self.task.swap(POLLING, Ordering::AcqRel);
    }

    /// The poll begun by [`TxState::begin_poll`] returned `Pending`.
    pub(crate) fn end_poll(&self) {
        let drained = if self.flushed.load(Ordering::Relaxed) {
            DRAINED
        } else {
            0
        };
        // Keeps a WOKEN that arrived during the poll: the request behind it may be unwritten.
        let before = self
            .task
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t & WOKEN) | drained)
            })
            .unwrap_or_else(|t| t);
        if drained != 0 && before & WOKEN == 0 {
            self.settled.notify_waiters();
        }
    }

    /// The connection task has ended: nothing will be written any more.
    pub(crate) fn task_ended(&self) {
        self.ended.store(true, Ordering::Release);
        self.settled.notify_waiters();
    }

    /// A waker for the driver that records each wake-up before passing it on to the task.
    pub(crate) fn flagging_waker(self: &Arc<Self>) -> Waker {
        Waker::from(Arc::new(FlagWaker(self.clone())))
    }

    /// What the sniffer has flagged since the flags were last cleared.
    pub(crate) fn flags(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// Clears `flags` (after the session was reset, or right after connecting).
    pub(crate) fn clear_flags(&self, flags: u8) {
        self.flags.fetch_and(!flags, Ordering::AcqRel);
    }

    /// The last transaction status byte seen (0 if none yet).
    pub(crate) fn status(&self) -> u8 {
        self.word.load(Ordering::Acquire).to_le_bytes()[0]
    }

    /// `ReadyForQuery` messages still to be read before the status is final.
    pub(crate) fn outstanding(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> OUTSTANDING_SHIFT
    }
}

/// The waker the connection task gives the driver: see [`TxState`].
struct FlagWaker(Arc<TxState>);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.task.fetch_or(WOKEN, Ordering::AcqRel);
        if let Some(waker) = self.0.waker.lock().as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// Framing state of the backend → frontend direction.
#[derive(Debug, Default, Clone)]
pub(crate) struct BackendFramer {
    header: [u8; 5],
    have: usize,
    remaining: u32,
    /// The next payload byte is the status of a `ReadyForQuery`.
    want_status: bool,
    /// The payload of the current message is kept (`ErrorResponse`, `ParameterStatus`).
    capture: Capture,
}

/// A message payload being kept, up to a bound (the rest is skipped and noted).
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture {
    on: bool,
    bytes: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn start(&mut self) {
        self.on = true;
        self.bytes.clear();
        self.truncated = false;
    }

    fn push(&mut self, data: &[u8], limit: usize) {
        if self.on {
            let room = limit.saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&data[..data.len().min(room)]);
            self.truncated |= data.len() > room;
        }
    }
}

/// The most of an `ErrorResponse` kept (its code comes first or nearly).
const ERROR_CAPTURE: usize = 1024;
/// The most SQL text of one `Query` or `Parse` scanned; longer text counts as changing the
/// session (the safe side).
const SQL_CAPTURE: usize = 16 * 1024;

/// Framing state of the frontend → backend direction.
#[derive(Debug, Clone)]
pub(crate) struct FrontendFramer {
    header: [u8; 5],
    have: usize,
    remaining: u32,
    /// The startup packet (no type byte) has not been fully seen yet.
    startup: bool,
    /// The SQL text of the current `Query` or `Parse` is kept.
    capture: Capture,
}

impl Default for FrontendFramer {
    fn default() -> Self {
        FrontendFramer {
            header: [0; 5],
            have: 0,
            remaining: 0,
            startup: true,
            capture: Capture::default(),
        }
    }
}

/// Both directions plus the counters derived from them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tracker {
    backend: BackendFramer,
    frontend: FrontendFramer,
    /// `ReadyForQuery` messages the requests sent so far will produce.
    expected: u64,
    /// How many `ReadyForQuery` must be read before the status means anything: the answers are
    /// in order, so this is the index of the last request that may change the status.
    must_see: u64,
    /// The extended-protocol messages since the last `Sync` include one that may change the
    /// transaction status (anything but Parse, Describe, Close, Flush).
    batch_matters: bool,
    /// `ReadyForQuery` messages read so far.
    seen: u64,
    status: u8,
    poisoned: bool,
    /// Flags found since the sniffer last published them (see [`TxState::flags`]).
    events: u8,
}

impl Tracker {
    /// Follows `data`, bytes received from the server.
    pub(crate) fn on_read(&mut self, mut data: &[u8]) {
        let f = &mut self.backend;
        while !data.is_empty() && !self.poisoned {
            if f.remaining > 0 {
                if f.want_status {
                    f.want_status = false;
                    f.remaining -= 1;
                    self.status = data[0];
                    self.seen += 1;
                    data = &data[1..];
                } else {
                    let skip = f
                        .remaining
                        .min(u32::try_from(data.len()).unwrap_or(u32::MAX));
                    f.capture.push(&data[..skip as usize], ERROR_CAPTURE);
                    f.remaining -= skip;
                    data = &data[skip as usize..];
                    if f.remaining == 0 && f.capture.on {
                        f.capture.on = false;
                        let kind = f.header[0];
                        self.events |= backend_event(kind, &f.capture.bytes, self.seen);
                    }
                }
                continue;
            }
            let take = data.len().min(5 - f.have);
            f.header[f.have..f.have + take].copy_from_slice(&data[..take]);
            f.have += take;
            data = &data[take..];
            if f.have < 5 {
                break;
            }
            f.have = 0;
            let len = u32::from_be_bytes([f.header[1], f.header[2], f.header[3], f.header[4]]);
            if len < 4 {
                self.poisoned = true;
                break;
            }
            f.remaining = len - 4;
            match f.header[0] {
                b'Z' if len == 5 => f.want_status = true,
                b'Z' => self.poisoned = true,
                kind @ (b'E' | b'S') => {
                    f.capture.start();
                    if f.remaining == 0 {
                        f.capture.on = false;
                        self.events |= backend_event(kind, &[], self.seen);
                    }
                }
                _ => {}
            }
        }
    }

    /// Follows `data`, bytes the server accepted from us.
    pub(crate) fn on_write(&mut self, mut data: &[u8]) {
        let f = &mut self.frontend;
        while !data.is_empty() && !self.poisoned {
            if f.remaining > 0 {
                let skip = f
                    .remaining
                    .min(u32::try_from(data.len()).unwrap_or(u32::MAX));
                f.capture.push(&data[..skip as usize], SQL_CAPTURE);
                f.remaining -= skip;
                data = &data[skip as usize..];
                if f.remaining == 0 && f.capture.on {
                    f.capture.on = false;
                    if f.capture.truncated
                        || frontend_changes_session(f.header[0], &f.capture.bytes)
                    {
                        self.events |= SESSION_CHANGED;
                    }
                }
                continue;
            }
            // The startup packet has a 4-byte header (its length; kept in `header[1..]`), the
            // others a type byte too.
            let have = f.have.max(usize::from(f.startup));
            let take = data.len().min(5 - have);
            f.header[have..have + take].copy_from_slice(&data[..take]);
            f.have = have + take;
            data = &data[take..];
            if f.have < 5 {
                break;
            }
            f.have = 0;
            let len = u32::from_be_bytes([f.header[1], f.header[2], f.header[3], f.header[4]]);
            if len < 4 {
                self.poisoned = true;
                break;
            }
            f.remaining = len - 4;
            if f.startup {
                f.startup = false;
                // An SSLRequest/GSSENCRequest would be answered by one unframed byte. They are
                // never sent on a sniffed stream (no TLS below it, or the sniffer is above TLS);
                // should one show up anyway, give up rather than misparse.
                if len == 8 {
                    self.poisoned = true;
                    break;
                }
                self.expected += 1;
                self.must_see = self.expected;
            } else {
                match f.header[0] {
                    // Simple query, function call: answered, and may change the status.
                    b'Q' | b'F' => {
                        self.expected += 1;
                        self.must_see = self.expected;
                    }
                    // Sync: answered; matters only if its batch did something. tokio-postgres
                    // sends Close + Sync on its own when a `Statement` is dropped: that must
                    // not make a clean connection look dirty.
                    b'S' => {
                        self.expected += 1;
                        if std::mem::take(&mut self.batch_matters) {
                            self.must_see = self.expected;
                        }
                    }
                    b'P' | b'D' | b'C' | b'H' => {}
                    _ => self.batch_matters = true,
                }
                if matches!(f.header[0], b'Q' | b'P') {
                    f.capture.start();
                }
            }
        }
    }

    /// The word [`TxState`] publishes.
    pub(crate) fn word(&self) -> u64 {
        if self.poisoned || self.seen > self.expected {
            return POISONED;
        }
        (self.must_see.saturating_sub(self.seen) << OUTSTANDING_SHIFT) | u64::from(self.status)
    }
}

/// What a complete backend message of type `kind` with `payload` says about the session, once
/// `seen` `ReadyForQuery` messages have been read (the first ends the startup).
fn backend_event(kind: u8, payload: &[u8], seen: u64) -> u8 {
    match kind {
        // A reported setting changed after the startup: the holder changed session state.
        b'S' if seen > 0 => SESSION_CHANGED,
        b'E' => match error_code(payload) {
            Some(code) if code.starts_with(b"08") || code.starts_with(b"57P0") => SERVER_GONE,
            Some(b"25006") => READ_ONLY_ERROR,
            _ => 0,
        },
        _ => 0,
    }
}

/// The SQLSTATE (`C` field) of an `ErrorResponse` payload.
fn error_code(payload: &[u8]) -> Option<&[u8]> {
    let mut rest = payload;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Whether the SQL text of a `Query` (`'Q'`: the text) or `Parse` (`'P'`: a statement name,
/// then the text) may change session state that outlives the transaction.
fn frontend_changes_session(kind: u8, payload: &[u8]) -> bool {
    let sql = match kind {
        b'P' => match payload.iter().position(|&b| b == 0) {
            Some(name_end) => &payload[name_end + 1..],
            None => return true,
        },
        _ => payload,
    };
    let sql = sql.split(|&b| b == 0).next().unwrap_or_default();
    crate::session::changes_session(sql)
}

/// An `AsyncRead + AsyncWrite` stream that publishes the transaction status of the PostgreSQL
/// session running over it into a shared [`TxState`]. See the module documentation.
#[derive(Debug)]
pub(crate) struct Sniffer<S> {
    inner: S,
    tracker: Tracker,
    published: u64,
    state: Arc<TxState>,
}

impl<S> Sniffer<S> {
    pub(crate) fn new(inner: S, state: Arc<TxState>) -> Self {
        let tracker = Tracker::default();
        let published = tracker.word();
        state.word.store(published, Ordering::Release);
        state.attached.store(true, Ordering::Release);
        Sniffer {
            inner,
            tracker,
            published,
            state,
        }
    }

    fn publish(&mut self) {
        let events = std::mem::take(&mut self.tracker.events);
        if events != 0 {
            self.state.flags.fetch_or(events, Ordering::AcqRel);
        }
        let word = self.tracker.word();
        if word != self.published {
            self.published = word;
            self.state.word.store(word, Ordering::Release);
        }
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Sniffer<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let filled = buf.filled();
            if filled.len() > before {
                this.tracker.on_read(&filled[before..]);
                this.publish();
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            this.tracker.on_write(&buf[..n.min(buf.len())]);
            this.publish();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                this.tracker.on_write(&buf[..take]);
                left -= take;
            }
            this.publish();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = res {
            this.state.flushed.store(true, Ordering::Relaxed);
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(u32::try_from(payload.len()).unwrap() + 4).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\x00postgres\x00\x00";
        let mut m = (u32::try_from(body.len()).unwrap() + 4)
            .to_be_bytes()
            .to_vec();
        m.extend_from_slice(body);
        m
    }

    /// A backend answer to one simple query: row description, a row, completion, ready.
    fn answer(status: u8) -> Vec<u8> {
        let mut v = msg(b'T', b"\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00");
        v.extend(msg(b'D', b"\x00\x01\x00\x00\x00\x011"));
        v.extend(msg(b'C', b"SELECT 1\x00"));
        v.extend(msg(b'Z', &[status]));
        v
    }

    fn connected() -> Tracker {
        let mut t = Tracker::default();
        t.on_write(&startup());
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1);
        let mut auth = msg(b'R', &[0, 0, 0, 0]);
        auth.extend(msg(b'S', b"client_encoding\x00UTF8\x00"));
        auth.extend(msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
        auth.extend(msg(b'Z', b"I"));
        t.on_read(&auth);
        assert_eq!(t.word(), u64::from(IDLE));
        t
    }

    /// Feeds `data` in pieces cut at every offset in `cuts`.
    fn read_in_pieces(t: &mut Tracker, data: &[u8], cuts: &[usize]) {
        let mut at = 0;
        for &cut in cuts {
            t.on_read(&data[at..cut]);
            at = cut;
        }
        t.on_read(&data[at..]);
    }

    #[test]
    fn many_messages_in_one_read() {
        let mut t = connected();
        t.on_write(&msg(b'Q', b"BEGIN\x00"));
        t.on_write(&msg(b'Q', b"SELECT 1\x00"));
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 2);
        let mut both = msg(b'C', b"BEGIN\x00");
        both.extend(msg(b'Z', b"T"));
        both.extend(answer(b'T'));
        t.on_read(&both);
        assert_eq!(t.word(), u64::from(b'T'));
        t.on_write(&msg(b'Q', b"COMMIT\x00"));
        let mut done = msg(b'C', b"COMMIT\x00");
        done.extend(msg(b'Z', b"I"));
        t.on_read(&done);
        assert_eq!(t.word(), u64::from(IDLE));
    }

    #[test]
    fn headers_split_across_reads() {
        let data = answer(b'E');
        // Every possible single cut, and a byte-by-byte feed.
        for cut in 0..=data.len() {
            let mut t = connected();
            t.on_write(&msg(b'Q', b"SELECT 1\x00"));
            read_in_pieces(&mut t, &data, &[cut]);
            assert_eq!(t.word(), u64::from(b'E'), "cut at {cut}");
        }
        let mut t = connected();
        t.on_write(&msg(b'Q', b"SELECT 1\x00"));
        let cuts: Vec<usize> = (1..data.len()).collect();
        read_in_pieces(&mut t, &data, &cuts);
        assert_eq!(t.word(), u64::from(b'E'));
    }

    #[test]
    fn ready_for_query_split_across_reads() {
        let mut t = connected();
        t.on_write(&msg(b'Q', b"BEGIN\x00"));
        let mut data = msg(b'C', b"BEGIN\x00");
        let z_at = data.len();
        data.extend(msg(b'Z', b"T"));
        // Header complete, status byte in the next read: not answered yet.
        t.on_read(&data[..z_at + 5]);
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1);
        assert_eq!(t.word() & 0xff, u64::from(IDLE));
        t.on_read(&data[z_at + 5..]);
        assert_eq!(t.word(), u64::from(b'T'));
        // Split inside the length.
        t.on_write(&msg(b'Q', b"ROLLBACK\x00"));
        let mut data = msg(b'C', b"ROLLBACK\x00");
        data.extend(msg(b'Z', b"I"));
        let z_at = data.len() - 6;
        read_in_pieces(&mut t, &data, &[z_at + 1, z_at + 3]);
        assert_eq!(t.word(), u64::from(IDLE));
    }

    #[test]
    fn writes_after_the_last_ready_for_query_are_pending() {
        let mut t = connected();
        // Extended protocol: Parse/Bind/Describe/Execute/Sync, written in odd pieces.
        let mut req = msg(b'P', b"\x00SELECT 1\x00\x00\x00");
        req.extend(msg(b'B', b"\x00\x00\x00\x00\x00\x00\x00\x00"));
        req.extend(msg(b'E', b"\x00\x00\x00\x00\x00"));
        req.extend(msg(b'S', b""));
        for chunk in req.chunks(3) {
            t.on_write(chunk);
        }
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1, "one Sync, one answer due");
        assert!(t.word() != u64::from(IDLE));
        // Flush ('H') and CopyData ('d') expect no ReadyForQuery.
        t.on_write(&msg(b'H', b""));
        t.on_write(&msg(b'd', b"abc"));
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1);
        let mut resp = msg(b'1', b"");
        resp.extend(msg(b'2', b""));
        resp.extend(msg(b'C', b"SELECT 1\x00"));
        resp.extend(msg(b'Z', b"I"));
        t.on_read(&resp);
        assert_eq!(t.word(), u64::from(IDLE));
    }

    #[test]
    fn pipelined_requests_stay_pending_until_the_last_answer() {
        let mut t = connected();
        t.on_write(&msg(b'Q', b"SELECT 1\x00"));
        t.on_write(&msg(b'Q', b"BEGIN\x00"));
        t.on_read(&answer(IDLE));
        // The first answer says idle, but BEGIN is still in flight.
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1);
        assert_ne!(t.word(), u64::from(IDLE));
    }

    #[test]
    fn closing_a_statement_does_not_make_the_connection_dirty() {
        let mut t = connected();
        // What dropping a `Statement` sends, unanswered yet.
        t.on_write(&msg(b'C', b"Ss0\x00"));
        t.on_write(&msg(b'S', b""));
        assert_eq!(t.word(), u64::from(IDLE));
        // A real query after it must still be waited for.
        t.on_write(&msg(b'Q', b"BEGIN\x00"));
        let mut close = msg(b'3', b"");
        close.extend(msg(b'Z', b"I"));
        t.on_read(&close);
        assert_eq!(t.word() >> OUTSTANDING_SHIFT, 1, "BEGIN still unanswered");
        let mut begin = msg(b'C', b"BEGIN\x00");
        begin.extend(msg(b'Z', b"T"));
        t.on_read(&begin);
        assert_eq!(t.word(), u64::from(b'T'));
        // Inside a transaction a close does not hide the status either.
        t.on_write(&msg(b'C', b"Ss1\x00"));
        t.on_write(&msg(b'S', b""));
        assert_eq!(t.word(), u64::from(b'T'));
    }

    #[test]
    fn async_messages_and_large_payloads_are_skipped() {
        let mut t = connected();
        let mut data = msg(b'N', &[b'x'; 10_000]);
        data.extend(msg(b'A', b"\x00\x00\x00\x01chan\x00Z\x00"));
        data.extend(msg(b'S', b"TimeZone\x00UTC\x00"));
        for chunk in data.chunks(1000) {
            t.on_read(chunk);
        }
        assert_eq!(t.word(), u64::from(IDLE));
    }

    #[test]
    fn malformed_input_poisons() {
        let mut t = connected();
        t.on_read(&[b'Z', 0, 0, 0, 6, b'I', b'I']);
        assert_eq!(t.word(), POISONED);
        t.on_read(&msg(b'Z', b"I"));
        assert_eq!(t.word(), POISONED, "poisoned for good");

        let mut t = connected();
        t.on_read(&[b'C', 0, 0, 0, 2]);
        assert_eq!(t.word(), POISONED);

        let mut t = Tracker::default();
        t.on_write(&[0, 0, 0, 8, 4, 210, 22, 47]); // SSLRequest
        assert_eq!(t.word(), POISONED);

        let mut t = connected();
        t.on_read(&msg(b'Z', b"I")); // an answer nobody asked for
        assert_eq!(t.word(), POISONED);
    }

    #[test]
    fn state_is_published() {
        let state = Arc::new(TxState::default());
        let mut s = Sniffer::new(tokio::io::empty(), state.clone());
        assert!(!state.is_clean());
        s.tracker.on_write(&startup());
        s.publish();
        assert_eq!(state.outstanding(), 1);
        s.tracker.on_read(&msg(b'Z', b"E"));
        s.publish();
        assert_eq!(state.status(), b'E');
        assert_eq!(state.outstanding(), 0);
        assert!(!state.is_clean());
    }
}
