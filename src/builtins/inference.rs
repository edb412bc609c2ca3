//! Talking to models: `load` a checkpoint, read its `logits`, `generate` and `chat`
//! (streamed to the output as tokens are chosen), move between text and ids with
//! `encode`/`decode`, and train a tokenizer with `bpe`. The tensor work is the engine's
//! (`engine::load`, `engine::generate`, `engine::chat`, `engine::bpe`).

use super::models::{placement, placement_params};
use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::engine::chat::{self, Message};
use crate::engine::generate::{generate, Decoder, Sampling, Stop};
use crate::eval::{Interp, ModelValue, TensorValue, TokenizerValue, Value};
use crate::kind::{with_article, Kinds};
use std::rc::Rc;
use tch::Tensor;

pub(super) fn model_arg(a: &Args, name: &str) -> Result<Rc<ModelValue>, Diagnostic> {
    match a.get(name) {
        Some(Value::Model(m)) => Ok(m),
        Some(other) => Err(a.error(name, format!("`{}` needs a model here, got {}", a.builtin.name, with_article(other.kind())))),
        None => Err(a.error(name, format!("`{}` needs a model", a.builtin.name))),
    }
}

/// The weights of a model argument, with the engine's reason as the error.
pub(super) fn weights(a: &Args, name: &str, m: &ModelValue) -> Result<Rc<crate::engine::llama::Llama>, Diagnostic> {
    m.weights().map_err(|e| a.error(name, e))
}

/// The tokenizer that reads and writes a model's text: its own, else the script's
/// tokenizer slot or the teacher's when the vocabulary fits.
pub(super) fn tokenizer_for(interp: &Interp, a: &Args, name: &str, m: &ModelValue) -> Result<Rc<TokenizerValue>, Diagnostic> {
    if let Some(t) = &m.tokenizer {
        return Ok(t.clone());
    }
    match interp.known_tokenizer() {
        Some(t) if m.vocab.is_some_and(|v| t.vocab() <= v) => Ok(t),
        _ => Err(a
            .error(name, "this model has no tokenizer, so it cannot read or write text")
            .help("give token ids ([1, 2, 3]) instead of text, or set one first: `tokenizer tokenizer(\"tokenizer.json\")`")),
    }
}

/// A tokenizer argument that may also be a model (its tokenizer is used).
fn tokenizer_arg(interp: &Interp, a: &Args, name: &str) -> Result<Rc<TokenizerValue>, Diagnostic> {
    match a.get(name) {
        Some(Value::Tokenizer(t)) => Ok(t),
        Some(Value::Model(m)) => tokenizer_for(interp, a, name, &m),
        Some(other) => Err(a.error(name, format!("`{}` needs a tokenizer or a model, got {}", a.builtin.name, with_article(other.kind())))),
        None => Err(a.error(name, format!("`{}` needs a tokenizer", a.builtin.name))),
    }
}

fn encode(a: &Args, name: &str, tok: &TokenizerValue, text: &str, specials: bool) -> Result<Vec<u32>, Diagnostic> {
    tok.tokenizer.encode(text, specials).map(|e| e.get_ids().to_vec()).map_err(|e| a.error(name, format!("cannot tokenize this text: {e}")))
}

/// Token ids from a list of numbers.
fn id_list(a: &Args, name: &str, items: &[Value]) -> Result<Vec<u32>, Diagnostic> {
    items
        .iter()
        .map(|v| match v {
            Value::Num(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= u32::MAX as f64 => Ok(*n as u32),
            other => Err(a.error(name, format!("token ids are whole numbers of 0 or more; this list holds {}", other.short()))),
        })
        .collect()
}

/// The model input: text (tokenized with the model's tokenizer) or a list of ids.
pub(super) fn input_ids(interp: &Interp, a: &Args, name: &str, m: &ModelValue) -> Result<Vec<u32>, Diagnostic> {
    let ids = match a.get(name) {
        Some(Value::Str(text)) => encode(a, name, &*tokenizer_for(interp, a, "model", m)?, &text, true)?,
        Some(Value::List(items)) => id_list(a, name, &items)?,
        Some(other) => return Err(a.error(name, format!("give text or a list of token ids, not {}", with_article(other.kind())))),
        None => return Err(a.error(name, "no input given")),
    };
    if ids.is_empty() {
        return Err(a.error(name, "this input has no tokens").help("give at least one character or token id"));
    }
    let vocab = m.vocab.unwrap_or(0);
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(a.error(name, format!("token id {bad} is outside the model's vocabulary of {vocab}")));
    }
    if ids.len() > m.max_seq {
        return Err(a.error(name, format!("{} tokens is longer than the model's context of {}", ids.len(), m.max_seq)));
    }
    Ok(ids)
}

