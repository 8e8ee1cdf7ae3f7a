#!/usr/bin/env bash
# Sourced by the other scripts: makes sure cargo and a C compiler (for the bundled SQLite) exist.
set -euo pipefail
if [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "toolchain.sh: cargo is missing: install Rust with rustup (https://rustup.rs), then rerun." >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
    echo "toolchain.sh: installing a C compiler (build-essential) for the bundled SQLite"
    SUDO=""
    [[ ${EUID} -ne 0 ]] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq build-essential pkg-config
fi
