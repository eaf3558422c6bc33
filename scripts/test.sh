#!/usr/bin/env bash
# The whole test suite: installs what is missing (scripts/bootstrap.sh), then runs formatting and
# lint checks and every test, unit and lab (needs root: the lab tests create network namespaces
# and attach XDP).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings
echo "test: cargo test"
# Lab tests are heavy on a 2-core machine: two at a time.
cargo test --all-targets -- --test-threads=2
