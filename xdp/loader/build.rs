//! Builds the XDP program (`xdp/ebpf`) with nightly and bpf-linker, and places the object in
//! OUT_DIR, where `src/lib.rs` embeds it.
fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf");
    println!("cargo:rerun-if-changed={ebpf_dir}");
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../common")
    );
    let toolchain = option_env!("XGATE_EBPF_TOOLCHAIN").unwrap_or("nightly");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "xgate-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(toolchain),
    )
}
