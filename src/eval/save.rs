//! `save VALUE to "path"`. Writes are atomic: into a temporary sibling, then renamed, so
//! an interrupted save never leaves a half-written file where a good one was.

use super::interp::Interp;
use super::value::Value;
use crate::diag::{Diagnostic, Span};
use crate::kind::with_article;
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn io_error(path: &Path, e: std::io::Error, at: Span) -> Diagnostic {
    Diagnostic::error(format!("cannot write {}: {e}", path.display()))
        .label(at, "saving here")
        .help("check that the folder exists and is writable")
}

/// Writes `files` (name, bytes) into a fresh directory at `dir`, replacing it atomically.
pub fn write_dir_atomic(dir: &Path, files: &[(&str, Vec<u8>)], at: Span) -> Result<(), Diagnostic> {
    let tmp = temp_sibling(dir);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_error(dir, e, at))?;
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes).map_err(|e| io_error(dir, e, at))?;
    }
    if dir.exists() {
        let old = dir.with_file_name(format!(".{}.old-{}", dir.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
        std::fs::rename(dir, &old).map_err(|e| io_error(dir, e, at))?;
        std::fs::rename(&tmp, dir).map_err(|e| io_error(dir, e, at))?;
        let _ = std::fs::remove_dir_all(old);
    } else {
        std::fs::rename(&tmp, dir).map_err(|e| io_error(dir, e, at))?;
    }
    Ok(())
}

pub fn write_file_atomic(path: &Path, bytes: &[u8], at: Span) -> Result<(), Diagnostic> {
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(|e| io_error(path, e, at))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e, at))
}

pub fn save(interp: &mut Interp, value: &Value, path: &Value, value_at: Span, path_at: Span) -> Result<(), Diagnostic> {
    let Value::Str(p) = path else {
        return Err(Diagnostic::error("`save ... to` needs a path string").label(path_at, format!("this is {}", with_article(path.kind()))));
    };
    let target = interp.resolve_path(p);
    match value {
        Value::Model(m) => {
            if m.vocab.is_none() {
                return Err(Diagnostic::error("cannot save a model whose vocabulary size is unknown")
                    .label(value_at, "vocab not known")
                    .help("pass vocab= to llama(...), or set a tokenizer or teacher first"));
            }
            let config = serde_json::to_vec_pretty(&m.hf_config()).expect("config serialises");
            write_dir_atomic(&target, &[("config.json", config)], path_at)?;
            interp.say(&format!("saved config.json of {} to {}", m.one_line(), target.display()));
        }
        Value::Tokenizer(t) => {
            let json = t.tokenizer.to_string(true).map_err(|e| Diagnostic::error(format!("cannot serialise the tokenizer: {e}")).label(value_at, "here"))?;
            write_file_atomic(&target, json.as_bytes(), path_at)?;
            interp.say(&format!("saved tokenizer to {}", target.display()));
        }
        other => {
            return Err(Diagnostic::error(format!("cannot save {}", with_article(other.kind())))
                .label(value_at, format!("this is {}", with_article(other.kind())))
                .help("`save` writes models (a Hugging Face folder) and tokenizers (tokenizer.json)"))
        }
    }
    Ok(())
}
