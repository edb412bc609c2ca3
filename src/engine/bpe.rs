//! Training a byte-level BPE tokenizer from text files with the `tokenizers` trainer: the
//! GPT-2/SmolLM2 layout (ByteLevel pre-tokenizer and decoder, no normalizer), so every
//! string round-trips and no text is ever unknown. The chat specials come first so that
//! `<|endoftext|>` is id 0 as in SmolLM2.

use std::path::PathBuf;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens every trained tokenizer carries, in id order.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The smallest vocabulary that holds the specials and all 256 bytes.
pub const MIN_VOCAB: usize = 256 + SPECIALS.len();

/// Trains a tokenizer with `vocab` entries on `files`; pairs seen fewer than
/// `min_frequency` times are not merged.
pub fn train_bpe(files: &[PathBuf], vocab: usize, min_frequency: u64) -> Result<Tokenizer, String> {
    if vocab < MIN_VOCAB {
        return Err(format!("a byte-level BPE needs at least {MIN_VOCAB} entries (256 bytes + {} specials), got {vocab}", SPECIALS.len()));
    }
    let specials: Vec<AddedToken> = SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(min_frequency)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer: TrainerWrapper = trainer.into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    tokenizer.train_from_files(&mut trainer, names).map_err(|e| format!("BPE training failed: {e}"))?;
    Ok(tokenizer)
}

/// The text of `ids` without a character cut short at the end. When generation stops
/// (`max=`) inside a multi-byte character — one Bengali letter is three byte tokens — the
/// decoder shows its first bytes as U+FFFD; that tail is held back, as streaming does,
/// rather than printed as garbage. A U+FFFD the model really chose is kept.
pub fn decode_complete(decode: impl Fn(&[u32]) -> String, ids: &[u32]) -> String {
    let full = decode(ids);
    if !full.ends_with('\u{FFFD}') {
        return full;
    }
    // A UTF-8 character is at most 4 bytes, so at most 3 of them can be left waiting.
    for cut in 1..=3.min(ids.len()) {
        let shorter = decode(&ids[..ids.len() - cut]);
        if !shorter.ends_with('\u{FFFD}') && full.starts_with(&shorter) && full[shorter.len()..].chars().all(|c| c == '\u{FFFD}') {
            return shorter;
        }
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_bpe_round_trips_unseen_text() {
        let dir = std::env::temp_dir().join(format!("kdl-bpe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("corpus.txt");
        std::fs::write(&file, "the whale the whale the sea the ship\n".repeat(50)).unwrap();
        let tok = train_bpe(&[file], 300, 2).unwrap();
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        assert!(tok.get_vocab_size(true) <= 300);
        let text = "the whale, ünïcødé and 数字 42";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        // "the whale" was merged into fewer tokens than its 9 bytes.
        assert!(tok.encode("the whale", false).unwrap().get_ids().len() < 9);
        // Bengali is unseen here, so each letter is 3 byte tokens: cutting inside one drops
        // it instead of ending in U+FFFD.
        let bangla = tok.encode("আমি বাংলা", false).unwrap().get_ids().to_vec();
        let decode = |ids: &[u32]| tok.decode(ids, false).unwrap();
        for cut in 1..bangla.len() {
            let text = decode_complete(decode, &bangla[..cut]);
            assert!(!text.contains('\u{FFFD}') && "আমি বাংলা".starts_with(&text), "cut at {cut}: {text:?}");
        }
        assert_eq!(decode_complete(decode, &bangla), "আমি বাংলা");
        std::fs::remove_dir_all(&dir).ok();
    }
}
