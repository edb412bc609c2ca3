//! The training data pipeline (`engine::data`): the token cache, packing into shifted
//! blocks, chat loss masks, the validation split, the epoch sampler and error messages.
//! Every test uses its own temporary folder and cache root, never the user's cache.

use kdl::engine::bpe::train_bpe;
use kdl::engine::data::{prepare, DataOptions, Dataset, Sampler};
use kdl::spec::{DataSource, DataSpec};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokenizers::Tokenizer;

fn moby() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    std::fs::read_to_string(p).unwrap()
}

/// The book's first `bytes` bytes or a little fewer, ending on a character boundary.
fn moby_start(bytes: usize) -> String {
    let book = moby();
    let end = (0..=bytes).rev().find(|&i| book.is_char_boundary(i)).unwrap();
    book[..end].to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kdl-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A byte-level BPE of up to 1000 entries trained once on the bundled Moby-Dick chapters; id 0 is `<|endoftext|>`.
fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = temp_dir("bpe");
        let file = dir.join("corpus.txt");
        std::fs::write(&file, moby()).unwrap();
        train_bpe(&[file], 1000, 2).unwrap()
    })
}

fn text(files: &[&Path], train_fraction: Option<f64>) -> DataSpec {
    let files = files.iter().map(|f| f.display().to_string()).collect();
    DataSpec { source: DataSource::Text { pattern: "test".into(), files, text8: false }, train_fraction, subset: None }
}

fn opts(seq: usize, cache: &Path) -> DataOptions<'static> {
    DataOptions { seq, seed: 0, chat_template: None, bos: None, eos: None, cache_dir: Some(cache.to_path_buf()) }
}

fn run(spec: &DataSpec, opts: &DataOptions) -> (Dataset, Vec<String>) {
    let mut lines = Vec::new();
    let data = prepare(spec, tokenizer(), opts, &mut |s| lines.push(s.to_string())).unwrap();
    (data, lines)
}

