//! Looking inside models, for the REPL: `topk` (what the model believes comes next, at one
//! or several temperatures, with the dark knowledge outside the top token), `probe` (the
//! text coloured by surprisal) and `compare` (where a student departs from its teacher).
//! Each prints a table and returns the numbers, so scripts and tests can use them.

use super::inference::{forward_ids, input_ids, model_arg as model, tokenizer_for};
use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, ModelValue, TokenizerValue, Value};
use crate::kind::Kinds;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// The model's tokenizer and the ids of the `text` argument (the same rules as
/// `logits`: the model's own tokenizer or a fitting one from the slots).
fn tokens(interp: &Interp, a: &Args, m: &ModelValue) -> Result<(Rc<TokenizerValue>, Vec<u32>), Diagnostic> {
    Ok((tokenizer_for(interp, a, "model", m)?, input_ids(interp, a, "text", m)?))
}

/// Logits `[T, V]` in f32 on the CPU.
fn logits_of(a: &Args, name: &str, m: &ModelValue, ids: &[u32]) -> Result<Tensor, Diagnostic> {
    Ok(forward_ids(a, name, m, ids)?.squeeze_dim(0).to_kind(Kind::Float).to_device(tch::Device::Cpu))
}

/// A token as it reads: its text with whitespace made visible, quoted.
fn shown(tok: &TokenizerValue, id: u32) -> String {
    let text = tok.tokenizer.decode(&[id], false).unwrap_or_default();
    format!("{:?}", text.replace(' ', "␣"))
}

fn bar(p: f64, width: usize) -> String {
    const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let cells = (p.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    format!("{}{}", "█".repeat(cells / 8), EIGHTHS[cells % 8])
}

fn temperatures(a: &Args) -> Result<Vec<f64>, Diagnostic> {
    let ts = match a.get("T") {
        Some(Value::Num(t)) => vec![t],
        Some(Value::List(items)) => items.iter().map(|v| if let Value::Num(t) = v { Ok(*t) } else { Err(a.error("T", "temperatures are numbers")) }).collect::<Result<_, _>>()?,
        _ => return Err(a.error("T", "give a temperature or a list of them, like T=[1, 2, 4]")),
    };
    if ts.is_empty() || ts.iter().any(|t| *t <= 0.0 || !t.is_finite()) {
        return Err(a.error("T", "temperatures must be greater than 0"));
    }
    Ok(ts)
}

/// Entropy in nats of probabilities `p: [V]`.
fn entropy(p: &Tensor) -> f64 {
    -(p * p.clamp_min(1e-30).log()).sum(Kind::Float).double_value(&[])
}

fn topk(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    // `topk(64)`: a teacher cache for train(teacher_cache=...), not a table.
    if let Some(Value::Num(k)) = a.get("model") {
        return super::cache::topk_cache(a, k);
    }
    if a.given("path") {
        return Err(a.error("path", "`path=` belongs to a teacher cache, topk(64, path=\"...\")").help("topk(model, text) shows a table; leave out path="));
    }
    if !a.given("text") {
        return Err(Diagnostic::error("topk(model, text) needs the text before the next token")
            .label(a.call_span, "no text")
            .help("e.g. topk(teacher, \"The capital of France is\"); topk(64) with a number is a teacher cache"));
    }
    if interp.dry_run {
        return Err(interp.stop_dry_run("`topk`", a.call_span));
    }
    let m = model(a, "model")?;
    let (tok, ids) = tokens(interp, a, &m)?;
    let last = logits_of(a, "model", &m, &ids)?.select(0, -1);
    let ts = temperatures(a)?;
    let k = a.count("k")?.min(last.size()[0] as usize);
    let probs: Vec<Tensor> = ts.iter().map(|t| (&last / *t).softmax(-1, Kind::Float)).collect();
    let (_, order) = last.topk(k as i64, -1, true, true);
    let order: Vec<i64> = Vec::<i64>::try_from(&order).unwrap_or_default();
    let mut lines = vec![format!("next token after {:?} ({} tokens)", a.string("text")?, ids.len())];
    let mut header = format!("{:>3}  {:<16} {:>6}", "#", "token", "id");
    for t in &ts {
        header.push_str(&format!("  {:>8}", format!("p T={}", crate::spec::fmt_num(*t))));
    }
    header.push_str(&format!("  {:>8}", "logit"));
    lines.push(header);
    let mut rows = Vec::new();
    for (rank, &id) in order.iter().enumerate() {
        let ps: Vec<f64> = probs.iter().map(|p| p.double_value(&[id])).collect();
        let logit = last.double_value(&[id]);
        let mut line = format!("{:>3}  {:<16} {:>6}", rank + 1, shown(&tok, id as u32), id);
        for p in &ps {
            line.push_str(&format!("  {:>8.4}", p));
        }
        line.push_str(&format!("  {:>8.3}  {}", logit, bar(ps[0], 20)));
        lines.push(line);
        let mut row = vec![Value::str(&tok.tokenizer.decode(&[id as u32], false).unwrap_or_default()), Value::Num(id as f64)];
        row.extend(ps.iter().map(|p| Value::Num(*p)));
        row.push(Value::Num(logit));
        rows.push(Value::List(Rc::new(row)));
    }
    for (t, p) in ts.iter().zip(&probs) {
        let top1 = p.max().double_value(&[]);
        lines.push(format!(
            "T={}: entropy {:.3} nats · top-1 {:.1}% · dark knowledge (mass outside the top token) {:.1}%",
            crate::spec::fmt_num(*t),
            entropy(p),
            100.0 * top1,
            100.0 * (1.0 - top1)
        ));
    }
    interp.say(&lines.join("\n"));
    interp.streamed = true;
    Ok(Value::List(Rc::new(rows)))
}

/// Surprisal (bits) of each token given the ones before it; the first token has none.
fn surprisals(logits: &Tensor, ids: &[u32]) -> Vec<f64> {
    let logp = logits.log_softmax(-1, Kind::Float);
    (1..ids.len()).map(|i| -logp.double_value(&[i as i64 - 1, ids[i] as i64]) / std::f64::consts::LN_2).collect()
}

/// A colour from green (expected) to red (surprising) for `bits`, as a 256-colour escape.
fn heat(bits: f64) -> &'static str {
    match bits {
        b if b < 1.0 => "\x1b[38;5;46m",
        b if b < 3.0 => "\x1b[38;5;148m",
        b if b < 6.0 => "\x1b[38;5;220m",
        b if b < 10.0 => "\x1b[38;5;208m",
        _ => "\x1b[38;5;196m",
    }
}

