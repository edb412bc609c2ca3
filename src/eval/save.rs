//! `save VALUE to "path"`, written atomically (see `crate::atomic`).

use super::interp::Interp;
use super::value::Value;
use super::ModelValue;
use crate::diag::{Diagnostic, Span};
use crate::kind::with_article;
use std::path::Path;

fn io_error(path: &Path, e: std::io::Error, at: Span) -> Diagnostic {
    Diagnostic::error(format!("cannot write {}: {e}", path.display()))
        .label(at, "saving here")
        .help("check that the folder exists and is writable")
}

/// A file extension in the last part of `path` (`x.gguf` → `gguf`); a version-like
/// suffix (`run-v1.2`) is part of a folder's name, not an extension.
fn extension(path: &str) -> Option<String> {
    let ext = Path::new(path).extension()?.to_str()?;
    ext.chars().any(|c| c.is_ascii_alphabetic()).then(|| ext.to_ascii_lowercase())
}

/// What `save` writes for each kind, so a path that promises another format is an error
/// before anything is written, not a folder named `x.gguf`.
fn check_format(value: &Value, p: &str, path_at: Span) -> Result<(), Diagnostic> {
    let ext = extension(p);
    let (ok, what, help) = match value {
        Value::Model(_) => (
            ext.is_none() || ext.as_deref() == Some("gguf"),
            "a model is saved as a Hugging Face folder (config.json, model.safetensors, tokenizer files) or, with .gguf, as a GGUF file",
            "give a folder path without an extension, e.g. \"out/model\", or a .gguf file (export(model, \"m.gguf\", quant=\"q8_0\") picks the quantization)",
        ),
        Value::Tensor(_) => (ext.as_deref() == Some("safetensors"), "a tensor is saved as a .safetensors file", "end the path with .safetensors"),
        Value::Tokenizer(_) => (ext.as_deref() == Some("json"), "a tokenizer is saved as a Hugging Face tokenizer.json", "end the path with .json, e.g. \"out/tokenizer.json\""),
        _ => (true, "", ""),
    };
    if ok {
        return Ok(());
    }
    let shown = ext.map(|e| format!("`.{e}`")).unwrap_or_else(|| "no extension".into());
    Err(Diagnostic::error(format!("cannot save to {p:?}: {what}, and this path has {shown}")).label(path_at, "this path").help(help))
}

/// Writes `m` as a GGUF file of type `ft` (`save m to "x.gguf"` writes f16; `export`
/// chooses), saying what was written.
pub fn export_gguf(interp: &mut Interp, m: &ModelValue, target: &Path, ft: crate::engine::gguf::FileType, value_at: Span) -> Result<(), Diagnostic> {
    let weights = m.weights().map_err(|e| Diagnostic::error(e).label(value_at, "this model"))?;
    let Some(tok) = &m.tokenizer else {
        return Err(Diagnostic::error("a GGUF file carries its tokenizer, and this model has none")
            .label(value_at, "no tokenizer")
            .help("set the tokenizer slot before building the model (`tokenizer bpe(...)`), or load it from a folder or GGUF that has one"));
    };
    let name = target.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "kdl model".into());
    let specials = crate::engine::gguf::Specials { bos: m.bos, eos: m.eos.first().copied(), chat_template: m.chat_template.as_deref() };
    let out = crate::engine::gguf::export(&weights, &tok.tokenizer, &specials, ft, &name, target).map_err(|e| Diagnostic::error(e).label(value_at, "this model"))?;
    for note in &out.notes {
        interp.say(&format!("note: {note}"));
    }
    interp.say(&format!(
        "exported {} ({} params) to {} as {}: {:.1} MiB, {:.2} bits/weight ({})",
        m.spec.one_line(),
        crate::spec::fmt_count(m.params().unwrap_or(0)),
        target.display(),
        ft.name(),
        out.bytes as f64 / (1024.0 * 1024.0),
        out.bits_per_weight,
        out.types
    ));
    Ok(())
}

pub fn save(interp: &mut Interp, value: &Value, path: &Value, value_at: Span, path_at: Span) -> Result<(), Diagnostic> {
    let Value::Str(p) = path else {
        return Err(Diagnostic::error("`save ... to` needs a path string").label(path_at, format!("this is {}", with_article(path.kind()))));
    };
    check_format(value, p, path_at)?;
    let target = interp.resolve_path(p);
    match value {
        Value::Model(m) => {
            if m.vocab.is_none() {
                return Err(Diagnostic::error("cannot save a model whose vocabulary size is unknown")
                    .label(value_at, "vocab not known")
                    .help("pass vocab= to llama(...), or set a tokenizer or teacher first"));
            }
            if extension(p).as_deref() == Some("gguf") {
                return export_gguf(interp, m, &target, crate::engine::gguf::FileType::F16, value_at);
            }
            let weights = m.weights().map_err(|e| Diagnostic::error(e).label(value_at, "this model"))?;
            if let Some(config) = m.lora() {
                // An adapter is saved alone, as peft lays it out; its base is saved apart.
                let base = match m.base.as_ref().map(|b| &b.origin) {
                    Some(crate::eval::Origin::Loaded { path, .. }) => path.clone(),
                    _ => String::new(),
                };
                let files = crate::engine::lora::peft::adapter_files(&weights, &base).map_err(|e| Diagnostic::error(e).label(value_at, "this adapter"))?;
                crate::atomic::write_dir(&target, &files).map_err(|e| io_error(&target, e, path_at))?;
                interp.say(&format!("saved lora adapter ({}, {} params) to {} (peft layout)", config.describe(), crate::spec::fmt_count(config.params(&m.spec)), target.display()));
                return Ok(());
            }
            let extra = match &m.tokenizer {
                Some(t) => m.tokenizer_files(t).map_err(|e| Diagnostic::error(e).label(value_at, "here"))?,
                None => Vec::new(),
            };
            let special = crate::engine::checkpoint::SpecialTokens { bos: m.bos, eos: m.eos.clone() };
            crate::engine::checkpoint::save_hf_dir(&weights, &target, &special, &extra)
                .map_err(|e| Diagnostic::error(e).label(path_at, "saving here").help("check that the folder is writable"))?;
            interp.say(&format!("saved {} ({} params) to {}", m.spec.one_line(), crate::spec::fmt_count(m.params().unwrap_or(0)), target.display()));
        }
        Value::Tensor(t) => {
            let bytes = crate::engine::checkpoint::safetensors_bytes(&[(t.what, &t.tensor)]).map_err(|e| Diagnostic::error(e).label(value_at, "this tensor"))?;
            crate::atomic::write_file(&target, &bytes).map_err(|e| io_error(&target, e, path_at))?;
            interp.say(&format!("saved {} {:?} to {}", t.what, t.shape(), target.display()));
        }
        Value::Tokenizer(t) => {
            let json = t.tokenizer.to_string(true).map_err(|e| Diagnostic::error(format!("cannot serialise the tokenizer: {e}")).label(value_at, "here"))?;
            crate::atomic::write_file(&target, json.as_bytes()).map_err(|e| io_error(&target, e, path_at))?;
            interp.say(&format!("saved tokenizer to {}", target.display()));
        }
        other => {
            return Err(Diagnostic::error(format!("cannot save {}", with_article(other.kind())))
                .label(value_at, format!("this is {}", with_article(other.kind())))
                .help(crate::kind::SAVE_HELP))
        }
    }
    Ok(())
}

