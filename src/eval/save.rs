//! `save VALUE to "path"`, written atomically (see `crate::atomic`).

use super::interp::Interp;
use super::value::Value;
use crate::diag::{Diagnostic, Span};
use crate::kind::with_article;
use std::path::Path;

fn io_error(path: &Path, e: std::io::Error, at: Span) -> Diagnostic {
    Diagnostic::error(format!("cannot write {}: {e}", path.display()))
        .label(at, "saving here")
        .help("check that the folder exists and is writable")
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
            crate::atomic::write_dir(&target, &[("config.json", config)]).map_err(|e| io_error(&target, e, path_at))?;
            interp.say(&format!("saved config.json of {} to {}", m.one_line(), target.display()));
        }
        Value::Tokenizer(t) => {
            let json = t.tokenizer.to_string(true).map_err(|e| Diagnostic::error(format!("cannot serialise the tokenizer: {e}")).label(value_at, "here"))?;
            crate::atomic::write_file(&target, json.as_bytes()).map_err(|e| io_error(&target, e, path_at))?;
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
