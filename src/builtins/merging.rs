//! Whole-model merges (`merge([a, b], method=...)`, mergekit's methods) and checkpoint
//! averaging (`average([...])`): the language side of `engine::merge`. Each result is a
//! new f32 model with the first model's tokenizer, chat template and special tokens.

use super::{param, Args, Builtin, Default::*, Family};
use crate::diag::Diagnostic;
use crate::engine::llama::Llama;
use crate::engine::merge::{self, Method, MergeOptions};
use crate::eval::{Interp, ModelValue, Origin, Value};
use crate::kind::{with_article, Kinds};
use crate::spec::{fmt_count, fmt_num};
use std::collections::BTreeMap;
use std::rc::Rc;
use tch::Tensor;

fn numbers(a: &Args, name: &str) -> Result<Vec<f64>, Diagnostic> {
    match a.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Num(x)) => Ok(vec![x]),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Num(x) => Ok(*x),
                other => Err(a.error(name, format!("`{name}` holds numbers, got {}", with_article(other.kind())))),
            })
            .collect(),
        Some(other) => Err(a.error(name, format!("`{name}` needs a number or a list of numbers, got {}", with_article(other.kind())))),
    }
}

fn state(m: &Llama) -> BTreeMap<String, Tensor> {
    m.vs.variables().into_iter().collect()
}

/// A model of `spec`'s architecture holding `tensors`.
fn model_of(like: &Llama, tensors: &BTreeMap<String, Tensor>) -> Result<Llama, String> {
    let out = Llama::new(&like.spec, like.device(), like.scaling())?;
    for (name, mut var) in out.vs.variables() {
        let src = tensors.get(&name).ok_or_else(|| format!("the merge produced no {name}"))?;
        tch::no_grad(|| var.copy_(src));
    }
    Ok(out)
}

fn plain_model(a: &Args, arg: &str, v: &Value, i: usize) -> Result<Rc<ModelValue>, Diagnostic> {
    match v {
        Value::Model(m) if m.lora().is_some() => Err(a.error(arg, format!("model {} is a LoRA adapter", i + 1)).help("fold it into its base first: merge(base, adapter)")),
        Value::Model(m) => Ok(m.clone()),
        other => Err(a.error(arg, format!("`merge` needs models; item {} is {}", i + 1, with_article(other.kind())))),
    }
}

pub fn merge_models(interp: &mut Interp, a: &Args, items: &[Value]) -> Result<Value, Diagnostic> {
    let method = Method::parse(&a.string("method")?).map_err(|e| a.error("method", e))?;
    let base = match a.get("base") {
        Some(v) => Some(plain_model(a, "base", &v, 0)?),
        None => None,
    };
    let mut models = Vec::new();
    for (i, v) in items.iter().enumerate() {
        let m = plain_model(a, "models", v, i)?;
        // As mergekit: the base listed among the models is the base, not a model.
        if base.as_ref().is_some_and(|b| Rc::ptr_eq(b, &m)) {
            continue;
        }
        models.push(m);
    }
    if models.is_empty() {
        return Err(a.error("models", "`merge` needs at least one model besides the base"));
    }
    for (i, m) in models.iter().chain(base.iter()).enumerate() {
        if m.spec != models[0].spec {
            let which = if i == models.len() { "the base".to_string() } else { format!("model {}", i + 1) };
            return Err(a
                .error("models", format!("{which} is {}, model 1 is {}", m.spec.one_line(), models[0].spec.one_line()))
                .help("merge needs models of the same architecture (e.g. students distilled from one init)"));
        }
    }
    let mut options = MergeOptions::new(method);
    options.weights = numbers(a, "weights")?;
    options.density = numbers(a, "density")?;
    if a.given("t") {
        options.t = a.num("t")?;
    }
    options.normalize = if a.given("normalize") { Some(a.boolean("normalize")?) } else { None };
    options.rescale = if a.given("rescale") { Some(a.boolean("rescale")?) } else { None };
    if a.given("lambda") {
        options.lambda = a.num("lambda")?;
    }
    options.seed = a.num("seed")? as u64;
    options.check(models.len(), base.is_some()).map_err(|e| a.error("method", e))?;
    let weights: Vec<Rc<Llama>> = models.iter().map(|m| m.weights().map_err(|e| a.error("models", e))).collect::<Result<_, _>>()?;
    let states: Vec<BTreeMap<String, Tensor>> = weights.iter().map(|w| state(w)).collect();
    let base_state = match &base {
        Some(b) => Some(state(&*b.weights().map_err(|e| a.error("base", e))?)),
        None => None,
    };
    let merged = merge::merge_states(&states, base_state.as_ref(), &options).map_err(|e| a.error("models", e))?;
    let model = model_of(&weights[0], &merged).map_err(|e| a.error("models", e))?;
    let mut what = format!("{} merge of {} models", method.name(), models.len());
    if !options.weights.is_empty() {
        what.push_str(&format!(", weights [{}]", options.weights.iter().map(|w| fmt_num(*w)).collect::<Vec<_>>().join(", ")));
    }
    interp.say(&format!("merged: {what} ({} params each)", fmt_count(models[0].params().unwrap_or(0))));
    Ok(Value::Model(Rc::new(ModelValue::derived(model, Origin::Derived { what }, &models[0], None))))
}

/// `average([...])`: checkpoint folders (or models), element-wise mean.
fn average(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let Some(Value::List(items)) = a.get("checkpoints") else {
        return Err(a.error("checkpoints", "`average` needs a list of checkpoint folders or models"));
    };
    if items.len() < 2 {
        return Err(a.error("checkpoints", format!("averaging needs at least 2 checkpoints, got {}", items.len())));
    }
    let mut models = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let m = match item {
            Value::Model(_) => plain_model(a, "checkpoints", item, i)?,
            Value::Str(p) => {
                let path = interp.resolve_path(p);
                let loaded = crate::engine::load::load_model(&path, tch::Device::Cpu, tch::Kind::Float).map_err(|e| a.error("checkpoints", e))?;
                Rc::new(ModelValue::loaded(loaded, path.display().to_string(), tch::Kind::Float, p))
            }
            other => return Err(a.error("checkpoints", format!("item {} is {}: give checkpoint folders (\"runs/a/step-001000\") or models", i + 1, with_article(other.kind())))),
        };
        models.push(m);
    }
    let weights: Vec<Rc<Llama>> = models.iter().map(|m| m.weights().map_err(|e| a.error("checkpoints", e))).collect::<Result<_, _>>()?;
    let states: Vec<BTreeMap<String, Tensor>> = weights.iter().map(|w| state(w)).collect();
    let mean = merge::average(&states).map_err(|e| a.error("checkpoints", e))?;
    let model = model_of(&weights[0], &mean).map_err(|e| a.error("checkpoints", e))?;
    let what = format!("average of {} checkpoints", models.len());
    interp.say(&format!("{what}: {}", models[0].spec.one_line()));
    Ok(Value::Model(Rc::new(ModelValue::derived(model, Origin::Derived { what }, &models[0], None))))
}

pub fn table() -> Vec<Builtin> {
    vec![Builtin {
        name: "average",
        family: Family::Replay,
        params: vec![param("checkpoints", Kinds::LIST, Required, "checkpoint folders (\"runs/a/step-001000\") or models of one architecture")],
        returns: Kinds::MODEL,
        doc: "the element-wise mean of checkpoints' weights (checkpoint averaging)",
        example: "average([\"runs/a/step-001000\", \"runs/a/step-002000\"])",
        run: average,
        pure: false,
        slots: &[],
    }]
}
