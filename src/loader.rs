//! Finding and parsing source: script files, `use "file.kd"` and the stdlib (compiled into
//! the binary, so `kdl` works from any folder). Parsed modules are cached so the checker
//! and the evaluator share one parse.

use crate::diag::{Diagnostic, FileId, SourceMap, Span};
use crate::syntax::{self, Module};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The standard library, written in kdl.
pub const STDLIB: &[(&str, &str)] = &[
    ("losses", include_str!("../stdlib/losses.kd")),
    ("arch", include_str!("../stdlib/arch.kd")),
    ("schedules", include_str!("../stdlib/schedules.kd")),
];

#[derive(Clone)]
pub struct Loaded {
    pub file: FileId,
    pub module: Rc<Module>,
    /// Syntax errors of this file (reported once, by whoever loads it first).
    pub diags: Vec<Diagnostic>,
}

#[derive(Default)]
pub struct Loader {
    pub sources: SourceMap,
    cache: HashMap<String, Loaded>,
}

impl Loader {
    /// Parses text that has no file of its own (REPL lines, `kdl run -e`).
    pub fn add_text(&mut self, name: &str, text: &str) -> Loaded {
        let file = self.sources.add(name, text);
        let (module, diags) = syntax::parse(text, file);
        Loaded { file, module: Rc::new(module), diags }
    }

    /// Loads a script given on the command line. IO problems are one-line diagnostics.
    pub fn load_file(&mut self, path: &Path) -> Result<Loaded, Diagnostic> {
        let key = path.display().to_string();
        if let Some(l) = self.cache.get(&key) {
            return Ok(l.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostic::error(format!("cannot read {}: {}", path.display(), io_reason(&e)))
                .help("check the path; kdl scripts usually end in .kd")
        })?;
        let loaded = self.add_text(&key, &text);
        self.cache.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// `use NAME`: a stdlib module.
    pub fn load_stdlib(&mut self, name: &str) -> Option<Loaded> {
        let key = format!("<stdlib>/{name}.kd");
        if let Some(l) = self.cache.get(&key) {
            return Some(l.clone());
        }
        let (_, text) = STDLIB.iter().find(|(n, _)| *n == name)?;
        let loaded = self.add_text(&format!("stdlib/{name}.kd"), text);
        self.cache.insert(key, loaded.clone());
        Some(loaded)
    }

    /// `use "path.kd"`, relative to the folder of the file that says it.
    pub fn load_relative(&mut self, from: FileId, path: &str, at: Span) -> Result<Loaded, Diagnostic> {
        let full = self.resolve(from, path);
        self.load_file(&full).map_err(|d| {
            Diagnostic::error(d.message).label(at, "cannot load this file").help("the path is relative to this script's folder")
        })
    }

    /// A path written in file `from`, made relative to that file's folder.
    pub fn resolve(&self, from: FileId, path: &str) -> PathBuf {
        base_dir(self.sources.name(from)).join(path)
    }
}

/// The folder paths in a file are relative to; text without a file uses the cwd.
pub fn base_dir(file_name: &str) -> PathBuf {
    if file_name.starts_with('<') {
        return PathBuf::new();
    }
    Path::new(file_name).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn stdlib_names() -> Vec<&'static str> {
    STDLIB.iter().map(|(n, _)| *n).collect()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "it is not UTF-8 text".into(),
        _ => e.to_string(),
    }
}
