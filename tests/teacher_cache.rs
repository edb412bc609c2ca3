//! The offline teacher cache end to end (`train(teacher_cache=topk(k))` and `sample(n)`),
//! as a user runs it: the first run fills it while training, a second run reads it and never runs the
//! teacher, with the same losses step for step; a run killed while filling it resumes
//! with the stored shards and gives the same losses as an uninterrupted one; a damaged
//! shard is named, deleted and recomputed; a loss the cache cannot serve is an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-tcache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A random 2-layer teacher distilled into a 1-layer student on Moby-Dick.
fn script(dir: &Path, loss: &str, train_args: &str) -> PathBuf {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt").display().to_string();
    let text = format!(
        "tokenizer bpe(vocab=512, from={corpus:?})\n\
         teacher llama(layers=2, dim=64, heads=4, seed=1)\n\
         student llama(layers=1, dim=64, heads=4, seed=2)\n\
         data text({corpus:?}).split(0.99)\n\
         loss {loss}\n\
         train({train_args})\n"
    );
    let path = dir.join("run.kd");
    std::fs::write(&path, text).unwrap();
    path
}

/// `kdl run`, with its own kdl cache folder (tokens, BPE) beside the script and the
/// teacher cache where `teacher_cache` says.
fn kdl(script: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kdl"));
    c.arg("run").arg(script).env("KDL_CACHE", script.parent().unwrap().join("kdl-cache"));
    c
}

fn run(script: &Path) -> (bool, String) {
    let out = kdl(script).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn run_ok(script: &Path) -> String {
    let (ok, text) = run(script);
    assert!(ok, "kdl failed:\n{text}");
    text
}

/// (step, loss bits) of every training row: bit for bit, not to a tolerance.
fn losses(run: &Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r.get("loss").is_some())
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap().to_bits()))
        .collect()
}

fn shards(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for key in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        found.extend(std::fs::read_dir(key.path()).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "kdc")));
    }
    found.sort();
    found
}

const LOSS: &str = "0.5*ce + 0.5*kl(T=2)*T^2";

fn args(cache: &Path, key: &str, run: &Path, steps: u64) -> String {
    args_with("topk(16", cache, key, run, steps)
}

/// `mode` is the cache's call up to its path: "topk(16" or "sample(50".
fn args_with(mode: &str, cache: &Path, key: &str, run: &Path, steps: u64) -> String {
    format!("steps={steps}, batch=4, seq=32, save_every=3, teacher_cache={mode}, path={:?}), {key}={:?}", cache.display().to_string(), run.display().to_string())
}

