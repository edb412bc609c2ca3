//! `mine(...)`: score every training block by a difficulty expression, keep the hardest
//! by a rule (`top(20%)`, `above(median)`, `above(quantile(0.8))`, `above(0.5)`), show
//! the distribution, save the choice in the run folder, and return the data restricted
//! to those blocks.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::engine::mine;
use crate::eval::{Interp, Value};
use crate::kind::{with_article, Kinds};
use crate::spec::replay::Threshold;
use crate::spec::{fmt_num, DataSpec, KeepRule, LossExpr, Of, Schedule, Subset, Term, TermKind};
use crate::syntax::Role;
use std::rc::Rc;
use std::sync::Arc;

fn ce_of(of: Of, weight: f64) -> (Schedule, Term) {
    (Schedule::Const(weight), Term { kind: TermKind::Ce, of: Some(of), t: Schedule::Const(1.0), mix: None, layers: None })
}

/// The saved hard set: what was mined, how, and every block's difficulty.
fn record(spec: &DataSpec, difficulty: &LossExpr, rule: &KeepRule, subset: &Subset, threshold: f64, scores: &[f64]) -> serde_json::Value {
    let finite = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
    serde_json::json!({
        "data": spec.describe(),
        "difficulty": difficulty.describe(),
        "keep": rule.describe(),
        "seq": subset.seq,
        "blocks": subset.of_blocks,
        "threshold": finite(threshold),
        "indices": *subset.indices,
        "difficulties": scores.iter().map(|&x| finite(x)).collect::<Vec<_>>(),
    })
}

