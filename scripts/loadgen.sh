#!/usr/bin/env bash
# README command 1: the load generator. With no arguments it loads an embedded SQLite database
# it creates, through our pool and then through the peer pools, and prints a side-by-side table.
# Any arguments are passed on (see `scripts/loadgen.sh --help`). Files it writes (the --sweep
# plot) and relative sqlite:// paths are relative to the directory this script is run from.
set -euo pipefail
LOADGEN_CALLER_DIR="$PWD"
export LOADGEN_CALLER_DIR
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
# The first build on a fresh clone takes minutes: show cargo's progress on stderr.
echo "loadgen.sh: building the load generator (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p pool-benches --bin loadgen
exec cargo run --quiet --release --locked -p pool-benches --bin loadgen -- "$@"
