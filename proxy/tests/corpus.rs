//! Runs every seed of the fuzz corpora (`proxy/fuzz/corpus/<target>/`) through the same checks
//! the fuzz targets run, so the properties are exercised on stable Rust in every test run.

use std::{fs, path::Path};

use xgate_proxy::fuzz_checks::{check_chunked, check_request, check_response};

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        // Every prefix too: the checks must hold on partial input.
        for end in 0..=data.len() {
            check(&data[..end]);
        }
        mutate(&data, check);
        count += 1;
    }
    assert!(count >= 10, "{target}: only {count} corpus files");
}

#[test]
fn request_corpus() {
    run("request", check_request);
}

#[test]
fn chunked_corpus() {
    run("chunked", check_chunked);
}

#[test]
fn response_corpus() {
    run("response", check_response);
}

/// A few hundred pseudo-random byte mutations of `seed` (a poor fuzzer for stable Rust).
fn mutate(seed: &[u8], check: fn(&[u8])) {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ seed.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"0123456789aAfFxX;=\" \t\r\n:,-\x00\xff";
    for _ in 0..300 {
        let mut data = seed.to_vec();
        for _ in 0..1 + next() % 3 {
            let i = (next() as usize) % (data.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 if i < data.len() => data[i] = byte,
                1 if i < data.len() => {
                    data.remove(i);
                }
                _ => data.insert(i, byte),
            }
        }
        check(&data);
    }
}
