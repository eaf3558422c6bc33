#!/usr/bin/env bash
# A/B comparison of two xgate binaries on this machine: with the same settings, each round runs
# the benchmark suite (which builds its lab) once with OLD and once with NEW, for ROUNDS rounds
# (default 3; OLD goes first in odd rounds and NEW in even ones, so that drift hits both alike).
# Only the xgate sections that matter run: xgate terminating and xgate as a proxy, each at 100
# and 10,000 connections. Then it prints,
# per case, each binary's median requests/s and p99 over the rounds with their min–max, NEW/OLD,
# and the client-side limits the suite recorded. Needs root and 2 CPUs, like scripts/bench.sh.
#
#   scripts/ab.sh OLD_XGATE NEW_XGATE [ROUNDS] [-- SUITE_ARGS...]
#   scripts/ab.sh --summary DIR      print the summary of an earlier A/B run again
#
# Each run is `xgate-bench suite --only xgate,xgate-proxy --connections 100,10000
# --proxy-connections 100,10000 --xgate BIN --out DIR SUITE_ARGS` (quick mode unless SUITE_ARGS
# say --full; e.g. `-- --repeats 5`).
# Environment (optional): AB_OUT, where the runs go (default target/ab/<UTC time>; one directory
# per round and binary, and summary.md); AB_CONNECTIONS and AB_PROXY_CONNECTIONS (both default
# 100,10000).
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

summarise() {
    python3 - "$1" <<'PY'
import glob, json, math, os, re, statistics, sys

out = sys.argv[1]
binaries = {}
with open(os.path.join(out, "binaries")) as f:
    for line in f:
        key, _, value = line.rstrip("\n").partition("=")
        binaries[key] = value
SIDES = ("old", "new")
NOISY = 0.10  # the suite's own threshold for a noisy figure
IDLE_LOW = 0.10  # a load generator idle in fewer of its loop turns may be the limit
CASES = {"xgate": "terminating", "xgate proxy": "proxy"}


def median(values):
    return statistics.median(values) if values else math.nan


def thousands(value):
    return "–" if math.isnan(value) else f"{value:,.0f}"


def micros(value):
    if math.isnan(value):
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


# figures[side][(server, connections)] = one entry per round: the medians of that run's repeats.
figures = {side: {} for side in SIDES}
rounds = {side: set() for side in SIDES}
settings = ""
for path in sorted(glob.glob(os.path.join(out, "round*-*", "*.json"))):
    match = re.search(r"round(\d+)-(old|new)$", os.path.dirname(path))
    if not match:
        continue
    number, side = int(match.group(1)), match.group(2)
    with open(path) as f:
        results = json.load(f)
    rounds[side].add(number)
    plan = results["plan"]
    settings = (
        f'{plan["mode"]} mode, {plan["repeats"]} repeats of {plan["duration_seconds"]} s after '
        f'{plan["warmup_seconds"]} s warm-up per run'
    )
    for case in results["http"]:
        if case["client"] != "xgate-bench" or case["server"] not in CASES:
            continue
        runs = case["runs"]
        idle = [r["client_idle_fraction"] for r in runs if r.get("client_idle_fraction") is not None]
        figures[side].setdefault((case["server"], case["connections"]), []).append({
            "round": number,
            "rps": median([r["requests_per_second"] for r in runs]),
            "p99": median([r["p99_us"] for r in runs]),
            "errors": sum(r.get("errors", 0) for r in runs),
            "tx_starved": sum(r.get("client_tx_starved", 0) for r in runs),
            "rx_dropped": sum(r.get("client_rx_dropped", 0) for r in runs),
            "idle": median(idle) if idle else None,
        })


def spread(entries, field, show):
    values = [e[field] for e in entries]
    if not values:
        return math.nan, "–", False
    mid = median(values)
    noisy = mid > 0 and (max(values) - min(values)) / mid > NOISY
    return mid, f"{show(mid)} ({show(min(values))}–{show(max(values))})", noisy


def limit(entries):
    if not entries:
        return "–"
    signs = []
    tx = sum(e["tx_starved"] for e in entries)
    rx = sum(e["rx_dropped"] for e in entries)
    errors = sum(e["errors"] for e in entries)
    idle = [e["idle"] for e in entries if e["idle"] is not None]
    idle = median(idle) if idle else None
    if tx:
        signs.append(f"tx starved {tx:,}")
    if rx:
        signs.append(f"rx dropped {rx:,}")
    if idle is not None and idle < IDLE_LOW:
        signs.append(f"idle {idle:.0%}")
    text = "client? " + ", ".join(signs) if signs else "server" + (f" (client idle {idle:.0%})" if idle is not None else "")
    return text + (f"; errors {errors:,}" if errors else "")


def ratio(new, old):
    return "–" if math.isnan(new) or math.isnan(old) or old == 0 else f"{new / old:.3f}×"


settings = settings or "no run finished"
keys = sorted(set(figures["old"]) | set(figures["new"]), key=lambda k: (k[0] != "xgate", k[1]))
print("# A/B: NEW vs OLD xgate\n")
for side in SIDES:
    print(f"- {side.upper()}: `{binaries.get(side, '?')}`, {len(rounds[side])} round(s)")
print(f"- {settings}; OLD first in odd rounds, NEW first in even ones")
print("- each round's figure is the median of its run's repeats; below, the median over rounds (min–max over rounds)\n")
print("| case | OLD req/s | NEW req/s | NEW/OLD | OLD p99 µs | NEW p99 µs | NEW/OLD p99 | limit OLD | limit NEW | noisy |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|---|")
for key in keys:
    old, new = figures["old"].get(key, []), figures["new"].get(key, [])
    old_rps, old_rps_text, old_rps_noisy = spread(old, "rps", thousands)
    new_rps, new_rps_text, new_rps_noisy = spread(new, "rps", thousands)
    old_p99, old_p99_text, old_p99_noisy = spread(old, "p99", micros)
    new_p99, new_p99_text, new_p99_noisy = spread(new, "p99", micros)
    noisy = [name for name, flag in [("OLD req/s", old_rps_noisy), ("NEW req/s", new_rps_noisy),
                                     ("OLD p99", old_p99_noisy), ("NEW p99", new_p99_noisy)] if flag]
    print(f"| {CASES[key[0]]}, {key[1]:,} connections | {old_rps_text} | {new_rps_text} | {ratio(new_rps, old_rps)} "
          f"| {old_p99_text} | {new_p99_text} | {ratio(new_p99, old_p99)} | {limit(old)} | {limit(new)} | {', '.join(noisy)} |")
print("\nPer round (req/s, p99 µs):\n")
for key in keys:
    for side in SIDES:
        entries = sorted(figures[side].get(key, []), key=lambda e: e["round"])
        text = "; ".join(f'{e["round"]}: {thousands(e["rps"])}, {micros(e["p99"])}' for e in entries)
        print(f"- {CASES[key[0]]}, {key[1]:,} connections, {side.upper()}: {text or '–'}")
print(
    "\nNEW/OLD above 1 is better for req/s, below 1 for p99. Limit: what the suite records of the load generator, "
    "summed over the rounds: `tx starved` (times it had no free tx frame), `rx dropped` (frames its AF_XDP socket "
    f"lost), `idle` (median share of its loop turns with nothing to do, flagged under {IDLE_LOW:.0%}). Any of them "
    "marks the figure as possibly client-limited; none means the server set the pace (in proxy mode the server or "
    "the backend, which shares the client's CPU: the suite does not tell them apart). Noisy: min–max over rounds "
    f"above {NOISY:.0%} of the median."
)
PY
}