/// The B/token the end-of-run line reports.
fn bytes_per_token(text: &str) -> f64 {
    let line = text.lines().rev().find(|l| l.contains("B/token,")).unwrap_or_else(|| panic!("no size line in {text}"));
    let before = line.split(" B/token").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_second_run_reads_the_cache_and_gives_the_same_losses() {
    let dir = workdir("reuse");
    let cache = dir.join("tc");
    let first = run_ok(&script(&dir, LOSS, &args(&cache, "out", &dir.join("runs/a"), 8)));
    assert!(first.contains("empty; it fills as the run trains"), "{first}");
    assert!(first.contains("B/token"), "the size is reported: {first}");
    // The validation pass fills the validation blocks, so an 8-step run stores its 32
    // training blocks and every validation block: a second run finds those complete.
    let second = run_ok(&script(&dir, LOSS, &args(&cache, "out", &dir.join("runs/b"), 8)));
    assert!(second.contains("holds every block this run reads (") && second.contains("the teacher is not run"), "{second}");
    assert!(second.contains("(0 this run)"), "a second run of the same steps computes nothing: {second}");
    assert_eq!(losses(&dir.join("runs/a")), losses(&dir.join("runs/b")), "reading the cache gives the losses computing it gave");
    // Another loss over the same teacher and data reads the same cache: it is keyed by
    // the teacher, the data and seq, not by the loss or its temperature.
    let other = run_ok(&script(&dir, "kl(T=4)*T^2", &args(&cache, "out", &dir.join("runs/c"), 8)));
    assert!(other.contains("(0 this run)"), "{other}");
    // A different teacher is a different key.
    let text = std::fs::read_to_string(dir.join("run.kd")).unwrap().replace("seed=1)", "seed=3)");
    std::fs::write(dir.join("run.kd"), text).unwrap();
    let changed = run_ok(&dir.join("run.kd"));
    assert!(changed.contains("empty; it fills"), "another teacher must not read this cache: {changed}");
    std::fs::remove_dir_all(&dir).ok();
}

/// RS-KD: `sample(50)` keeps 50 draws per position as distinct ids with counts. It is
/// filled while training and read back with the same losses, like top-k, and its entries
/// are smaller than top-k's whenever the draws repeat.
#[test]
fn a_sampled_cache_fills_once_and_a_second_run_reads_it_bit_identical() {
    let dir = workdir("sampled");
    let cache = dir.join("tc");
    let loss = "0.5*ce + 0.5*kl()";
    let first = run_ok(&script(&dir, loss, &args_with("sample(50", &cache, "out", &dir.join("runs/a"), 8)));
    assert!(first.contains("50 draws per position from the teacher"), "{first}");
    // Per position: a byte of distinct ids, 3 bytes (u16 id + count) each, and the target.
    let per_token = bytes_per_token(&first);
    assert!(per_token > 1.0 + 3.0 + 4.0 && per_token <= 1.0 + 50.0 * 3.0 + 4.0, "{per_token} B/token");
    let second = run_ok(&script(&dir, loss, &args_with("sample(50", &cache, "out", &dir.join("runs/b"), 8)));
    assert!(second.contains("the teacher is not run") && second.contains("(0 this run)"), "{second}");
    assert_eq!(losses(&dir.join("runs/a")), losses(&dir.join("runs/b")), "reading the sampled cache gives the losses drawing it gave");
    // A top-k cache of the same teacher and data is another key.
    let topk = run_ok(&script(&dir, loss, &args_with("topk(16", &cache, "out", &dir.join("runs/c"), 2)));
    assert!(topk.contains("empty; it fills"), "{topk}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_run_killed_while_filling_the_cache_resumes_bit_identical() {
    killed_and_resumed("topk(16", LOSS);
}

#[test]
fn a_run_killed_while_filling_a_sampled_cache_resumes_bit_identical() {
    killed_and_resumed("sample(50", "0.5*ce + 0.5*kl()");
}

fn killed_and_resumed(mode: &str, loss: &str) {
    let dir = workdir(&format!("kill-{}", &mode[..4]));
    let cache_whole = dir.join("tc-whole");
    let cache_broken = dir.join("tc-broken");
    let args = |cache: &Path, key: &str, run: &Path, steps: u64| args_with(mode, cache, key, run, steps);
    run_ok(&script(&dir, loss, &args(&cache_whole, "out", &dir.join("runs/whole"), 30)));
    let broken = dir.join("runs/broken");
    let mut child = kdl(&script(&dir, loss, &args(&cache_broken, "out", &broken, 30))).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    // Past the second checkpoint (and so the second shard), before the end.
    while losses_so_far(&broken) < 8 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the test could kill it");
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!shards(&cache_broken).is_empty(), "the killed run left whole shards");
    let text = run_ok(&script(&dir, loss, &args(&cache_broken, "resume", &broken, 30)));
    assert!(text.contains("blocks not yet stored are computed by the teacher and added"), "the partial cache is resumed, not discarded: {text}");
    assert_eq!(losses(&dir.join("runs/whole")), losses(&broken), "killed and resumed while filling the cache, the losses differ");
    std::fs::remove_dir_all(&dir).ok();
}

fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default().lines().filter(|l| l.contains("\"loss\"")).count()
}

#[test]
fn a_damaged_shard_is_named_and_recomputed() {
    let dir = workdir("damaged");
    let cache = dir.join("tc");
    run_ok(&script(&dir, LOSS, &args(&cache, "out", &dir.join("runs/a"), 6)));
    let shard = shards(&cache).into_iter().next().expect("a shard was written");
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let text = run_ok(&script(&dir, LOSS, &args(&cache, "out", &dir.join("runs/b"), 6)));
    let name = shard.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.lines().any(|l| l.contains(&name) && l.contains("damaged (checksum mismatch)") && l.contains("computed again")), "{text}");
    assert_eq!(losses(&dir.join("runs/a")), losses(&dir.join("runs/b")), "the recomputed blocks give the first run's losses");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_loss_the_cache_cannot_serve_is_an_error_before_training() {
    let dir = workdir("errors");
    let cache = dir.join("tc");
    let (ok, text) = run(&script(&dir, "kl(T=2)*T^2 + mse()", &args(&cache, "out", &dir.join("runs/a"), 2)));
    assert!(!ok && text.contains("compares hidden states, which the teacher cache does not keep"), "{text}");
    let (ok, text) = run(&script(&dir, "ce", &args(&cache, "out", &dir.join("runs/a"), 2)));
    assert!(!ok && text.contains("does not use the teacher, so there is nothing to cache"), "{text}");
    let (ok, text) = run(&script(&dir, LOSS, "steps=2, teacher_cache=topk(0)"));
    assert!(!ok && text.contains("1 to 65536"), "{text}");
    // Draws estimate the teacher at T = 1: a tempered or other divergence needs topk.
    let (ok, text) = run(&script(&dir, LOSS, &args_with("sample(50", &cache, "out", &dir.join("runs/a"), 2)));
    assert!(!ok && text.contains("sample(50) cannot serve kl(T=2)") && text.contains("at T=1 only") && text.contains("topk(64)"), "{text}");
    let (ok, text) = run(&script(&dir, "rkl()", &args_with("sample(50", &cache, "out", &dir.join("runs/a"), 2)));
    assert!(!ok && text.contains("sample(50) cannot serve rkl") && text.contains("for kl only"), "{text}");
    let (ok, text) = run(&script(&dir, "kl()", "steps=2, teacher_cache=sample(300)"));
    assert!(!ok && text.contains("at most 255 draws"), "{text}");
    assert!(!dir.join("runs").exists() && !cache.exists(), "nothing ran");
    std::fs::remove_dir_all(&dir).ok();
}

