//! The file `synthesize` writes: one `{"messages": [...]}` line per answer, appended and
//! flushed batch by batch, so a killed run loses at most the batch in flight. Opening it
//! again counts what each prompt already has (a torn last line is cut off first), which
//! is how a re-run resumes.

use crate::engine::chat::Message;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Answers {
    path: PathBuf,
    file: std::fs::File,
    /// Answers already in the file, by the prompt they answer (`key`).
    done: HashMap<String, usize>,
}

/// What identifies a prompt in the file: its messages as JSON.
pub fn key(prompt: &[Message]) -> String {
    serde_json::Value::Array(prompt.iter().map(|m| json!({"role": m.role, "content": m.content})).collect()).to_string()
}

impl Answers {
    pub fn open(path: &Path) -> Result<Answers, String> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut done = HashMap::new();
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            let mut kept = 0; // bytes of whole, readable lines
            for line in text.split_inclusive('\n') {
                let Some(body) = line.strip_suffix('\n') else { break };
                let Some(prompt) = answered_prompt(body) else {
                    return Err(format!("{shown} has a line that is not a synthesized answer (line {}); give out= a new file, or delete this one", text[..kept].lines().count() + 1));
                };
                *done.entry(prompt).or_insert(0) += 1;
                kept += line.len();
            }
            if kept < text.len() {
                // A run killed mid-write: the torn line goes, its prompt is answered again.
                crate::atomic::write_file(path, &text.as_bytes()[..kept]).map_err(|e| format!("cannot rewrite {shown}: {e}"))?;
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("cannot write {shown}: {e}"))?;
        Ok(Answers { path: path.to_path_buf(), file, done })
    }

    /// How many answers `prompt` already has.
    pub fn count(&self, prompt: &[Message]) -> usize {
        self.done.get(&key(prompt)).copied().unwrap_or(0)
    }

    /// Appends the answers of one batch and flushes them to disk.
    pub fn append(&mut self, answered: &[(Vec<Message>, String)]) -> Result<(), String> {
        let mut lines = String::new();
        for (prompt, answer) in answered {
            let mut messages: Vec<serde_json::Value> = prompt.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
            messages.push(json!({"role": "assistant", "content": answer}));
            lines.push_str(&json!({ "messages": messages }).to_string());
            lines.push('\n');
            *self.done.entry(key(prompt)).or_insert(0) += 1;
        }
        let shown = self.path.display();
        self.file.write_all(lines.as_bytes()).map_err(|e| format!("cannot write {shown}: {e}"))?;
        self.file.sync_data().map_err(|e| format!("cannot write {shown}: {e}"))
    }
}

/// The prompt key of a written line: its messages without the final assistant turn.
fn answered_prompt(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let messages = v.get("messages")?.as_array()?;
    let (last, prompt) = messages.split_last()?;
    (last.get("role")?.as_str()? == "assistant").then(|| serde_json::Value::Array(prompt.to_vec()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Vec<Message> {
        vec![Message { role: "user".into(), content: text.into() }]
    }

    #[test]
    fn reopening_counts_the_answers_and_cuts_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("kdl-answers-{}", std::process::id()));
        let path = dir.join("a.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let mut a = Answers::open(&path).unwrap();
        a.append(&[(q("one"), "1".into()), (q("two"), "2".into()), (q("one"), "uno".into())]).unwrap();
        drop(a);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"thr");
        std::fs::write(&path, &text).unwrap();
        let a = Answers::open(&path).unwrap();
        assert_eq!((a.count(&q("one")), a.count(&q("two")), a.count(&q("three"))), (2, 1, 0));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        std::fs::write(&path, "not json\n").unwrap();
        assert!(Answers::open(&path).err().unwrap().contains("not a synthesized answer"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
