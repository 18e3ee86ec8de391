//! The committed prompts are what `scripts/make-prompts` renders: the script runs into a
//! temporary directory and every file must come out byte for byte as committed, no more and
//! no fewer. espeak-ng and sox must be installed (scripts/install-test-deps, which
//! scripts/test runs first); without them the test fails and says so, it never skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn the_script_reproduces_the_committed_prompts() {
    for program in ["espeak-ng", "sox"] {
        let found = Command::new(program).arg("--version").output().is_ok();
        assert!(
            found,
            "{program} is not installed: run scripts/install-test-deps (it installs Debian's \
             espeak-ng and sox), then run the tests again"
        );
    }
    let out = tempfile::tempdir().unwrap();
    let script = repo().join("scripts/make-prompts");
    let run = Command::new(&script)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        run.status.success(),
        "scripts/make-prompts failed ({}):\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let committed = files(&repo().join("prompts"));
    let rendered = files(out.path());
    assert!(
        committed.keys().any(|p| p.starts_with("en")),
        "no committed English prompts"
    );
    let mut differ = Vec::new();
    for (path, bytes) in &committed {
        match rendered.get(path) {
            None => differ.push(format!("{}: committed, not rendered", path.display())),
            Some(b) if b != bytes => differ.push(format!(
                "{}: rendered differently ({} bytes, committed {})",
                path.display(),
                b.len(),
                bytes.len()
            )),
            Some(_) => {}
        }
    }
    for path in rendered.keys().filter(|p| !committed.contains_key(*p)) {
        differ.push(format!("{}: rendered, not committed", path.display()));
    }
    assert!(
        differ.is_empty(),
        "the committed prompts are not what scripts/make-prompts renders (after changing \
         prompts/*/prompts.txt or the script, run scripts/make-prompts and commit prompts/):\n{}",
        differ.join("\n")
    );
}

#[test]
fn the_prompts_stay_small() {
    // The repository carries them: a few megabytes at most (8 kHz 16-bit is 16 kB/s).
    let total: usize = files(&repo().join("prompts")).values().map(Vec::len).sum();
    assert!(total < 3_000_000, "prompts/ holds {total} bytes");
}
