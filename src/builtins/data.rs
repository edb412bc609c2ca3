//! Data and tokenizer sources. Paths are relative to the script's folder. Only the file
//! list is resolved here; tokenizing, caching and packing are the engine's.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, TokenizerValue, Value};
use crate::kind::Kinds;
use crate::spec::{DataSource, DataSpec};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// `*` and `?` in a file name.
fn wildcard(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).map(&keep).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A file, every `.txt` in a folder, or a `*`/`?` pattern in the last path part.
pub(super) fn resolve_text_files(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains(['*', '?']) {
        let dir = path.parent().unwrap_or(Path::new("."));
        return list_dir(dir, |n| wildcard(name, n));
    }
    if path.is_dir() {
        return list_dir(path, |n| n.ends_with(".txt"));
    }
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    Vec::new()
}

fn existing_file(interp: &Interp, a: &Args, name: &str) -> Result<String, Diagnostic> {
    let given = a.string(name)?;
    let path = interp.resolve_path(&given);
    if !path.is_file() {
        return Err(a
            .error(name, format!("no file at {}", path.display()))
            .help("paths are relative to the script's folder; check the name"));
    }
    Ok(path.display().to_string())
}

fn data(source: DataSource) -> Value {
    Value::Data(Rc::new(DataSpec { source, train_fraction: None, subset: None }))
}

pub fn table() -> Vec<Builtin> {
    let s = Kinds::STRING;
    vec![
        Builtin {
            name: "text",
            family: Family::Data,
            params: vec![
                param("path", s, Required, "a text file, a folder of .txt files, or a pattern like \"data/*.txt\""),
                param("normalize", s, Str("none"), "\"text8\": lowercase a–z and single spaces, digits spelled out, as the text8 corpus is; \"none\" keeps the text as it is"),
            ],
            returns: Kinds::DATA,
            doc: "plain-text training data",
            example: "text(\"data/moby_dick.txt\").split(0.98)",
            run: |interp, a| {
                let given = a.string("path")?;
                let files = resolve_text_files(&interp.resolve_path(&given));
                if files.is_empty() {
                    return Err(a
                        .error("path", format!("no text files found at {given:?}"))
                        .help("give a file, a folder holding .txt files, or a pattern such as \"data/*.txt\"; paths are relative to the script"));
                }
                let text8 = match a.string("normalize")?.as_str() {
                    "none" => false,
                    "text8" => true,
                    other => return Err(a.error("normalize", format!("normalize is \"text8\" or \"none\", not {other:?}"))),
                };
                Ok(data(DataSource::Text { pattern: given, files: files.iter().map(|f| f.display().to_string()).collect(), text8 }))
            },
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "jsonl",
            family: Family::Data,
            params: vec![param("path", s, Required, "a .jsonl file"), param("field", s, Str("text"), "the field holding each document")],
            returns: Kinds::DATA,
            doc: "JSON-lines documents, one per line",
            example: "jsonl(\"corpus.jsonl\", field=\"text\")",
            run: |interp, a| Ok(data(DataSource::Jsonl { path: existing_file(interp, a, "path")?, field: a.string("field")? })),
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "conversations",
            family: Family::Data,
            params: vec![param("path", s, Required, "a .jsonl file of {\"messages\": [...]}")],
            returns: Kinds::DATA,
            doc: "chat conversations; the loss counts only the assistant's tokens",
            example: "conversations(\"bangla_chat.jsonl\")",
            run: |interp, a| Ok(data(DataSource::Chat { path: existing_file(interp, a, "path")? })),
            pure: false,
            slots: &[],
        },
        Builtin {
            name: "split",
            family: Family::Data,
            params: vec![
                param("data", Kinds::DATA, Required, "the data to split"),
                param("train", Kinds::NUMBER, Num(0.98), "fraction for training; the rest validates").range(Range::OpenUnit),
            ],
            returns: Kinds::DATA,
            doc: "holds out a validation split (deterministic)",
            example: "text(\"corpus.txt\").split(0.98)",
            run: |_, a| match a.get("data") {
                Some(Value::Data(d)) => {
                    Ok(Value::Data(Rc::new(DataSpec { train_fraction: Some(a.num("train")?), ..(*d).clone() })))
                }
                _ => Err(a.error("data", "`split` needs data")),
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "tokenizer",
            family: Family::Data,
            params: vec![param("source", s | Kinds::MODEL, Required, "a tokenizer.json (Hugging Face tokenizers format), or a loaded model")],
            returns: Kinds::TOKENIZER,
            doc: "a tokenizer from a file or a model; its vocabulary size sizes students that do not give vocab=",
            example: "tokenizer(\"tokenizer.json\")",
            run: |interp, a| {
                if let Some(Value::Model(m)) = a.get("source") {
                    return m.tokenizer.clone().map(Value::Tokenizer).ok_or_else(|| {
                        a.error("source", "this model has no tokenizer").help("load a tokenizer file with tokenizer(\"tokenizer.json\"), or train one with bpe(...)")
                    });
                }
                let path = existing_file(interp, a, "source")?;
                let tok = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
                    a.error("source", format!("{path} is not a tokenizer file: {e}"))
                        .help("kdl reads the Hugging Face `tokenizer.json` format")
                })?;
                Ok(Value::Tokenizer(Rc::new(TokenizerValue { source: path, tokenizer: tok })))
            },
            pure: false,
            slots: &[],
        },
    ]
}