fn load(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let given = a.string("path")?;
    let path = match crate::engine::load::alias(&given) {
        Some(found) => found.map_err(|e| a.error("path", e))?,
        None => interp.resolve_path(&given),
    };
    if crate::engine::lora::peft::is_adapter_dir(&path) {
        return load_adapter(interp, a, &path, &given);
    }
    if a.given("base") {
        return Err(a.error("base", format!("{} is a model, not a peft adapter, so it takes no base=", path.display())));
    }
    let (device, dtype) = placement(a)?;
    let loaded = crate::engine::load::load_model(&path, device, dtype).map_err(|e| a.error("path", e))?;
    for note in &loaded.notes {
        interp.say(&format!("note: {note}"));
    }
    let model = ModelValue::loaded(loaded, path.display().to_string(), dtype, &given);
    interp.say(&format!("loaded {} ({} params, {})", model.spec.one_line(), crate::spec::fmt_count(model.params().unwrap_or(0)), model.placement()));
    Ok(Value::Model(Rc::new(model)))
}

/// A peft adapter folder: on `base=`, else on the model its config names when that is a
/// folder or alias kdl can read.
fn load_adapter(interp: &mut Interp, a: &Args, dir: &std::path::Path, given: &str) -> Result<Value, Diagnostic> {
    let (config, base_name) = crate::engine::lora::peft::read_config(dir).map_err(|e| a.error("path", e))?;
    let base = match a.get("base") {
        Some(Value::Model(m)) => m,
        _ => {
            let named = if base_name.is_empty() { None } else { Some(base_name.clone()) };
            let found = named.as_ref().and_then(|n| match crate::engine::load::alias(n) {
                Some(p) => p.ok(),
                None => [dir.join(n), interp.resolve_path(n)].into_iter().find(|p| p.is_dir() || p.is_file()),
            });
            let Some(path) = found else {
                let which = named.map(|n| format!(" (its config names {n:?}, which is not a folder here)")).unwrap_or_default();
                return Err(a.error("path", format!("{} is a LoRA adapter; kdl needs the model it adapts{which}", dir.display())).help(format!("pass it: load({given:?}, base=student)")));
            };
            let (device, dtype) = placement(a)?;
            let loaded = crate::engine::load::load_model(&path, device, dtype).map_err(|e| a.error("path", e))?;
            Rc::new(ModelValue::loaded(loaded, path.display().to_string(), dtype, &path.display().to_string()))
        }
    };
    let w = weights(a, "base", &base)?;
    let model = crate::engine::lora::peft::load_adapter(dir, &w).map_err(|e| a.error("path", e))?;
    interp.say(&format!("loaded lora adapter ({}, {} params) on {}", config.describe(), crate::spec::fmt_count(config.params(&base.spec)), base.spec.one_line()));
    let origin = crate::eval::Origin::Adapter { config, seed: 0 };
    Ok(Value::Model(Rc::new(ModelValue::derived(model, origin, &base, Some(base.clone())))))
}

/// The model's logits `[1, T, V]` on `ids`, on its device, without gradients.
pub(super) fn forward_ids(a: &Args, name: &str, m: &ModelValue, ids: &[u32]) -> Result<Tensor, Diagnostic> {
    let w = weights(a, name, m)?;
    let ids: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::from_slice(&ids).unsqueeze(0).to_device(w.device());
    Ok(tch::no_grad(|| w.forward(&tokens, None)))
}

fn logits(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let m = model_arg(a, "model")?;
    let ids = input_ids(interp, a, "input", &m)?;
    let out = forward_ids(a, "model", &m, &ids)?;
    Ok(Value::Tensor(Rc::new(TensorValue { tensor: out, what: "logits" })))
}

