//! The exploration builtins through `Session`, on a tiny random model with a BPE of the
//! bundled corpus: the numbers they print and return equal the ones computed from the
//! model's logits directly (softmax at each T, surprisal in bits, KL per position).

use kdl::eval::Value;
use kdl::Session;
use tch::{Kind, Tensor};

fn session() -> Session {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    let mut s = Session::capture();
    s.eval_str(&format!("tokenizer bpe(vocab=300, from={:?})", corpus.display().to_string())).unwrap();
    s.eval_str("let m = llama(layers=1, dim=64, heads=4, vocab=300, seed=1)\nlet n = llama(layers=1, dim=64, heads=4, vocab=300, seed=2)").unwrap();
    s.take_output();
    s
}

/// The model's logits `[T, V]` on `text`, computed without the builtins.
fn logits(s: &mut Session, model: &str, text: &str) -> (Vec<u32>, Tensor) {
    let ids: Vec<u32> = match s.eval_str(&format!("encode({model}, {text:?})")).unwrap() {
        Some(Value::List(items)) => items.iter().map(|v| if let Value::Num(n) = v { *n as u32 } else { 0 }).collect(),
        _ => panic!("ids"),
    };
    let Some(Value::Model(m)) = s.get(model) else { panic!("model") };
    let input = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).unsqueeze(0);
    let out = tch::no_grad(|| m.weights().unwrap().forward(&input, None)).squeeze_dim(0);
    (ids, out)
}

fn nums(v: &Value) -> Vec<f64> {
    match v {
        Value::List(items) => items.iter().map(|x| if let Value::Num(n) = x { *n } else { f64::NAN }).collect(),
        _ => panic!("a list"),
    }
}

#[test]
fn topk_gives_the_softmax_at_each_temperature() {
    let mut s = session();
    let rows = s.eval_str("topk(m, \"Call me\", k=3, T=[1, 2])").unwrap().unwrap();
    let printed = s.take_output();
    assert!(printed.contains("p T=1") && printed.contains("p T=2") && printed.contains("dark knowledge"), "{printed}");
    let (_, l) = logits(&mut s, "m", "Call me");
    let last = l.select(0, -1);
    let (p1, p2) = (last.softmax(-1, Kind::Float), (&last / 2.0).softmax(-1, Kind::Float));
    let (_, best) = last.topk(3, -1, true, true);
    let Value::List(rows) = rows else { panic!() };
    assert_eq!(rows.len(), 3);
    for (r, row) in rows.iter().enumerate() {
        let Value::List(cells) = row else { panic!() };
        let id = best.int64_value(&[r as i64]);
        assert_eq!(nums(&Value::List(cells.clone()))[1], id as f64, "rank {r}");
        let got = nums(&Value::List(cells.clone()));
        assert!((got[2] - p1.double_value(&[id])).abs() < 1e-6);
        assert!((got[3] - p2.double_value(&[id])).abs() < 1e-6);
        assert!((got[4] - last.double_value(&[id])).abs() < 1e-4);
    }
    // Entropy at T=1, as printed, from the distribution itself.
    let h = -(&p1 * p1.log()).sum(Kind::Float).double_value(&[]);
    assert!(printed.contains(&format!("T=1: entropy {h:.3} nats")), "{printed}");
}

#[test]
fn probe_returns_each_tokens_surprisal_in_bits() {
    let mut s = session();
    let bits = nums(&s.eval_str("probe(m, \"Call me Ishmael\")").unwrap().unwrap());
    let printed = s.take_output();
    assert!(printed.contains("surprisal in bits") && printed.contains("perplexity"), "{printed}");
    let (ids, l) = logits(&mut s, "m", "Call me Ishmael");
    let logp = l.log_softmax(-1, Kind::Float);
    assert_eq!(bits.len(), ids.len() - 1);
    for (i, b) in bits.iter().enumerate() {
        let want = -logp.double_value(&[i as i64, ids[i + 1] as i64]) / std::f64::consts::LN_2;
        assert!((b - want).abs() < 1e-6, "token {i}: {b} vs {want}");
    }
    s.eval_str("probe(m, \"Call me\", entropy=true)").unwrap();
    assert!(s.take_output().contains("entropy"));
}

#[test]
fn compare_gives_kl_per_position_and_the_worst_positions() {
    let mut s = session();
    let kl = nums(&s.eval_str("compare(m, n, \"Call me Ishmael\", T=2, top=2)").unwrap().unwrap());
    let printed = s.take_output();
    assert!(printed.contains("mean KL(teacher‖student)") && printed.contains("top-1 agreement"), "{printed}");
    let (_, t) = logits(&mut s, "m", "Call me Ishmael");
    let (_, u) = logits(&mut s, "n", "Call me Ishmael");
    let (lt, lu) = ((&t / 2.0).log_softmax(-1, Kind::Float), (&u / 2.0).log_softmax(-1, Kind::Float));
    let want = (lt.exp() * (&lt - &lu)).sum_dim_intlist(-1, false, Kind::Float);
    for (i, k) in kl.iter().enumerate() {
        assert!((k - want.double_value(&[i as i64])).abs() < 1e-5, "position {i}");
    }
    // A model compared with itself agrees everywhere.
    let same = nums(&s.eval_str("compare(m, m, \"Call me\")").unwrap().unwrap());
    assert!(same.iter().all(|k| k.abs() < 1e-6));
    assert!(s.take_output().contains("top-1 agreement 100.0%"));
}

#[test]
fn exploring_a_model_without_a_tokenizer_says_how_to_fix_it() {
    let mut s = Session::capture();
    s.eval_str("let m = llama(layers=1, dim=64, heads=4, vocab=50)").unwrap();
    let err = s.eval_str("topk(m, \"hi\")").unwrap_err();
    let shown = s.render(&err.diagnostics, false);
    assert!(shown.contains("this model has no tokenizer") && shown.contains("tokenizer("), "{shown}");
}
