#!/usr/bin/env bash
# The demo: installs what is missing, builds xgate (the eBPF program included), then runs
# `xgate demo`: lab up, gateway up, real HTTP with curl, summary, lab down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh
echo "demo: building xgate (release)"
cargo build --release
exec ./target/release/xgate demo "$@"
