//! On-policy distillation from scripts (`gkd`), on a tiny random teacher and student
//! with a BPE of the bundled corpus and chat data the teacher wrote (`synthesize`):
//! λ = 0 trains exactly as the plain divergence does, β's ends are kl and rkl, λ = 1
//! trains every step on the student's own samples (with and without replay), and data
//! without prompts is an error.

use kdl::Session;
use std::path::{Path, PathBuf};

fn corpus() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    format!("{:?}", p.display().to_string())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-on-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A session with a tiny teacher and `chat`, 12 conversations it answered.
fn setup(dir: &Path) -> Session {
    let mut s = Session::capture();
    let prompts: Vec<String> = (0..12).map(|i| format!("{:?}", format!("Tell me about the whale, part {i}."))).collect();
    let src = format!(
        "tokenizer bpe(vocab=400, from={})\nteacher llama(layers=2, dim=64, heads=4, kv_heads=2, max_seq=256, seed=5)\nlet chat = synthesize(prompts=[{}], out={:?}, max_new=16, progress=false)",
        corpus(),
        prompts.join(", "),
        dir.join("chat.jsonl").display().to_string()
    );
    run(&mut s, &src);
    s.take_output();
    s
}

fn run(s: &mut Session, src: &str) {
    if let Err(e) = s.eval_str(src) {
        panic!("{}", s.render(&e.diagnostics, false));
    }
}

/// Trains a fresh student on `chat` with `loss` and returns the per-step losses.
fn losses(s: &mut Session, dir: &Path, name: &str, loss: &str) -> Vec<f64> {
    let out = dir.join(name);
    run(s, &format!("student llama(layers=1, dim=32, heads=2, max_seq=256, seed=1)\ntrain(on=chat, loss={loss}, steps=3, batch=2, seq=32, out={:?})", out.display().to_string()));
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .collect()
}

#[test]
fn lambda_zero_trains_exactly_as_the_plain_divergence() {
    let dir = temp_dir("zero");
    let mut s = setup(&dir);
    let plain = losses(&mut s, &dir, "js", "js(beta=0.3)");
    assert_eq!(plain.len(), 3);
    assert_eq!(losses(&mut s, &dir, "gkd", "gkd(lambda=0, beta=0.3)"), plain);
    assert_eq!(losses(&mut s, &dir, "gkd-kl", "gkd(lambda=0, beta=0)"), losses(&mut s, &dir, "kl", "kl()"));
    assert_eq!(losses(&mut s, &dir, "gkd-rkl", "gkd(lambda=0, beta=1)"), losses(&mut s, &dir, "rkl", "rkl()"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lambda_one_trains_every_step_on_the_students_samples() {
    let dir = temp_dir("one");
    let mut s = setup(&dir);
    let sampled = losses(&mut s, &dir, "on", "gkd(lambda=1, beta=0.5, T=0.9, max_new=8)");
    let said = s.take_output();
    assert!(said.contains("on-policy: 3 of 3 steps trained on the student's own samples"), "{said}");
    assert!(sampled.iter().all(|l| l.is_finite()) && sampled != losses(&mut s, &dir, "off", "js(beta=0.5)"), "{sampled:?}");
    s.take_output();
    let skew = losses(&mut s, &dir, "skew", "gkd(lambda=1, replay=4, loss=srkl(a=0.1), max_new=8)");
    assert!(skew.iter().all(|l| l.is_finite()), "{skew:?}");
    assert!(s.take_output().contains("on-policy: 3 of 3 steps"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gkd_needs_chat_data_and_a_divergence() {
    let dir = temp_dir("errors");
    let mut s = setup(&dir);
    run(&mut s, &format!("student llama(layers=1, dim=32, heads=2, max_seq=256, seed=1)\ndata text({})", corpus()));
    let err = s.eval_str("train(loss=gkd(), steps=1, batch=2, seq=32)").unwrap_err();
    let text = s.render(&err.diagnostics, false);
    assert!(text.contains("gkd continues the data's prompts") && text.contains("conversations("), "{text}");
    let err = s.eval_str("gkd(loss=ce)").unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("KL-family term"));
    let err = s.eval_str("gkd(lambda=1.5)").unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("between 0 and 1"));
    let _ = std::fs::remove_dir_all(&dir);
}
