#!/usr/bin/env bash
# Installs what building and testing xgate needs on a fresh Debian 12 machine, and says what it
# does. Idempotent: each step checks first and skips what is already there.
#   - Debian packages: iproute2 (ip netns, veth, nstat), ethtool, curl, iputils-ping, wrk, apache2-utils (ab),
#     python3, nginx-light (the benchmark's and tests' kernel-stack server), linux-perf (the
#     benchmark's profile), python3-prometheus-client (the metrics test parses /metrics with it)
#     (no clang: the eBPF program is linked by bpf-linker)
#   - the nightly toolchain's rust-src (the eBPF program is built with -Z build-std=core)
#   - bpf-linker 0.13, linked against the nightly toolchain's own LLVM
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    say "must run as root (it installs packages and the tests create network namespaces)" >&2
    exit 1
fi

export PATH="$HOME/.cargo/bin:$PATH"
NIGHTLY="${XGATE_EBPF_TOOLCHAIN:-nightly}"

# --- Debian packages -------------------------------------------------------------------------
need_pkgs=()
for pair in ip:iproute2 nstat:iproute2 ethtool:ethtool curl:curl ping:iputils-ping wrk:wrk python3:python3 \
    nginx:nginx-light perf:linux-perf taskset:util-linux ab:apache2-utils hping3:hping3 openssl:openssl \
    h2load:nghttp2-client; do
    cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# Debian's python3 (the tests call /usr/bin/python3: a python3 earlier on PATH may not see it).
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || need_pkgs+=(python3-prometheus-client)
if ((${#need_pkgs[@]})); then
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
    say "installing Debian packages: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    # nginx is only ever started by the benchmark, inside its own namespace: the package's
    # host-wide service is not wanted.
    if [[ " ${need_pkgs[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
else
    say "Debian packages: all present"
fi

# --- Rust toolchains ----------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: this machine needs its Rust toolchain (rustup) first" >&2
    exit 1
fi
if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    say "installing the $NIGHTLY toolchain (for the eBPF program)"
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
nightly_components=$(rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null || true)
if ! grep -q '^rust-src' <<<"$nightly_components"; then
    say "adding rust-src to $NIGHTLY (needed for -Z build-std=core)"
    rustup component add rust-src --toolchain "$NIGHTLY"
else
    say "rust-src on $NIGHTLY: present"
fi

# The userspace toolchain is pinned by rust-toolchain.toml; make sure it has fmt and clippy.
STABLE=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml 2>/dev/null || true)
if [[ -n "$STABLE" ]]; then
    stable_components=$(rustup component list --toolchain "$STABLE" --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        if ! grep -q "^$component" <<<"$stable_components"; then
            say "adding $component to $STABLE"
            rustup component add "$component" --toolchain "$STABLE"
        fi
    done
    say "userspace toolchain: $(rustup run "$STABLE" rustc --version)"
fi
say "eBPF toolchain: $(rustup run "$NIGHTLY" rustc --version)"

# --- bpf-linker -------------------------------------------------------------------------------
# bpf-linker links against the nightly toolchain's own libLLVM; if that nightly changes, the
# binary stops loading, so "works" is checked by running it, not by its presence.
if bpf-linker --version >/dev/null 2>&1; then
    say "bpf-linker: $(bpf-linker --version)"
else
    SYS=$(rustc +"$NIGHTLY" --print sysroot)
    LLVM_SO=$(ls "$SYS"/lib/libLLVM.so.*-rust-* 2>/dev/null | head -n1 || true)
    if [[ -z "$LLVM_SO" ]]; then
        say "no libLLVM in $SYS/lib: cannot build bpf-linker against $NIGHTLY" >&2
        exit 1
    fi
    LLVM_MAJOR=$(basename "$LLVM_SO" | sed -E 's/^libLLVM\.so\.([0-9]+).*/\1/')
    LINKDIR=$(mktemp -d)
    ln -sf "$LLVM_SO" "$LINKDIR/libLLVM.so"
    say "building bpf-linker 0.13.0 against $NIGHTLY's LLVM $LLVM_MAJOR (takes 2-3 minutes)"
    RUSTFLAGS="-L $LINKDIR -C link-arg=-Wl,-rpath,$SYS/lib" \
        cargo install --locked bpf-linker --version 0.13.0 --no-default-features --features "llvm-$LLVM_MAJOR" --force
    rm -rf "$LINKDIR"
    bpf-linker --version
fi
say "done"