/// `weights=`: the model's own weights, or a copy in fewer bytes for a faster decode —
/// made once and kept with the model until its weights change (a device= copy is
/// converted on the spot).
fn decode_weights(interp: &mut Interp, a: &Args, m: &ModelValue, w: Rc<crate::engine::llama::Llama>) -> Result<Rc<crate::engine::llama::Llama>, Diagnostic> {
    let own = m.weights().ok().is_some_and(|own| Rc::ptr_eq(&own, &w));
    let start = std::time::Instant::now();
    let kind = a.string("weights")?;
    let make: fn(&crate::engine::llama::Llama) -> Result<crate::engine::llama::Llama, String> = match kind.as_str() {
        "model" => return Ok(w),
        "bf16" if w.vs.kind() == tch::Kind::BFloat16 => return Ok(w),
        "bf16" => |l| l.converted(tch::Kind::BFloat16),
        "int8" => |l| l.int8_copy(),
        other => return Err(a.error("weights", format!("unknown weights {other:?}: \"model\", \"bf16\" or \"int8\""))),
    };
    let copy = if own { m.decode_copy(&kind, make) } else { make(&w).map(Rc::new) };
    let copy = copy.map_err(|e| a.error("weights", e))?;
    // Packing takes a moment (0.8 s for SmolLM2): say so the first time, not on reuse.
    let took = start.elapsed().as_secs_f64();
    if copy.int8_bytes() > 0 && took > 0.05 {
        interp.say(&format!("int8 weights: {:.0} MB packed in {took:.1} s, kept for later calls until the weights change", copy.int8_bytes() as f64 / 1e6));
    }
    Ok(copy)
}

fn sampling(a: &Args) -> Result<Sampling, Diagnostic> {
    Ok(Sampling { temperature: a.num("temp")?, top_k: a.opt_count("top_k")?, top_p: a.opt_num("top_p")?, seed: a.num("seed")? as u64 })
}

/// Text safe to stream to a terminal: control characters a model may produce (escape
/// sequences, character-set switches) would garble it, so they print as �.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{FFFD}' } else { c }).collect()
}

/// Runs generation, streaming decoded text to the output when `stream` is on; returns
/// the new text.
fn run_generation(interp: &mut Interp, a: &Args, m: &ModelValue, prompt: &[u32], tok: Option<&TokenizerValue>) -> Result<String, Diagnostic> {
    let mut w = weights(a, "model", m)?;
    let device = super::models::run_device(a, w.device())?;
    if device != w.device() {
        w = Rc::new(w.on_device(device).map_err(|e| a.error("device", e))?);
    }
    w = decode_weights(interp, a, m, w)?;
    let stream = a.boolean("stream")?;
    let max = a.count("max")?;
    let s = sampling(a)?;
    let out = interp.out.clone();
    crate::interrupt::clear();
    let mut shown = 0usize; // bytes of decoded text already written
    let mut so_far: Vec<u32> = Vec::new();
    let decode_raw = |ids: &[u32]| -> String {
        match tok {
            Some(t) => t.tokenizer.decode(ids, true).unwrap_or_default(),
            None => ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "),
        }
    };
    // Never a character cut short: its bytes wait for the rest, and are dropped at the end.
    let decode = |ids: &[u32]| crate::engine::bpe::decode_complete(decode_raw, ids);
    let len = (prompt.len() + max) as i64;
    let (mut decoder, line) = Decoder::for_generation(&w, len, a.graph_mode()?);
    if let Some(line) = line {
        interp.say(&line);
    }
    let (new, stop) = generate(&mut decoder, prompt, max, &s, &m.eos, |id| {
        so_far.push(id);
        if stream {
            let text = decode(&so_far);
            if text.len() >= shown && text.is_char_boundary(shown) {
                let mut o = out.borrow_mut();
                let _ = write!(o, "{}", printable(&text[shown..]));
                let _ = o.flush();
                shown = text.len();
            }
        }
        !crate::interrupt::requested()
    })
    .map_err(|e| Diagnostic::error(e).label(a.call_span, "generating here"))?;
    if let Some(note) = decoder.note.take() {
        interp.say(&note);
    }
    let text = decode(&new);
    if stream {
        let mut o = out.borrow_mut();
        if text.len() > shown && text.is_char_boundary(shown) {
            let _ = write!(o, "{}", printable(&text[shown..]));
        }
        let _ = writeln!(o);
        if stop == Stop::Interrupted {
            let _ = writeln!(o, "[stopped]");
        }
    }
    interp.streamed = stream;
    Ok(text)
}

fn generate_text(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let m = model_arg(a, "model")?;
    let prompt = input_ids(interp, a, "prompt", &m)?;
    let tok = match a.get("prompt") {
        Some(Value::Str(_)) => Some(tokenizer_for(interp, a, "model", &m)?),
        _ => m.tokenizer.clone(),
    };
    let text = run_generation(interp, a, &m, &prompt, tok.as_deref())?;
    Ok(Value::str(&text))
}

