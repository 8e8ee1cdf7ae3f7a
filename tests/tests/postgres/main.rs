//! Live tests of `pool-postgres` against the machine's PostgreSQL (`POOL_TEST_PG_URL`) and, for
//! the outage and authentication tests, a throwaway server of their own.

mod basic;
mod cancelled;
mod connect;
mod dirty;
mod failures;
mod outage;
mod pgbouncer;
mod replica;
mod retry;
mod secrets;
mod server;
mod session;
mod settings;
mod tls;
mod util;
