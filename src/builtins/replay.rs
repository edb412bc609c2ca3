//! Hard-set replay and merging: `mine` (the examples where the student trails the
//! teacher most), `lora` (an adapter to train on them), `merge` (fold an adapter into its
//! base, or merge whole models mergekit-style) and `average` (checkpoint averaging).

use super::inference::model_arg;
use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::engine::lora::{LoraConfig, Target};
use crate::eval::{Interp, ModelValue, Origin, Value};
use crate::kind::{with_article, Kinds};
use crate::spec::fmt_count;
use std::rc::Rc;

/// `targets=`: a list of names or one name/group, as strings.
fn targets(a: &Args) -> Result<Vec<Target>, Diagnostic> {
    // The table's default is "all".
    let items = a.items("targets");
    let mut out = Vec::new();
    for item in items {
        let Value::Str(s) = &item else {
            return Err(a
                .error("targets", format!("LoRA targets are names in quotes, got {}", with_article(item.kind())))
                .help("e.g. targets=[\"q\", \"v\"] or targets=\"all\""));
        };
        out.extend(Target::parse(s).map_err(|e| a.error("targets", e))?);
    }
    if out.is_empty() {
        return Err(a.error("targets", "an adapter needs at least one target layer").help("e.g. targets=\"all\""));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn lora(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let base = model_arg(a, "model")?;
    if base.lora().is_some() {
        return Err(a.error("model", "this model already has a LoRA adapter").help("merge it first: merge(base, adapter), then put a new adapter on the result"));
    }
    if base.vocab.is_none() {
        return Err(a.error("model", "this model's vocabulary size is not known yet").help("pass vocab= to llama(...), or set a teacher or tokenizer first"));
    }
    let rank = a.count("rank")?;
    let config = LoraConfig { rank, alpha: a.opt_num("alpha")?.unwrap_or(rank as f64), dropout: a.num("dropout")?, targets: targets(a)?, rslora: a.boolean("rslora")? };
    let trainable = config.params(&base.spec);
    let total = base.params().unwrap_or(0);
    interp.say(&format!(
        "lora {} on {}: {} trainable params ({:.2}% of {})",
        config.describe(),
        base.spec.one_line(),
        fmt_count(trainable),
        100.0 * trainable as f64 / total.max(1) as f64,
        fmt_count(total)
    ));
    Ok(Value::Model(Rc::new(ModelValue::adapter(base, config, a.num("seed")? as u64))))
}

/// `merge(base, adapter)`: W + (α/r)·B·A in f32, a plain model again.
fn merge_adapter(interp: &mut Interp, a: &Args, base: Rc<ModelValue>, adapter: Rc<ModelValue>) -> Result<Value, Diagnostic> {
    let config = adapter.lora().cloned().ok_or_else(|| {
        a.error("adapter", "this model has no LoRA adapter to merge").help("make one with lora(student, rank=16), or load a peft folder with load(\"dir\", base=student)")
    })?;
    if base.lora().is_some() {
        return Err(a.error("models", "the base has an adapter of its own").help("merge that one first"));
    }
    if base.spec != adapter.spec {
        return Err(a
            .error("adapter", format!("the adapter was made for {}, not {}", adapter.spec.one_line(), base.spec.one_line()))
            .help("merge an adapter into the model it was trained on"));
    }
    let w = adapter.weights().map_err(|e| a.error("adapter", e))?;
    let b = base.weights().map_err(|e| a.error("models", e))?;
    if let Origin::Loaded { format, .. } = &base.origin {
        if format.starts_with("GGUF") {
            interp.say(&format!("note: the base is a quantized {format}, read dequantized to f32; the merged model is f32"));
        }
    }
    let merged = crate::engine::lora::merge(&b.base_tensors(), &w).map_err(|e| a.error("adapter", e))?;
    let what = format!("merged with lora({})", config.describe());
    interp.say(&format!("merged lora({}) into {}: {} params", config.describe(), base.spec.one_line(), fmt_count(base.params().unwrap_or(0))));
    Ok(Value::Model(Rc::new(ModelValue::derived(merged, Origin::Derived { what }, &base, None))))
}

fn merge(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    match (a.get("models"), a.get("adapter")) {
        (Some(Value::Model(base)), Some(Value::Model(adapter))) => merge_adapter(interp, a, base, adapter),
        (Some(Value::Model(m)), None) if m.lora().is_some() => {
            let base = m.base.clone().ok_or_else(|| a.error("models", "this adapter's base is not known").help("pass it: merge(base, adapter)"))?;
            merge_adapter(interp, a, base, m)
        }
        (Some(Value::Model(_)), None) => Err(a
            .error("models", "`merge` of one model needs an adapter or more models")
            .help("merge(student, adapter) folds a LoRA adapter in; merge([a, b], method=\"ties\", base=c) merges models")),
        (Some(Value::List(items)), _) => super::merging::merge_models(interp, a, &items),
        (Some(other), _) => Err(a.error("models", format!("`merge` needs a model or a list of models, got {}", with_article(other.kind())))),
        (None, _) => Err(a.error("models", "`merge` needs models")),
    }
}

/// `best(stages, by="val_ppl")`: the stage whose last training did best.
fn best(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let by = a.string("by")?;
    let higher_wins = match by.as_str() {
        "val_ppl" | "val_loss" => false,
        "retention" => true,
        _ => return Err(a.error("by", format!("`best` ranks stages by \"val_ppl\", \"val_loss\" or \"retention\", not {by:?}"))),
    };
    let Some(Value::List(items)) = a.get("stages") else {
        return Err(a.error("stages", "`best` needs a list of stages, e.g. best([deep, wide])"));
    };
    let mut winner: Option<(Rc<crate::eval::StageValue>, f64)> = None;
    for (i, item) in items.iter().enumerate() {
        let Value::Stage(stage) = item else {
            return Err(a.error("stages", format!("item {i} is {}, not a stage", with_article(item.kind()))).help("list the stages by name: best([deep, wide])"));
        };
        let Some(figures) = &stage.figures else {
            return Err(a.error("stages", format!("stage `{}` trained nothing, so it cannot be ranked", stage.name)).help("a stage's figures come from the last train(...) in it"));
        };
        let Some(score) = figures.get(&by).flatten() else {
            return Err(a.error("stages", format!("stage `{}` has no retention: no teacher was compared with", stage.name)).help("rank by \"val_ppl\" instead"));
        };
        let better = match &winner {
            None => true,
            Some((_, best)) => if higher_wins { score > *best } else { score < *best },
        };
        if better {
            winner = Some((stage.clone(), score));
        }
    }
    winner.map(|(s, _)| Value::Stage(s)).ok_or_else(|| a.error("stages", "`best` needs at least one stage"))
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    let s = Kinds::STRING;
    let m = Kinds::MODEL;
    vec![
        Builtin {
            name: "lora",
            family: Family::Replay,
            params: vec![
                param("model", m, Required, "the base model (frozen while the adapter trains)"),
                param("rank", n, Num(16.0), "rank r of each A·B pair").range(Range::PositiveInt),
                param("alpha", n, Optional, "scale numerator: updates are scaled by alpha/rank (default: alpha = rank)").range(Range::Positive),
                param("dropout", n, Num(0.0), "dropout on the adapter's input while training").range(Range::UnitWarn),
                param("targets", s | Kinds::LIST, Str("all"), "layers to adapt: [\"q\",\"k\",\"v\",\"o\",\"gate\",\"up\",\"down\"], or \"all\", \"attention\", \"mlp\""),
                param("rslora", Kinds::BOOL, Bool(false), "rank-stabilised scale alpha/sqrt(rank)"),
                param("seed", n, Num(0.0), "seed of A's initialisation (B starts at zero)").range(Range::NonNegativeInt),
            ],
            returns: m,
            doc: "a LoRA adapter on a model: training it updates only the adapter; merge(model, adapter) folds it in",
            example: "lora(student, rank=16, alpha=16, targets=[\"q\", \"k\", \"v\", \"o\"])",
            run: lora,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "merge",
            family: Family::Replay,
            params: vec![
                param("models", m | Kinds::LIST, Required, "the base model (with adapter=), or a list of models to merge"),
                param("adapter", m, Optional, "a LoRA adapter to fold into the base"),
                param("method", s, Str("linear"), "for lists: linear, slerp, ties, dare_ties, dare_linear, task_arithmetic (mergekit's semantics)"),
                param("weights", Kinds::LIST, Optional, "one weight per model (default: all 1)"),
                param("density", n | Kinds::LIST, Optional, "fraction of each task vector kept (ties, dare_*; default 1)"),
                param("base", m, Optional, "the common ancestor: task vectors are model − base (ties, dare_*, task_arithmetic); slerp's t=0 end"),
                param("t", n, Num(0.5), "slerp: 0 gives the base, 1 the other model").range(Range::UnitWarn),
                param("normalize", Kinds::BOOL, Optional, "divide by the sum of weights (default per method, as mergekit)"),
                param("rescale", Kinds::BOOL, Optional, "dare: rescale kept entries by 1/density (default true)"),
                param("lambda", n, Num(1.0), "task-vector scale after merging"),
                param("seed", n, Num(0.0), "seed of dare's random drops").range(Range::NonNegativeInt),
            ],
            returns: m,
            doc: "folds a LoRA adapter into its base (W + alpha/r·B·A, f32), or merges models of one architecture",
            example: "merge(student, lora(student, rank=8))",
            run: merge,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "best",
            family: Family::Replay,
            params: vec![
                param("stages", Kinds::LIST, Required, "the stages to rank, by name"),
                param("by", s, Str("val_ppl"), "\"val_ppl\" or \"val_loss\" (lowest wins) or \"retention\" (highest wins)"),
            ],
            returns: Kinds::STAGE,
            doc: "the stage whose last training did best on the validation split (the first of equals), e.g. to export the winner of a comparison",
            example: "export(best([deep, wide]).student, \"winner.gguf\", quant=\"q4_k_m\")",
            run: best,
            pure: false,
            slots: &[],
        },
    ]
}