fn probe(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let m = model(a, "model")?;
    let (tok, ids) = tokens(interp, a, &m)?;
    let logits = logits_of(a, "model", &m, &ids)?;
    let bits = surprisals(&logits, &ids);
    let piece = |i: usize| tok.tokenizer.decode(&ids[i..=i], false).unwrap_or_default();
    let mut text = piece(0);
    for (i, b) in bits.iter().enumerate() {
        let p = piece(i + 1);
        if interp.color {
            text.push_str(&format!("{}{p}\x1b[0m", heat(*b)));
        } else {
            text.push_str(&format!("{p}[{b:.1}]"));
        }
    }
    let mut lines = vec![text];
    lines.push(if interp.color {
        format!(
            "surprisal in bits: {}<1\x1b[0m {}1–3\x1b[0m {}3–6\x1b[0m {}6–10\x1b[0m {}≥10\x1b[0m",
            heat(0.0),
            heat(2.0),
            heat(4.0),
            heat(8.0),
            heat(12.0)
        )
    } else {
        "[n] after each token: its surprisal in bits, −log₂ p(token | the text before it)".to_string()
    });
    let mean = bits.iter().sum::<f64>() / bits.len().max(1) as f64;
    lines.push(format!("mean surprisal {:.2} bits/token · perplexity {:.2}", mean, (mean * std::f64::consts::LN_2).exp()));
    if a.boolean("entropy")? {
        lines.push(format!("{:>4}  {:<16} {:>9} {:>9}", "pos", "token", "surprisal", "entropy"));
        for i in 1..ids.len() {
            let p = logits.select(0, i as i64 - 1).softmax(-1, Kind::Float);
            lines.push(format!("{:>4}  {:<16} {:>9.2} {:>9.2}", i, shown(&tok, ids[i]), bits[i - 1], entropy(&p) / std::f64::consts::LN_2));
        }
    }
    interp.say(&lines.join("\n"));
    interp.streamed = true;
    Ok(Value::List(Rc::new(bits.into_iter().map(Value::Num).collect())))
}

