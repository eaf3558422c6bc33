#!/usr/bin/env bash
# Reserves N 2 MiB hugepages on this host for xgate's AF_XDP UMEM.
#
#   hugepages/setup.sh N          make sure at least N are reserved (never shrinks; idempotent)
#   hugepages/setup.sh --exact N  reserve exactly N (may shrink; --exact 0 releases them all)
#   hugepages/setup.sh --node K N on NUMA node K only (with --exact too): a lane's UMEM is best
#                                 on its core's node (xgate doctor says which node and how many)
#   hugepages/setup.sh --help     this text
#
# Prints HugePages_Total/Free before and after. Exits 0 on success or when there is nothing to
# do, 2 on nonsense input, 1 when not root or when the kernel found fewer than N free 2 MiB pages
# (memory too fragmented: run it early after boot, or reserve at boot with hugepages=N).
set -euo pipefail

me="setup.sh"

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

bad() {
    echo "$me: $*" >&2
    exit 2
}

exact=0
count=""
node=""
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --exact) exact=1 ;;
        --node)
            shift
            [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]] || bad "--node takes a node number, e.g. '--node 0 64' (see --help)"
            node="$1"
            ;;
        -[0-9]*) bad "'$1' is negative: give a page count of 1 or more (see --help)" ;;
        -*) bad "unknown option '$1' (see --help)" ;;
        *)
            [[ -z "$count" ]] || bad "one count only, got '$count' and '$1' (see --help)"
            count="$1"
            ;;
    esac
    shift
done

[[ -n "$count" ]] || bad "how many 2 MiB hugepages? e.g. 'hugepages/setup.sh 64' (see --help)"
[[ "$count" =~ ^[0-9]+$ ]] || bad "'$count' is not a whole number of pages (see --help)"
# Strip leading zeros; anything this long would also overflow shell arithmetic.
count="${count#"${count%%[!0]*}"}"
count="${count:-0}"
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
max_pages=$((mem_kib * 9 / 10 / 2048))
if ((${#count} > 12)) || ((count > max_pages)); then
    bad "$count pages of 2 MiB is more than 90% of this host's $((mem_kib / 1024)) MiB of memory; at most $max_pages"
fi
if ((count == 0 && exact == 0)); then
    bad "0 pages asks for nothing; to release every page use '--exact 0'"
fi
if ((EUID != 0)); then
    args="$count"
    ((exact == 0)) || args="--exact $count"
    echo "$me: writing the hugepage pool needs root: run 'sudo $0 $args'" >&2
    exit 1
fi

# The 2 MiB pool: one node's with --node; else /proc/sys/vm/nr_hugepages when 2 MiB is the
# default hugepage size (the usual case, and then /proc/meminfo shows it), else its own sysfs
# directory.
sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB
if [[ -n "$node" ]]; then
    sysfs=/sys/devices/system/node/node$node/hugepages/hugepages-2048kB
    if [[ ! -d /sys/devices/system/node/node$node ]]; then
        nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | sed 's|.*/node||' | tr '\n' ' ')
        echo "$me: this host has no NUMA node $node (nodes: ${nodes:-none})" >&2
        exit 2
    fi
    [[ -d $sysfs ]] || { echo "$me: node $node has no 2 MiB hugepage pool ($sysfs is missing)" >&2; exit 1; }
    knob=$sysfs/nr_hugepages
    show() {
        echo "$1: node $node 2 MiB HugePages_Total=$(<"$sysfs/nr_hugepages") HugePages_Free=$(<"$sysfs/free_hugepages")"
    }
elif [[ $(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo) == 2048 ]]; then
    knob=/proc/sys/vm/nr_hugepages
    show() {
        awk -v when="$1" '/^HugePages_Total:/ {t=$2} /^HugePages_Free:/ {f=$2}
            END {printf "%s: HugePages_Total=%d HugePages_Free=%d\n", when, t, f}' /proc/meminfo
    }
else
    [[ -d $sysfs ]] || { echo "$me: this kernel has no 2 MiB hugepage pool ($sysfs is missing)" >&2; exit 1; }
    knob=$sysfs/nr_hugepages
    show() {
        echo "$1: 2 MiB HugePages_Total=$(<"$sysfs/nr_hugepages") HugePages_Free=$(<"$sysfs/free_hugepages")"
    }
fi

current=$(<"$knob")
show before
if ((exact == 0 && current >= count)); then
    echo "nothing to do: $current pages already reserved (>= $count)"
    exit 0
fi
if ((exact == 1 && current == count)); then
    echo "nothing to do: exactly $count pages already reserved"
    exit 0
fi

reserve() {
    if ! echo "$count" 2>/dev/null >"$knob"; then
        echo "$me: the kernel refused '$count' in $knob (read-only /proc in a container?)" >&2
        exit 1
    fi
}
reserve
got=$(<"$knob")
if ((got < count)); then
    # Free 2 MiB blocks may exist only after compaction; one more try.
    echo 1 2>/dev/null >/proc/sys/vm/compact_memory || true
    reserve
    got=$(<"$knob")
fi
show after
if ((got < count)); then
    echo "$me: the kernel reserved only $got of $count pages (memory is fragmented); free memory and run it again, or reserve at boot with the kernel parameter hugepages=$count" >&2
    exit 1
fi
echo "done: $got 2 MiB hugepages reserved ($((got * 2)) MiB)"
