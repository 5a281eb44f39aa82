//! Replays the fuzz corpora as a normal test: every file under
//! `fuzz/corpus/<target>/` (the inputs cargo-fuzz kept for new coverage)
//! and `fuzz/regressions/<target>/` (inputs that once crashed a target, kept
//! after the fix) goes through the same function the target calls, so CI
//! checks them on stable Rust without libFuzzer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_corpus() {
    for (name, _) in fuzzing::TARGETS {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&target)
            .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert!(
            source.contains(&format!("fuzzing::{}(", function_name(name))),
            "{} does not call the harness function",
            target.display()
        );
        assert!(
            !inputs(&fuzz_dir().join("corpus").join(name)).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
    }
}

/// The harness function of a target (`otpauth_url` is `otpauth_url_builder`,
/// not to shadow the domain's function).
fn function_name(target: &str) -> &str {
    if target == "otpauth_url" {
        "otpauth_url_builder"
    } else {
        target
    }
}

#[test]
fn corpora_and_regressions_replay_without_a_failure() {
    let mut total = 0;
    for (name, run) in fuzzing::TARGETS {
        let mut files = inputs(&fuzz_dir().join("corpus").join(name));
        files.extend(inputs(&fuzz_dir().join("regressions").join(name)));
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
        println!("{name}: {} inputs", files.len());
        total += files.len();
    }
    assert!(total > 0);
}
