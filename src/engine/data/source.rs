//! Reading a data source: the raw bytes of its files (hashed for the cache key before
//! anything is parsed), then documents — text pieces or chat conversations — for
//! `tokenize`. Every parse error names `file:line`.

use crate::engine::chat::Message;
use crate::spec::DataSource;
use serde_json::Value as Json;

/// Text longer than this is cut into pieces at blank lines so that one large file
/// still tokenizes on every core.
const PIECE_BYTES: usize = 64 * 1024;

pub(super) struct InputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// One document of plain text, in pieces whose tokens are concatenated with nothing
/// between them.
pub(super) struct TextDocument {
    pub pieces: Vec<String>,
}

pub(super) struct Conversation {
    pub file: String,
    pub line: usize,
    pub messages: Vec<Message>,
}

pub(super) enum Documents {
    Text(Vec<TextDocument>),
    Chat(Vec<Conversation>),
}

pub(super) fn source_files(source: &DataSource) -> Vec<&str> {
    match source {
        DataSource::Text { files, .. } => files.iter().map(String::as_str).collect(),
        DataSource::Jsonl { path, .. } | DataSource::Chat { path } => vec![path.as_str()],
    }
}

pub(super) fn read_files(source: &DataSource) -> Result<Vec<InputFile>, String> {
    source_files(source)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(name).map_err(|e| format!("cannot read {name}: {e}"))?;
            Ok(InputFile { name: name.to_string(), bytes })
        })
        .collect()
}

/// The file as text, without a byte-order mark (editors on Windows add one).
fn utf8<'a>(file: &InputFile, bytes: &'a [u8]) -> Result<&'a str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{}:{line}: not UTF-8 text (byte {at}); convert the file to UTF-8", file.name)
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// text8's normalisation (Mahoney's wikifil.pl, less its wiki markup): letters lowercased,
/// digits spelled out, everything else a space, runs of spaces one. Letters outside a–z
/// (é, ß) become spaces too, as there.
pub(super) fn text8_normalize(text: &str) -> String {
    const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let mut out = String::with_capacity(text.len());
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    for c in text.chars() {
        match c.to_ascii_lowercase() {
            l @ 'a'..='z' => out.push(l),
            d @ '0'..='9' => {
                space(&mut out);
                out.push_str(DIGITS[d as usize - '0' as usize]);
                out.push(' ');
            }
            _ => space(&mut out),
        }
    }
    out.trim_end().to_string()
}

pub(super) fn documents(source: &DataSource, files: &[InputFile]) -> Result<Documents, String> {
    match source {
        DataSource::Text { text8, .. } => {
            let mut docs = Vec::new();
            for f in files {
                let raw = utf8(f, &f.bytes)?;
                let normalized;
                let text = if *text8 {
                    normalized = text8_normalize(raw);
                    normalized.as_str()
                } else {
                    raw
                };
                if !text.trim().is_empty() {
                    docs.push(TextDocument { pieces: split_pieces(text, PIECE_BYTES).into_iter().map(str::to_string).collect() });
                }
            }
            Ok(Documents::Text(docs))
        }
        DataSource::Jsonl { field, .. } => {
            let mut docs = Vec::new();
            for f in files {
                for (line, value) in json_lines(f)? {
                    let text = match value.get(field.as_str()) {
                        Some(Json::String(s)) => s.clone(),
                        Some(other) => return Err(format!("{}:{line}: field {field:?} is {}, not a string", f.name, json_kind(other))),
                        None => return Err(format!("{}:{line}: no field {field:?} (it has {}); pick one with jsonl(..., field=\"name\")", f.name, field_names(&value))),
                    };
                    if !text.is_empty() {
                        docs.push(TextDocument { pieces: vec![text] });
                    }
                }
            }
            Ok(Documents::Text(docs))
        }
        DataSource::Chat { .. } => {
            let mut convs = Vec::new();
            for f in files {
                for (line, value) in json_lines(f)? {
                    let messages = conversation(&value).map_err(|e| format!("{}:{line}: {e}", f.name))?;
                    if !messages.is_empty() {
                        convs.push(Conversation { file: f.name.clone(), line, messages });
                    }
                }
            }
            Ok(Documents::Chat(convs))
        }
    }
}

