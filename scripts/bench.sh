#!/usr/bin/env bash
# The benchmark suite: xgate vs nginx in the lab, connection scaling, the packet path, written to
# bench/results/ and bench/RESULTS.md. Needs root and 2 CPUs (servers on CPU 0, clients on CPU 1).
#   scripts/bench.sh            quick mode, about 3 minutes
#   scripts/bench.sh --full     full mode, about 15 minutes (longer runs, wrk everywhere, perf profile)
#   scripts/bench.sh --micro    the criterion micro benchmarks only
# Any other arguments go to `xgate-bench suite` (see `xgate-bench suite --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh
if [[ "${1:-}" == "--micro" ]]; then
    exec cargo bench -p xgate-bench --bench micro
fi
if [[ $# -eq 0 ]]; then
    set -- --quick
fi
cargo build --release -p xgate -p xgate-bench
# UMEMs on 2 MiB hugepages, as deployed: xgate 16 MiB, the load generator 16 MiB, the packet
# benchmark 16 MiB (setup.sh only ever raises the reservation).
bash hugepages/setup.sh 32
exec target/release/xgate-bench suite "$@"
