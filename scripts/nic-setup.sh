#!/usr/bin/env bash
# Prepares a NIC for xgate's lanes: one queue per lane, each queue's interrupt on its lane's
# core, the offloads that defeat XDP off, the RSS key and table, and optionally flow rules that
# steer the gateway's address to the lanes' queues.
#
#   scripts/nic-setup.sh IFACE --lanes N --cores LIST [--rss-key HEX] [--steer IP] [--dry-run]
#
#   --lanes N       queues (channels) the interface gets: one per lane
#   --cores LIST    comma-separated cores, lane i on the i-th (as gateway.cores)
#   --rss-key HEX   set the RSS hash key (colon-separated bytes, as ethtool -x prints it);
#                   without it the key is read and printed, not changed
#   --steer IP      ntuple rule: TCP to IP goes to queue 0 (one lane; with several lanes the
#                   NIC's RSS spreads the gateway's flows over the lanes' queues instead)
#   --dry-run       print every command that would change something, change nothing
#
# Idempotent: a setting already in place is left alone (and said). Exits 0 when done, 1 when a
# command failed, 2 on bad arguments. Needs ethtool; root for anything but --dry-run.
set -euo pipefail

me="nic-setup.sh"
bad() {
    echo "$me: $*" >&2
    exit 2
}
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

iface="" lanes="" cores="" rss_key="" steer="" dry=0
while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --lanes) shift; lanes="${1:-}" ;;
        --cores) shift; cores="${1:-}" ;;
        --rss-key) shift; rss_key="${1:-}" ;;
        --steer) shift; steer="${1:-}" ;;
        --dry-run) dry=1 ;;
        -*) bad "unknown option '$1' (see --help)" ;;
        *) [[ -z "$iface" ]] || bad "one interface only, got '$iface' and '$1'"; iface="$1" ;;
    esac
    shift
done
[[ -n "$iface" ]] || bad "which interface? e.g. '$me eth1 --lanes 4 --cores 2,3,4,5'"
[[ "$lanes" =~ ^[1-9][0-9]*$ ]] || bad "--lanes takes a count of 1 or more"
[[ "$cores" =~ ^[0-9]+(,[0-9]+)*$ ]] || bad "--cores takes a comma-separated list of core numbers"
IFS=, read -r -a core_list <<<"$cores"
((${#core_list[@]} >= lanes)) || bad "$lanes lanes need $lanes cores, --cores gives ${#core_list[@]}"
[[ -z "$rss_key" || "$rss_key" =~ ^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2})+$ ]] || bad "--rss-key takes colon-separated hex bytes"
[[ -z "$steer" || "$steer" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || bad "--steer takes an IPv4 address"
[[ -d /sys/class/net/$iface ]] || bad "no interface '$iface' in this network namespace"
command -v ethtool >/dev/null || { echo "$me: ethtool is missing (apt-get install ethtool)" >&2; exit 1; }
((dry == 1 || EUID == 0)) || { echo "$me: changing a NIC needs root (or use --dry-run)" >&2; exit 1; }

# Runs (or, with --dry-run, prints) a command that changes something.
change() {
    echo "+ $*"
    ((dry == 1)) && return 0
    "$@" || { echo "$me: failed: $*" >&2; exit 1; }
}
keep() { echo "= $*"; }

driver=$(ethtool -i "$iface" 2>/dev/null | awk '/^driver:/ {print $2}')

# Channels: veth has rx/tx channels, NICs mostly combined ones.
channels=$(ethtool -l "$iface" 2>/dev/null || true)
current_of() { awk -v k="$1:" '/^Current hardware settings/ {c=1} c && $1 == k {print $2; exit}' <<<"$channels"; }
if [[ "$driver" == veth ]]; then
    if [[ "$(current_of RX)" == "$lanes" && "$(current_of TX)" == "$lanes" ]]; then
        keep "channels: rx $lanes tx $lanes already"
    else
        change ethtool -L "$iface" rx "$lanes" tx "$lanes"
    fi
elif [[ "$(current_of Combined)" == "$lanes" ]]; then
    keep "channels: combined $lanes already"
elif [[ -n "$channels" ]]; then
    change ethtool -L "$iface" combined "$lanes"
else
    keep "channels: the driver does not report them (ethtool -l), left alone"
fi

# Offloads: XDP refuses LRO (it needs one frame per packet).
lro=$(ethtool -k "$iface" 2>/dev/null | awk '/^large-receive-offload:/ {print $2, $3}')
case "$lro" in
    on*) change ethtool -K "$iface" lro off ;;
    *) keep "lro: ${lro:-unknown}" ;;
esac

# Interrupts: queue i's vector (named IFACE-...-i in /proc/interrupts) on lane i's core.
irqs=$(awk -v dev="$iface-" '{name=$NF} index(name, dev) == 1 {sub(":", "", $1); print $1, name}' /proc/interrupts)
if [[ -z "$irqs" ]]; then
    keep "interrupts: $iface has no queue interrupts (a virtual interface)"
else
    while read -r irq name; do
        queue="${name##*-}"
        [[ "$queue" =~ ^[0-9]+$ ]] && ((queue < lanes)) || continue
        core="${core_list[$queue]}"
        if [[ "$(cat "/proc/irq/$irq/smp_affinity_list" 2>/dev/null)" == "$core" ]]; then
            keep "irq $irq ($name) on core $core already"
        else
            echo "+ echo $core > /proc/irq/$irq/smp_affinity_list"
            ((dry == 1)) || echo "$core" >"/proc/irq/$irq/smp_affinity_list" || { echo "$me: irq $irq refused core $core" >&2; exit 1; }
        fi
    done <<<"$irqs"
fi

# RSS: the key (xgate's upstream port choice hashes with the NIC's key) and an even table.
if rss=$(ethtool -x "$iface" 2>/dev/null); then
    key=$(awk '/^RSS hash key:/ {getline; print $1}' <<<"$rss")
    if [[ -n "$rss_key" && "${rss_key,,}" != "${key,,}" ]]; then
        change ethtool -X "$iface" hkey "$rss_key"
    else
        keep "rss key: ${key:-none}"
    fi
    change ethtool -X "$iface" equal "$lanes"
else
    keep "rss: $iface has no RSS table (ethtool -x): the default Toeplitz key applies"
fi

# Steering: the gateway's address to queue 0 (one lane), the rest of the host's traffic to the
# other queues.
if [[ -n "$steer" ]]; then
    if [[ "$(ethtool -k "$iface" 2>/dev/null | awk '/^ntuple-filters:/ {print $2, $3}')" == "off [fixed]" ]]; then
        keep "steer: $iface has no ntuple filters: left to RSS"
    elif ((lanes > 1)); then
        keep "steer: $lanes lanes: the gateway's flows are spread by RSS over queues 0..$((lanes - 1)), no rule"
    elif ethtool -n "$iface" 2>/dev/null | grep -q "Dest IP addr: $steer "; then
        keep "steer: a rule for $steer already"
    else
        change ethtool -K "$iface" ntuple on
        change ethtool -N "$iface" flow-type tcp4 dst-ip "$steer" action 0
    fi
fi
echo "done: $iface ready for $lanes lane(s) on cores $cores$( ((dry == 1)) && echo ' (dry run: nothing changed)')"
