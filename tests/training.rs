//! Training end to end, as a user runs it (`kdl run script.kd`): metrics and checkpoints
//! on disk, a run killed with SIGKILL and resumed gives the same loss curve as an
//! uninterrupted one, Ctrl-C saves and exits cleanly, a diverging loss stops with the
//! step named, and gradient accumulation does not change the loss scale. Tiny random
//! models and a BPE of the bundled corpus keep each run to seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A script distilling a random 2-layer teacher into a 1-layer student on Moby-Dick.
fn script(dir: &Path, train_args: &str, lr: &str) -> PathBuf {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let text = format!(
        "tokenizer bpe(vocab=512, from={corpus:?})\n\
         teacher llama(layers=2, dim=64, heads=4, seed=1)\n\
         student llama(layers=1, dim=64, heads=4, kv_heads=2, seed=2)\n\
         data text({corpus:?}).split(0.9)\n\
         loss 0.5*ce + 0.5*kl(T=2)*T^2\n\
         optim adamw(lr={lr})\n\
         train({train_args})\n",
        corpus = corpus.display().to_string()
    );
    let path = dir.join("run.kd");
    std::fs::write(&path, text).unwrap();
    path
}

fn kdl(script: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kdl"));
    c.arg("run").arg(script).env("KDL_CACHE", script.parent().unwrap().join("cache"));
    c
}

fn run_ok(script: &Path) -> String {
    let out = kdl(script).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kdl failed:\n{text}");
    text
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (step, loss) of every training row.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    metrics(run).iter().filter(|r| r.get("loss").is_some()).map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap())).collect()
}

fn wait_for(what: impl Fn() -> bool, child: &mut Child) {
    let start = Instant::now();
    while !what() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the test could interrupt it");
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_writes_metrics_checkpoints_and_a_summary() {
    let dir = workdir("basic");
    let run = dir.join("runs/basic");
    let out = run_ok(&script(&dir, &format!("steps=6, batch=4, seq=32, eval_every=3, save_every=3, out={:?}", run.display().to_string()), "1e-3"));
    assert!(out.contains("teacher") && out.contains("retention"), "summary table:\n{out}");
    let rows = metrics(&run);
    let steps: Vec<&serde_json::Value> = rows.iter().filter(|r| r.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 6);
    for key in ["step", "loss", "lr", "tokens_per_s", "ce", "kl"] {
        assert!(steps[0].get(key).is_some(), "metrics rows have {key}: {}", steps[0]);
    }
    // Each row's loss is its weighted terms: 0.5·ce + 0.5·4·kl.
    let r = steps[5];
    let recombined = 0.5 * r["ce"].as_f64().unwrap() + 2.0 * r["kl"].as_f64().unwrap();
    assert!((recombined - r["loss"].as_f64().unwrap()).abs() < 1e-4, "{r}");
    assert!(rows.iter().any(|r| r.get("val_ppl").is_some() && r.get("agreement").is_some()), "evaluation rows");
    for step in ["step-000003", "step-000006"] {
        let ckpt = run.join(step);
        for f in ["config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "run_state.json"] {
            assert!(ckpt.join(f).is_file(), "{step}/{f}");
        }
    }
    // The checkpoint is a model folder the language loads.
    let check = dir.join("load.kd");
    std::fs::write(&check, format!("let m = load({:?})\nprint m.layers, m.vocab", run.join("step-000006").display().to_string())).unwrap();
    assert!(run_ok(&check).contains("1 512"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_killed_run_resumes_with_the_same_loss_curve() {
    let dir = workdir("resume");
    let (whole, broken) = (dir.join("runs/whole"), dir.join("runs/broken"));
    let args = |out: &Path, extra: &str| format!("steps=40, batch=4, seq=64, save_every=10, out={:?}{extra}", out.display().to_string());
    let reference = script(&dir, &args(&whole, ""), "3e-3");
    run_ok(&reference);
    let first = script(&dir, &args(&broken, ""), "3e-3");
    let mut child = kdl(&first).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(|| broken.join("step-000020").is_dir(), &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let killed_at = losses(&broken).len();
    assert!(killed_at < 40, "killed mid-run (had {killed_at} steps)");
    let resumed = script(&dir, &format!("steps=40, batch=4, seq=64, save_every=10, resume={:?}", broken.display().to_string()), "3e-3");
    assert!(run_ok(&resumed).contains("resuming from"));
    let (a, b) = (losses(&whole), losses(&broken));
    assert_eq!(a.len(), 40);
    assert_eq!(a, b, "the resumed run's losses equal the uninterrupted run's");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ctrl_c_saves_and_exits_cleanly() {
    let dir = workdir("sigint");
    let run = dir.join("runs/x");
    let s = script(&dir, &format!("steps=100000, batch=4, seq=64, out={:?}", run.display().to_string()), "1e-3");
    let mut child = kdl(&s).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(|| run.join("metrics.jsonl").is_file() && losses(&run).len() >= 2, &mut child);
    unsafe { libc_kill(child.id() as i32, 2) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("stopped by Ctrl-C after step"), "{text}");
    let done = losses(&run).len() as u64;
    assert!(run.join(format!("step-{done:06}")).join("run_state.json").is_file(), "checkpoint of step {done}");
    std::fs::remove_dir_all(&dir).ok();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn a_diverging_loss_stops_naming_the_step() {
    let dir = workdir("nan");
    let run = dir.join("runs/nan");
    let out = kdl(&script(&dir, &format!("steps=50, batch=4, seq=32, clip=0, save_every=1, out={:?}", run.display().to_string()), "1e12")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the loss became") && text.contains("at step") && text.contains("last good checkpoint"), "{text}");
    // Every checkpoint on disk is from a step whose loss was finite.
    let rows = losses(&run);
    assert!(rows.iter().all(|(_, l)| l.is_finite()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gradient_accumulation_keeps_the_loss_scale() {
    let dir = workdir("accumulate");
    let (one, two) = (dir.join("runs/one"), dir.join("runs/two"));
    run_ok(&script(&dir, &format!("steps=3, batch=8, seq=32, out={:?}", one.display().to_string()), "1e-3"));
    run_ok(&script(&dir, &format!("steps=3, batch=4, accumulate=2, seq=32, out={:?}", two.display().to_string()), "1e-3"));
    for ((_, a), (_, b)) in losses(&one).iter().zip(losses(&two).iter()) {
        assert!((a - b).abs() < 1e-4, "batch 8 gives {a}, 2 × batch 4 gives {b}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
