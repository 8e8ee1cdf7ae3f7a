//! `fleet`: a discrete-event simulation of a fleet of application instances, each with its own
//! connection pool, in front of one PostgreSQL server, with or without PgBouncer between them.
//!
//! It answers the sizing question a single-instance benchmark cannot: what happens to acquire
//! waits and errors when `instances × max_size` approaches or passes the server's
//! `max_connections`, and how much a transaction-pooling proxy changes that. See
//! `docs/fleet-sizing.md` for the model, the curves it prints and the recommendations drawn from
//! them.
//!
//! ```text
//! cargo run --release -p pool-benches --bin fleet -- --help
//! ```
//!
//! The model (all times simulated, nothing is sent anywhere):
//! - each instance receives requests as a Poisson process (`--rate` per second); a request takes
//!   a connection from its instance's pool (FIFO waiters, at most `--max-size` connections, a
//!   request that cannot get one within `--wait-timeout` fails with a timeout), runs one
//!   transaction and returns the connection;
//! - opening a connection costs `--connect-ms`; the server refuses connections beyond
//!   `--max-connections` (a refused open fails over to waiting for a returned connection, the
//!   next request that finds none idle tries to open again);
//! - the server runs transactions with processor sharing on `--cores` cores; each has an
//!   exponentially distributed amount of work (mean `--query-ms` of one core), and every active
//!   transaction beyond the core count slows all of them by `--contention` (lock and context-switch
//!   overhead: with n active on k cores each runs at `min(1, k/n) / (1 + c·max(0, n−k)/k)`);
//! - with `--bouncer N`, the instances' connections go to PgBouncer (never refused, opened in
//!   `--connect-ms / 10`), which runs each transaction on one of N server connections and queues
//!   the rest FIFO.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Simulates N application instances × max_size against one PostgreSQL server")]
struct Args {
    /// Instance counts to simulate (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,6,8,10,12,14,16,20,24"
    )]
    instances: Vec<usize>,
    /// Each instance's pool `max_size`.
    #[arg(long, default_value_t = 10)]
    max_size: usize,
    /// Requests per second arriving at each instance (Poisson).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Mean work of one transaction, in milliseconds of one server core (exponential).
    #[arg(long, default_value_t = 5.0)]
    query_ms: f64,
    /// The server's CPU cores.
    #[arg(long, default_value_t = 8)]
    cores: usize,
    /// The server's `max_connections` (minus superuser-reserved slots).
    #[arg(long, default_value_t = 97)]
    max_connections: usize,
    /// Slow-down per active transaction beyond the core count (see the module docs).
    #[arg(long, default_value_t = 0.15)]
    contention: f64,
    /// Time to open one connection to the server, in milliseconds.
    #[arg(long, default_value_t = 3.0)]
    connect_ms: f64,
    /// The pools' acquire deadline, in milliseconds.
    #[arg(long, default_value_t = 1000.0)]
    wait_timeout: f64,
    /// Also simulate PgBouncer in transaction mode with this many server connections
    /// (0: only the direct case).
    #[arg(long, default_value_t = 16)]
    bouncer: usize,
    /// Simulated seconds per case (after a 10 % warm-up that is not counted).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// One simulated case's outcome.
#[derive(Debug, Default)]
struct Outcome {
    offered: u64,
    done: u64,
    timeouts: u64,
    refused_opens: u64,
    latencies_ms: Vec<f64>,
    waits_ms: Vec<f64>,
    peak_server_conns: usize,
}

impl Outcome {
    fn pct(v: &mut [f64], p: f64) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
        // Rounding an index into a small vector.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Arrival(usize),
    ConnectDone(usize, bool),
    Deadline(usize, u64),
    ServerDone(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Event {
    at: f64,
    seq: u64,
    kind: Kind,
}

impl Eq for Event {}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .partial_cmp(&other.at)
            .unwrap_or(Ordering::Equal)
            .then(self.seq.cmp(&other.seq))
    }
}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct Request {
    id: u64,
    instance: usize,
    arrived: f64,
    got_conn: f64,
}

#[derive(Debug, Default)]
struct Instance {
    open: usize,
    opening: usize,
    idle: usize,
    waiters: VecDeque<Request>,
}

