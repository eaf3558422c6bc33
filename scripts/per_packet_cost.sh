#!/usr/bin/env bash
# xgate's per-packet TCP cost in instructions, at 10 and 10,000 established connections: builds
# bench/examples/per_packet_cost.rs (the in-memory TcpServer harness of benches/demux.rs) in
# release, runs it with M = 0 and M = PACKETS one-byte segments under an instruction counter, and
# prints (instructions(M) - instructions(0)) / M per connection count, so the set-up cancels out,
# plus the ratio of the last count to the first. Each figure is the median of REPEATS runs.
#
#   scripts/per_packet_cost.sh
#
# Environment (all optional):
#   CONNECTIONS="10 10000"   connection counts to compare
#   PACKETS=200000           packets of the measured runs
#   REPEATS=3                runs per (connections, packets); the median is used
#   COUNTER=auto             perf (perf stat -e instructions:u), valgrind (cachegrind's I refs,
#                            for machines without hardware counters, e.g. most VMs) or auto
#                            (perf when the CPU's counters can be read, valgrind otherwise)
#   EXTRA_ARGS=""            more arguments for the example, e.g. --ack-every-segment
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

CONNECTIONS="${CONNECTIONS:-10 10000}"
PACKETS="${PACKETS:-200000}"
REPEATS="${REPEATS:-3}"
COUNTER="${COUNTER:-auto}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

die() {
    echo "per_packet_cost.sh: $*" >&2
    exit 1
}

[[ "$PACKETS" =~ ^[1-9][0-9]*$ ]] || die "PACKETS must be a positive integer (got '$PACKETS')"
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be a positive integer (got '$REPEATS')"
for n in $CONNECTIONS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be positive integers (got '$n')"
done

# Whether perf can count user-space instructions here (VMs often expose no hardware counters:
# perf stat then reports "<not supported>").
perf_counts_instructions() {
    command -v perf >/dev/null 2>&1 || return 1
    local out
    out="$(perf stat -x, -e instructions:u -- true 2>&1 >/dev/null)" || return 1
    [[ "$(printf '%s\n' "$out" | awk -F, '/instructions/ { print $1; exit }')" =~ ^[0-9]+$ ]]
}

case "$COUNTER" in
auto)
    if perf_counts_instructions; then
        COUNTER=perf
    elif command -v valgrind >/dev/null 2>&1; then
        echo "note: perf cannot count instructions on this machine (no hardware counters);" \
            "counting with valgrind's cachegrind instead (same instructions, about 20x slower)" >&2
        COUNTER=valgrind
    else
        die "perf cannot count instructions:u here and valgrind is not installed; install one" \
            "(apt-get install linux-perf or valgrind) or run on a machine with hardware counters"
    fi
    ;;
perf)
    perf_counts_instructions ||
        die "COUNTER=perf, but 'perf stat -e instructions:u' does not count here (no perf, or no" \
            "hardware counters: try COUNTER=valgrind)"
    ;;
valgrind)
    command -v valgrind >/dev/null 2>&1 || die "COUNTER=valgrind, but valgrind is not installed"
    ;;
*) die "COUNTER must be auto, perf or valgrind (got '$COUNTER')" ;;
esac

echo "building the per_packet_cost example (release)..." >&2
cargo build --release -p xgate-bench --example per_packet_cost >&2 ||
    die "cargo build --release -p xgate-bench --example per_packet_cost failed"
binary="${CARGO_TARGET_DIR:-target}/release/examples/per_packet_cost"
[[ -x "$binary" ]] || die "the build did not produce $binary"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs the example once under the counter; prints "<instructions> <json line>".
count_once() {
    local connections="$1" packets="$2"
    # shellcheck disable=SC2086 # EXTRA_ARGS is a list of words
    local cmd=("$binary" --connections "$connections" --packets "$packets" $EXTRA_ARGS)
    local count
    case "$COUNTER" in
    perf)
        perf stat -x, -o "$work/counter" -e instructions:u -- "${cmd[@]}" >"$work/out" 2>"$work/err" ||
            die "run failed: ${cmd[*]}: $(tail -n 5 "$work/err")"
        count="$(awk -F, '/instructions/ { print $1; exit }' "$work/counter")"
        ;;
    valgrind)
        valgrind --tool=cachegrind --cache-sim=no --branch-sim=no --cachegrind-out-file=/dev/null \
            --log-file="$work/counter" -- "${cmd[@]}" >"$work/out" 2>"$work/err" ||
            die "run failed under valgrind: ${cmd[*]}: $(tail -n 5 "$work/err") $(tail -n 5 "$work/counter")"
        count="$(awk '/I *refs:/ { gsub(",", "", $NF); print $NF; exit }' "$work/counter")"
        ;;
    esac
    [[ "$count" =~ ^[0-9]+$ ]] || die "no instruction count from $COUNTER for: ${cmd[*]} (got '$count')"
    local json
    json="$(grep -m1 '^{' "$work/out")" || die "no JSON line from: ${cmd[*]}"
    echo "$count $json"
}

# The median of the numbers on stdin (the lower middle one for an even count).
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print v[int((NR + 1) / 2)] }'
}

# A JSON number field of a line, or nothing.
json_field() {
    sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}

declare -A per_packet
summary=()
for n in $CONNECTIONS; do
    for m in 0 "$PACKETS"; do
        : >"$work/counts-$m"
        : >"$work/json-$m"
        for ((r = 1; r <= REPEATS; r++)); do
            echo "connections $n, packets $m: run $r/$REPEATS ($COUNTER)" >&2
            result="$(count_once "$n" "$m")"
            count="${result%% *}"
            json="${result#* }"
            echo "$count" >>"$work/counts-$m"
            echo "$json" >>"$work/json-$m"
        done
    done
    base="$(median <"$work/counts-0")"
    loaded="$(median <"$work/counts-$PACKETS")"
    per_packet[$n]="$(awk -v a="$loaded" -v b="$base" -v m="$PACKETS" 'BEGIN { printf "%.1f", (a - b) / m }')"
    frames="$(json_field frames_sent_per_packet <"$work/json-$PACKETS" | median)"
    served="$(json_field served_per_packet <"$work/json-$PACKETS" | median)"
    line="connections $n: ${per_packet[$n]} instructions/packet (median of $REPEATS: $loaded with"
    line+=" $PACKETS packets, $base with none); frames sent/packet $frames, woken served/packet $served"
    if [[ "$COUNTER" == perf ]]; then
        line+=", $(json_field ns_per_packet <"$work/json-$PACKETS" | median) ns/packet"
    else
        # Time under valgrind means nothing: one native run for it.
        # shellcheck disable=SC2086
        ns="$("$binary" --connections "$n" --packets "$PACKETS" $EXTRA_ARGS | json_field ns_per_packet)"
        line+=", $ns ns/packet (one native run)"
    fi
    summary+=("$line")
done

echo
echo "per-packet cost (${EXTRA_ARGS:-delayed ACKs}, counter: $COUNTER)"
printf '%s\n' "${summary[@]}"
read -r -a counts <<<"$CONNECTIONS"
first="${counts[0]}"
last="${counts[${#counts[@]} - 1]}"
if [[ "$first" != "$last" ]]; then
    awk -v a="${per_packet[$last]}" -v b="${per_packet[$first]}" -v l="$last" -v f="$first" \
        'BEGIN { if (b <= 0) { print "ratio: n/a (no instructions per packet at " f ")" } else printf "ratio %s/%s: %.2f\n", l, f, a / b }'
fi
