//! The training data pipeline: a `DataSpec` to packed blocks of token ids. `source` reads
//! files into documents, `tokenize` turns them into one token stream (in parallel, with a
//! loss mask for chat), `cache` keeps that stream on disk so a second run skips
//! tokenizing, `pack` cuts it into blocks and the validation split, and `sampler` orders
//! blocks per epoch. The training loop calls `prepare`, then `Blocks::batch`.
//!
//! Documents: a text file is one document (a book keeps its long-range context; only
//! files are separated) — internally it is tokenized in pieces cut at blank lines, which
//! for byte-level BPE gives the same tokens as the whole file. A JSONL line is one
//! document. Each document is `[bos] text eos`: `eos` is the tokenizer's pre-training
//! separator `<|endoftext|>` / `<|end_of_text|>` when it has one, else `opts.eos`, else
//! `</s>` / `<eos>`, else nothing; `bos` only when `opts.bos` is given. A chat conversation
//! is the chat template's rendering (its `eos_token` is `opts.eos` first), which delimits
//! its own turns, and is trained only on the assistant turns.
//!
//! Blocks: see `pack` — `seq + 1` tokens each, overlapping by one; the partial tail is
//! dropped; the validation blocks are spread evenly and do not depend on the seed.

mod cache;
mod pack;
mod sampler;
mod source;
mod tokenize;

pub use cache::{default_cache_root, KeyHasher};
pub use pack::Blocks;
pub use sampler::Sampler;

use crate::engine::chat::{named_template, STYLES};
use crate::spec::model::group_digits;
use crate::spec::{DataSource, DataSpec};
use cache::{Header, TokenStore};
use source::Documents;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokenize::{Framing, TokenStream};
use tokenizers::Tokenizer;

/// Pre-training document separators: preferred to `DataOptions::eos` between text
/// documents, since a model's `eos` is often its chat-turn end (`<|im_end|>`, `<|eot_id|>`).
const DOCUMENT_ENDS: [&str; 2] = ["<|endoftext|>", "<|end_of_text|>"];

/// End tokens tried when neither of the above is known.
const EOS_NAMES: [&str; 2] = ["</s>", "<eos>"];

pub struct DataOptions<'a> {
    /// Tokens per training row; blocks hold `seq + 1`.
    pub seq: usize,
    /// The run's seed. `prepare` does not use it: the split is the same for every seed so
    /// that validation losses compare across runs; the shuffle is `Sampler::new(seed)`'s.
    pub seed: u64,
    /// Chat template: a style name (`chatml`, `llama2`, `zephyr`) or Jinja text; `None` = chatml.
    pub chat_template: Option<&'a str>,
    /// Put before every text document (chat: where the template has no `bos_token`).
    pub bos: Option<u32>,
    /// The model's end token: the chat template's `eos_token`; between text documents only
    /// when the tokenizer has no `<|endoftext|>`-style separator.
    pub eos: Option<u32>,
    /// Cache root (the tokens go under `<root>/tokens/<key>/`); `None` = `default_cache_root()`.
    pub cache_dir: Option<PathBuf>,
}

