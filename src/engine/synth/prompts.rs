//! Where `synthesize` reads its prompts: JSON lines holding a `prompt` string or a
//! `messages` list (the teacher answers the last user turn; an assistant turn after it
//! is the old answer and is dropped), or plain text, one user prompt per line.

use crate::engine::chat::Message;
use std::path::Path;

/// The prompts of a file, each the conversation the teacher continues.
pub fn read_prompts(path: &Path) -> Result<Vec<Vec<Message>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the prompts in {}: {e}", path.display()))?;
    let jsonl = matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        out.push(if jsonl { from_json(line).map_err(|e| format!("{at}: {e}"))? } else { vec![user(line)] });
    }
    if out.is_empty() {
        return Err(format!("{} holds no prompts: give JSON lines with \"prompt\" or \"messages\", or text with one prompt per line", path.display()));
    }
    Ok(out)
}

fn user(text: &str) -> Message {
    Message { role: "user".into(), content: text.to_string() }
}

/// The `messages` list of a JSON object.
fn messages_of(v: &serde_json::Value) -> Result<Vec<Message>, String> {
    let Some(list) = v.get("messages").and_then(|m| m.as_array()) else {
        return Err("a line needs a \"messages\" list".into());
    };
    let mut messages = Vec::with_capacity(list.len());
    for m in list {
        let (Some(role), Some(content)) = (m.get("role").and_then(|r| r.as_str()), m.get("content").and_then(|c| c.as_str())) else {
            return Err("each message needs a \"role\" and a \"content\" string".into());
        };
        messages.push(Message { role: role.to_string(), content: content.to_string() });
    }
    Ok(messages)
}

fn from_json(line: &str) -> Result<Vec<Message>, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    if let Some(p) = v.get("prompt") {
        return p.as_str().map(|p| vec![user(p)]).ok_or_else(|| "\"prompt\" must be a string".to_string());
    }
    let mut messages = messages_of(&v).map_err(|_| "a prompt line needs a \"prompt\" string or a \"messages\" list".to_string())?;
    while messages.last().is_some_and(|m| m.role == "assistant") {
        messages.pop();
    }
    if messages.last().map_or(true, |m| m.role != "user") {
        return Err("the conversation has no user turn for the teacher to answer".into());
    }
    Ok(messages)
}

/// Held-out conversations for `evaluate`: per line the prompt (the turns before the last
/// assistant turn) and that turn's text, the reference answer.
pub fn read_references(path: &Path) -> Result<Vec<(Vec<Message>, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{at}: not JSON ({e})"))?;
        let mut messages = messages_of(&v).map_err(|e| format!("{at}: {e}"))?;
        match messages.pop() {
            Some(last) if last.role == "assistant" && messages.last().is_some_and(|m| m.role == "user") => out.push((messages, last.content)),
            _ => return Err(format!("{at}: the conversation must end with a user turn and the assistant's answer to it (the reference)")),
        }
    }
    if out.is_empty() {
        return Err(format!("{} holds no conversations", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_prompts_drop_the_old_answer() {
        let m = from_json(r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "old"}]}"#).unwrap();
        assert_eq!(m.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user"]);
        assert_eq!(from_json(r#"{"prompt": "hi"}"#).unwrap(), vec![user("hi")]);
        assert!(from_json(r#"{"text": "hi"}"#).unwrap_err().contains("\"prompt\""));
        assert!(from_json(r#"{"messages": [{"role": "system", "content": "s"}]}"#).unwrap_err().contains("no user turn"));
    }
}