/// A transaction on the server, finishing when the server's virtual time reaches `finish_v`.
#[derive(Debug)]
struct Job {
    finish_v: f64,
    req: Request,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.finish_v == other.finish_v
    }
}
impl Eq for Job {}
impl Ord for Job {
    fn cmp(&self, other: &Self) -> Ordering {
        self.finish_v
            .partial_cmp(&other.finish_v)
            .unwrap_or(Ordering::Equal)
    }
}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Sim<'a> {
    a: &'a Args,
    bouncer: usize,
    rng: fastrand::Rng,
    now: f64,
    seq: u64,
    events: BinaryHeap<Reverse<Event>>,
    inst: Vec<Instance>,
    /// Connections open on the server (direct mode) or server links in use (bouncer mode).
    server_conns: usize,
    /// Server processor sharing: virtual time and the running jobs.
    v: f64,
    v_at: f64,
    running: BinaryHeap<Reverse<Job>>,
    gen: u64,
    /// Transactions queued at PgBouncer for a server link.
    bouncer_queue: VecDeque<Request>,
    next_id: u64,
    warm: f64,
    out: Outcome,
}

impl<'a> Sim<'a> {
    fn new(a: &'a Args, instances: usize, bouncer: usize) -> Self {
        let mut s = Sim {
            a,
            bouncer,
            rng: fastrand::Rng::with_seed(a.seed),
            now: 0.0,
            seq: 0,
            events: BinaryHeap::new(),
            inst: (0..instances).map(|_| Instance::default()).collect(),
            server_conns: 0,
            v: 0.0,
            v_at: 0.0,
            running: BinaryHeap::new(),
            gen: 0,
            bouncer_queue: VecDeque::new(),
            next_id: 0,
            warm: a.seconds * 0.1,
            out: Outcome::default(),
        };
        for i in 0..instances {
            let t = s.exp(1.0 / a.rate);
            s.push(t, Kind::Arrival(i));
        }
        s
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.rng.f64()).ln()
    }

    fn push(&mut self, at: f64, kind: Kind) {
        self.seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn counted(&self, t: f64) -> bool {
        t >= self.warm
    }

    /// Per-job service rate with `n` jobs running.
    // Small counts.
    #[allow(clippy::cast_precision_loss)]
    fn rate(&self, n: usize) -> f64 {
        if n == 0 {
            return 1.0;
        }
        let k = self.a.cores as f64;
        let n = n as f64;
        (k / n).min(1.0) / (1.0 + self.a.contention * ((n - k).max(0.0) / k))
    }

    fn advance_server(&mut self) {
        let r = self.rate(self.running.len());
        self.v += (self.now - self.v_at) * r;
        self.v_at = self.now;
    }

    fn schedule_server(&mut self) {
        self.gen += 1;
        if let Some(Reverse(job)) = self.running.peek() {
            let r = self.rate(self.running.len());
            let at = self.now + ((job.finish_v - self.v).max(0.0)) / r;
            let gen = self.gen;
            self.push(at, Kind::ServerDone(gen));
        }
    }

    fn start_on_server(&mut self, req: Request) {
        self.advance_server();
        let work = self.exp(self.a.query_ms / 1000.0);
        self.running.push(Reverse(Job {
            finish_v: self.v + work,
            req,
        }));
        self.schedule_server();
    }

    /// A request holding an instance connection runs its transaction.
    fn run(&mut self, req: Request) {
        if self.bouncer == 0 {
            self.start_on_server(req);
        } else if self.server_conns < self.bouncer {
            self.server_conns += 1;
            self.out.peak_server_conns = self.out.peak_server_conns.max(self.server_conns);
            self.start_on_server(req);
        } else {
            self.bouncer_queue.push_back(req);
        }
    }

    fn try_open(&mut self, i: usize) {
        let inst = &mut self.inst[i];
        if inst.open + inst.opening >= self.a.max_size {
            return;
        }
        inst.opening += 1;
        let (ok, ms) = if self.bouncer > 0 {
            (true, self.a.connect_ms / 10.0)
        } else if self.server_conns < self.a.max_connections {
            self.server_conns += 1;
            self.out.peak_server_conns = self.out.peak_server_conns.max(self.server_conns);
            (true, self.a.connect_ms)
        } else {
            (false, self.a.connect_ms)
        };
        self.push(self.now + ms / 1000.0, Kind::ConnectDone(i, ok));
    }

    /// Gives instance `i`'s free connection to its first waiter, or parks it.
    fn hand_out(&mut self, i: usize) {
        match self.inst[i].waiters.pop_front() {
            Some(mut req) => {
                req.got_conn = self.now;
                self.run(req);
            }
            None => self.inst[i].idle += 1,
        }
    }

    fn step(&mut self, e: Event) {
        self.now = e.at;
        match e.kind {
            Kind::Arrival(i) => {
                let next = self.now + self.exp(1.0 / self.a.rate);
                self.push(next, Kind::Arrival(i));
                self.next_id += 1;
                let req = Request {
                    id: self.next_id,
                    instance: i,
                    arrived: self.now,
                    got_conn: 0.0,
                };
                if self.counted(self.now) {
                    self.out.offered += 1;
                }
                if self.inst[i].idle > 0 {
                    self.inst[i].idle -= 1;
                    let mut req = req;
                    req.got_conn = self.now;
                    self.run(req);
                } else {
                    let deadline = self.now + self.a.wait_timeout / 1000.0;
                    self.push(deadline, Kind::Deadline(i, req.id));
                    self.inst[i].waiters.push_back(req);
                    self.try_open(i);
                }
            }
            Kind::ConnectDone(i, ok) => {
                self.inst[i].opening -= 1;
                if ok {
                    self.inst[i].open += 1;
                    self.hand_out(i);
                } else if self.counted(self.now) {
                    self.out.refused_opens += 1;
                }
            }
            Kind::Deadline(i, id) => {
                let w = &mut self.inst[i].waiters;
                if let Some(pos) = w.iter().position(|r| r.id == id) {
                    let req = w.remove(pos).expect("position is in range");
                    if self.counted(req.arrived) {
                        self.out.timeouts += 1;
                    }
                }
            }
            Kind::ServerDone(gen) => {
                if gen != self.gen {
                    return;
                }
                self.advance_server();
                let Some(Reverse(job)) = self.running.pop() else {
                    return;
                };
                // Float rounding: the job is due now.
                self.v = self.v.max(job.finish_v);
                let req = job.req;
                if self.counted(req.arrived) {
                    self.out.done += 1;
                    self.out
                        .latencies_ms
                        .push((self.now - req.arrived) * 1000.0);
                    self.out
                        .waits_ms
                        .push((req.got_conn - req.arrived) * 1000.0);
                }
                if self.bouncer > 0 {
                    match self.bouncer_queue.pop_front() {
                        Some(next) => self.start_on_server(next),
                        None => self.server_conns -= 1,
                    }
                }
                self.schedule_server();
                self.hand_out(req.instance);
            }
        }
    }

    fn run_to_end(mut self) -> Outcome {
        while let Some(Reverse(e)) = self.events.pop() {
            if e.at > self.a.seconds {
                break;
            }
            self.step(e);
        }
        self.out
    }
}

