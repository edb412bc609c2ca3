//! Generation at scale: `synthesize` (the teacher answers a file of prompts into chat
//! data, batched and resumable: sequence-level KD data for `train`) and `evaluate`
//! (models answer held-out prompts; the answers are scored against the references with
//! metrics such as `bleu`, `chrf`, `rouge_l`, in one table). The engine side is
//! `engine::synth` and `engine::generate::generate_batch`.

use super::actions::model_input;
use super::inference::{chat_renderer, tokenizer_for, weights};
use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::engine::chat::Message;
use crate::engine::generate::{Request, Sampling};
use crate::engine::synth::{self, Answers, Decoding};
use crate::eval::{Interp, ModelValue, Value};
use crate::kind::{with_article, Kinds};
use crate::spec::{DataSource, DataSpec};
use crate::syntax::Role;
use std::rc::Rc;

fn decoding(a: &Args, temperature: f64) -> Result<Decoding, Diagnostic> {
    Ok(Decoding {
        max_new: a.count("max_new")?,
        sampling: Sampling { temperature, top_k: a.opt_count("top_k")?, top_p: a.opt_num("top_p")?, seed: a.num("seed")? as u64 },
        batch: a.count("batch")?,
        progress: a.boolean("progress")?,
    })
}

/// `prompts=`: a file, or a list of user messages; `system` goes before each that has none.
fn prompt_list(interp: &Interp, a: &Args, system: Option<&str>) -> Result<Vec<Vec<Message>>, Diagnostic> {
    let user = |s: &str| vec![Message { role: "user".into(), content: s.to_string() }];
    let mut prompts = match a.get("prompts") {
        Some(Value::Str(p)) => synth::read_prompts(&interp.resolve_path(&p)).map_err(|e| a.error("prompts", e))?,
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(user(s)),
                other => Err(a.error("prompts", format!("a list of prompts holds strings, not {}", with_article(other.kind())))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(a.error("prompts", "give a file of prompts (.jsonl with \"prompt\" or \"messages\", or text lines) or a list of strings")),
    };
    if prompts.is_empty() {
        return Err(a.error("prompts", "there are no prompts to answer"));
    }
    if let Some(system) = system {
        for p in prompts.iter_mut().filter(|p| p[0].role != "system") {
            p.insert(0, Message { role: "system".into(), content: system.to_string() });
        }
    }
    Ok(prompts)
}

fn teacher_arg(interp: &Interp, a: &Args) -> Result<Rc<ModelValue>, Diagnostic> {
    model_input(interp, a, Role::Teacher)?.ok_or_else(|| super::missing_slot(a.builtin.name, Role::Teacher, a.call_span))
}

fn run_synthesize(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let teacher = teacher_arg(interp, a)?;
    let tok = tokenizer_for(interp, a, "teacher", &teacher)?;
    let render = chat_renderer(a, &teacher, &tok)?;
    // keep_system=false: the teacher sees the system message, the data does not.
    let system = a.opt_str("system")?;
    let keep = a.boolean("keep_system")?;
    let prompts = prompt_list(interp, a, system.as_deref().filter(|_| keep))?;
    let out = interp.resolve_path(&a.string("out")?);
    let mut answers = Answers::open(&out).map_err(|e| a.error("out", e))?;
    let w = weights(a, "teacher", &teacher)?;
    let d = decoding(a, a.num("T")?)?;
    let mut log = |line: &str| interp.say(&format!("synthesize: {line}"));
    let hidden = system.filter(|_| !keep).map(|content| Message { role: "system".into(), content });
    let report = synth::synthesize(&w, &tok.tokenizer, &render, &teacher.eos, &prompts, hidden.as_ref(), a.count("n")?, &mut answers, &d, &mut log)
        .map_err(|e| Diagnostic::error(e).label(a.call_span, "synthesizing here"))?;
    interp.say(&format!("{} → {}", report.describe(), out.display()));
    if report.interrupted {
        return Err(Diagnostic::error(format!("synthesize was interrupted; {} answers are in {}", report.resumed + report.written, out.display()))
            .label(a.call_span, "stopped here")
            .help("run the script again: it resumes where this run stopped"));
    }
    Ok(Value::Data(Rc::new(DataSpec { source: DataSource::Chat { path: out.display().to_string() }, train_fraction: None, subset: None })))
}

/// `models=`: one model or a list of them.
fn model_list(a: &Args) -> Result<Vec<Rc<ModelValue>>, Diagnostic> {
    let models: Vec<Rc<ModelValue>> = a
        .items("model")
        .iter()
        .map(|v| match v {
            Value::Model(m) => Ok(m.clone()),
            other => Err(a.error("model", format!("`evaluate` scores models, not {}", with_article(other.kind())))),
        })
        .collect::<Result<_, _>>()?;
    if models.is_empty() {
        return Err(a.error("model", "give a model, or a list of models to compare"));
    }
    Ok(models)
}

/// The metrics' names (for the table) and values (to call).
fn metric_list(a: &Args) -> Result<Vec<(String, Value)>, Diagnostic> {
    a.items("metrics")
        .into_iter()
        .map(|v| match &v {
            Value::Builtin(b) => Ok((b.name.to_string(), v.clone())),
            Value::Func(c) => Ok((c.name.clone(), v.clone())),
            other => Err(a.error("metrics", format!("a metric is a function of (hyps, refs) such as bleu, chrf or rouge_l, not {}", with_article(other.kind())))),
        })
        .collect()
}

/// The held-out prompts and their reference answers.
fn references(interp: &Interp, a: &Args) -> Result<Vec<(Vec<Message>, String)>, Diagnostic> {
    let path = match a.get("data") {
        Some(Value::Data(d)) => match &d.source {
            DataSource::Chat { path } => path.clone(),
            _ => return Err(a.error("data", "`evaluate` needs chat data with reference answers: conversations(\"test.jsonl\")")),
        },
        Some(Value::Str(p)) => interp.resolve_path(&p).display().to_string(),
        _ => return Err(a.error("data", "give held-out chat data: conversations(\"test.jsonl\") or its path")),
    };
    synth::read_references(std::path::Path::new(&path)).map_err(|e| a.error("data", e))
}

/// One model's answers to every prompt (empty for a prompt that fills its context).
fn answers_of(interp: &Interp, a: &Args, m: &ModelValue, prompts: &[Vec<Message>], d: &Decoding) -> Result<Vec<String>, Diagnostic> {
    let tok = tokenizer_for(interp, a, "model", m)?;
    let render = chat_renderer(a, m, &tok)?;
    let w = weights(a, "model", m)?;
    let context = w.max_seq() as usize;
    let mut slots = Vec::new();
    let mut requests = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        if let Some(ids) = synth::encode_prompt(&tok.tokenizer, &render, p, context).map_err(|e| a.error("data", e))? {
            slots.push(i);
            requests.push(Request { prompt: ids, seed: synth::answer_seed(d.sampling.seed, p, 0) });
        }
    }
    let mut texts = vec![String::new(); prompts.len()];
    let mut log = |line: &str| interp.say(&format!("evaluate: {line}"));
    let decoded = synth::decode_batches(&w, &requests, d, &m.eos, &mut log, |first, out| {
        for (k, answer) in out.iter().enumerate() {
            texts[slots[first + k]] = synth::answer_text(&tok.tokenizer, answer)?;
        }
        Ok(())
    })
    .map_err(|e| Diagnostic::error(e).label(a.call_span, "generating here"))?;
    if decoded.interrupted {
        return Err(Diagnostic::error("evaluate was interrupted").label(a.call_span, "stopped here"));
    }
    Ok(texts)
}

