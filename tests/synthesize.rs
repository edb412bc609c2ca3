//! Teacher-generated chat data and generation scores from scripts, on a tiny random
//! teacher with a BPE of the bundled corpus: `synthesize` writes one conversation per
//! answer, resumes a killed run (a torn last line included) to the same file a clean run
//! writes, feeds `train` (sequence-level KD, loss on the assistant tokens only), and
//! `evaluate` scores models' answers with the metric builtins in one table.

use kdl::eval::Value;
use kdl::Session;
use std::path::{Path, PathBuf};

fn corpus() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    format!("{:?}", p.display().to_string())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-synthesize-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PROMPTS: [&str; 7] = ["Who is Ishmael?", "What is a whale?", "Describe the sea.", "Who is Ahab?", "Why hunt whales?", "What is a harpoon?", "Name a ship."];

/// A session with a tiny teacher (and its tokenizer) and a prompts file in `dir`.
fn teacher(dir: &Path) -> Session {
    let mut s = Session::capture();
    s.eval_str(&format!("tokenizer bpe(vocab=400, from={})\nteacher llama(layers=2, dim=64, heads=4, kv_heads=2, max_seq=256, seed=5)", corpus())).unwrap();
    let lines: Vec<String> = PROMPTS.iter().map(|p| serde_json::json!({ "prompt": p }).to_string()).collect();
    std::fs::write(dir.join("prompts.jsonl"), lines.join("\n") + "\n").unwrap();
    s.take_output();
    s
}