fn main() {
    let a = Args::parse();
    println!(
        "fleet: {} req/s per instance, {:.1} ms of one core per transaction, {} cores, \
         max_connections {}, max_size {}, wait timeout {} ms, {} simulated s per case",
        a.rate, a.query_ms, a.cores, a.max_connections, a.max_size, a.wait_timeout, a.seconds
    );
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let capacity = a.cores as f64 * 1000.0 / a.query_ms;
    println!("server capacity without contention: {capacity:.0} transactions/s\n");
    let mut modes = vec![0];
    if a.bouncer > 0 {
        modes.push(a.bouncer);
    }
    println!(
        "| mode | instances | instances × max_size | offered/s | served/s | errors | wait p50 | wait p99 | latency p99 | server conns (peak) | refused opens |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &bouncer in &modes {
        for &n in &a.instances {
            let mut o = Sim::new(&a, n, bouncer).run_to_end();
            let secs = a.seconds * 0.9;
            // Display only.
            #[allow(clippy::cast_precision_loss)]
            let (offered, served, err) = (
                o.offered as f64 / secs,
                o.done as f64 / secs,
                if o.offered == 0 {
                    0.0
                } else {
                    o.timeouts as f64 * 100.0 / o.offered as f64
                },
            );
            let mode = if bouncer == 0 {
                "direct".to_owned()
            } else {
                format!("PgBouncer ({bouncer})")
            };
            println!(
                "| {mode} | {n} | {} | {offered:.0} | {served:.0} | {err:.1} % | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
                n * a.max_size,
                Outcome::pct(&mut o.waits_ms, 0.5),
                Outcome::pct(&mut o.waits_ms, 0.99),
                Outcome::pct(&mut o.latencies_ms, 0.99),
                o.peak_server_conns,
                o.refused_opens,
            );
        }
    }
}