fn run_evaluate(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let models = model_list(a)?;
    let metrics = metric_list(a)?;
    if metrics.is_empty() {
        return Err(a.error("metrics", "give at least one metric").help("e.g. metrics=[bleu, chrf, rouge_l]"));
    }
    let names: Vec<String> = match a.get("names") {
        Some(Value::List(l)) => l.iter().map(|v| if let Value::Str(s) = v { s.to_string() } else { v.short() }).collect(),
        _ if models.len() == 1 => vec!["model".into()],
        _ => (1..=models.len()).map(|i| format!("model {i}")).collect(),
    };
    if names.len() != models.len() {
        return Err(a.error("names", format!("{} names for {} models", names.len(), models.len())));
    }
    let pairs = references(interp, a)?;
    let (prompts, refs): (Vec<Vec<Message>>, Vec<String>) = pairs.into_iter().unzip();
    let refs_value = Value::List(Rc::new(refs.iter().map(|r| Value::str(r)).collect()));
    let d = decoding(a, a.num("temp")?)?;
    let mut rows = Vec::new();
    let mut written = String::new();
    for (m, name) in models.iter().zip(&names) {
        let hyps = answers_of(interp, a, m, &prompts, &d)?;
        for ((p, h), r) in prompts.iter().zip(&hyps).zip(&refs) {
            let prompt = p.last().map(|m| m.content.as_str()).unwrap_or_default();
            written.push_str(&serde_json::json!({"model": name, "prompt": prompt, "answer": h, "reference": r}).to_string());
            written.push('\n');
        }
        let hyps_value = Value::List(Rc::new(hyps.iter().map(|h| Value::str(h)).collect()));
        let mut scores = Vec::new();
        for (name, f) in &metrics {
            let args = vec![(None, a.call_span, hyps_value.clone()), (None, a.call_span, refs_value.clone())];
            match interp.call_value(f, args, a.span("metrics"), a.call_span)? {
                Value::Num(x) => scores.push(x),
                other => return Err(a.error("metrics", format!("the metric `{name}` gave {}, not a number", with_article(other.kind())))),
            }
        }
        rows.push(scores);
    }
    if let Some(out) = a.opt_str("out")? {
        let path = interp.resolve_path(&out);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| a.error("out", format!("cannot create {}: {e}", dir.display())))?;
        }
        crate::atomic::write_file(&path, written.as_bytes()).map_err(|e| a.error("out", format!("cannot write {}: {e}", path.display())))?;
    }
    interp.say(&score_table(&names, &metrics, &rows, prompts.len(), &d));
    let as_list = |s: &[f64]| Value::List(Rc::new(s.iter().map(|&x| Value::Num(x)).collect()));
    Ok(if rows.len() == 1 { as_list(&rows[0]) } else { Value::List(Rc::new(rows.iter().map(|r| as_list(r)).collect())) })
}

