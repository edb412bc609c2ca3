//! The parser and checker never panic: thousands of mutated and random inputs, built
//! from the golden corpus, the examples and the stdlib, must all come back as
//! diagnostics (or success), never as a panic.

use kdl::Session;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "let", "def", "use", "save", "to", "print", "stage", "true", "false", "teacher", "student", "tokenizer", "data",
    "loss", "optim", "schedule", "previous", "T", "x", "ce", "kl", "rkl", "js", "tvd", "skl", "mse", "cosine",
    "every", "llama", "adamw", "sgd", "warmup", "linear", "step", "constant", "at", "train", "eval", "text",
    "jsonl", "split", "losses", "arch", "hinton", "(", ")", "[", "]", "{", "}", ",", ";", "\n", "=", "+", "-",
    "*", "/", "^", ">>", "==", "<", ">=", ".", "0", "1", "2", "-1", "1e30", "1e-30", "20%", "1_000", "0.5",
    "\"s\"", "\"", "#", "%", "$", "'", "\\", "layers=", "dim=", "T=", "vocab=", "steps=", "é", "తె",
];

fn corpus(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "kd") {
                out.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = Vec::new();
    for d in ["tests/golden", "examples", "stdlib"] {
        walk(&root.join(d), &mut out);
    }
    out
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut s = src.to_string();
    for _ in 0..1 + rng.below(4) {
        let i = char_boundary(&s, rng.below(s.len() + 1));
        let j = char_boundary(&s, i + rng.below(12));
        match rng.below(5) {
            0 => s.replace_range(i..j, ""),
            1 => s.insert_str(i, TOKENS[rng.below(TOKENS.len())]),
            2 => {
                let piece = s[i..j].to_string();
                s.insert_str(i, &piece);
            }
            3 => s.truncate(i),
            _ => s.replace_range(i..j, TOKENS[rng.below(TOKENS.len())]),
        }
    }
    s
}

fn soup(rng: &mut Rng) -> String {
    (0..1 + rng.below(60)).map(|_| TOKENS[rng.below(TOKENS.len())]).collect::<Vec<_>>().join(if rng.below(2) == 0 { " " } else { "" })
}

#[test]
fn parser_and_checker_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("repo root");
    let corpus = corpus(root);
    assert!(corpus.len() > 50);
    let mut rng = Rng(0x6b646c_2026);
    let cases = std::env::var("KDL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12000);
    let mut panics = Vec::new();
    for n in 0..cases {
        let input = if n % 3 == 0 {
            soup(&mut rng)
        } else {
            let pick = rng.below(corpus.len());
            mutate(&mut rng, &corpus[pick])
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut s = Session::capture();
            let _ = s.prepare_str("<fuzz>", &input);
            let _ = s.type_of(&input);
        }));
        if result.is_err() {
            panics.push(input);
            if panics.len() >= 5 {
                break;
            }
        }
    }
    assert!(panics.is_empty(), "inputs that panicked:\n{}", panics.iter().map(|p| format!("---\n{p}")).collect::<String>());
}

/// Every example and stdlib file, mutated, through the real `kdl check`: no panic, no
/// hang past 10 s, and only the documented exit codes (0 ok, 1 script errors, 2 files).
/// `KDL_MUTATIONS` per file (default 20 in CI; the campaign in tests/README.md used 2,000).
#[test]
fn mutated_examples_through_the_binary_exit_cleanly() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let per_file: usize = std::env::var("KDL_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let scratch = std::env::temp_dir().join(format!("kdl-mutations-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    // Relative paths in the examples (data/, runs/) resolve as they would beside them.
    std::os::unix::fs::symlink(root.join("examples/data"), scratch.join("data")).unwrap();
    let mut files: Vec<std::path::PathBuf> = ["examples", "stdlib"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kd"))
        .collect();
    files.sort();
    let mut rng = Rng(0x6d75_7461);
    let (mut runs, mut by_code) = (0, [0usize; 3]);
    let mut bad = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        for _ in 0..per_file {
            let input = mutate(&mut rng, &src);
            let path = scratch.join("mutant.kd");
            std::fs::write(&path, &input).unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_kdl"))
                .args(["--color", "never", "check"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break Some(s);
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            runs += 1;
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            match status.and_then(|s| s.code()) {
                Some(c @ 0..=2) if !stderr.contains("panicked") => by_code[c as usize] += 1,
                other => bad.push(format!("{} mutated → exit {other:?}:\n{input}\n{stderr}", file.display())),
            }
            if bad.len() >= 3 {
                break;
            }
        }
    }
    eprintln!("mutations: {runs} runs of kdl check over {} files: exit 0 ×{}, 1 ×{}, 2 ×{}", files.len(), by_code[0], by_code[1], by_code[2]);
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(bad.is_empty(), "{}", bad.join("\n---\n"));
}
