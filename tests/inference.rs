//! Inference from scripts, through `Session`, on tiny random models and a BPE trained on
//! the bundled corpus: logits, generation (greedy and seeded sampling), chat templates,
//! tokenizers, and saving models and tensors. Parity with transformers is in
//! engine_parity.rs and smollm2.rs; this file checks the language wiring.

use kdl::eval::Value;
use kdl::Session;
use std::path::PathBuf;
use tch::Tensor;

fn corpus() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    format!("{:?}", p.display().to_string())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-inference-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A session holding `tok` (a 400-entry BPE of Moby-Dick) and `m`, a 2-layer model
/// that uses it.
fn tiny() -> Session {
    let mut s = Session::capture();
    s.eval_str(&format!("let tok = bpe(vocab=400, from={})", corpus())).unwrap();
    s.eval_str("tokenizer tok\nstudent llama(layers=2, dim=64, heads=4, kv_heads=2, max_seq=256, seed=3)\nlet m = student").unwrap();
    s.take_output();
    s
}

fn text(v: Option<Value>) -> String {
    match v {
        Some(Value::Str(s)) => s.to_string(),
        other => panic!("expected a string, got {:?}", other.map(|v| v.short())),
    }
}

fn ids(v: Option<Value>) -> Vec<u32> {
    match v {
        Some(Value::List(items)) => items.iter().map(|x| if let Value::Num(n) = x { *n as u32 } else { panic!("not an id") }).collect(),
        other => panic!("expected a list, got {:?}", other.map(|v| v.short())),
    }
}