/// The score table: a row per model, a column per metric.
fn score_table(names: &[String], metrics: &[(String, Value)], rows: &[Vec<f64>], prompts: usize, d: &Decoding) -> String {
    let how = if d.sampling.temperature == 0.0 { "greedy".to_string() } else { format!("T={}", d.sampling.temperature) };
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(5).max(5);
    let mut s = format!("evaluate: {prompts} prompts, {how}, max_new={}\n{:<width$}", d.max_new, "model");
    for (m, _) in metrics {
        s.push_str(&format!("  {m:>9}"));
    }
    for (name, scores) in names.iter().zip(rows) {
        s.push_str(&format!("\n{name:<width$}"));
        for x in scores {
            s.push_str(&format!("  {x:>9.4}"));
        }
    }
    s
}

pub fn table() -> Vec<Builtin> {
    let (n, s, b) = (Kinds::NUMBER, Kinds::STRING, Kinds::BOOL);
    let decoding_params = |max_new: f64, batch: f64| {
        vec![
            param("max_new", n, Num(max_new), "most new tokens per answer").range(Range::PositiveInt),
            param("top_k", n, Optional, "sample among the k most likely tokens").range(Range::PositiveInt),
            param("batch", n, Num(batch), "answers decoded together (one forward per token for all of them)").range(Range::PositiveInt),
            param("seed", n, Num(0.0), "seed of the samplers (each answer has its own, from this and its prompt)").range(Range::NonNegativeInt),
            param("template", s, Optional, "\"chatml\", \"llama2\" or \"zephyr\" (default: the model's own chat template, else chatml)"),
            param("progress", b, Bool(true), "a progress bar with tokens/s and ETA on a terminal"),
        ]
    };
    vec![
        Builtin {
            name: "synthesize",
            family: Family::Data,
            params: [
                param("teacher", Kinds::MODEL, Optional, "the model that answers (default: the teacher slot)"),
                param("prompts", s | Kinds::LIST, Required, "a .jsonl of {\"prompt\": ...} or {\"messages\": [...]} lines, a text file of one prompt per line, or a list of strings"),
                param("out", s, Str("answers.jsonl"), "the JSONL file the answers go to, as {\"messages\": [...]} lines; a re-run resumes it"),
                param("T", n, Num(0.7), "sampling temperature; 0 is greedy").range(Range::NonNegative),
                param("top_p", n, Num(0.9), "sample within the smallest set holding this probability").range(Range::OpenUnit),
                param("n", n, Num(1.0), "answers per prompt").range(Range::PositiveInt),
                param("system", s, Optional, "a system message put before each prompt that has none"),
                param("keep_system", b, Bool(true), "write the system message into the data; false: only the teacher sees it (context distillation: the answers carry what it asked for)"),
            ]
            .into_iter()
            .chain(decoding_params(256.0, 16.0))
            .collect(),
            returns: Kinds::DATA,
            doc: "the teacher answers prompts through its chat template, batched with a KV cache, into chat data for train (sequence-level KD); answers are written as they come, and a re-run skips the prompts already answered",
            example: "synthesize(teacher, prompts=\"prompts.jsonl\", out=\"answers.jsonl\", max_new=128)",
            run: run_synthesize,
            pure: false,
            slots: &[Role::Teacher],
        },
        Builtin {
            name: "evaluate",
            family: Family::Metrics,
            params: [
                param("model", Kinds::MODEL | Kinds::LIST, Required, "a model, or a list of models (a row each)"),
                param("data", Kinds::DATA | s, Required, "held-out conversations ending in the reference answer: conversations(\"test.jsonl\")"),
                param("metrics", Kinds::LIST | Kinds::FUNCTION, Required, "functions of (hyps, refs): bleu, chrf, rouge_l, or your own def"),
                param("names", Kinds::LIST, Optional, "the table's row names, one per model"),
                param("out", s, Optional, "a .jsonl file to write every answer to, as {\"model\", \"prompt\", \"answer\", \"reference\"} lines"),
                param("temp", n, Num(0.0), "sampling temperature; 0 (greedy) makes scores reproducible").range(Range::NonNegative),
                param("top_p", n, Optional, "sample within the smallest set holding this probability").range(Range::OpenUnit),
            ]
            .into_iter()
            .chain(decoding_params(128.0, 16.0))
            .collect(),
            returns: Kinds::LIST,
            doc: "each model answers the held-out prompts (batched, greedy by default) and the answers are scored against the references; prints a table and returns the scores (a list per model when there are several)",
            example: "evaluate([teacher, load(\"student\")], data=conversations(\"test.jsonl\"), metrics=[bleu, chrf, rouge_l], names=[\"teacher\", \"student\"])",
            run: run_evaluate,
            pure: false,
            slots: &[],
        },
    ]
}