/// `mine(data, from="runs/x/hard_set.json")`: a saved hard set, without scoring again.
fn reuse(interp: &mut Interp, a: &Args, spec: &DataSpec) -> Result<Value, Diagnostic> {
    let path = interp.resolve_path(&a.string("from")?);
    let text = std::fs::read_to_string(&path).map_err(|e| a.error("from", format!("cannot read {}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| a.error("from", format!("{}: not JSON ({e})", path.display())))?;
    let bad = || a.error("from", format!("{}: not a hard set written by mine()", path.display()));
    let seq = json["seq"].as_u64().ok_or_else(bad)? as usize;
    let of_blocks = json["blocks"].as_u64().ok_or_else(bad)? as usize;
    let indices: Vec<usize> = json["indices"].as_array().ok_or_else(bad)?.iter().filter_map(|v| v.as_u64().map(|x| x as usize)).collect();
    let label = format!("hard set from {}: {} of {} blocks", path.display(), indices.len(), of_blocks);
    interp.say(&label);
    Ok(Value::Data(Rc::new(DataSpec { subset: Some(Subset { seq, of_blocks, indices: Arc::new(indices), label }), ..spec.clone() })))
}

fn mine_action(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let spec = match super::actions::input(interp, a, Role::Data) {
        Some(Value::Data(d)) => d,
        Some(other) => return Err(a.error("data", format!("`mine` needs data, got {}", with_article(other.kind())))),
        None => return Err(super::actions::missing_slot("mine", Role::Data, a.call_span)),
    };
    // Mining a hard set again starts from all of the data.
    let spec = Rc::new(DataSpec { subset: None, ..(*spec).clone() });
    if a.given("from") {
        return reuse(interp, a, &spec);
    }
    let student = super::actions::model_input(interp, a, Role::Student)?.ok_or_else(|| super::actions::missing_slot("mine", Role::Student, a.call_span))?;
    let teacher = super::actions::model_input(interp, a, Role::Teacher)?;
    let difficulty = match a.get("difficulty") {
        Some(Value::Loss(l)) => (*l).clone(),
        Some(other) => return Err(a.error("difficulty", format!("a difficulty is a loss expression such as ce(student) - ce(teacher), got {}", with_article(other.kind())))),
        // Where the student trails the teacher most; without a teacher, where it is worst.
        None if teacher.is_some() => LossExpr { terms: vec![ce_of(Of::Student, 1.0), ce_of(Of::Teacher, -1.0)], on_policy: None },
        None => LossExpr { terms: vec![ce_of(Of::Student, 1.0)], on_policy: None },
    };
    if difficulty.needs_teacher() && teacher.is_none() {
        return Err(super::actions::missing_teacher(Some(difficulty.describe()), a.call_span));
    }
    let rule = match a.get("keep") {
        Some(Value::Rule(r)) => (*r).clone(),
        Some(other) => return Err(a.error("keep", format!("`keep` is a rule such as top(20%) or above(median), got {}", with_article(other.kind())))),
        None => KeepRule::Top(0.2),
    };
    let cache_spec = super::actions::teacher_cache(a, &difficulty)?;
    let (seq, batch) = (a.count("seq")?, a.count("batch")?);
    let (data, _) = super::training::load_data(interp, a, &spec, (seq, 0), &student, teacher.as_deref(), difficulty.needs_teacher())?;
    let sw = student.weights().map_err(|e| a.error("student", e))?;
    let tw = match &teacher {
        // The frozen teacher in the precision training would give it (bf16 where fast).
        Some(t) if difficulty.needs_teacher() => Some(super::training::teacher_weights(a, t, "auto")?),
        _ => None,
    };
    interp.say(&format!("mining {} training blocks by difficulty {}, keeping {}", data.train.len(), difficulty.describe(), rule.describe()));
    // The cache a training run over the same teacher, data and seq reads: mining fills the
    // training blocks it lacks, so the run after it finds them stored.
    let cache = match (&cache_spec, &tw) {
        (Some(c), Some(t)) => {
            let reads: Vec<u32> = (0..data.train.len() as u32).collect();
            Some(std::cell::RefCell::new(super::training::open_teacher_cache(interp, a, c, t, &data, seq, &reads)?))
        }
        _ => None,
    };
    let bar = crate::engine::train::report::Progress::new(data.train.len() as u64, 0, true);
    let started = std::time::Instant::now();
    let scored = mine::score(&sw, tw.as_deref(), cache.as_ref(), &data.train, &difficulty, batch, &mut |done, _| {
        bar.update(done as u64, "blocks scored");
    });
    bar.finish();
    if let Some(c) = &cache {
        c.borrow_mut().flush().map_err(|e| a.error("teacher_cache", e))?;
        super::training::say_cache_holds(interp, &c.borrow());
    }
    let scores = scored.map_err(|e| a.error("difficulty", e))?;
    let (kept, threshold) = mine::select(&scores, &rule).map_err(|e| a.error("keep", e))?;
    if kept.is_empty() {
        return Err(a.error("keep", format!("{} keeps no blocks (threshold {threshold:.4}, highest difficulty {:.4})", rule.describe(), mine::quantile(&scores, 1.0))).help("lower the threshold, or use top(20%)"));
    }
    let all_mean = finite_mean(scores.iter().copied());
    let kept_mean = finite_mean(kept.iter().map(|&i| scores[i]));
    interp.say(&format!("difficulty of {} blocks ({:.1}s):", scores.len(), started.elapsed().as_secs_f64()));
    interp.say(&mine::histogram(&scores, threshold, 10, 40));
    let fraction = kept.len() as f64 / scores.len().max(1) as f64;
    interp.say(&format!(
        "kept {} of {} blocks ({:.1}%) with difficulty > {threshold:.4}; mean difficulty {kept_mean:.4} kept vs {all_mean:.4} overall",
        kept.len(),
        scores.len(),
        100.0 * fraction,
    ));
    let label = format!("hard set: {} of {} blocks, {}", kept.len(), scores.len(), rule.describe());
    let subset = Subset { seq, of_blocks: scores.len(), indices: Arc::new(kept), label };
    let out = match a.opt_str("out")? {
        Some(o) => interp.resolve_path(&o),
        None => super::training::script_runs(interp).join("hard_set.json"),
    };
    let json = serde_json::to_vec_pretty(&record(&spec, &difficulty, &rule, &subset, threshold, &scores)).map_err(|e| a.error("out", e.to_string()))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| a.error("out", format!("cannot create {}: {e}", dir.display())))?;
    }
    crate::atomic::write_file(&out, &json).map_err(|e| a.error("out", format!("cannot write {}: {e}", out.display())))?;
    interp.say(&format!("hard set saved to {} (reuse it with mine(data, from=...))", out.display()));
    Ok(Value::Data(Rc::new(DataSpec { subset: Some(subset), ..(*spec).clone() })))
}

/// The mean of the finite values (a block without targets scores NaN).
fn finite_mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn fraction(a: &Args, name: &str) -> Result<f64, Diagnostic> {
    let x = a.num(name)?;
    if !(x > 0.0 && x <= 1.0) {
        return Err(a.error(name, format!("a fraction in (0, 1] — 20% or 0.2 — got {}", fmt_num(x))));
    }
    Ok(x)
}

fn top(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    Ok(Value::Rule(Rc::new(KeepRule::Top(fraction(a, "fraction")?))))
}

fn quantile(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let q = a.num("q")?;
    if !(0.0..=1.0).contains(&q) {
        return Err(a.error("q", format!("a quantile is in [0, 1], got {}", fmt_num(q))));
    }
    Ok(Value::Rule(Rc::new(KeepRule::Quantile(q))))
}

fn above(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let threshold = match a.get("threshold") {
        Some(Value::Num(x)) => Threshold::Value(x),
        Some(Value::Rule(r)) => match *r {
            KeepRule::Quantile(q) => Threshold::Quantile(q),
            ref other => return Err(a.error("threshold", format!("above() takes a number, median or quantile(q), not {}", other.describe()))),
        },
        other => return Err(a.error("threshold", format!("above() takes a number, median or quantile(q), got {}", other.map(|v| with_article(v.kind())).unwrap_or_default()))),
    };
    Ok(Value::Rule(Rc::new(KeepRule::Above(threshold))))
}

pub fn constants() -> Vec<(&'static str, Value, &'static str)> {
    vec![("median", Value::Rule(Rc::new(KeepRule::Quantile(0.5))), "the median difficulty, for mine(keep=above(median))")]
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    let r = Kinds::RULE;
    vec![
        Builtin {
            name: "mine",
            family: Family::Replay,
            params: vec![
                param("data", Kinds::DATA, Optional, "data whose training blocks are scored (default: the data slot)"),
                param("difficulty", Kinds::LOSS, Optional, "per-block difficulty, any loss expression (default: ce(student) - ce(teacher), or ce without a teacher)"),
                param("keep", r, Optional, "which blocks to keep: top(20%), above(median), above(quantile(0.8)), above(0.5) (default top(20%))"),
                param("student", Kinds::MODEL, Optional, "the student (default: the student slot)"),
                param("teacher", Kinds::MODEL, Optional, "the teacher (default: the teacher slot)"),
                param("seq", n, Num(256.0), "tokens per block: train the hard set with the same seq").range(Range::PositiveInt),
                param("batch", n, Num(8.0), "blocks per forward").range(Range::PositiveInt),
                param("teacher_cache", Kinds::CACHE | Kinds::STRING, Str("off"), "read the teacher's side from its offline cache, topk(64) or sample(50), and fill what it lacks (the cache train(teacher_cache=...) of the same data and seq reads); \"off\" runs the teacher"),
                param("out", Kinds::STRING, Optional, "where the hard set is saved (default runs/<script>/hard_set.json)"),
                param("from", Kinds::STRING, Optional, "reuse a saved hard set instead of scoring"),
            ],
            returns: Kinds::DATA,
            doc: "the training blocks where the student falls furthest behind (a data value for train(on=...)); prints the difficulty histogram and saves indices + difficulties",
            example: "mine(data, difficulty=ce(student) - ce(teacher), keep=top(20%))",
            run: mine_action,
            pure: false,
            slots: &[Role::Student],
        },
        Builtin {
            name: "top",
            family: Family::Replay,
            params: vec![param("fraction", n, Required, "fraction of blocks kept, hardest first: 20% or 0.2")],
            returns: r,
            doc: "keep rule: the hardest fraction of blocks",
            example: "top(20%)",
            run: top,
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "above",
            family: Family::Replay,
            params: vec![param("threshold", n | r, Required, "a difficulty value, median, or quantile(q)")],
            returns: r,
            doc: "keep rule: blocks whose difficulty is above a value or a quantile",
            example: "above(quantile(0.8))",
            run: above,
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "quantile",
            family: Family::Replay,
            params: vec![param("q", n, Required, "which quantile of the difficulties, in [0, 1]")],
            returns: r,
            doc: "a threshold for above(): the q-quantile of the mined difficulties",
            example: "above(quantile(0.8))",
            run: quantile,
            pure: true,
            slots: &[],
        },
    ]
}
