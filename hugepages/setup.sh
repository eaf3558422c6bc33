#!/usr/bin/env bash
# Reserves N 2 MiB hugepages on this host for xgate's AF_XDP UMEM.
#
#   hugepages/setup.sh N          make sure at least N are reserved (never shrinks)
#   hugepages/setup.sh --exact N  reserve exactly N (may shrink; 0 releases them all)
#
# Prints the counters before and after. Exits 2 on nonsense input, 1 when not root or when the
# kernel could not find N free 2 MiB pages (memory too fragmented: run it early after boot, or
# reserve at boot with the kernel parameter hugepages=N).
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

exact=0
count=""
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --exact) exact=1 ;;
        -*) echo "setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *)
            if [[ -n "$count" ]]; then echo "setup.sh: one count only, got '$count' and '$1'" >&2; exit 2; fi
            count="$1" ;;
    esac
    shift
done

if [[ -z "$count" ]]; then
    echo "setup.sh: how many 2 MiB hugepages? e.g. 'hugepages/setup.sh 64' (see --help)" >&2
    exit 2
fi
if ! [[ "$count" =~ ^[0-9]+$ ]]; then
    echo "setup.sh: '$count' is not a whole number of pages" >&2
    exit 2
fi
count=$((10#$count))
if ((count == 0 && exact == 0)); then
    echo "setup.sh: 0 pages asks for nothing; to release every page use '--exact 0'" >&2
    exit 2
fi
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
max_pages=$((mem_kib * 9 / 10 / 2048))
if ((count > max_pages)); then
    echo "setup.sh: $count pages ($((count * 2)) MiB) is more than 90% of this host's memory ($((mem_kib / 1024)) MiB); at most $max_pages" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: writing /proc/sys/vm/nr_hugepages needs root: run it with sudo" >&2
    exit 1
fi

show() {
    awk -v when="$1" '/^HugePages_Total:/ {t=$2} /^HugePages_Free:/ {f=$2} END {printf "%s: HugePages_Total=%d HugePages_Free=%d\n", when, t, f}' /proc/meminfo
}

current=$(cat /proc/sys/vm/nr_hugepages)
show before
if ((exact == 0 && current >= count)); then
    echo "nothing to do: $current pages already reserved (>= $count)"
    exit 0
fi
if ((exact == 1 && current == count)); then
    echo "nothing to do: exactly $count pages already reserved"
    exit 0
fi
echo "$count" > /proc/sys/vm/nr_hugepages
got=$(cat /proc/sys/vm/nr_hugepages)
show after
if ((got < count)); then
    echo "setup.sh: the kernel reserved only $got of $count pages (memory is fragmented); try again after freeing memory, or reserve at boot with hugepages=$count" >&2
    exit 1
fi
echo "reserved $got 2 MiB hugepages ($((got * 2)) MiB)"
