//! Damaged files never load silently and never panic: a saved model folder (weights,
//! config, tokenizer, checksums) and a training checkpoint are copied and damaged —
//! truncated, or bytes flipped in the safetensors header, the tensor data, the JSON and
//! the tokenizer — and every `load` or `resume` must give a one-line error or, only
//! where what it reads is still intact, the same model. KDL_LOAD_FUZZ_CASES sets the count.

use kdl::eval::Value;
use kdl::Session;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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