fn compare(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let (t, s) = (model(a, "teacher")?, model(a, "student")?);
    if t.vocab != s.vocab {
        return Err(a.error("student", format!("the teacher has {} tokens and the student {}: compare needs the same vocabulary", t.vocab.unwrap_or(0), s.vocab.unwrap_or(0))));
    }
    let (tok, ids) = tokens(interp, a, &t)?;
    let temp = a.num("T")?;
    let (tl, sl) = (logits_of(a, "teacher", &t, &ids)? / temp, logits_of(a, "student", &s, &ids)? / temp);
    let (lt, ls) = (tl.log_softmax(-1, Kind::Float), sl.log_softmax(-1, Kind::Float));
    let kl = crate::engine::loss::kl_rows(&lt.exp(), &lt, &ls); // [T]
    let kl: Vec<f64> = Vec::<f32>::try_from(&kl).unwrap_or_default().into_iter().map(f64::from).collect();
    let (ta, sa): (Vec<i64>, Vec<i64>) = (Vec::try_from(&tl.argmax(-1, false)).unwrap_or_default(), Vec::try_from(&sl.argmax(-1, false)).unwrap_or_default());
    let agree = ta.iter().zip(&sa).filter(|(x, y)| x == y).count() as f64 / ta.len() as f64;
    let mean = kl.iter().sum::<f64>() / kl.len() as f64;
    let mut lines = vec![format!(
        "{} positions at T={} · mean KL(teacher‖student) {:.4} · top-1 agreement {:.1}%",
        kl.len(),
        crate::spec::fmt_num(temp),
        mean,
        100.0 * agree
    )];
    let mut worst: Vec<usize> = (0..kl.len()).collect();
    worst.sort_by(|&x, &y| kl[y].total_cmp(&kl[x]));
    worst.truncate(a.count("top")?);
    lines.push(format!("{:>4}  {:<16} {:>8}  {:<16} {:<16}", "pos", "after", "KL", "teacher next", "student next"));
    for i in worst {
        lines.push(format!("{:>4}  {:<16} {:>8.4}  {:<16} {:<16}", i, shown(&tok, ids[i]), kl[i], shown(&tok, ta[i] as u32), shown(&tok, sa[i] as u32)));
    }
    interp.say(&lines.join("\n"));
    interp.streamed = true;
    Ok(Value::List(Rc::new(kl.into_iter().map(Value::Num).collect())))
}

pub fn table() -> Vec<Builtin> {
    let (n, s, m) = (Kinds::NUMBER, Kinds::STRING, Kinds::MODEL);
    vec![
        Builtin {
            name: "topk",
            family: Family::Explore,
            params: vec![
                param("model", m | n, Required, "the model (or, a number k: a teacher cache keeping k tokens per position)"),
                param("text", s, Optional, "the text before the next token"),
                param("k", n, Num(10.0), "how many tokens").range(Range::PositiveInt),
                param("T", n | Kinds::LIST, Num(1.0), "a temperature, or several side by side: T=[1, 2, 4]"),
                param("path", s, Optional, "teacher cache only: its folder (default: the kdl cache, keyed by content)"),
            ],
            returns: Kinds::LIST | Kinds::CACHE,
            doc: "the next-token table (token, id, probability at each T, logit) with entropy and the dark knowledge outside the top token; returns [token, id, p..., logit] rows. topk(64) with a number is a teacher cache for train(teacher_cache=...)",
            example: "topk(teacher, \"The capital of France is\", k=5, T=[1, 2, 4])",
            run: topk,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "probe",
            family: Family::Explore,
            params: vec![
                param("model", m, Required, "the model"),
                param("text", s, Required, "the text to read"),
                param("entropy", Kinds::BOOL, Bool(false), "also list each position's surprisal and entropy"),
            ],
            returns: Kinds::LIST,
            doc: "the text coloured by the model's surprisal at each token (a legend follows); returns the surprisals in bits",
            example: "probe(teacher, \"Call me Ishmael.\")",
            run: probe,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "compare",
            family: Family::Explore,
            params: vec![
                param("teacher", m, Required, "the reference model"),
                param("student", m, Required, "the model compared with it"),
                param("text", s, Required, "the text"),
                param("T", n, Num(2.0), "temperature of both distributions").range(Range::Positive),
                param("top", n, Num(5.0), "how many of the most different positions to list").range(Range::PositiveInt),
            ],
            returns: Kinds::LIST,
            doc: "per-position KL(teacher‖student), top-1 agreement and the positions where they disagree most; returns the KL per position",
            example: "compare(teacher, student, \"Call me Ishmael.\", T=2)",
            run: compare,
            pure: false,
            slots: &[],
        },
    ]
}
