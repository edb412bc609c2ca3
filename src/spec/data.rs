//! Data specs: where training text comes from and how it is split. Tokenizing, caching and
//! packing happen in the engine.

use super::fmt_num;

#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// A file, a directory of `.txt` files, or a glob.
    /// `text8`: lowercased to a–z and single spaces, digits spelled out, as Matt
    /// Mahoney's text8 is.
    Text { pattern: String, files: Vec<String>, text8: bool },
    /// JSON lines, one document per line under `field`.
    Jsonl { path: String, field: String },
    /// JSON lines of `{"messages": [{"role", "content"}]}`; loss only on assistant turns.
    Chat { path: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub source: DataSource,
    /// Fraction kept for training; the rest is the validation split.
    pub train_fraction: Option<f64>,
    /// Only these training blocks (a mined hard set).
    pub subset: Option<super::Subset>,
}

impl DataSpec {
    pub fn describe(&self) -> String {
        let base = match &self.source {
            DataSource::Text { pattern, files, text8 } => {
                let normalize = if *text8 { ", normalize=\"text8\"" } else { "" };
                format!("text({pattern:?}{normalize}) [{} file{}]", files.len(), if files.len() == 1 { "" } else { "s" })
            }
            DataSource::Jsonl { path, field } => format!("jsonl({path:?}, field={field:?})"),
            DataSource::Chat { path } => format!("conversations({path:?})"),
        };
        let split = match self.train_fraction {
            Some(f) => format!("{base}.split({})", fmt_num(f)),
            None => base,
        };
        match &self.subset {
            Some(s) => format!("{split} [{}]", s.label),
            None => split,
        }
    }
}
