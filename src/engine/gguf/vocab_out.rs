//! A byte-level BPE tokenizer as GGUF's `tokenizer.ggml.*` metadata, the way
//! convert_hf_to_gguf.py writes it (`_set_vocab_gpt2`): every token string in id order
//! exactly as tokenizer.json spells it, its type, the merges as "left right", the
//! pre-tokenizer's name, the special ids and the chat template. `tokenizer` reads the
//! same keys back, so an export loads with the tokenizer it was written with.

use super::reader::Value;
use serde_json::Value as Json;
use tokenizers::Tokenizer;

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// The special tokens and template a model carries besides its tokenizer.
pub struct Specials<'a> {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub chat_template: Option<&'a str>,
}

/// `tokenizer.ggml.pre` for a byte-level BPE: the named split regexes llama.cpp knows
/// (the same table `tokenizer` reads), else GPT-2's own split. For that one, "smollm" is
/// llama.cpp's type with GPT-2's regex and no clean-up of spaces on decoding, which is
/// what tokenizers' byte-level decoder does ("gpt2" would clean spaces).
fn pre_name(pre_tokenizer: &Json) -> &'static str {
    let text = pre_tokenizer.to_string();
    for name in ["llama-bpe", "qwen2", "qwen35", "tekken", "gpt-4o"] {
        if let Some(regex) = super::tokenizer::split_regex(name) {
            if text.contains(&serde_json::to_string(regex).unwrap_or_default()) {
                return name;
            }
        }
    }
    "smollm"
}

/// Whether the post-processor puts `bos` first (a TemplateProcessing that starts with it).
fn adds_bos(post: &Json, bos: Option<u32>) -> bool {
    let Some(bos) = bos else { return false };
    let first = post.pointer("/single/0/SpecialToken/id").and_then(|v| v.as_str());
    let id_of = |name: &str| post.pointer(&format!("/special_tokens/{name}/ids/0")).and_then(|v| v.as_u64());
    first.and_then(id_of) == Some(bos as u64)
}

/// The tokenizer metadata for a model of `vocab` rows. Ids the tokenizer does not use
/// are written as `[PADn]`, unused, as the converter fills them.
pub fn metadata(tok: &Tokenizer, vocab: usize, specials: &Specials) -> Result<Vec<(String, Value)>, String> {
    let json: Json = serde_json::from_str(&tok.to_string(false).map_err(|e| format!("cannot read the tokenizer: {e}"))?).map_err(|e| format!("cannot read the tokenizer: {e}"))?;
    let model = &json["model"];
    let byte_level = json["pre_tokenizer"].to_string().contains("ByteLevel");
    if model["type"].as_str() != Some("BPE") || !byte_level {
        return Err("GGUF export writes byte-level BPE tokenizers (GPT-2 style, as SmolLM2 and kdl's bpe(...) are); this model's tokenizer is another kind: export it with llama.cpp's convert_hf_to_gguf.py from a saved folder".into());
    }
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab];
    let mut place = |id: u64, text: &str, ty: i32| -> Result<(), String> {
        match tokens.get_mut(id as usize) {
            Some(slot) => {
                *slot = Some((text.to_string(), ty));
                Ok(())
            }
            None => Err(format!("the tokenizer has token id {id} ({text:?}) but the model has only {vocab} rows: the tokenizer does not belong to this model")),
        }
    };
    for (text, id) in model["vocab"].as_object().into_iter().flatten() {
        place(id.as_u64().unwrap_or(u64::MAX), text, NORMAL)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let ty = if added["special"].as_bool().unwrap_or(false) { CONTROL } else { USER_DEFINED };
        place(added["id"].as_u64().unwrap_or(u64::MAX), added["content"].as_str().unwrap_or(""), ty)?;
    }
    let (texts, types): (Vec<Value>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            let (text, ty) = t.unwrap_or_else(|| (format!("[PAD{id}]"), UNUSED));
            (Value::Str(text), Value::I32(ty))
        })
        .unzip();
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::Array(pair) => Value::Str(pair.iter().map(|p| p.as_str().unwrap_or("")).collect::<Vec<_>>().join(" ")),
            other => Value::Str(other.as_str().unwrap_or("").to_string()),
        })
        .collect();
    let key = |k: &str| format!("tokenizer.ggml.{k}");
    let mut out = vec![
        (key("model"), Value::Str("gpt2".into())),
        (key("pre"), Value::Str(pre_name(&json["pre_tokenizer"]).into())),
        (key("tokens"), Value::Array(texts)),
        (key("token_type"), Value::Array(types)),
        (key("merges"), Value::Array(merges)),
    ];
    // Unknown ids would make llama.cpp guess (it takes id 11, whatever that is, and
    // stops generating there): GPT-2's convention, <|endoftext|> for both, where the
    // tokenizer has it.
    let endoftext = json["added_tokens"].as_array().into_iter().flatten().find(|t| t["content"] == "<|endoftext|>").and_then(|t| t["id"].as_u64()).map(|id| id as u32);
    if let Some(b) = specials.bos.or(endoftext) {
        out.push((key("bos_token_id"), Value::U32(b)));
    }
    if let Some(e) = specials.eos.or(endoftext) {
        out.push((key("eos_token_id"), Value::U32(e)));
    }
    out.push((key("add_bos_token"), Value::Bool(adds_bos(&json["post_processor"], specials.bos))));
    if let Some(t) = specials.chat_template {
        out.push(("tokenizer.chat_template".into(), Value::Str(t.to_string())));
    }
    Ok(out)
}