pub struct Dataset {
    pub train: Blocks,
    pub val: Blocks,
    pub stats: DataStats,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataStats {
    pub documents: usize,
    pub tokens: u64,
    pub train_blocks: usize,
    pub val_blocks: usize,
    /// True when the tokens came from the disk cache.
    pub cached: bool,
}

/// Reads, tokenizes (or loads from the cache), packs and splits `spec`'s data, reporting
/// token and block counts through `say`.
pub fn prepare(spec: &DataSpec, tokenizer: &Tokenizer, opts: &DataOptions, say: &mut dyn FnMut(&str)) -> Result<Dataset, String> {
    if opts.seq == 0 {
        return Err("seq must be at least 1".into());
    }
    if let Some(f) = spec.train_fraction {
        if !(f > 0.0 && f <= 1.0) {
            return Err(format!("the train fraction must be in (0, 1], got {f}"));
        }
    }
    let template = chat_template(&spec.source, opts.chat_template)?;
    let find = |names: &[&str]| names.iter().find_map(|t| tokenizer.token_to_id(t));
    let eos = match spec.source {
        DataSource::Chat { .. } => opts.eos.or_else(|| find(&DOCUMENT_ENDS)),
        _ => find(&DOCUMENT_ENDS).or(opts.eos),
    }
    .or_else(|| find(&EOS_NAMES));
    let framing = Framing { bos: opts.bos, eos, template };
    let files = source::read_files(&spec.source)?;
    let key = cache_key(&spec.source, tokenizer, &framing, &files)?;
    let dir = opts.cache_dir.clone().unwrap_or_else(default_cache_root).join("tokens").join(key);

    let started = Instant::now();
    let (store, header, cached) = load_or_tokenize(spec, tokenizer, &framing, &files, &dir, say)?;
    say(&token_line(&header, &store, cached, started.elapsed().as_secs_f64()));

    let blocks_needed = opts.seq + 1;
    let starts = pack::block_starts(store.len(), opts.seq);
    if starts.is_empty() {
        return Err(format!(
            "the data has {} tokens, fewer than one block of seq+1 = {blocks_needed}: lower seq= or add text",
            group_digits(store.len() as u64)
        ));
    }
    let total = starts.len();
    let (train, val) = pack::split(starts, spec.train_fraction);
    let store = Arc::new(store);
    let stats = DataStats { documents: header.documents, tokens: header.tokens, train_blocks: train.len(), val_blocks: val.len(), cached };
    let dropped = store.len() - 1 - total * opts.seq;
    say(&format!(
        "blocks: {} of {} tokens: {} train, {} val{}",
        group_digits(total as u64),
        group_digits(blocks_needed as u64),
        group_digits(stats.train_blocks as u64),
        group_digits(stats.val_blocks as u64),
        if dropped > 0 { format!(" ({} tokens past the last whole block unused)", group_digits(dropped as u64)) } else { String::new() }
    ));
    let mut train = Blocks::new(store.clone(), train, opts.seq);
    if let Some(subset) = &spec.subset {
        train = select(&train, subset, opts.seq)?;
        say(&format!("training blocks: {}", subset.label));
    }
    Ok(Dataset { train, val: Blocks::new(store, val, opts.seq), stats })
}

/// The mined blocks of the training split, if the data is still the data they were mined
/// from.
fn select(train: &Blocks, subset: &crate::spec::Subset, seq: usize) -> Result<Blocks, String> {
    if subset.seq != seq {
        return Err(format!("the hard set was mined from blocks of seq={}; train it with seq={} (blocks of another length are other examples)", subset.seq, subset.seq));
    }
    if subset.of_blocks != train.len() || subset.indices.iter().any(|&i| i >= train.len()) {
        return Err(format!(
            "the hard set was mined from {} training blocks, but the data now has {}: the corpus, tokenizer or split changed since; mine it again",
            subset.of_blocks,
            train.len()
        ));
    }
    Ok(train.subset(&subset.indices))
}

/// The token stream from the cache at `dir`, or tokenized and stored there; `true` when cached.
fn load_or_tokenize(
    spec: &DataSpec,
    tokenizer: &Tokenizer,
    framing: &Framing,
    files: &[source::InputFile],
    dir: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<(TokenStore, Header, bool), String> {
    match cache::load(dir) {
        Some((store, header)) => Ok((store, header, true)),
        None => {
            let stream = tokenize_checked(spec, files, tokenizer, framing)?;
            let header = Header {
                format: cache::FORMAT,
                tokens: stream.ids.len() as u64,
                documents: stream.documents,
                files: files.len(),
                masked: stream.mask.is_some(),
                source: spec.describe(),
            };
            match cache::store(dir, &stream.ids, stream.mask.as_deref(), &header).map(|_| cache::load(dir)) {
                Ok(Some((store, header))) => Ok((store, header, false)),
                Ok(None) => Ok((TokenStore::owned(&stream.ids, stream.mask), header, false)),
                Err(e) => {
                    say(&format!("note: {e}; continuing without the cache"));
                    Ok((TokenStore::owned(&stream.ids, stream.mask), header, false))
                }
            }
        }
    }
}

/// The template text for chat sources (`""` for the others, which use none).
fn chat_template<'a>(source: &DataSource, given: Option<&'a str>) -> Result<&'a str, String> {
    if !matches!(source, DataSource::Chat { .. }) {
        return Ok("");
    }
    let given = given.unwrap_or("chatml");
    if let Some(t) = named_template(given) {
        return Ok(t);
    }
    if given.contains("{{") || given.contains("{%") {
        return Ok(given);
    }
    Err(format!("unknown chat template {given:?}: name one of {} or give the Jinja template text", STYLES.join(", ")))
}