fn error(spec: &DataSpec, opts: &DataOptions) -> String {
    match prepare(spec, tokenizer(), opts, &mut |_| {}) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn all_tokens(blocks: &kdl::engine::data::Blocks) -> Vec<Vec<u32>> {
    (0..blocks.len()).map(|i| blocks.tokens(i)).collect()
}

fn longs(t: &tch::Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
}

fn floats(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn the_cache_is_hit_on_the_second_prepare_with_the_same_tokens() {
    let dir = temp_dir("cache-hit");
    let file = dir.join("a.txt");
    std::fs::write(&file, moby()).unwrap();
    let spec = text(&[&file], Some(0.9));
    let o = opts(64, &dir.join("cache"));
    let (first, lines) = run(&spec, &o);
    assert!(!first.stats.cached);
    assert!(lines[0].starts_with("tokens: ") && lines[0].contains("tokenized in"), "{lines:?}");
    let (second, lines) = run(&spec, &o);
    assert!(second.stats.cached);
    assert!(lines[0].ends_with("(cached)"), "{lines:?}");
    assert_eq!(first.stats.tokens, second.stats.tokens);
    assert_eq!(all_tokens(&first.train), all_tokens(&second.train));
    assert_eq!(all_tokens(&first.val), all_tokens(&second.val));
    // One cache entry, holding the mmapped files and no temporary folders.
    let entries: Vec<_> = std::fs::read_dir(dir.join("cache/tokens")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = dir.join("cache/tokens").join(&entries[0]);
    assert_eq!(std::fs::metadata(entry.join("tokens.u32")).unwrap().len(), first.stats.tokens * 4);
    assert!(entry.join("header.json").is_file() && !entry.join("mask.u8").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn changing_the_file_invalidates_the_cache() {
    let dir = temp_dir("cache-miss");
    let file = dir.join("a.txt");
    let original = &moby_start(40_000);
    std::fs::write(&file, original).unwrap();
    let spec = text(&[&file], None);
    let o = opts(32, &dir.join("cache"));
    let (first, _) = run(&spec, &o);
    std::fs::write(&file, format!("{original}\n\nA new closing paragraph.")).unwrap();
    let (changed, _) = run(&spec, &o);
    assert!(!changed.stats.cached);
    assert!(changed.stats.tokens > first.stats.tokens);
    // The key is the content, not the name or mtime: the same bytes elsewhere hit.
    let copy = dir.join("copy.txt");
    std::fs::write(&copy, original).unwrap();
    let (again, _) = run(&text(&[&copy], None), &o);
    assert!(again.stats.cached);
    assert_eq!(again.stats.tokens, first.stats.tokens);
    // A different sequence length repacks the cached tokens.
    let (repacked, _) = run(&spec, &opts(16, &dir.join("cache")));
    assert!(repacked.stats.cached);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn targets_are_the_inputs_shifted_by_one() {
    let dir = temp_dir("shift");
    let file = dir.join("moby.txt");
    // ~160 KB, so that the file is tokenized in several pieces cut inside paragraphs' runs.
    let chapters = moby();
    let half = moby_start(chapters.len() / 2).len();
    let book = format!("{}\n\n{chapters}\n\n{chapters}", &chapters[half..]);
    std::fs::write(&file, &book).unwrap();
    let seq = 128;
    let (data, _) = run(&text(&[&file], None), &opts(seq, &dir.join("cache")));
    // The file is one document, tokenized in pieces exactly as a whole, then EOS.
    let whole = tokenizer().encode(book.as_str(), false).unwrap().get_ids().to_vec();
    assert_eq!(data.stats.tokens, whole.len() as u64 + 1);
    assert_eq!(data.stats.documents, 1);
    assert_eq!(data.train.len(), whole.len() / seq);
    let stream: Vec<u32> = (0..data.train.len()).flat_map(|i| data.train.tokens(i)[..seq].to_vec()).collect();
    assert_eq!(stream, whole[..stream.len()]);

    let picks = [0, 7, data.train.len() - 1];
    let (inputs, targets, mask) = data.train.batch(&picks);
    assert_eq!(inputs.size(), vec![3, seq as i64]);
    assert_eq!(inputs.kind(), tch::Kind::Int64);
    assert_eq!(mask.kind(), tch::Kind::Float);
    let (inputs, targets) = (longs(&inputs), longs(&targets));
    for (row, &b) in picks.iter().enumerate() {
        let block: Vec<i64> = data.train.tokens(b).iter().map(|&t| t as i64).collect();
        assert_eq!(inputs[row * seq..(row + 1) * seq], block[..seq]);
        assert_eq!(targets[row * seq..(row + 1) * seq], block[1..]);
    }
    // Consecutive blocks share their boundary token: every token is a target once.
    assert_eq!(data.train.tokens(0)[seq], data.train.tokens(1)[0]);
    assert!(floats(&mask).iter().all(|&m| m == 1.0));
    assert_eq!(data.train.valid_tokens(&picks), 3 * seq as u64);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn text_files_are_documents_joined_by_eos() {
    let dir = temp_dir("eos");
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    std::fs::write(&a, "Call me Ishmael.\n\nSome years ago, never mind how long.").unwrap();
    std::fs::write(&b, "The whale!").unwrap();
    let (data, _) = run(&text(&[&a, &b], None), &opts(1, &dir.join("cache")));
    let len = |s: &str| tokenizer().encode(s, false).unwrap().get_ids().len();
    let eos = tokenizer().token_to_id("<|endoftext|>").unwrap();
    let stream: Vec<u32> = std::iter::once(data.train.tokens(0)[0]).chain((0..data.train.len()).map(|i| data.train.tokens(i)[1])).collect();
    assert_eq!(data.stats.documents, 2);
    assert_eq!(stream.len(), len("Call me Ishmael.\n\nSome years ago, never mind how long.") + len("The whale!") + 2);
    assert_eq!(stream.iter().filter(|&&t| t == eos).count(), 2);
    assert_eq!(*stream.last().unwrap(), eos);
    let bos = DataOptions { bos: Some(1), ..opts(1, &dir.join("cache")) };
    let (with_bos, _) = run(&text(&[&a, &b], None), &bos);
    assert!(!with_bos.stats.cached, "bos is part of the cache key");
    assert_eq!(with_bos.stats.tokens, stream.len() as u64 + 2);
    // A model's chat end token (`<|im_end|>`) does not replace the document separator.
    let im_end = tokenizer().token_to_id("<|im_end|>").unwrap();
    let (chat_eos, _) = run(&text(&[&a, &b], None), &DataOptions { eos: Some(im_end), ..opts(1, &dir.join("cache")) });
    assert!(chat_eos.stats.cached && (0..chat_eos.train.len()).all(|i| !chat_eos.train.tokens(i).contains(&im_end)));
    std::fs::remove_dir_all(&dir).ok();
}

/// The whole token stream and its target mask, read back through seq=1 blocks.
fn stream_and_mask(data: &Dataset) -> (Vec<u32>, Vec<f32>) {
    let blocks = &data.train;
    let all: Vec<usize> = (0..blocks.len()).collect();
    let (inputs, targets, mask) = blocks.batch(&all);
    let (inputs, targets) = (longs(&inputs), longs(&targets));
    let mut stream = vec![inputs[0] as u32];
    stream.extend(targets.iter().map(|&t| t as u32));
    let mut m = vec![0.0];
    m.extend(floats(&mask));
    (stream, m)
}

/// The decoded runs of consecutive masked tokens.
fn masked_runs(stream: &[u32], mask: &[f32]) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (&t, &m) in stream.iter().zip(mask) {
        if m == 1.0 {
            current.push(t);
        } else if !current.is_empty() {
            runs.push(tokenizer().decode(&current, false).unwrap());
            current.clear();
        }
    }
    if !current.is_empty() {
        runs.push(tokenizer().decode(&current, false).unwrap());
    }
    runs
}

const CHATS: &str = r#"{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Who is Ishmael?"}, {"role": "assistant", "content": "The narrator."}, {"role": "user", "content": "And Ahab?"}, {"role": "assistant", "content": "The captain, hunting the whale."}]}

{"messages": [{"role": "user", "content": "বাংলায় বলো: তিমি"}, {"role": "assistant", "content": "তিমি একটি বিশাল সামুদ্রিক প্রাণী।"}]}
"#;

#[test]
fn chat_masking_marks_exactly_the_assistant_tokens() {
    let dir = temp_dir("chat");
    let file = dir.join("chat.jsonl");
    std::fs::write(&file, CHATS).unwrap();
    let spec = DataSpec { source: DataSource::Chat { path: file.display().to_string() }, train_fraction: None, subset: None };
    let (data, lines) = run(&spec, &opts(1, &dir.join("cache")));
    assert_eq!(data.stats.documents, 2);
    assert!(lines[0].contains("2 conversations") && lines[0].contains("in assistant turns"), "{lines:?}");
    let (stream, mask) = stream_and_mask(&data);
    assert_eq!(stream.len() as u64, data.stats.tokens);
    assert_eq!(
        masked_runs(&stream, &mask),
        vec!["The narrator.<|im_end|>", "The captain, hunting the whale.<|im_end|>", "তিমি একটি বিশাল সামুদ্রিক প্রাণী।<|im_end|>"]
    );
    let rendered = tokenizer().decode(&stream, false).unwrap();
    assert!(rendered.starts_with("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n"), "{rendered}");
    let all: Vec<usize> = (0..data.train.len()).collect();
    assert_eq!(data.train.valid_tokens(&all), mask.iter().sum::<f32>() as u64);
    let entry = std::fs::read_dir(dir.join("cache/tokens")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::metadata(entry.join("mask.u8")).unwrap().len(), data.stats.tokens);
    let (cached, _) = run(&spec, &opts(1, &dir.join("cache")));
    assert!(cached.stats.cached);
    assert_eq!(stream_and_mask(&cached), (stream, mask));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn chat_templates_that_use_eos_train_it_after_the_reply() {
    let dir = temp_dir("chat-zephyr");
    let file = dir.join("chat.jsonl");
    std::fs::write(&file, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"Call me Ishmael.\"}]}\n").unwrap();
    let spec = DataSpec { source: DataSource::Chat { path: file.display().to_string() }, train_fraction: None, subset: None };
    let o = DataOptions { chat_template: Some("zephyr"), ..opts(1, &dir.join("cache")) };
    let (data, _) = run(&spec, &o);
    let (stream, mask) = stream_and_mask(&data);
    assert_eq!(masked_runs(&stream, &mask), vec!["Call me Ishmael.<|endoftext|>"]);
    let none = format!("{}\n", r#"{"messages": [{"role": "user", "content": "hi"}]}"#);
    std::fs::write(&file, none).unwrap();
    assert!(error(&spec, &o).contains("no assistant turns"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_sampler_is_deterministic_and_resumable() {
    let blocks = 10;
    let mut a = Sampler::new(7);
    let mut b = Sampler::new(7);
    let first: Vec<Vec<usize>> = (0..6).map(|_| a.next_batch(blocks, 4)).collect();
    let again: Vec<Vec<usize>> = (0..6).map(|_| b.next_batch(blocks, 4)).collect();
    assert_eq!(first, again);
    // Each epoch is a permutation; a batch at an epoch's end continues into the next one.
    let flat: Vec<usize> = first.concat();
    for epoch in flat.chunks(blocks).take(2) {
        let mut e = epoch.to_vec();
        e.sort();
        assert_eq!(e, (0..blocks).collect::<Vec<_>>());
    }
    assert_ne!(flat[..blocks], flat[blocks..2 * blocks], "each epoch has its own order");
    assert_eq!((a.epoch, a.position), (2, 4));
    assert_ne!(Sampler::new(8).next_batch(blocks, blocks), flat[..blocks]);

    // Saved mid-epoch (as a checkpoint would) and restored, it continues identically.
    let mut run = Sampler::new(3);
    run.next_batch(blocks, 3);
    let saved = serde_json::to_string(&run).unwrap();
    let mut resumed: Sampler = serde_json::from_str(&saved).unwrap();
    assert_eq!(resumed, run);
    for _ in 0..7 {
        assert_eq!(resumed.next_batch(blocks, 3), run.next_batch(blocks, 3));
    }
    assert_eq!(Sampler::new(1).next_batch(0, 4), Vec::<usize>::new());
}

#[test]
fn split_fractions_set_the_validation_size() {
    let dir = temp_dir("split");
    let file = dir.join("a.txt");
    std::fs::write(&file, moby_start(60_000)).unwrap();
    let cache = dir.join("cache");
    let (whole, lines) = run(&text(&[&file], None), &opts(32, &cache));
    let n = whole.train.len();
    assert!(n > 100, "{n}");
    assert_eq!(whole.val.len(), 0);
    assert!(lines[1].starts_with("blocks: ") && lines[1].contains(" of 33 tokens: ") && lines[1].contains(" train, 0 val"), "{lines:?}");
    let (split, _) = run(&text(&[&file], Some(0.9)), &opts(32, &cache));
    let val = (n as f64 * (1.0 - 0.9)).round() as usize;
    assert_eq!((split.stats.train_blocks, split.stats.val_blocks), (n - val, val));
    assert_eq!((split.train.len(), split.val.len()), (n - val, val));
    // Train and val together are every block once, the same on each run.
    let mut together = all_tokens(&split.train);
    together.extend(all_tokens(&split.val));
    together.sort();
    let mut every = all_tokens(&whole.train);
    every.sort();
    assert_eq!(together, every);
    let (again, _) = run(&text(&[&file], Some(0.9)), &DataOptions { seed: 99, ..opts(32, &cache) });
    assert_eq!(all_tokens(&again.val), all_tokens(&split.val));
    // A tiny hold-out still keeps one block.
    let (tiny, _) = run(&text(&[&file], Some(0.9999)), &opts(32, &cache));
    assert_eq!(tiny.val.len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_json_lines_name_the_file_and_line() {
    let dir = temp_dir("bad-json");
    let file = dir.join("docs.jsonl");
    let jsonl = |field: &str| DataSpec { source: DataSource::Jsonl { path: file.display().to_string(), field: field.into() }, train_fraction: None, subset: None };
    let o = opts(4, &dir.join("cache"));
    std::fs::write(&file, "{\"text\": \"one\"}\n\n{\"text\": \"two\"\n").unwrap();
    let e = error(&jsonl("text"), &o);
    assert!(e.contains("docs.jsonl:3: not valid JSON"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    std::fs::write(&file, "{\"text\": \"one\"}\n{\"body\": \"two\"}\n").unwrap();
    let e = error(&jsonl("text"), &o);
    assert!(e.contains("docs.jsonl:2: no field \"text\"") && e.contains("\"body\""), "{e}");
    std::fs::write(&file, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\"}]}\n").unwrap();
    let chat = DataSpec { source: DataSource::Chat { path: file.display().to_string() }, train_fraction: None, subset: None };
    let e = error(&chat, &o);
    assert!(e.contains("docs.jsonl:1: message 2 has no \"content\""), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn too_little_data_says_how_many_tokens_and_what_to_do() {
    let dir = temp_dir("small");
    let file = dir.join("a.txt");
    std::fs::write(&file, "Call me Ishmael.").unwrap();
    let e = error(&text(&[&file], None), &opts(1024, &dir.join("cache")));
    let tokens = tokenizer().encode("Call me Ishmael.", false).unwrap().get_ids().len() + 1;
    assert_eq!(e, format!("the data has {tokens} tokens, fewer than one block of seq+1 = 1025: lower seq= or add text"));
    std::fs::write(&file, "  \n\n ").unwrap();
    let e = error(&text(&[&file], None), &opts(8, &dir.join("cache")));
    assert!(e.starts_with("the data is empty"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
