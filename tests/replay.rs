//! Hard-set replay, checkpoint averaging and stage chains, run as a user runs them
//! (`kdl run script.kd`) on tiny random models and the bundled corpus: what `mine` keeps
//! and saves, that its per-block difficulty is the loss `eval` measures, reuse and stale
//! hard sets, an adapter run resumed from its checkpoint, `average` as the mean of the
//! checkpoints, and a `require` gate stopping a chain with its table.

use kdl::engine::checkpoint::load_hf_dir;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Device;

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first 60 KB of the bundled Moby-Dick, so each mining pass takes a moment.
fn corpus(dir: &Path) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt")).unwrap();
    let cut = (60_000..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    let path = dir.join("corpus.txt");
    std::fs::write(&path, &text[..cut]).unwrap();
    path.display().to_string()
}

/// A tokenizer, a 2-layer teacher and a 1-layer student on the corpus, then `body`.
fn script(dir: &Path, body: &str) -> PathBuf {
    let text = format!(
        "tokenizer bpe(vocab=400, from={c:?})\n\
         teacher llama(layers=2, dim=64, heads=4, seed=1)\n\
         student llama(layers=1, dim=32, heads=4, seed=2)\n\
         data text({c:?}).split(0.9)\n\
         loss 0.5*ce + 0.5*kl(T=2)*T^2\n{body}",
        c = corpus(dir)
    );
    let path = dir.join("run.kd");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(script: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).arg("run").arg(script).env("KDL_CACHE", script.parent().unwrap().join("cache")).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn run_ok(script: &Path) -> String {
    let (ok, text) = run(script);
    assert!(ok, "kdl failed:\n{text}");
    text
}

fn hard_set(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn mine_keeps_the_hardest_blocks_and_saves_them() {
    let dir = workdir("mine");
    let text = run_ok(&script(
        &dir,
        "train(steps=3, batch=4, seq=32)\n\
         let hard = mine(difficulty=ce(student) - ce(teacher), keep=top(20%), seq=32, out=\"top.json\")\n\
         let above = mine(keep=above(quantile(0.8)), seq=32, out=\"above.json\")\n\
         let again = mine(from=\"top.json\")\n\
         print hard\n\
         print again\n",
    ));
    assert!(text.contains("◀ kept") && text.contains("kept "), "{text}");
    let top = hard_set(&dir.join("top.json"));
    let scores = numbers(&top["difficulties"]);
    let kept: Vec<usize> = top["indices"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let n = top["blocks"].as_u64().unwrap() as usize;
    assert_eq!(scores.len(), n);
    assert_eq!(kept.len(), (0.2 * n as f64).round() as usize);
    assert_eq!(top["seq"], 32);
    assert_eq!(top["difficulty"], "ce(student) - ce(teacher)");
    // Every kept block is at least as hard as every block left out.
    let lowest_kept = kept.iter().map(|&i| scores[i]).fold(f64::INFINITY, f64::min);
    let highest_left = (0..n).filter(|i| !kept.contains(i)).map(|i| scores[i]).fold(f64::NEG_INFINITY, f64::max);
    assert!(lowest_kept >= highest_left, "kept {lowest_kept} < left {highest_left}");
    // above(quantile(0.8)): strictly above its threshold, about a fifth of the blocks.
    let above = hard_set(&dir.join("above.json"));
    let threshold = above["threshold"].as_f64().unwrap();
    let scores = numbers(&above["difficulties"]);
    let kept = above["indices"].as_array().unwrap().len();
    assert_eq!(kept, scores.iter().filter(|&&s| s > threshold).count());
    assert!((kept as f64 / n as f64 - 0.2).abs() < 0.02, "kept {kept} of {n}");
    // Reused from disk: the same blocks.
    assert!(text.contains(&format!("hard set from {}: {} of {n} blocks", dir.join("top.json").display(), (0.2 * n as f64).round())), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `difficulty=ce` every block's value is its own cross-entropy, so over all blocks
/// (full blocks have equal token counts) their mean is what `eval` reports for them.
#[test]
fn a_blocks_difficulty_is_the_loss_eval_measures() {
    let dir = workdir("consistent");
    let text = run_ok(&script(&dir, "let all = mine(difficulty=ce, keep=top(100%), seq=32, out=\"all.json\")\neval(student, data=all, seq=32)\n"));
    let scores = numbers(&hard_set(&dir.join("all.json"))["difficulties"]);
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    // Labelled by the data's name, not "val": these are the mined blocks.
    let line = text.lines().find(|l| l.starts_with("all: loss ")).unwrap_or_else(|| panic!("{text}"));
    let eval_loss: f64 = line["all: loss ".len()..].split_whitespace().next().unwrap().parse().unwrap();
    assert!((mean - eval_loss).abs() < 1e-3, "mean difficulty {mean} vs eval loss {eval_loss}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hard_set_trains_only_with_the_seq_it_was_mined_with() {
    let dir = workdir("stale");
    let (ok, text) = run(&script(&dir, "let hard = mine(keep=top(10%), seq=32)\ntrain(on=hard, steps=1, batch=2, seq=64)\n"));
    assert!(!ok, "{text}");
    assert!(text.contains("the hard set was mined from blocks of seq=32; train it with seq=32"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // A corpus that changed since the hard set was saved.
    std::fs::write(
        dir.join("stale.json"),
        serde_json::json!({"seq": 32, "blocks": 3, "indices": [0, 2], "difficulties": [1.0, 0.0, 2.0]}).to_string(),
    )
    .unwrap();
    let (ok, text) = run(&script(&dir, "train(on=mine(from=\"stale.json\"), steps=1, batch=2, seq=32)\n"));
    assert!(!ok && text.contains("the hard set was mined from 3 training blocks, but the data now has"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_adapter_run_resumes_from_its_checkpoint() {
    let dir = workdir("adapter-resume");
    let body = "let adapter = lora(student, rank=4)\n\
                train(adapter, on=mine(keep=top(50%), seq=32), steps=6, batch=2, seq=32, save_every=3, out=\"runs/a\")\n";
    run_ok(&script(&dir, body));
    let full = std::fs::read_to_string(dir.join("runs/a/metrics.jsonl")).unwrap();
    // The same run, stopped after 3 steps and continued.
    let dir2 = workdir("adapter-resume-2");
    run_ok(&script(&dir2, &body.replace("steps=6", "steps=3").replace("save_every=3, ", "")));
    let text = run_ok(&script(&dir2, &body.replace(", out=\"runs/a\"", ", resume=\"runs/a\"")));
    assert!(text.contains("resuming from"), "{text}");
    assert!(std::fs::read_dir(dir2.join("runs/a/step-000006")).unwrap().any(|e| e.unwrap().file_name() == "adapter_model.safetensors"));
    let losses = |s: &str| -> Vec<String> {
        s.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter_map(|v| v.get("loss").map(|x| format!("{:.6}", x.as_f64().unwrap()))).collect()
    };
    let resumed = std::fs::read_to_string(dir2.join("runs/a/metrics.jsonl")).unwrap();
    assert_eq!(losses(&full), losses(&resumed), "the resumed adapter run's losses differ");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn average_is_the_mean_of_the_checkpoints() {
    let dir = workdir("average");
    run_ok(&script(
        &dir,
        "train(steps=4, batch=2, seq=32, save_every=2, out=\"runs/a\")\n\
         save average([\"runs/a/step-000002\", \"runs/a/step-000004\"]) to \"avg\"\n",
    ));
    let a = load_hf_dir(&dir.join("runs/a/step-000002"), Device::Cpu).unwrap();
    let b = load_hf_dir(&dir.join("runs/a/step-000004"), Device::Cpu).unwrap();
    let avg = load_hf_dir(&dir.join("avg"), Device::Cpu).unwrap();
    let (va, vb) = (a.vs.variables(), b.vs.variables());
    for (name, t) in avg.vs.variables() {
        let want = (&va[&name] + &vb[&name]) / 2.0;
        let d = (&t - &want).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{name}: {d}");
    }
    assert!(dir.join("avg/tokenizer.json").is_file(), "the average keeps the tokenizer");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_gate_stops_the_chain_and_prints_the_table() {
    let dir = workdir("gate");
    let (ok, text) = run(&script(
        &dir,
        "stage first {\n  train(steps=2, batch=2, seq=32)\n  require retention > 0%\n}\n\
         stage second {\n  teacher previous.student\n  student llama(layers=1, dim=16, heads=4, seed=3)\n  train(steps=2, batch=2, seq=32)\n  require retention > 1000%\n}\n\
         stage never {\n  print \"this stage ran\"\n}\n",
    ));
    assert!(!ok, "{text}");
    assert!(text.contains("the chain stopped: this gate failed with retention"), "{text}");
    assert!(!text.contains("this stage ran"), "{text}");
    let table = text.split("stage      params").nth(1).unwrap_or_else(|| panic!("no table:\n{text}"));
    assert!(table.contains("\nteacher ") && table.contains("\nfirst ") && table.contains("\nsecond "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stage's figures are its row of the table, and `best` picks the stage that did best:
/// a student trained 30 steps beats the same student trained 1 step on val ppl, the
/// winner's student exports, and ranking what cannot be ranked says why.
#[test]
fn best_picks_the_stage_with_the_better_figures() {
    let dir = workdir("best");
    let text = run_ok(&script(
        &dir,
        "stage short {\n  train(steps=1, batch=2, seq=32)\n}\n\
         stage long {\n  student llama(layers=1, dim=32, heads=4, seed=2)\n  train(steps=30, batch=4, seq=32, lr=3e-3)\n}\n\
         let w = best([short, long])\n\
         print \"winner\", w.name, round(w.val_ppl, 2), round(long.val_ppl, 2), short.val_ppl > long.val_ppl\n\
         print \"by retention\", best([short, long], by=\"retention\").name, long.retention > 0\n\
         print w\n\
         export(w.student, \"w.gguf\", quant=\"q8_0\")\n",
    ));
    let line = text.lines().find(|l| l.starts_with("winner")).unwrap_or_else(|| panic!("{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((fields[1], fields[4]), ("long", "true"), "{text}");
    assert_eq!(fields[2], fields[3], "the winner's val ppl is the long stage's: {text}");
    assert!(text.contains("by retention long true"), "{text}");
    assert!(text.contains("stage long") && text.contains("trained ") && text.contains("retention"), "print shows the figures: {text}");
    assert!(dir.join("w.gguf").is_file(), "{text}");

    let (ok, text) = run(&script(&dir, "stage idle {\n  print 1\n}\nprint best([idle]).name\n"));
    assert!(!ok && text.contains("stage `idle` trained nothing, so it cannot be ranked"), "{text}");
    let (ok, text) = run(&script(&dir, "stage a {\n  train(steps=1, batch=2, seq=32)\n}\nprint best([a], by=\"params\")\n"));
    assert!(!ok && text.contains("ranks stages by \"val_ppl\", \"val_loss\" or \"retention\""), "{text}");
    let (ok, text) = run(&script(&dir, "stage idle {\n  print 1\n}\nprint idle.val_ppl\n"));
    assert!(!ok && text.contains("stage `idle` trained nothing, so it has no `val_ppl`") && !text.contains("panicked"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
