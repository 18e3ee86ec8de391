//! Embeds the generated prompts (`prompts/<language>/<category>/<name>.wav`) in the daemon,
//! so that it speaks on a fresh machine with no prompt files installed: writes
//! `$OUT_DIR/prompts.rs`, one `include_bytes!` per file, in name order.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.join("../../prompts");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::from(
        "/// The generated prompts, by language: (`category/name`, the WAV file).\n\
         pub static EMBEDDED_PROMPTS: &[(&str, &[EmbeddedPrompt])] = &[\n",
    );
    for language in sorted(&root).into_iter().filter(|p| p.is_dir()) {
        println!("cargo:rerun-if-changed={}", language.display());
        let code = language.file_name().unwrap().to_string_lossy().to_string();
        writeln!(out, "    ({code:?}, &[").unwrap();
        for category in sorted(&language).into_iter().filter(|p| p.is_dir()) {
            println!("cargo:rerun-if-changed={}", category.display());
            let cat = category.file_name().unwrap().to_string_lossy().to_string();
            for file in sorted(&category) {
                let name = file.file_name().unwrap().to_string_lossy().to_string();
                let Some(stem) = name.strip_suffix(".wav") else {
                    continue;
                };
                let path = file.canonicalize().unwrap();
                writeln!(
                    out,
                    "        ({:?}, include_bytes!({:?})),",
                    format!("{cat}/{stem}"),
                    path.display().to_string()
                )
                .unwrap();
            }
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("prompts.rs");
    std::fs::write(dest, out).unwrap();
}
