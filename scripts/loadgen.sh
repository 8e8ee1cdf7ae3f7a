#!/usr/bin/env bash
# README command 1: the load generator. With no arguments it loads an embedded SQLite database
# it creates, through our pool and then through the peer pools, and prints a side-by-side table.
# Any arguments are passed on (see `scripts/loadgen.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
exec cargo run --quiet --release --locked -p pool-benches --bin loadgen -- "$@"