/// Everything the token stream depends on, hashed.
fn cache_key(source: &DataSource, tokenizer: &Tokenizer, framing: &Framing, files: &[source::InputFile]) -> Result<String, String> {
    let mut h = KeyHasher::new();
    let tok_json = tokenizer.to_string(false).map_err(|e| format!("cannot serialize the tokenizer for the cache key: {e}"))?;
    h.field(tok_json.as_bytes());
    let (kind, field) = match source {
        DataSource::Text { text8: false, .. } => ("text", ""),
        DataSource::Text { text8: true, .. } => ("text", "text8"),
        DataSource::Jsonl { field, .. } => ("jsonl", field.as_str()),
        DataSource::Chat { .. } => ("chat", ""),
    };
    for part in [kind, field, framing.template] {
        h.field(part.as_bytes());
    }
    for id in [framing.bos, framing.eos] {
        h.field(&id.map_or(-1, i64::from).to_le_bytes());
    }
    let bytes: Vec<&[u8]> = files.iter().map(|f| f.bytes.as_slice()).collect();
    h.field(&(files.len() as u64).to_le_bytes());
    for [a, b] in cache::hash_files(&bytes) {
        h.field(&a.to_le_bytes());
        h.field(&b.to_le_bytes());
    }
    Ok(h.hex())
}

/// Documents to tokens, refusing data with nothing to train on.
fn tokenize_checked(spec: &DataSpec, files: &[source::InputFile], tokenizer: &Tokenizer, framing: &Framing) -> Result<TokenStream, String> {
    let docs = source::documents(&spec.source, files)?;
    let empty = match &docs {
        Documents::Text(d) => d.is_empty(),
        Documents::Chat(c) => c.is_empty(),
    };
    if empty {
        let what = if matches!(spec.source, DataSource::Chat { .. }) { "conversations" } else { "text" };
        return Err(format!("the data is empty: {} holds no {what}; check the files", spec.describe()));
    }
    let stream = tokenize::tokenize(&docs, tokenizer, framing)?;
    if let Some(mask) = &stream.mask {
        if !mask.iter().any(|&m| m != 0) {
            return Err(format!(
                "{} has no assistant turns: only assistant tokens are trained, so there is nothing to learn; add {{\"role\": \"assistant\", ...}} messages",
                spec.describe()
            ));
        }
    }
    Ok(stream)
}

fn token_line(header: &Header, store: &TokenStore, cached: bool, seconds: f64) -> String {
    let files = if header.files == 1 { "1 file".to_string() } else { format!("{} files", group_digits(header.files as u64)) };
    let docs = if header.masked { "conversation" } else { "document" };
    let docs = format!("{} {docs}{}", group_digits(header.documents as u64), if header.documents == 1 { "" } else { "s" });
    let trained = if store.is_masked() {
        format!(", {} in assistant turns", group_digits(store.trained_in(0..store.len())))
    } else {
        String::new()
    };
    let how = match (cached, seconds) {
        (true, _) => " (cached)".to_string(),
        (false, s) if s < 1.0 => format!("; tokenized in {:.0} ms", s * 1000.0),
        (false, s) => format!("; tokenized in {s:.1} s"),
    };
    format!("tokens: {} from {files}, {docs}{trained}{how}", group_digits(header.tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_inline_chat_templates() {
        let chat = DataSource::Chat { path: "c.jsonl".into() };
        assert_eq!(chat_template(&chat, None).unwrap(), named_template("chatml").unwrap());
        assert_eq!(chat_template(&chat, Some("{{ x }}")).unwrap(), "{{ x }}");
        assert!(chat_template(&chat, Some("chatlm")).unwrap_err().contains("chatml, llama2, zephyr"));
        assert_eq!(chat_template(&DataSource::Jsonl { path: "a".into(), field: "text".into() }, Some("x")).unwrap(), "");
    }
}
