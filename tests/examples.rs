//! The examples run as the README says: every script checks, the card's line trains on
//! the real teacher, and the quickstart's distilled student beats the same student
//! trained without a teacher (its own last line says so). Each run gets its own cache
//! of run folders under target/, so a rerun starts fresh.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// One example trains at a time: each uses every core, and several at once on a small
/// machine oversubscribe it (together they took 3× as long as one after another).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn kdl(args: &[&str]) -> (bool, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_kdl")).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A copy of an example beside the bundled data, writing its runs into a fresh folder.
fn staged(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/examples-test/{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::fs::read_to_string(examples().join(name)).unwrap();
    let data = examples().join("data").display().to_string();
    let script = dir.join(name);
    std::fs::write(&script, src.replace("\"data/", &format!("\"{data}/"))).unwrap();
    script
}

#[test]
fn every_example_checks() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("kd") {
            let (ok, out) = kdl(&["check", path.to_str().unwrap()]);
            assert!(ok, "{}:\n{out}", path.display());
        }
    }
}

#[test]
fn the_card_line_trains_on_the_real_teacher() {
    let (ok, out) = kdl(&["run", staged("card.kd").to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("step 20/20") && out.contains("retention"), "{out}");
}

#[test]
fn the_quickstart_distilled_student_beats_training_without_a_teacher() {
    let (ok, out) = kdl(&["run", staged("quickstart.kd").to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.trim_end().ends_with("the teacher helped: true"), "{out}");
}

/// The Telugu seed's Approach 3: the hard set's perplexity drops after LoRA replay, and
/// the seed's table (teacher / direct / replay) closes the run.
#[test]
fn telugu_hard_set_replay_lowers_the_hard_set_loss() {
    let (ok, out) = kdl(&["run", staged("telugu_lora_replay.kd").to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("replay lowered the hard-set ppl: true"), "{out}");
    assert!(out.contains("◀ kept") && out.contains("hard set saved to"), "{out}");
    for row in ["\nteacher ", "\ndirect ", "\nreplay "] {
        assert!(out.contains(row), "no {row:?} row:\n{out}");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/examples-test/telugu_lora_replay.kd");
    assert!(dir.join("runs/telugu_lora_replay/hard_set.json").is_file());
    assert!(dir.join("runs/telugu-replay/merged/model.safetensors").is_file());
    assert!(out.contains("student-q8_0.gguf as q8_0"), "{out}");
    assert!(dir.join("runs/telugu-replay/student-q8_0.gguf").is_file());
}

#[test]
fn progressive_chain_and_direct_share_one_table() {
    let (ok, out) = kdl(&["run", staged("progressive.kd").to_str().unwrap()]);
    assert!(ok, "{out}");
    let table = out.split("stage      params").nth(1).unwrap_or_else(|| panic!("no stage table:\n{out}"));
    for row in ["\nteacher ", "\nhalf ", "\nquarter ", "\ndirect "] {
        assert!(table.contains(row), "no {row:?} row:\n{out}");
    }
    // The better of the two final students is exported for llama.cpp.
    assert!(out.contains("exporting quarter") || out.contains("exporting direct"), "{out}");
    assert!(out.contains("progressive.gguf as q8_0"), "{out}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/examples-test/progressive.kd");
    assert!(dir.join("runs/progressive.gguf").is_file());
}

#[test]
fn merge_example_evaluates_every_model_on_both_languages() {
    let (ok, out) = kdl(&["run", staged("merge.kd").to_str().unwrap()]);
    assert!(ok, "{out}");
    for row in ["[\"parent\", [", "[\"ties\", [", "[\"linear\", ["] {
        assert!(out.contains(row), "no {row} row:\n{out}");
    }
    assert!(out.contains("ties merge of 2 models"), "{out}");
}

/// The seed-004 comparison, shortened to 12 steps a stage: both students train on the
/// real teacher (the second from the first's teacher cache), the table has both rows,
/// and the winner is exported to Q4_K_M with llama-quantize's per-tensor types.
#[test]
fn deep_narrow_and_shallow_wide_share_a_table_and_the_winner_exports() {
    let script = staged("deep_narrow.kd");
    let src = std::fs::read_to_string(&script).unwrap();
    assert!(src.contains("steps=120"), "the example's run length moved: update this test");
    std::fs::write(&script, src.replace("steps=120", "steps=12").replace("warmup(20)", "warmup(2)")).unwrap();
    let (ok, out) = kdl(&["run", script.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("the teacher is not run"), "the second student reads the first's teacher cache: {out}");
    let table = out.split("stage      params").nth(1).unwrap_or_else(|| panic!("no stage table:\n{out}"));
    assert!(table.contains("\ndeep ") && table.contains("\nwide "), "{out}");
    let params: Vec<&str> = out.lines().find(|l| l.starts_with("params: deep")).unwrap_or_else(|| panic!("{out}")).split_whitespace().collect();
    let (deep, wide): (f64, f64) = (params[2].parse().unwrap(), params[5].parse().unwrap());
    assert!((deep - wide).abs() / wide < 0.01, "equal sizes: {deep} vs {wide}");
    assert!(out.contains("→ the winner: deep") || out.contains("→ the winner: wide"), "{out}");
    assert!(out.contains("deep_narrow.gguf as q4_k_m") && out.contains("as llama-quantize does"), "{out}");
    assert!(script.parent().unwrap().join("runs/deep_narrow.gguf").is_file());
}

/// The seed-001 pipeline, shortened to 3 training steps and 12-token answers: the
/// teacher's answers are written as chat data without the persona's system prompt, the
/// adapter trains on their assistant tokens, and one table scores the student before and
/// after; the Bengali table's rouge-score column is 0 by construction, kdl's is not.
#[test]
fn chat_distillation_scores_the_student_before_and_after_in_one_table() {
    let script = staged("chat_distill.kd");
    let src = std::fs::read_to_string(&script).unwrap();
    assert!(src.contains("epochs=4") && src.contains("max_new=40"), "the example's run length moved: update this test");
    std::fs::write(&script, src.replace("epochs=4", "steps=3").replace("max_new=40", "max_new=12")).unwrap();
    let (ok, out) = kdl(&["run", script.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("synthesize: 48 new answers") && out.contains("synthesize: 16 new answers"), "{out}");
    let runs = script.parent().unwrap().join("runs/chat");
    let answers = std::fs::read_to_string(runs.join("answers.jsonl")).unwrap();
    assert_eq!(answers.lines().count(), 48);
    assert!(!answers.contains("Kedi, the ship's cat of the whaling ship Pequod. You love"), "the persona stays out of the data");
    assert!(out.contains("in assistant turns"), "{out}");
    let table = out.split("evaluate: 16 prompts, greedy, max_new=12").nth(1).unwrap_or_else(|| panic!("no table:\n{out}"));
    assert!(table.contains("\nstudent  ") && table.contains("\nstudent + LoRA  "), "{out}");
    let bengali = out.split("evaluate: 12 prompts").nth(1).unwrap_or_else(|| panic!("no Bengali table:\n{out}"));
    let row: Vec<&str> = bengali.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(row.last(), Some(&"0.0000"), "rouge-score's tokenizer deletes Bengali: {bengali}");
    assert!(out.contains("paraphrase: bleu 40.05 · intl 48.88 · chrf 64.69 · rouge_l 0.75 · rouge-score's 0"), "{out}");
    assert_eq!(std::fs::read_to_string(runs.join("scored.jsonl")).unwrap().lines().count(), 32);
}
