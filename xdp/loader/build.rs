//! Builds the XDP program (`xdp/ebpf`) with the nightly toolchain and bpf-linker, and places the
//! object in OUT_DIR, where `src/lib.rs` embeds it. `XGATE_EBPF_TOOLCHAIN` names another rustup
//! toolchain for it (default `nightly`; bpf-linker must be built against that toolchain's LLVM).
fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    println!("cargo:rerun-if-changed={ebpf_dir}");
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../common")
    );
    println!("cargo:rerun-if-env-changed=XGATE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("XGATE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".to_string());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "xgate-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
