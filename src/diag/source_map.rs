//! Source files known to a session. Spans name their file by `FileId`, so a diagnostic in
//! a `use`d file or a stdlib module points at the right text.

use chumsky::span::SimpleSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId(pub u32);

/// Byte range in one file. chumsky carries the file id as the span's context.
pub type Span = SimpleSpan<usize, FileId>;

pub fn span(file: FileId, range: std::ops::Range<usize>) -> Span {
    SimpleSpan { start: range.start, end: range.end, context: file }
}

#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<(String, String)>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push((name.into(), text.into()));
        FileId(self.files.len() as u32 - 1)
    }

    pub fn name(&self, id: FileId) -> &str {
        self.files.get(id.0 as usize).map(|f| f.0.as_str()).unwrap_or("<unknown>")
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id.0 as usize).map(|f| f.1.as_str()).unwrap_or("")
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(n, t)| (n.as_str(), t.as_str()))
    }

    /// The source text a span covers (empty when out of range).
    pub fn slice(&self, s: Span) -> &str {
        self.text(s.context).get(s.start..s.end).unwrap_or("")
    }

    /// The 1-based line a span starts on.
    pub fn line_of(&self, s: Span) -> usize {
        let text = self.text(s.context);
        text.get(..s.start.min(text.len())).map_or(1, |t| t.matches('\n').count() + 1)
    }
}
