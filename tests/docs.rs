//! The reference cannot drift from the language: every `kdl` block in lang/*.md and
//! README.md that is followed by a `text` block is run with the real `kdl` binary, and
//! its output must be that text. `KDL_BLESS=1 cargo test --test docs` rewrites the text
//! blocks from what kdl prints; read the diff before committing.
//!
//! A block runs in a scratch folder where `tests/`, `examples/` and `data/` (the
//! examples' data) are the repository's, beside the small files of tests/docs_files/
//! (a `corpus/` folder, `.jsonl` files), under the name its first line gives
//! (`# vocab.kd`), else `doc.kd`. Named blocks with no output (`# setup.kd`) are written
//! beside it, for `use "setup.kd"`. A `...` line in the text stands for any lines.
//!
//! Marked blocks: `# doc: excerpt of PATH` must appear, line for line, in PATH (an
//! example that tests/examples.rs runs whole); `# doc: slow` trains on the real teacher
//! for minutes and runs only with KDL_DOCS_SLOW=1 (`bench/docs.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    file: PathBuf,
    line: usize,
    code: String,
    /// Byte range of the output text inside the file, for blessing; `None` for a named
    /// block other blocks `use`.
    output: Option<std::ops::Range<usize>>,
}

/// The file name a block's first line gives (`# setup.kd`).
fn name_of(code: &str) -> Option<&str> {
    code.lines().next()?.strip_prefix("# ").filter(|n| n.ends_with(".kd") && !n.contains(' '))
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = text[at..].find("```kdl\n").map(|i| i + at) {
        let code_start = start + "```kdl\n".len();
        let Some(code_end) = text[code_start..].find("```").map(|i| i + code_start) else { break };
        at = code_end + 3;
        let rest = &text[at..];
        let gap = rest.len() - rest.trim_start_matches('\n').len();
        let (code, line) = (text[code_start..code_end].to_string(), text[..start].lines().count() + 1);
        if !rest[gap..].starts_with("```text\n") {
            if name_of(&code).is_some() || code.starts_with("# doc: excerpt of ") {
                out.push(Block { file: file.to_path_buf(), line, code, output: None });
            }
            continue;
        }
        let out_start = at + gap + "```text\n".len();
        let Some(out_end) = text[out_start..].find("```").map(|i| i + out_start) else { break };
        out.push(Block { file: file.to_path_buf(), line, code, output: Some(out_start..out_end) });
        at = out_end + 3;
    }
    out
}

fn all_blocks(root: &Path) -> Vec<Block> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("lang")).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    files.sort();
    files.push(root.join("README.md"));
    files.iter().flat_map(|f| blocks(f)).collect()
}

fn scratch(root: &Path, n: usize, companions: &[&Block]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kdl-docs-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, target) in [("tests", "tests"), ("examples", "examples"), ("data", "examples/data"), ("stdlib", "stdlib")] {
        std::os::unix::fs::symlink(root.join(target), dir.join(name)).unwrap();
    }
    for entry in std::fs::read_dir(root.join("tests/docs_files")).unwrap().filter_map(|e| e.ok()) {
        std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    for c in companions {
        std::fs::write(dir.join(name_of(&c.code).unwrap()), &c.code).unwrap();
    }
    dir
}

fn run(root: &Path, n: usize, b: &Block, companions: &[&Block]) -> String {
    let dir = scratch(root, n, companions);
    let name = name_of(&b.code).unwrap_or("doc.kd");
    std::fs::write(dir.join(name), &b.code).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).args(["--color", "never", "run", name]).current_dir(&dir).env("NO_COLOR", "1").output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string() + "\n"
}

/// Whether `actual` is `expected`, where an expected `...` line stands for any lines.
fn matches(expected: &str, actual: &str) -> bool {
    fn go(e: &[&str], a: &[&str]) -> bool {
        match e.split_first() {
            None => a.is_empty(),
            Some((&"...", rest)) => (0..=a.len()).any(|skip| go(rest, &a[skip..])),
            Some((line, rest)) => a.first().is_some_and(|x| x == line) && go(rest, &a[1..]),
        }
    }
    let e: Vec<&str> = expected.lines().map(str::trim_end).collect();
    let a: Vec<&str> = actual.lines().collect();
    go(&e, &a)
}

/// An excerpt's lines (after its marker) appear in `path` as consecutive lines.
fn excerpt_matches(path: &Path, code: &str) -> Result<(), String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let want: Vec<&str> = code.lines().skip(1).map(str::trim_end).collect();
    let have: Vec<&str> = source.lines().map(str::trim_end).collect();
    if have.windows(want.len().max(1)).any(|w| w == want.as_slice()) {
        Ok(())
    } else {
        Err(format!("this excerpt is no longer in {} line for line", path.display()))
    }
}

#[test]
fn every_documented_output_is_what_kdl_prints() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let blocks = all_blocks(&root);
    assert!(blocks.len() >= 40, "the docs hold {} runnable examples", blocks.len());
    let slow = std::env::var_os("KDL_DOCS_SLOW").is_some();
    let bless = std::env::var_os("KDL_BLESS").is_some();
    let mut failures = Vec::new();
    let mut blessed: Vec<(PathBuf, std::ops::Range<usize>, String)> = Vec::new();
    let mut ran = 0;
    for (n, b) in blocks.iter().enumerate() {
        if let Some(path) = b.code.lines().next().and_then(|l| l.strip_prefix("# doc: excerpt of ")) {
            if let Err(e) = excerpt_matches(&root.join(path.trim()), &b.code) {
                failures.push(format!("{}:{}: {e}", b.file.strip_prefix(&root).unwrap().display(), b.line));
            }
            continue;
        }
        let Some(output) = b.output.clone() else { continue };
        if b.code.starts_with("# doc: slow") && !slow {
            continue;
        }
        ran += 1;
        let companions: Vec<&Block> = blocks.iter().filter(|c| c.file == b.file && c.output.is_none() && name_of(&c.code).is_some()).collect();
        let actual = run(&root, n, b, &companions);
        let text = std::fs::read_to_string(&b.file).unwrap();
        let expected = &text[output.clone()];
        if matches(expected, &actual) {
            continue;
        }
        if bless && !expected.lines().any(|l| l.trim_end() == "...") {
            blessed.push((b.file.clone(), output, actual));
        } else {
            failures.push(format!("{}:{}\n--- the docs say\n{expected}--- kdl prints\n{actual}", b.file.strip_prefix(&root).unwrap().display(), b.line));
        }
    }
    // Rewrite from the end of each file so earlier ranges stay valid.
    blessed.sort_by(|a, b| (&a.0, b.1.start).cmp(&(&b.0, a.1.start)));
    for (file, range, actual) in blessed {
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.replace_range(range, &actual);
        std::fs::write(&file, text).unwrap();
    }
    assert!(failures.is_empty(), "{} of {ran} documented outputs differ (KDL_BLESS=1 rewrites them):\n\n{}", failures.len(), failures.join("\n\n"));
}
