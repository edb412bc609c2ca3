//! Nothing a user can feed kdl makes it panic: thousands of mutated and random inputs,
//! built from the golden corpus, the examples and the stdlib, come back from the parser,
//! the checker and the `kdl` binary as diagnostics (or success); damaged model folders
//! come back as one-line errors, never as a silent load.

use kdl::eval::Value;
use kdl::Session;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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
    "loss", "optim", "schedule", "previous", "T", "x", "ce", "kl", "rkl", "js", "tvd", "skl", "srkl", "mse", "cosine",
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

/// Runs `kdl ARGS... FILE` with a 10 s limit: its exit code (None for a hang) and stderr.
fn run_kdl_limited(args: &[&str], file: &Path) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_kdl")).args(args).arg(file).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // stderr is read on a thread, so a chatty child never blocks on a full pipe.
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status, reader.join().unwrap_or_default())
}

/// Every example and stdlib file, mutated, through the real `kdl check`, and each mutant
/// that checks through `kdl run --dry-run` too (it loads the models and data and plans
/// the first training): no panic, no hang past 10 s, and only the documented exit codes
/// (0 ok, 1 script errors, 2 files). `KDL_MUTATIONS` per file (default 20 in CI).
#[test]
fn mutated_examples_through_the_binary_exit_cleanly() {
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
    let (mut checks, mut dry_runs, mut by_code, mut dry_by_code) = (0, 0, [0usize; 3], [0usize; 3]);
    let mut bad = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        for _ in 0..per_file {
            let input = mutate(&mut rng, &src);
            let path = scratch.join("mutant.kd");
            std::fs::write(&path, &input).unwrap();
            let mut judge = |args: &[&str], counts: &mut [usize; 3]| -> Option<i32> {
                let (code, stderr) = run_kdl_limited(args, &path);
                match code {
                    Some(c @ 0..=2) if !stderr.contains("panicked") => counts[c as usize] += 1,
                    other => bad.push(format!("{} mutated, kdl {} → exit {other:?}:\n{input}\n{stderr}", file.display(), args.join(" "))),
                }
                code
            };
            checks += 1;
            if judge(&["--color", "never", "check"], &mut by_code) == Some(0) {
                dry_runs += 1;
                judge(&["--color", "never", "run", "--dry-run"], &mut dry_by_code);
            }
            if bad.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "mutations over {} files: {checks} × kdl check: exit 0 ×{}, 1 ×{}, 2 ×{}; {dry_runs} × kdl run --dry-run: exit 0 ×{}, 1 ×{}, 2 ×{}",
        files.len(),
        by_code[0],
        by_code[1],
        by_code[2],
        dry_by_code[0],
        dry_by_code[1],
        dry_by_code[2]
    );
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(bad.is_empty(), "{}", bad.join("\n---\n"));
}

// Damaged files never load silently and never panic: a saved model folder (weights,
// config, tokenizer, checksums) and a training checkpoint are copied and damaged —
// truncated, or bytes flipped in the safetensors header, the tensor data, the JSON and
// the tokenizer — and every `load` or `resume` must give a one-line error or, only
// where what it reads is still intact, the same model. KDL_LOAD_FUZZ_CASES sets the count.

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// One damage to one file: where in it depends on the kind of damage.
fn damage(rng: &mut Rng, file: &Path) -> String {
    let mut bytes = std::fs::read(file).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let len = bytes.len().max(1);
    // A safetensors header is the first 8 + n bytes.
    let header = if name.ends_with(".safetensors") && bytes.len() >= 8 { 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize } else { len };
    let what = match rng.below(4) {
        0 => {
            let at = rng.below(len);
            bytes.truncate(at);
            format!("{name} truncated to {at} bytes")
        }
        1 if header < len => {
            let at = header + rng.below(len - header);
            bytes[at] ^= 1 + rng.below(255) as u8;
            format!("{name}: a tensor-data byte flipped at {at}")
        }
        _ => {
            let at = rng.below(header.min(len));
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 + rng.below(255) as u8;
            }
            format!("{name}: a header/JSON byte flipped at {at}")
        }
    };
    std::fs::write(file, bytes).unwrap();
    what
}

fn logits_of(s: &mut Session, dir: &Path) -> Result<Vec<f64>, String> {
    let src = format!("let m = load({:?})\nlogits(m, [1, 2, 3])", dir.display().to_string());
    match s.eval_str(&src) {
        Ok(Some(Value::Tensor(t))) => Ok(Vec::<f64>::try_from(t.tensor.flatten(0, -1).to_kind(tch::Kind::Double)).unwrap()),
        Ok(other) => Err(format!("no tensor: {other:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[test]
fn damaged_model_folders_give_an_error_never_a_silent_load_or_a_panic() {
    let dir = std::env::temp_dir().join(format!("kdl-loadfuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/_lib/tiny.txt");
    let good = dir.join("good");
    let mut s = Session::capture();
    s.eval_str(&format!(
        "tokenizer bpe(vocab=300, from={:?})\nstudent llama(layers=1, dim=32, heads=2, seed=3)\nsave student to {:?}",
        corpus.display().to_string(),
        good.display().to_string()
    ))
    .unwrap();
    let reference = logits_of(&mut s, &good).expect("the saved folder loads");
    let files: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&good).unwrap().flatten().map(|e| e.path()).collect();
        f.sort();
        f
    };
    assert!(files.iter().any(|f| f.ends_with("checksums.json")) && files.iter().any(|f| f.ends_with("tokenizer.json")));
    let cases: usize = std::env::var("KDL_LOAD_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut rng = Rng(0x10ad_2026);
    let (mut errors, mut intact, mut unchecked_ok) = (0, 0, 0);
    let mut bad = Vec::new();
    for n in 0..cases {
        let case = dir.join(format!("case-{}", n % 4));
        copy_dir(&good, &case);
        let target = &files[rng.below(files.len())];
        let what = damage(&mut rng, &case.join(target.file_name().unwrap()));
        // Every other case without its manifest, as a folder from elsewhere would be: the
        // readers themselves (safetensors, JSON, tokenizer) face the damage and must not
        // panic; a changed tensor byte then loads, as transformers would load it.
        let unchecked = n % 2 == 1 && !target.ends_with("checksums.json");
        if unchecked {
            std::fs::remove_file(case.join("checksums.json")).unwrap();
        }
        let result = catch_unwind(AssertUnwindSafe(|| logits_of(&mut Session::capture(), &case)));
        if unchecked {
            match result {
                Err(_) => bad.push(format!("panic without a manifest: {what}")),
                Ok(Err(e)) if e.contains("panicked") => bad.push(format!("{what}: {e}")),
                Ok(_) => unchecked_ok += 1,
            }
            continue;
        }
        match result {
            Err(_) => bad.push(format!("panic: {what}")),
            Ok(Err(e)) => {
                errors += 1;

                if e.contains("panicked") || e.contains("backtrace") {
                    bad.push(format!("{what}: {e}"));
                }
            }
            // A load only counts as intact if it is the same model.
            Ok(Ok(l)) if l == reference => intact += 1,
            Ok(Ok(_)) => bad.push(format!("silent load of changed weights: {what}")),
        }
    }
    eprintln!("load fuzz: {cases} damaged folders: with checksums {errors} refused with an error, {intact} still intact; {unchecked_ok} without a manifest read without a panic");
    assert!(bad.is_empty(), "{} bad outcomes:\n{}", bad.len(), bad.join("\n"));
    assert!(errors > cases / 3, "damage with a manifest is refused ({errors} of {cases})");
    std::fs::remove_dir_all(&dir).ok();
}
