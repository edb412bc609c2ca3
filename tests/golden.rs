//! Golden tests for the language: each `tests/golden/**/NAME.kd` runs through the real
//! `kdl` binary and its exit code, stdout and stderr must equal `NAME.expected`.
//! A first line `# kdl: check` runs `kdl check` instead of `kdl run`.
//! Re-bless after an intended change with `KDL_BLESS=1 cargo test --test golden`,
//! then read the diff of the .expected files before committing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("golden dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() && !name.starts_with('_') {
            cases(&p, out);
        } else if name.ends_with(".kd") {
            out.push(p);
        }
    }
}

fn run_case(root: &Path, case: &Path) -> String {
    let rel = case.strip_prefix(root).expect("under root");
    let src = std::fs::read_to_string(case).expect("readable case");
    let mode = if src.starts_with("# kdl: check") { "check" } else { "run" };
    let out = Command::new(env!("CARGO_BIN_EXE_kdl"))
        .args(["--color", "never", mode])
        .arg(rel)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .output()
        .expect("kdl runs");
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map(|c| c.to_string()).unwrap_or_else(|| "signal".into()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first lines that differ, with a little context.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
    let mut out = String::new();
    for i in first.saturating_sub(2)..(first + 6).min(e.len().max(a.len())) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => out.push_str(&format!("   {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!(" - {x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!(" + {y}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn golden_files_match() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    cases(&root.join("tests/golden"), &mut all);
    assert!(all.len() >= 50, "the golden suite should cover the language ({} cases)", all.len());
    let bless = std::env::var_os("KDL_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &all {
        let actual = run_case(&root, case);
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("{}\n{}", case.strip_prefix(&root).unwrap().display(), diff(&expected, &actual)));
        }
    }
    assert!(failures.is_empty(), "{} of {} golden cases differ (KDL_BLESS=1 to accept):\n\n{}", failures.len(), all.len(), failures.join("\n"));
}