#[test]
fn bpe_tokenizer_round_trips_text() {
    let mut s = tiny();
    let ids = ids(s.eval_str("encode(tok, \"Call me Ishmael. Some years ago\")").unwrap());
    assert!(ids.len() < "Call me Ishmael. Some years ago".len(), "merges shorten the text: {ids:?}");
    let list = format!("[{}]", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
    assert_eq!(text(s.eval_str(&format!("decode(tok, {list})")).unwrap()), "Call me Ishmael. Some years ago");
    assert!(matches!(s.eval_str("tok.vocab").unwrap(), Some(Value::Num(n)) if n == 400.0));
}

#[test]
fn a_student_takes_the_tokenizer_slot_vocabulary_and_tokenizer() {
    let mut s = tiny();
    assert!(matches!(s.eval_str("m.vocab").unwrap(), Some(Value::Num(n)) if n == 400.0));
    // It can read text because it adopted the tokenizer.
    let v = s.eval_str("logits(m, \"the whale\")").unwrap();
    let Some(Value::Tensor(t)) = v else { panic!("logits gives a tensor") };
    let n = ids(s.eval_str("encode(m, \"the whale\")").unwrap()).len() as i64;
    assert_eq!(t.shape(), vec![1, n, 400]);
}

#[test]
fn logits_of_text_and_of_its_ids_agree() {
    let mut s = tiny();
    s.eval_str("let a = logits(m, \"Ishmael\")\nlet b = logits(m, encode(m, \"Ishmael\"))").unwrap();
    let (Some(Value::Tensor(a)), Some(Value::Tensor(b))) = (s.get("a"), s.get("b")) else { panic!() };
    assert_eq!((&a.tensor - &b.tensor).abs().max().double_value(&[]), 0.0);
}

#[test]
fn greedy_generation_is_deterministic_and_streams() {
    let mut s = tiny();
    let first = text(s.eval_str("generate(m, \"Call me\", max=12, temp=0)").unwrap());
    let streamed = s.take_output();
    assert!(s.streamed());
    // Control characters a random model emits stream as U+FFFD; the rest is the same text.
    let printable: String = first.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{FFFD}' } else { c }).collect();
    assert_eq!(streamed, format!("{printable}\n"), "the streamed text is the returned text");
    let again = text(s.eval_str("generate(m, \"Call me\", max=12, temp=0, stream=false)").unwrap());
    assert_eq!(first, again);
    assert_eq!(s.take_output(), "", "stream=false prints nothing");
    assert!(!first.is_empty());
}

#[test]
fn sampling_is_reproducible_from_its_seed() {
    let mut s = tiny();
    let run = |s: &mut Session, seed: u32| text(s.eval_str(&format!("generate(m, [5, 6, 7], max=16, temp=1.5, top_k=50, seed={seed}, stream=false)")).unwrap());
    let a = run(&mut s, 1);
    assert_eq!(a, run(&mut s, 1));
    let others: Vec<String> = (2..6).map(|seed| run(&mut s, seed)).collect();
    assert!(others.iter().any(|o| *o != a), "different seeds give different samples");
}

#[test]
fn chat_renders_the_named_template() {
    let mut s = tiny();
    let reply = text(s.eval_str("chat(m, [[\"user\", \"hello\"]], template=\"chatml\", max=8, temp=0, stream=false)").unwrap());
    let _ = reply; // a random model's reply: only that it runs to completion
    let err = s.eval_str("chat(m, \"hi\", template=\"alpaca\")").unwrap_err();
    let shown = s.render(&err.diagnostics, false);
    assert!(shown.contains("unknown chat style \"alpaca\"") && shown.contains("chatml, llama2, zephyr"), "{shown}");
}

#[test]
fn saved_models_load_back_with_tokenizer_and_same_logits() {
    let mut s = tiny();
    let dir = temp_dir("save");
    let out = dir.join("student");
    s.eval_str(&format!("save m to {:?}\nlet back = load({:?})", out.display().to_string(), out.display().to_string())).unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    s.eval_str("let a = logits(m, \"the sea\")\nlet b = logits(back, \"the sea\")").unwrap();
    let (Some(Value::Tensor(a)), Some(Value::Tensor(b))) = (s.get("a"), s.get("b")) else { panic!() };
    assert_eq!((&a.tensor - &b.tensor).abs().max().double_value(&[]), 0.0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn logits_save_as_safetensors() {
    let mut s = tiny();
    let dir = temp_dir("tensor");
    let file = dir.join("x.safetensors");
    s.eval_str(&format!("let x = logits(m, [1, 2, 3])\nsave x to {:?}", file.display().to_string())).unwrap();
    let back = Tensor::read_safetensors(&file).unwrap();
    assert_eq!(back[0].0, "logits");
    assert_eq!(back[0].1.size(), vec![1, 3, 400]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inference_errors_point_at_the_argument() {
    let mut s = tiny();
    let cases = [
        ("logits(m, [1, 2, 4000])", "token id 4000 is outside the model's vocabulary of 400"),
        ("logits(llama(layers=1, dim=64, vocab=10), \"hi\")", "this model has no tokenizer"),
        ("load(\"no/such/dir\")", "no such file or folder"),
        ("chat(m, [[\"user\"]])", "a conversation is a list of [role, text] pairs"),
        ("generate(m, \"\", max=3)", "this input has no tokens"),
    ];
    for (code, want) in cases {
        let err = s.eval_str(code).unwrap_err();
        let shown = s.render(&err.diagnostics, false);
        assert!(shown.contains(want), "{code}: {shown}");
    }
}

#[test]
fn graph_on_decodes_the_same_text_and_says_why_it_is_eager_on_the_cpu() {
    let mut s = tiny();
    let eager = text(s.eval_str("generate(m, \"Call me\", max=10, temp=0, stream=false, graph=\"off\")").unwrap());
    let on = text(s.eval_str("generate(m, \"Call me\", max=10, temp=0, stream=false, graph=\"on\")").unwrap());
    assert_eq!(eager, on);
    let said = s.take_output();
    assert!(said.contains("graph=\"on\": running eager, since the model is on the CPU"), "{said}");
    let err = s.eval_str("generate(m, \"Call me\", graph=\"yes\")").unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("graph is \"auto\", \"on\" or \"off\""));
}

#[test]
fn a_captured_decode_step_gives_the_eager_tokens_on_cuda() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device here (the captured decode step needs one)");
        return;
    }
    let mut s = tiny();
    s.eval_str("let g = llama(layers=2, dim=64, heads=4, kv_heads=2, max_seq=256, seed=3, device=\"cuda\", dtype=\"f32\")").unwrap();
    let eager = text(s.eval_str("generate(g, [5, 6, 7], max=24, temp=0, stream=false, graph=\"off\")").unwrap());
    let graphed = text(s.eval_str("generate(g, [5, 6, 7], max=24, temp=0, stream=false, graph=\"on\")").unwrap());
    assert_eq!(eager, graphed);
    let said = s.take_output();
    assert!(!said.contains("running eager") && !said.contains("could not be captured"), "{said}");
}

/// `weights="int8"` decodes from a per-row int8 copy made once and kept with the model:
/// the same text twice, and after training (which updates the weights in place) the text
/// of the trained weights, exactly as a fresh load of them gives, not the stale copy's.
#[test]
fn int8_weights_follow_the_model_through_training() {
    let mut s = tiny();
    let dir = temp_dir("int8");
    let gen = |s: &mut Session, model: &str| text(s.eval_str(&format!("generate({model}, \"Call me\", max=12, temp=0, stream=false, weights=\"int8\")")).unwrap());
    let before = gen(&mut s, "student");
    assert_eq!(before, gen(&mut s, "student"), "greedy int8 decoding is deterministic");
    s.eval_str(&format!("data text({})\nloss ce\ntrain(steps=6, batch=2, seq=32, lr=1e-2)", corpus())).unwrap();
    let after = gen(&mut s, "student");
    assert_ne!(before, after, "six steps at lr 1e-2 change what the model writes");
    s.eval_str(&format!("save student to {:?}\nlet back = load({:?})", dir.join("m").display().to_string(), dir.join("m").display().to_string())).unwrap();
    assert_eq!(after, gen(&mut s, "back"), "the copy was remade from the trained weights");
    let err = s.eval_str("generate(student, \"Call me\", weights=\"int4\")").unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("unknown weights \"int4\": \"model\", \"bf16\" or \"int8\""));
    let err = s.eval_str("generate(lora(student, rank=2), \"Call me\", weights=\"int8\")").unwrap_err();
    assert!(s.render(&err.diagnostics, false).contains("merge the adapter first"));
}
