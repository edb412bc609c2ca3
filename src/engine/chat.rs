//! Chat prompts: a conversation rendered through a Jinja chat template, the same
//! templates Hugging Face ships in `tokenizer_config.json` and GGUF metadata (rendered
//! with minijinja plus its Python-compatibility methods, so `.strip()` and friends work).
//! Models without a template get one of the named styles.

use minijinja::{context, Environment, Error, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// ChatML (SmolLM2, Qwen): `<|im_start|>role\ncontent<|im_end|>\n`.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Llama-2 chat: `[INST]` turns, the system prompt inside the first one.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// Zephyr: `<|user|>\ncontent</s>`.
const ZEPHYR: &str = "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + eos_token }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}";

pub const STYLES: [&str; 3] = ["chatml", "llama2", "zephyr"];

/// The template of a named style.
pub fn named_template(name: &str) -> Option<&'static str> {
    match name {
        "chatml" => Some(CHATML),
        "llama2" | "llama-2" => Some(LLAMA2),
        "zephyr" => Some(ZEPHYR),
        _ => None,
    }
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Renders `messages` with `template`; `add_generation_prompt` opens the assistant's turn.
pub fn render(template: &str, messages: &[Message], add_generation_prompt: bool, bos: &str, eos: &str) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_template("chat", template).map_err(|e| format!("the chat template does not parse: {e}"))?;
    let tmpl = env.get_template("chat").map_err(|e| e.to_string())?;
    tmpl.render(context! {
        messages => messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect::<Vec<_>>(),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidOperation => format!("the chat template refused the conversation: {}", e.detail().unwrap_or("")),
        _ => format!("the chat template failed: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
        pairs.iter().map(|(r, c)| Message { role: r.to_string(), content: c.to_string() }).collect()
    }

    #[test]
    fn chatml_opens_the_assistant_turn() {
        let out = render(CHATML, &msgs(&[("user", "hi")]), true, "", "").unwrap();
        assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn llama2_puts_the_system_prompt_in_the_first_turn() {
        let out = render(LLAMA2, &msgs(&[("system", "be brief"), ("user", "hi  "), ("assistant", " hello\n")]), false, "<s>", "</s>").unwrap();
        assert_eq!(out, "<s>[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nhi [/INST] hello </s>");
    }

    #[test]
    fn llama2_rejects_two_user_turns_in_a_row() {
        let err = render(LLAMA2, &msgs(&[("user", "a"), ("user", "b")]), false, "<s>", "</s>").unwrap_err();
        assert!(err.contains("alternate"), "{err}");
    }

    #[test]
    fn zephyr_ends_turns_with_eos() {
        let out = render(ZEPHYR, &msgs(&[("user", "hi")]), true, "<s>", "</s>").unwrap();
        assert_eq!(out, "<|user|>\nhi</s><|assistant|>\n");
    }
}
