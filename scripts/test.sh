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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Every target but the criterion benches (their harness has no --test-threads), then the benches
# in test mode: each benchmark runs once, as a check that it works, never as a timing.
cargo test --no-fail-fast --lib --bins --tests --examples -- --test-threads=2 2>&1 | tee "$log" || status=$?
cargo test --no-fail-fast -p xgate-bench --bench micro 2>&1 | tee -a "$log" || status=$?
cargo test --no-fail-fast -p xgate-bench --bench demux 2>&1 | tee -a "$log" || status=$?
# A short fuzzing run (20 s per target: the HTTP parsers and the frame -> TCP path) on the kept
# corpus; a crash fails the suite. The corpus itself also runs above, as plain tests.
echo "test: scripts/fuzz.sh 20"
bash scripts/fuzz.sh 20 || status=$?
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
