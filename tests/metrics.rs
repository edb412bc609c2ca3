//! Parity of kdl's generation metrics with the reference implementations: every case
//! that tests/fixtures/metrics_reference.py scored with sacreBLEU 2.6.0 and rouge-score
//! 0.1.2 (English, Bengali and Hindi, multi-reference, a 300-segment random corpus) is
//! scored again through the `bleu`, `chrf` and `rouge_l` builtins of a script, to 1e-6.

use kdl::eval::Value;
use kdl::Session;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Case {
    name: String,
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
    scores: HashMap<String, f64>,
}

fn cases() -> Vec<Case> {
    let dir = std::env::var_os("KDL_FIXTURES_METRICS")
        .map(PathBuf::from)
        .expect("KDL_FIXTURES_METRICS is unset: run ./setup.sh (it scores the metric cases with sacreBLEU and rouge-score)");
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap_or_else(|e| panic!("{}: {e}: run ./setup.sh", dir.display()));
    serde_json::from_str(&text).expect("cases.json parses")
}

/// A kdl string literal holding `s` exactly.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || !c.is_ascii() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

fn score(s: &mut Session, call: &str) -> f64 {
    match s.eval_str(call) {
        Ok(Some(Value::Num(x))) => x,
        Ok(_) => panic!("{call} gave no number"),
        Err(e) => panic!("{}", s.render(&e.diagnostics, false)),
    }
}

#[test]
fn every_metric_matches_its_reference_implementation() {
    let calls = [
        ("bleu", "bleu(hyps, refs)"),
        ("bleu_intl", "bleu(hyps, refs, tokenize=\"intl\")"),
        ("bleu_lc", "bleu(hyps, refs, lowercase=true)"),
        ("chrf", "chrf(hyps, refs)"),
        ("chrf_pp", "chrf(hyps, refs, word_order=2)"),
        ("rouge_l", "rouge_l(hyps, refs, tokenizer=\"rouge-score\")"),
        ("rouge_l_unicode", "rouge_l(hyps, refs)"),
    ];
    let mut checked = 0;
    for case in cases() {
        let hyps = list(case.hyps.iter().map(|h| literal(h)));
        let refs = list(case.refs.iter().map(|r| list(r.iter().map(|x| literal(x)))));
        // A fresh session per case: `let` does not rebind a name.
        let mut s = Session::capture();
        s.eval_str(&format!("let hyps = {hyps}\nlet refs = {refs}")).unwrap();
        for (key, call) in calls {
            let want = case.scores[key];
            let got = score(&mut s, call);
            assert!((got - want).abs() <= TOLERANCE, "{}: {call} = {got}, the reference says {want}", case.name);
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * calls.len());
}

#[test]
fn indic_text_scores_zero_with_rouge_scores_tokenizer_and_not_with_kdls() {
    let mut s = Session::capture();
    let (h, r) = ("\"আমি ভাত খাই।\"", "\"আমি ভাত খাই\"");
    assert_eq!(score(&mut s, &format!("rouge_l([{h}], [{r}], tokenizer=\"rouge-score\")")), 0.0);
    assert!((score(&mut s, &format!("rouge_l([{h}], [{r}])")) - 1.0).abs() < 1e-12);
    // 13a leaves "খাই।" one token, so the last word misses; intl splits the danda off.
    assert!(score(&mut s, &format!("bleu([{h}], [{r}])")) < score(&mut s, &format!("bleu([{h}], [{r}], tokenize=\"intl\")")));
}

#[test]
fn a_missing_reference_is_an_error_at_refs() {
    let mut s = Session::capture();
    let err = s.eval_str("bleu([\"a b\", \"c d\"], [\"a b\"])").unwrap_err();
    let text = s.render(&err.diagnostics, false);
    assert!(text.contains("2 hypotheses but 1 references"), "{text}");
    let err = s.eval_str("rouge_l([\"a\"], [\"a\"], tokenizer=\"porter\")").unwrap_err();
    let text = s.render(&err.diagnostics, false);
    assert!(text.contains("`tokenizer=\"porter\"` is not one of the choices") && text.contains("\"rouge-score\""), "{text}");
}
