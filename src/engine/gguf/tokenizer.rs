//! The tokenizer a GGUF describes in its metadata (`tokenizer.ggml.*`), rebuilt as a
//! `tokenizers::Tokenizer` the way transformers builds it from the same file, so both
//! give the same ids: byte-level BPE for `gpt2`, sentencepiece-style BPE with byte
//! fallback for `llama`. A tokenizer kdl cannot rebuild is a note, never a failed load.

use super::reader::{shown, Gguf, Value};
use std::collections::{HashMap, HashSet};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types that transformers adds whole rather than splitting.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
/// Sentencepiece's word-boundary mark.
const SPIECE_SPACE: char = '\u{2581}';

/// What the tokenizer metadata yields; `note` says why `tokenizer` is `None`.
pub struct TokenizerInfo {
    pub tokenizer: Option<Tokenizer>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub chat_template: Option<String>,
    pub note: Option<String>,
}

/// Split regexes transformers puts before the byte-level step for these
/// `tokenizer.ggml.pre` values (gguf_tokenizer_mapping.py); others keep GPT-2's own.
pub(super) fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "tekken" => TEKKEN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the rest are
/// shifted past 255.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

fn strings(v: Option<&Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    let Some(v) = v else { return Ok(None) };
    let items = v.as_array().ok_or_else(|| format!("{key} is not a list"))?;
    items.iter().map(|s| s.as_str().map(String::from).ok_or_else(|| format!("{key} holds a non-string"))).collect::<Result<_, _>>().map(Some)
}

/// Everything read from `tokenizer.ggml.*`, before building.
struct Metadata {
    model: String,
    tokens: Vec<String>,
    types: Vec<i64>,
    scores: Option<Vec<f64>>,
    merges: Option<Vec<String>>,
    pre: Option<String>,
    special: [Option<u32>; 4],
    add_bos: bool,
    add_eos: bool,
}

fn read_metadata(g: &Gguf, model: &str) -> Result<Metadata, String> {
    let key = |k: &str| format!("tokenizer.ggml.{k}");
    let tokens = strings(g.get(&key("tokens")), "tokenizer.ggml.tokens")?.ok_or("no tokenizer.ggml.tokens")?;
    let numbers = |k: &str| -> Result<Option<Vec<Value>>, String> {
        g.get(&key(k)).map(|v| v.as_array().map(<[Value]>::to_vec).ok_or_else(|| format!("tokenizer.ggml.{k} is not a list"))).transpose()
    };
    let types = numbers("token_type")?.unwrap_or_default().iter().map(|v| v.as_i64().unwrap_or(0)).collect();
    let scores = numbers("scores")?.map(|s| s.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect());
    let id = |k: &str| g.get(&key(k)).and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok()).filter(|&i| (i as usize) < tokens.len());
    let flag = |k: &str| g.get(&key(k)).and_then(Value::as_bool);
    Ok(Metadata {
        model: model.to_string(),
        types,
        scores,
        merges: strings(g.get(&key("merges")), "tokenizer.ggml.merges")?,
        pre: g.get(&key("pre")).and_then(Value::as_str).map(String::from),
        special: [id("bos_token_id"), id("eos_token_id"), id("unknown_token_id"), id("padding_token_id")],
        // transformers: llama.cpp adds BOS to sentencepiece vocabularies that do not say.
        add_bos: flag("add_bos_token").unwrap_or(model == "llama"),
        add_eos: flag("add_eos_token").unwrap_or(false),
        tokens,
    })
}

/// The tokenizer, BOS/EOS ids and chat template the file describes.
pub fn tokenizer_of(g: &Gguf) -> TokenizerInfo {
    let id = |k: &str| g.get(k).and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok());
    let mut info = TokenizerInfo {
        tokenizer: None,
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        chat_template: g.get("tokenizer.chat_template").and_then(Value::as_str).map(String::from),
        note: None,
    };
    let model = match g.get("tokenizer.ggml.model").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => {
            info.note = Some("the file has no tokenizer (no tokenizer.ggml.model)".into());
            return info;
        }
    };
    let built = read_metadata(g, &model).and_then(|m| match m.model.as_str() {
        "gpt2" => byte_level(&m).and_then(|t| finish(t, &m)),
        "llama" => sentencepiece(&m).and_then(|t| finish(t, &m)),
        other => Err(format!("tokenizer.ggml.model {other} is not one kdl rebuilds (it reads gpt2 and llama)")),
    });
    match built {
        Ok(t) => info.tokenizer = Some(t),
        Err(e) => info.note = Some(format!("no tokenizer: {e}")),
    }
    info
}

fn bpe(vocab: Vocab, merges: Vec<(String, String)>, byte_fallback: bool) -> Result<BPE, String> {
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(byte_fallback)
        .byte_fallback(byte_fallback)
        .build()
        .map_err(|e| format!("the vocabulary and merges do not make a BPE ({e})"))
}

fn file_merges(m: &Metadata) -> Result<Option<Vec<(String, String)>>, String> {
    let Some(merges) = &m.merges else { return Ok(None) };
    merges
        .iter()
        .map(|s| s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| format!("merge \"{}\" is not two tokens", shown(s))))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// GPT-2 style: tokens spelled in the byte alphabet (respelled when the file wrote them