/// The head of a script: tokenizer, a random teacher and Moby-Dick.
fn head() -> String {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt").display().to_string();
    format!(
        "tokenizer bpe(vocab=512, from={corpus:?})\n\
         teacher llama(layers=2, dim=64, heads=4, seed=1)\n\
         data text({corpus:?}).split(0.99)\n"
    )
}

/// `precompute` fills the cache ahead of training: the run after it finds every block and
/// never runs the teacher, and a second `precompute` has nothing left to do.
#[test]
fn precompute_fills_the_cache_so_training_never_runs_the_teacher() {
    let dir = workdir("precompute");
    let cache = dir.join("tc").display().to_string();
    let text = format!(
        "{}let c = precompute(teacher, data, sample(50, path={cache:?}), seq=32)\n\
         student llama(layers=1, dim=64, heads=4, seed=2)\n\
         loss 0.5*ce + 0.5*kl()\n\
         train(steps=4, batch=4, seq=32, teacher_cache=c, out={:?})\n",
        head(),
        dir.join("runs/a").display().to_string()
    );
    let script = dir.join("pre.kd");
    std::fs::write(&script, &text).unwrap();
    let first = run_ok(&script);
    let ran = first.lines().find(|l| l.starts_with("precompute: the teacher ran on")).unwrap_or_else(|| panic!("{first}"));
    assert!(!ran.contains("ran on 0 blocks"), "{ran}");
    assert!(first.contains("complete (") && first.contains("the teacher is not run"), "{first}");
    assert!(first.lines().filter(|l| l.contains("B/token,")).last().is_some_and(|l| l.contains("(0 this run)")), "training computed nothing: {first}");
    let again = run_ok(&script);
    assert!(again.contains("precompute: the teacher ran on 0 blocks"), "{again}");
    assert_eq!(losses(&dir.join("runs/a")), losses(&dir.join("runs/a-2")), "the same cache, the same losses");
    // A dry run stops at precompute, before the teacher runs.
    let out = kdl(&script).arg("-n").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("precompute") && !said.contains("the teacher ran on"), "{said}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `mine(teacher_cache=...)`: `ce(teacher)` is the stored target log-probability, so the
/// difficulties match mining with the live teacher; the cache keeps the blocks for the
/// next miner or training run, and reading them gives the same hard set bit for bit.
#[test]
fn mining_reads_the_teachers_loss_from_the_cache() {
    let dir = workdir("mine");
    let cache = dir.join("tc").display().to_string();
    let mine = |name: &str, cache_arg: &str| {
        let text = format!(
            "{}student llama(layers=1, dim=64, heads=4, seed=2)\n\
             mine(data, difficulty=ce(student) - ce(teacher), keep=top(20%), seq=32, out={:?}{cache_arg})\n",
            head(),
            dir.join(name).display().to_string()
        );
        let script = dir.join(format!("{name}.kd"));
        std::fs::write(&script, text).unwrap();
        let said = run_ok(&script);
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
        let scores: Vec<f64> = json["difficulties"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        (said, scores, json["indices"].clone())
    };
    let (_, live, live_kept) = mine("live.json", "");
    let with = format!(", teacher_cache=topk(16, path={cache:?})");
    let (said, filled, filled_kept) = mine("filled.json", &with);
    assert!(said.contains("empty; it fills") && !said.contains("(0 this run)"), "{said}");
    let worst = live.iter().zip(&filled).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "ce(teacher) from the cache is off the live teacher's by {worst}");
    assert_eq!(live_kept, filled_kept, "the same hard set");
    let (said, read, _) = mine("read.json", &with);
    assert!(said.contains("the teacher is not run") && said.contains("(0 this run)"), "{said}");
    assert_eq!(filled.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), read.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}
