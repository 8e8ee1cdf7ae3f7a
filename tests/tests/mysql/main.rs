//! Live tests of `pool-mysql` against the machine's MariaDB/MySQL (`POOL_TEST_MYSQL_URL`) and,
//! for the outage test, a throwaway server of its own.

mod basic;
mod dead_peer;
mod dirty;
mod failures;
mod outage;
mod retry;
mod secrets;
mod server;
mod session;
mod settings;
mod util;