/// as plain text), regex split, byte-level decoding.
fn byte_level(m: &Metadata) -> Result<Tokenizer, String> {
    let spelling = bytes_to_unicode();
    let alphabet: HashSet<char> = spelling.iter().copied().collect();
    let mut vocab = Vocab::default();
    for (i, token) in m.tokens.iter().enumerate() {
        let spelled = if token.chars().all(|c| alphabet.contains(&c)) { token.clone() } else { token.bytes().map(|b| spelling[b as usize]).collect() };
        vocab.insert(spelled, i as u32);
    }
    let merges = file_merges(m)?.ok_or("a gpt2 tokenizer without tokenizer.ggml.merges")?;
    let mut tok = Tokenizer::new(bpe(vocab, merges, false)?);
    match m.pre.as_deref().and_then(split_regex) {
        Some(regex) => {
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(|e| format!("split regex: {e}"))?;
            tok.with_pre_tokenizer(Some(PreSequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()])));
        }
        None => {
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
    }
    tok.with_decoder(Some(ByteLevel::default()));
    // A control token outside the byte alphabet is a llama.cpp mislabel transformers skips.
    let control = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    add_marked_tokens(&mut tok, m, control);
    Ok(tok)
}

/// Sentencepiece vocabularies as transformers' LlamaTokenizer reads them: BPE with byte
/// fallback over `▁`-marked pieces, merges rebuilt from the scores when the file has none.
fn sentencepiece(m: &Metadata) -> Result<Tokenizer, String> {
    let mut vocab = Vocab::default();
    for (i, token) in m.tokens.iter().enumerate() {
        vocab.insert(token.clone(), i as u32);
    }
    let merges = match file_merges(m)? {
        Some(merges) => merges,
        None => merges_from_scores(m, &vocab)?,
    };
    let mut tok = Tokenizer::new(bpe(vocab, merges, true)?);
    tok.with_pre_tokenizer(Some(Metaspace::new(SPIECE_SPACE, PrependScheme::First, false)));
    let replace = Replace::new(SPIECE_SPACE.to_string(), " ").map_err(|e| e.to_string())?;
    tok.with_decoder(Some(DecoderSequence::new(vec![replace.into(), ByteFallback::new().into(), Fuse::new().into(), Strip::new(' ', 1, 0).into()])));
    add_marked_tokens(&mut tok, m, |_| true);
    Ok(tok)
}

/// transformers' `generate_merges`: every split of a token into two known pieces, ranked
/// by the token's score (then shorter left, shorter right), ties in vocabulary order.
fn merges_from_scores(m: &Metadata, vocab: &Vocab) -> Result<Vec<(String, String)>, String> {
    let scores = m.scores.as_ref().ok_or("a sentencepiece tokenizer with neither merges nor scores")?;
    // Python's dict(zip(tokens, scores)): a repeated token keeps its first place, last score.
    let mut order: Vec<&str> = Vec::new();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    for (token, &score) in m.tokens.iter().zip(scores) {
        if score_of.insert(token, score).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let score = score_of.get(token).copied().unwrap_or(0.0);
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| vocab.contains_key(*l) && vocab.contains_key(*r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab.get(*l).copied(), vocab.get(*r).copied()));
        merges.extend(local);
    }
    let chars = |s: &str| s.chars().count();
    // Descending on all three keys, stable, as Python's sorted(..., reverse=True).
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(chars(b.0).cmp(&chars(a.0))).then(chars(b.1).cmp(&chars(a.1))));
    Ok(merges.into_iter().map(|(l, r, _)| (l.to_string(), r.to_string())).collect())
}

/// Control tokens become special, user-defined ones plain added tokens, so the text's
/// `<|im_start|>` stays one token.
fn add_marked_tokens(tok: &mut Tokenizer, m: &Metadata, control_ok: impl Fn(&str) -> bool) {
    let marked = |kind: i64| m.tokens.iter().zip(&m.types).filter(move |(_, &t)| t == kind).map(|(s, _)| s.as_str());
    let control: Vec<AddedToken> = marked(CONTROL).filter(|t| control_ok(t)).map(|t| AddedToken::from(t, true).normalized(false)).collect();
    tok.add_special_tokens(&control);
    let user: Vec<AddedToken> = marked(USER_DEFINED).filter(|t| tok.token_to_id(t).is_some()).map(|t| AddedToken::from(t, false).normalized(false)).collect();
    tok.add_tokens(&user);
}

/// The named special tokens (BOS, EOS, UNK, PAD) and the BOS/EOS template.
fn finish(mut tok: Tokenizer, m: &Metadata) -> Result<Tokenizer, String> {
    let content = |id: Option<u32>| id.and_then(|i| m.tokens.get(i as usize)).cloned();
    // Only ones already in the vocabulary: one spelled outside it would need a new id.
    let named: Vec<AddedToken> = m
        .special
        .iter()
        .filter_map(|&id| content(id))
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t, true).normalized(false))
        .collect();
    tok.add_special_tokens(&named);
    let [bos_id, eos_id, ..] = m.special;
    let with_id = |text: Option<String>, want: bool| text.filter(|_| want).and_then(|t| tok.token_to_id(&t).map(|id| (t, id)));
    let bos = with_id(content(bos_id), m.add_bos);
    let eos = with_id(content(eos_id), m.add_eos);
    let piece = |t: &Option<(String, u32)>, seq: u32| t.as_ref().map(|(s, _)| format!("{s}:{seq}"));
    let single: Vec<String> = [piece(&bos, 0), Some("$A:0".into()), piece(&eos, 0)].into_iter().flatten().collect();
    let mut pair = single.clone();
    pair.extend([piece(&bos, 1), Some("$B:1".into()), piece(&eos, 1)].into_iter().flatten());
    let specials: Vec<(String, u32)> = bos.into_iter().chain(eos).collect();
    let template = TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| format!("BOS/EOS template: {e}"))?
        .special_tokens(specials)
        .build()
        .map_err(|e| format!("BOS/EOS template: {e}"))?;
    tok.with_post_processor(Some(template));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t.iter().collect::<HashSet<_>>().len(), 256);
    }
}