/// The non-blank lines of a JSON-lines file, parsed, with their 1-based line numbers.
fn json_lines(file: &InputFile) -> Result<Vec<(usize, Json)>, String> {
    let text = utf8(file, &file.bytes)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Json = serde_json::from_str(line).map_err(|e| format!("{}:{}: not valid JSON: {e}", file.name, i + 1))?;
        if !value.is_object() {
            return Err(format!("{}:{}: expected a JSON object, found {}", file.name, i + 1, json_kind(&value)));
        }
        out.push((i + 1, value));
    }
    Ok(out)
}

/// `{"messages": [{"role": .., "content": ..}, ..]}` as messages.
fn conversation(value: &Json) -> Result<Vec<Message>, String> {
    let list = match value.get("messages") {
        Some(Json::Array(list)) => list,
        Some(other) => return Err(format!("\"messages\" is {}, not a list", json_kind(other))),
        None => return Err(format!("no \"messages\" list (it has {}); each line should be {{\"messages\": [{{\"role\": ..., \"content\": ...}}]}}", field_names(value))),
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let text = |key: &str| match m.get(key) {
                Some(Json::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("message {} has a {key:?} that is {}, not a string", i + 1, json_kind(other))),
                None => Err(format!("message {} has no {key:?}", i + 1)),
            };
            Ok(Message { role: text("role")?, content: text("content")? })
        })
        .collect()
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn field_names(v: &Json) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => map.keys().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "),
        _ => "no fields".into(),
    }
}

/// Cuts `text` into pieces of at least `target` bytes, each cut just before the last
/// whitespace character of a run that holds a blank line. A GPT-2-style byte-level
/// pre-tokenizer splits such a run the same way, so the pieces tokenize exactly as the
/// whole text; other tokenizers may differ by a token at a cut.
pub(super) fn split_pieces(text: &str, target: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut from = start + target;
    while from < bytes.len() {
        let Some(cut) = blank_line_cut(bytes, from) else { break };
        pieces.push(&text[start..cut]);
        start = cut;
        from = start + target;
    }
    pieces.push(&text[start..]);
    pieces
}

/// The first cut at or after `from`: the index of the last whitespace byte of a
/// whitespace run holding two newlines, when non-whitespace follows the run.
fn blank_line_cut(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] != b'\n' {
            i += 1;
            continue;
        }
        let mut end = i;
        let mut newlines = 0;
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            newlines += (bytes[end] == b'\n') as usize;
            end += 1;
        }
        if newlines >= 2 && end < bytes.len() {
            return Some(end - 1);
        }
        i = end.max(i + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_before_the_last_newline_of_a_blank_line() {
        let text = "aaaa bbb.\n\n\ncc dd\n\nee";
        let pieces = split_pieces(text, 4);
        assert_eq!(pieces, vec!["aaaa bbb.\n\n", "\ncc dd\n", "\nee"]);
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_pieces("no blank lines here", 2), vec!["no blank lines here"]);
        assert_eq!(split_pieces("trailing\n\n\n", 2), vec!["trailing\n\n\n"]);
    }
}

#[cfg(test)]
mod text8_tests {
    use super::text8_normalize;

    #[test]
    fn text8_keeps_lowercase_letters_and_single_spaces_and_spells_digits() {
        assert_eq!(text8_normalize("Call me Ishmael.  Some years ago—never mind\nhow long (1851)!"), "call me ishmael some years ago never mind how long one eight five one");
        assert_eq!(text8_normalize("  Café, 2x!  "), "caf two x");
        assert_eq!(text8_normalize("...!"), "");
    }
}