/// `[["user", "hi"], ["assistant", "hello"]]` or a single user message.
fn messages(a: &Args) -> Result<Vec<Message>, Diagnostic> {
    let bad = || a.error("messages", "a conversation is a list of [role, text] pairs, like [[\"user\", \"Hello\"]]");
    match a.get("messages") {
        Some(Value::Str(s)) => Ok(vec![Message { role: "user".into(), content: s.to_string() }]),
        Some(Value::List(items)) if !items.is_empty() => items
            .iter()
            .map(|turn| match turn {
                Value::List(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                    (Value::Str(r), Value::Str(c)) => Ok(Message { role: r.to_string(), content: c.to_string() }),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// What turns a conversation into a prompt for `m`: `template=` (a named style) if given,
/// else the model's own chat template, else chatml; the assistant's turn is opened.
pub(super) fn chat_renderer(a: &Args, m: &ModelValue, tok: &TokenizerValue) -> Result<impl Fn(&[Message]) -> Result<String, String>, Diagnostic> {
    let template = match (a.given("template"), &m.chat_template) {
        (false, Some(t)) => t.clone(),
        (false, None) => chat::named_template("chatml").unwrap_or_default().to_string(),
        (true, _) => {
            let name = a.string("template")?;
            chat::named_template(&name)
                .ok_or_else(|| a.error("template", format!("unknown chat style {name:?}")).help(format!("known styles: {}", chat::STYLES.join(", "))))?
                .to_string()
        }
    };
    let token = |id: Option<u32>| id.and_then(|i| tok.tokenizer.id_to_token(i)).unwrap_or_default();
    let (bos, eos) = (token(m.bos), token(m.eos.first().copied()));
    Ok(move |msgs: &[Message]| chat::render(&template, msgs, true, &bos, &eos))
}

fn chat_reply(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let m = model_arg(a, "model")?;
    let tok = tokenizer_for(interp, a, "model", &m)?;
    let mut msgs = messages(a)?;
    if a.given("system") {
        msgs.insert(0, Message { role: "system".into(), content: a.string("system")? });
    }
    let prompt = chat_renderer(a, &m, &tok)?(&msgs).map_err(|e| a.error("messages", e))?;
    // The template already wrote the special tokens; the tokenizer must not add more.
    let ids = encode(a, "messages", &tok, &prompt, false)?;
    let text = run_generation(interp, a, &m, &ids, Some(&tok))?;
    Ok(Value::str(&text))
}

fn bpe(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let files: Vec<std::path::PathBuf> = match a.get("from") {
        Some(Value::Str(p)) => super::data::resolve_text_files(&interp.resolve_path(&p)),
        Some(Value::Data(d)) => match &d.source {
            crate::spec::DataSource::Text { files, .. } => files.iter().map(std::path::PathBuf::from).collect(),
            _ => return Err(a.error("from", "`bpe` trains on plain text: give text(...) data or a path")),
        },
        _ => Vec::new(),
    };
    if files.is_empty() {
        return Err(a.error("from", "no text files to train on").help("give a text file, a folder of .txt files, a pattern, or text(...) data"));
    }
    let vocab = a.count("vocab")?;
    let tok = crate::engine::bpe::train_bpe(&files, vocab, a.count("min_freq")? as u64).map_err(|e| a.error("vocab", e))?;
    let source = format!("bpe({} file{})", files.len(), if files.len() == 1 { "" } else { "s" });
    let value = TokenizerValue { source, tokenizer: tok };
    interp.say(&format!("trained a byte-level BPE: {} entries from {} file{}", value.vocab(), files.len(), if files.len() == 1 { "" } else { "s" }));
    Ok(Value::Tokenizer(Rc::new(value)))
}

pub fn table() -> Vec<Builtin> {
    let (n, s, b, l, m) = (Kinds::NUMBER, Kinds::STRING, Kinds::BOOL, Kinds::LIST, Kinds::MODEL);
    let sampling_params = || {
        vec![
            param("max", n, Num(64.0), "most new tokens").range(Range::PositiveInt),
            param("temp", n, Num(0.8), "sampling temperature; 0 is greedy").range(Range::NonNegative),
            param("top_k", n, Optional, "sample among the k most likely tokens").range(Range::PositiveInt),
            param("top_p", n, Optional, "sample within the smallest set holding this probability").range(Range::OpenUnit),
            param("seed", n, Num(0.0), "seed of the sampler").range(Range::NonNegativeInt),
            param("stream", b, Bool(true), "print tokens as they are generated"),
            param("device", s, Str("auto"), "where to run: \"auto\" where the model lives, or \"cpu\", \"cuda\", \"cuda:N\" (a copy of the model there for this call)"),
            param("graph", s, Str("auto"), "CUDA graphs: \"auto\" decodes through a fixed-length KV cache and replays the captured decode step on CUDA; \"on\" also says why when it cannot; \"off\" always runs eager"),
            param("weights", s, Str("model"), "what decoding reads: \"model\" (its own weights), \"int8\" (a per-row int8 copy for the CPU, made once: 1.66× the tokens/s of f32 on SmolLM2; prompts over 4 tokens still run in f32) or \"bf16\" (a bf16 copy: faster only where the CPU or GPU has bf16 matmuls)"),
        ]
    };
    vec![
        Builtin {
            name: "load",
            family: Family::Inference,
            params: [
                param("path", s, Required, "a Hugging Face folder, a .gguf file, a peft adapter folder, or an alias (\"smollm2\")"),
                param("base", m, Optional, "for a peft adapter: the model it adapts (default: its config's base_model_name_or_path)"),
            ]
            .into_iter()
            .chain(placement_params())
            .collect(),
            returns: m,
            doc: "loads a pretrained model with its tokenizer and chat template (HF safetensors or GGUF, dequantized)",
            example: "load(\"smollm2\")",
            run: load,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "logits",
            family: Family::Inference,
            params: vec![param("model", m, Required, "the model"), param("input", s | l, Required, "text, or a list of token ids")],
            returns: Kinds::TENSOR,
            doc: "the model's logits at every position, a [1, tokens, vocab] tensor",
            example: "logits(teacher, \"The capital of France is\")",
            run: logits,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "generate",
            family: Family::Inference,
            params: [param("model", m, Required, "the model"), param("prompt", s | l, Required, "text, or a list of token ids")]
                .into_iter()
                .chain(sampling_params())
                .collect(),
            returns: s,
            doc: "continues the prompt with the KV cache, streaming tokens; returns the new text",
            example: "generate(teacher, \"Once upon a time\", max=32, temp=0)",
            run: generate_text,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "chat",
            family: Family::Inference,
            params: [
                param("model", m, Required, "the model"),
                param("messages", s | l, Required, "a user message, or [[role, text], ...]"),
                param("system", s, Optional, "a system message put first"),
                param("template", s, Optional, "\"chatml\", \"llama2\" or \"zephyr\" (default: the model's own template, else chatml)"),
            ]
            .into_iter()
            .chain(sampling_params())
            .collect(),
            returns: s,
            doc: "the assistant's reply, through the model's chat template",
            example: "chat(teacher, [[\"user\", \"What is the capital of France?\"]], temp=0)",
            run: chat_reply,
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "encode",
            family: Family::Inference,
            params: vec![param("tokenizer", Kinds::TOKENIZER | m, Required, "a tokenizer, or a model (its tokenizer)"), param("text", s, Required, "the text")],
            returns: l,
            doc: "the token ids of a text (with the tokenizer's special tokens, if it adds any)",
            example: "encode(teacher, \"hello world\")",
            run: |interp, a| {
                let tok = tokenizer_arg(interp, a, "tokenizer")?;
                let ids = encode(a, "text", &tok, &a.string("text")?, true)?;
                Ok(Value::List(Rc::new(ids.into_iter().map(|i| Value::Num(i as f64)).collect())))
            },
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "decode",
            family: Family::Inference,
            params: vec![param("tokenizer", Kinds::TOKENIZER | m, Required, "a tokenizer, or a model (its tokenizer)"), param("ids", l, Required, "token ids")],
            returns: s,
            doc: "the text of token ids",
            example: "decode(teacher, [19556, 905])",
            run: |interp, a| {
                let tok = tokenizer_arg(interp, a, "tokenizer")?;
                let ids = match a.get("ids") {
                    Some(Value::List(items)) => id_list(a, "ids", &items)?,
                    _ => return Err(a.error("ids", "`decode` needs a list of token ids")),
                };
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= tok.vocab()) {
                    return Err(a.error("ids", format!("token id {bad} is outside the tokenizer's {} entries", tok.vocab())));
                }
                tok.tokenizer.decode(&ids, false).map(|t| Value::str(&t)).map_err(|e| a.error("ids", format!("cannot decode: {e}")))
            },
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "bpe",
            family: Family::Inference,
            params: vec![
                param("vocab", n, Num(8000.0), "vocabulary size, specials included").range(Range::PositiveInt),
                param("from", s | Kinds::DATA, Required, "a text file, folder or pattern, or text(...) data"),
                param("min_freq", n, Num(2.0), "merge only pairs seen at least this often").range(Range::PositiveInt),
            ],
            returns: Kinds::TOKENIZER,
            doc: "trains a byte-level BPE tokenizer (GPT-2 style) on text",
            example: "bpe(vocab=8000, from=\"corpus.txt\")",
            run: bpe,
            pure: false,
            slots: &[],
        },
    ]
}