fn run(s: &mut Session, src: &str) -> Option<Value> {
    match s.eval_str(src) {
        Ok(v) => v,
        Err(e) => panic!("{}", s.render(&e.diagnostics, false)),
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn synthesize(dir: &Path, out: &str, extra: &str) -> String {
    format!("synthesize(prompts={:?}, out={:?}, max_new=12, seed=3, progress=false{extra})", dir.join("prompts.jsonl").display().to_string(), dir.join(out).display().to_string())
}

#[test]
fn synthesize_writes_a_conversation_per_answer_and_a_rerun_resumes() {
    let dir = temp_dir("resume");
    let mut s = teacher(&dir);
    run(&mut s, &format!("let d = {}", synthesize(&dir, "clean.jsonl", ", batch=1, T=0.8")));
    let said = s.take_output();
    assert!(said.contains("synthesize: 7 new answers"), "{said}");
    let clean = lines(&dir.join("clean.jsonl"));
    assert_eq!(clean.len(), PROMPTS.len());
    for (line, prompt) in clean.iter().zip(PROMPTS) {
        let m = line["messages"].as_array().unwrap();
        assert_eq!((m[0]["role"].as_str(), m[0]["content"].as_str()), (Some("user"), Some(prompt)));
        assert_eq!(m[1]["role"], "assistant");
        assert!(!m[1]["content"].as_str().unwrap().is_empty());
    }
    // A killed run: three answers written, the fourth torn mid-line.
    let text = std::fs::read_to_string(dir.join("clean.jsonl")).unwrap();
    let keep: usize = text.split_inclusive('\n').take(3).map(str::len).sum();
    std::fs::write(dir.join("killed.jsonl"), format!("{}{}", &text[..keep], &text[keep..keep + 20])).unwrap();
    run(&mut s, &synthesize(&dir, "killed.jsonl", ", batch=1, T=0.8"));
    let said = s.take_output();
    assert!(said.contains("resuming, 3 of 7 answers already written") && said.contains("4 new answers"), "{said}");
    assert_eq!(std::fs::read_to_string(dir.join("killed.jsonl")).unwrap(), text, "the resumed file is the clean run's");
    // Nothing left to do the third time; n=2 adds a second answer to every prompt.
    run(&mut s, &synthesize(&dir, "killed.jsonl", ", batch=1, T=0.8"));
    assert!(s.take_output().contains("synthesize: 0 new answers"));
    run(&mut s, &synthesize(&dir, "killed.jsonl", ", batch=4, n=2, T=0.8"));
    assert_eq!(lines(&dir.join("killed.jsonl")).len(), 2 * PROMPTS.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batched_answers_are_the_answers_of_one_prompt_at_a_time() {
    let dir = temp_dir("batched");
    let mut s = teacher(&dir);
    // Sampled: each answer has its own seed, so the batch it shares does not matter.
    run(&mut s, &synthesize(&dir, "one.jsonl", ", batch=1, T=0.8"));
    run(&mut s, &synthesize(&dir, "many.jsonl", ", batch=4, T=0.8"));
    let (one, many) = (lines(&dir.join("one.jsonl")), lines(&dir.join("many.jsonl")));
    assert!(one.iter().all(|l| !l["messages"][1]["content"].as_str().unwrap().is_empty()));
    assert_eq!(one, many);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synthesized_data_trains_on_the_assistant_tokens_only() {
    let dir = temp_dir("train");
    let mut s = teacher(&dir);
    run(&mut s, &format!("let d = {}", synthesize(&dir, "answers.jsonl", ", system=\"Be brief.\"")));
    let first = &lines(&dir.join("answers.jsonl"))[0]["messages"];
    assert_eq!((first[0]["role"].as_str(), first[0]["content"].as_str()), (Some("system"), Some("Be brief.")));
    s.take_output();
    run(&mut s, "student llama(layers=1, dim=32, heads=2, max_seq=256, seed=1)\nloss ce + kl(T=2)\ntrain(on=d, steps=2, batch=2, seq=64)");
    let said = s.take_output();
    assert!(said.contains("7 conversations") && said.contains("in assistant turns"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn evaluate_scores_every_model_with_every_metric_in_one_table() {
    let dir = temp_dir("evaluate");
    let mut s = teacher(&dir);
    // Sampled, so the tiny random teacher writes text (greedy, it repeats a special token).
    run(&mut s, &format!("let test = {}", synthesize(&dir, "test.jsonl", ", T=0.8, top_p=0.9")));
    s.take_output();
    run(&mut s, "student llama(layers=1, dim=32, heads=2, max_seq=256, seed=1)\ndef words(h, r) = len(h)");
    let v = run(&mut s, &format!("evaluate([teacher, student], data=test, metrics=[bleu, chrf, rouge_l, words], max_new=12, temp=0.8, top_p=0.9, seed=3, names=[\"teacher\", \"student\"], progress=false, out={:?})", dir.join("scored.jsonl").display().to_string()));
    let said = s.take_output();
    assert!(said.contains("evaluate: 7 prompts, T=0.8, max_new=12"), "{said}");
    let header = said.lines().find(|l| l.starts_with("model")).unwrap();
    for m in ["bleu", "chrf", "rouge_l", "words"] {
        assert!(header.contains(m), "{header}");
    }
    let Some(Value::List(rows)) = v else { panic!("evaluate returns a list") };
    let row = |i: usize| match &rows[i] {
        Value::List(r) => r.iter().map(|x| if let Value::Num(n) = x { *n } else { f64::NAN }).collect::<Vec<f64>>(),
        _ => panic!("a row per model"),
    };
    // The teacher sampling its own answers again (the same seeds) scores perfectly.
    let (t, st) = (row(0), row(1));
    assert!((t[0] - 100.0).abs() < 1e-9 && (t[1] - 100.0).abs() < 1e-9 && (t[2] - 1.0).abs() < 1e-12, "{t:?}");
    assert!(st[0] < 100.0 && st[2] < 1.0, "{st:?}");
    assert_eq!((t[3], st[3]), (7.0, 7.0));
    let scored = lines(&dir.join("scored.jsonl"));
    assert_eq!(scored.len(), 14);
    assert_eq!((scored[0]["model"].as_str(), scored[7]["model"].as_str(), scored[0]["prompt"].as_str()), (Some("teacher"), Some("student"), Some(PROMPTS[0])));
    assert_eq!(scored[0]["answer"], scored[0]["reference"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_synthesize_inputs_are_errors_at_the_argument() {
    let dir = temp_dir("errors");
    let mut s = teacher(&dir);
    std::fs::write(dir.join("bad.jsonl"), "{\"text\": \"hi\"}\n").unwrap();
    let err = s.eval_str(&format!("synthesize(prompts={:?}, out={:?})", dir.join("bad.jsonl").display().to_string(), dir.join("o.jsonl").display().to_string())).unwrap_err();
    let text = s.render(&err.diagnostics, false);
    assert!(text.contains("bad.jsonl:1: a prompt line needs a \"prompt\" string or a \"messages\" list"), "{text}");
    std::fs::write(dir.join("notours.jsonl"), "{\"x\": 1}\n").unwrap();
    let err = s.eval_str(&format!("synthesize(prompts=[\"hi\"], out={:?})", dir.join("notours.jsonl").display().to_string())).unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("not a synthesized answer"));
    let _ = std::fs::remove_dir_all(&dir);
}
