//! Replays every input stored for the fuzz targets — the corpora under
//! `fuzz/corpus/<target>/` that fuzzing grew, and the inputs under
//! `fuzz/regressions/<target>/` that once made a target fail — through the same checks
//! the targets run, on stable Rust. A panic names the target and the file.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = read.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_stored_fuzz_input_passes_its_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut total = 0;
    let mut empty = Vec::new();
    for (name, check) in stele_fuzz_checks::CHECKS {
        let mut files = inputs(&fuzz.join("corpus").join(name));
        files.extend(inputs(&fuzz.join("regressions").join(name)));
        if files.is_empty() {
            empty.push(*name);
        }
        for path in &files {
            let data = std::fs::read(path).unwrap();
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "fuzz check {name} fails on {}", path.display());
        }
        total += files.len();
    }
    eprintln!("{total} stored fuzz inputs replayed");
    assert!(empty.is_empty(), "fuzz targets without a stored corpus: {empty:?} (see fuzz/README.md)");
}

#[test]
fn every_fuzz_target_has_a_check() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for path in inputs(&targets) {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(
            stele_fuzz_checks::CHECKS.iter().any(|(n, _)| *n == name),
            "fuzz target {name} has no check in stele-fuzz-checks"
        );
    }
}