if [[ $# -eq 2 && "$1" == "--summary" ]]; then
    summarise "$2"
    exit 0
fi
if [[ $# -lt 2 || "$1" == -* || "$2" == -* ]]; then
    usage >&2
    exit 2
fi
old=$(realpath -e "$1")
new=$(realpath -e "$2")
shift 2
rounds=3
if [[ $# -gt 0 && "$1" != "--" ]]; then
    rounds=$1
    shift
fi
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "ab.sh: ROUNDS must be a positive number, got '$rounds'" >&2
    exit 2
fi
extra=()
if [[ $# -gt 0 ]]; then
    if [[ "$1" != "--" ]]; then
        usage >&2
        exit 2
    fi
    shift
    extra=("$@")
fi
for bin in "$old" "$new"; do
    if [[ ! -f "$bin" || ! -x "$bin" ]]; then
        echo "ab.sh: $bin is not an executable file" >&2
        exit 2
    fi
done
out=${AB_OUT:-}
if [[ -n "$out" ]]; then
    out=$(realpath -m "$out")
fi

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh
cargo build --release -p xgate-bench
# UMEMs on 2 MiB hugepages, as deployed and as scripts/bench.sh reserves them.
bash hugepages/setup.sh 32

out=${out:-$PWD/target/ab/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
printf 'old=%s\nnew=%s\n' "$old" "$new" >"$out/binaries"
connections=${AB_CONNECTIONS:-100,10000}
proxy_connections=${AB_PROXY_CONNECTIONS:-100,10000}
failed=0
for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then order=(old new); else order=(new old); fi
    for side in "${order[@]}"; do
        if [[ $side == old ]]; then bin=$old; else bin=$new; fi
        echo "ab.sh: round $round/$rounds, ${side^^}: $bin" >&2
        if ! target/release/xgate-bench suite --only xgate,xgate-proxy --connections "$connections" \
            --proxy-connections "$proxy_connections" --xgate "$bin" --out "$out/round$round-$side" "${extra[@]}"; then
            echo "ab.sh: round $round, ${side^^} failed; going on with the rest" >&2
            failed=1
        fi
    done
done
summarise "$out" | tee "$out/summary.md"
echo "ab.sh: runs and summary in $out" >&2
exit "$failed"
