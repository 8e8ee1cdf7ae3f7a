#!/usr/bin/env bash
# README command 2: the whole test suite. Installs/starts PostgreSQL and MariaDB when needed,
# then runs every test of the workspace (unit, integration against the real servers, doc tests),
# then the bounded loom models of the pool core.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
scripts/services.sh

echo "== cargo test --workspace"
cargo test --workspace --locked --all-features

echo "== loom models of the pool core (bounded)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
    cargo test --locked -p pool-core --release --lib loom
