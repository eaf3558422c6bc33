#[test]
fn trace() {
    let name = std::env::var("SEED").unwrap();
    let data = std::fs::read(format!("{}/../proxy/fuzz/corpus/frame/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    xgate_userstack::fuzz_support::check_frames(&data);
}
