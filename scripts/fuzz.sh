#!/usr/bin/env bash
# Fuzzes xgate's HTTP parsers and its frame -> userspace TCP path for a fixed time budget, and
# fails if any target finds a crash.
#   Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
# - installs cargo-fuzz (the pinned version below) with the eBPF nightly toolchain
#   (XGATE_EBPF_TOOLCHAIN, default `nightly`, as scripts/bootstrap.sh) if it is missing;
# - builds the fuzz project, proxy/fuzz (targets request, chunked, response, frame);
# - runs each target for the budget on its kept corpus (proxy/fuzz/corpus/<target>/), which it
#   only reads: inputs the run finds go to a scratch directory that is removed afterwards;
# - a crash's input is left in proxy/fuzz/artifacts/<target>/; reproduce it with
#   `cd proxy/fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_PER_TARGET="${1:-20}"
NIGHTLY="${XGATE_EBPF_TOOLCHAIN:-nightly}"
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(request chunked response frame)

say() { printf 'fuzz: %s\n' "$*"; }

if ! [[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]]; then
    say "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (a positive whole number)" >&2
    exit 2
fi
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    say "the $NIGHTLY toolchain is missing: run scripts/bootstrap.sh first" >&2
    exit 1
fi
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION with $NIGHTLY"
    cargo +"$NIGHTLY" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

cd proxy/fuzz
say "building ${TARGETS[*]} with $(rustup run "$NIGHTLY" rustc --version)"
cargo +"$NIGHTLY" fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0 failed=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$scratch/$target"
    say "$target: ${SECONDS_PER_TARGET}s on corpus/$target ($(find "corpus/$target" -type f | wc -l) files)"
    # -timeout: an input that runs this long counts as a crash (a hang).
    if cargo +"$NIGHTLY" fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1; then
        passed=$((passed + 1))
        say "$target: $(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$scratch/$target.log" || echo done)"
    else
        failed=$((failed + 1))
        say "$target: FAILED:"
        grep -m1 -A1 'panicked at' "$scratch/$target.log" || true
        grep -E -A2 'SUMMARY|Test unit written|Reproduce with' "$scratch/$target.log" || tail -n 30 "$scratch/$target.log"
    fi
done
say "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
