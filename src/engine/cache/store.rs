//! The teacher cache on disk: one folder per key under `<root>/teacher/<hex key>/`, with
//! `header.json` and shards `shard-NNNNNN.kdc`. A shard is a unit of writing: the blocks
//! the run computed since the last flush, written under a temporary name and renamed, so
//! a killed run leaves whole shards and the next run reads them and fills only the rest.
//!
//! Shard layout, little-endian: the magic `KDLTC\x02\0\0`; u32 block count, seq, mode (0
//! top-k, 1 sampled), k or draws, and id bytes; the block numbers (u32 each); where each
//! entry ends (u32 each, from the first entry); the entries (`BlockEntry::write`: fixed
//! size for top-k, sized by their distinct ids when sampled); then a CRC-32 of everything
//! before it. A shard whose CRC or size is wrong is reported
//! in one line, deleted and recomputed — never read.

use super::sparse::{BlockEntry, SparseTeacher};
pub use crate::spec::train::CacheMode;
use crate::engine::data::{Blocks, KeyHasher};
use crate::engine::llama::Llama;
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bumped when the shard layout or what an entry means changes.
const FORMAT: u64 = 2;
const MAGIC: &[u8; 8] = b"KDLTC\x02\0\0";
/// Magic and the five header words.
const SHARD_HEAD: usize = 28;
const HEADER: &str = "header.json";
/// Pending entries are written as a shard once they reach this many bytes.
const FLUSH_BYTES: usize = 64 << 20;

/// The teacher cache of one (teacher, data, seq, mode).
pub struct TeacherCache {
    pub dir: PathBuf,
    /// With a top-k width no wider than the vocabulary.
    pub mode: CacheMode,
    pub seq: usize,
    id_bytes: usize,
    /// Block number → (shard, where its entry starts and ends).
    index: HashMap<u32, (usize, usize, usize)>,
    shards: Vec<Mmap>,
    next_shard: u64,
    pending: Vec<(u32, BlockEntry)>,
    /// Block number → its place in `pending`.
    pending_at: HashMap<u32, usize>,
    pending_bytes: usize,
    /// Blocks the cache should hold when full (train then validation blocks).
    pub blocks: usize,
    /// Blocks this run wrote.
    pub written: usize,
}

/// The key: the teacher's weights, every block's token ids (which is the data and the
/// tokenizer that read it), seq and the mode.
pub fn cache_key(teacher: &Llama, blocks: &[&Blocks], mode: CacheMode) -> String {
    let mut h = KeyHasher::new();
    h.field(&FORMAT.to_le_bytes());
    h.field(mode.describe().as_bytes());
    let mut tensors: Vec<(String, tch::Tensor)> = teacher.vs.variables().into_iter().chain(teacher.base_tensors()).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors.dedup_by(|a, b| a.0 == b.0);
    for (name, t) in &tensors {
        h.field(name.as_bytes());
        h.field(format!("{:?} {:?}", t.kind(), t.size()).as_bytes());
        let bytes = Vec::<u8>::try_from(t.to_device(tch::Device::Cpu).contiguous().flatten(0, -1).view_dtype(tch::Kind::Uint8)).unwrap_or_default();
        h.field(&crc32fast::hash(&bytes).to_le_bytes());
    }
    for set in blocks {
        h.field(&(set.seq() as u64).to_le_bytes());
        h.field(&(set.len() as u64).to_le_bytes());
        for i in 0..set.len() {
            let ids: Vec<u8> = set.tokens(i).iter().flat_map(|x| x.to_le_bytes()).collect();
            h.field(&ids);
        }
    }
    h.hex()
}

impl TeacherCache {
    /// Opens (or creates) the cache at `dir` for `blocks` blocks of `seq` positions over a
    /// vocabulary of `vocab`. Damaged shards are deleted and named in `warnings`.
    pub fn open(dir: &Path, mode: CacheMode, seq: usize, vocab: usize, blocks: usize, warnings: &mut Vec<String>) -> Result<TeacherCache, String> {
        let mode = match mode {
            CacheMode::TopK(k) => CacheMode::TopK(k.min(vocab.max(1))),
            CacheMode::Sample(n) => CacheMode::Sample(n.clamp(1, super::sample::MAX_DRAWS)),
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the teacher cache {}: {e}", dir.display()))?;
        let (kind, width) = mode_words(mode);
        let header = serde_json::json!({"format": FORMAT, "mode": (["topk", "sample"][kind]), "width": width, "seq": seq, "vocab": vocab, "blocks": blocks, "capture_temperature": 1.0});
        let header_path = dir.join(HEADER);
        if !header_path.is_file() {
            crate::atomic::write_file(&header_path, &serde_json::to_vec_pretty(&header).unwrap_or_default())
                .map_err(|e| format!("cannot write the teacher cache {}: {e}", header_path.display()))?;
        }
        let id_bytes = if vocab <= 1 << 16 { 2 } else { 4 };
        let mut cache = TeacherCache { dir: dir.to_path_buf(), mode, seq, id_bytes, index: HashMap::new(), shards: Vec::new(), next_shard: 1, pending: Vec::new(), pending_at: HashMap::new(), pending_bytes: 0, blocks, written: 0 };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read the teacher cache {}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "kdc"))
            .collect();
        names.sort();
        for path in names {
            let number = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.strip_prefix("shard-")).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            cache.next_shard = cache.next_shard.max(number + 1);
            match cache.read_shard(&path) {
                Ok(()) => {}
                Err(why) => {
                    warnings.push(format!("teacher cache: {} is damaged ({why}); its blocks are computed again", path.display()));
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(cache)
    }

    /// The top-k width, or None for sampled entries (whose sizes vary).
    fn topk_width(&self) -> Option<usize> {
        match self.mode {
            CacheMode::TopK(k) => Some(k),
            CacheMode::Sample(_) => None,
        }
    }

    fn read_shard(&mut self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        // Safety: the cache's files are only ever replaced by rename, never written in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
        if map.len() < SHARD_HEAD + 4 || &map[..8] != MAGIC {
            return Err("not a kdl teacher cache shard of this version".into());
        }
        let (body, crc) = map.split_at(map.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("checksum mismatch".into());
        }
        let word = |at: usize| body.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or("truncated");
        let (count, seq, kind, width, id_bytes) = (word(8)?, word(12)?, word(16)?, word(20)?, word(24)?);
        if (seq, (kind, width), id_bytes) != (self.seq, mode_words(self.mode), self.id_bytes) {
            return Err(format!("written for seq {seq} and another mode than this cache's seq {}, {}", self.seq, self.mode.describe()));
        }
        let first = SHARD_HEAD + 8 * count;
        if body.len() < first {
            return Err("truncated".into());
        }
        let mut entries = Vec::with_capacity(count);
        let mut start = first;
        for i in 0..count {
            let (block, end) = (word(SHARD_HEAD + 4 * i)? as u32, first + word(SHARD_HEAD + 4 * (count + i))?);
            if block as usize >= self.blocks {
                return Err(format!("block {block} is past the {} blocks of this data", self.blocks));
            }
            let bytes = body.get(start..end).ok_or("truncated")?;
            BlockEntry::check_layout(bytes, self.seq, self.topk_width(), self.id_bytes)?;
            entries.push((block, start, end));
            start = end;
        }
        if start != body.len() {
            return Err("truncated".into());
        }
        let shard = self.shards.len();
        for (block, start, end) in entries {
            self.index.insert(block, (shard, start, end));
        }
        self.shards.push(map);
        Ok(())
    }

    /// Whether every block in `blocks` is stored (written or pending).
    pub fn has_all(&self, blocks: &[u32]) -> bool {
        blocks.iter().all(|b| self.index.contains_key(b) || self.pending_at.contains_key(b))
    }

    pub fn filled(&self) -> usize {
        self.index.len() + self.pending.len()
    }

    fn entry(&self, block: u32) -> Option<BlockEntry> {
        if let Some(&(shard, start, end)) = self.index.get(&block) {
            // Every entry's layout was checked when its shard was opened.
            return BlockEntry::read(&self.shards[shard][start..end], self.seq, self.topk_width(), self.id_bytes).ok();
        }
        self.pending_at.get(&block).map(|&i| self.pending[i].1.clone())
    }

    /// The stored sparse teacher of `blocks`, when all are stored.
    pub fn get(&self, blocks: &[u32]) -> Option<SparseTeacher> {
        let entries: Option<Vec<BlockEntry>> = blocks.iter().map(|&b| self.entry(b)).collect();
        entries.map(|e| SparseTeacher::from_entries(&e, self.seq))
    }

    /// Keeps the entries of `blocks` (rows of `sparse`) that are not stored yet, and
    /// returns the sparse teacher as read back from them, so a fresh batch gives exactly
    /// what a cached one would.
    pub fn put(&mut self, blocks: &[u32], entries: Vec<BlockEntry>) -> Result<SparseTeacher, String> {
        for (&b, e) in blocks.iter().zip(&entries) {
            if !self.has_all(&[b]) {
                self.pending_bytes += e.stored_len(self.id_bytes);
                self.pending_at.insert(b, self.pending.len());
                self.pending.push((b, e.clone()));
            }
        }
        if self.pending_bytes >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(SparseTeacher::from_entries(&entries, self.seq))
    }

    /// Writes the pending entries as one shard.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let count = self.pending.len();
        let mut entries = Vec::with_capacity(self.pending_bytes);
        let mut ends = Vec::with_capacity(count);
        for (_, e) in &self.pending {
            e.write(&mut entries, self.id_bytes);
            ends.push(entries.len() as u32);
        }
        let mut bytes = Vec::with_capacity(SHARD_HEAD + 8 * count + entries.len() + 4);
        bytes.extend_from_slice(MAGIC);
        let (kind, width) = mode_words(self.mode);
        for w in [count, self.seq, kind, width, self.id_bytes] {
            bytes.extend_from_slice(&(w as u32).to_le_bytes());
        }
        for (b, _) in &self.pending {
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        for end in ends {
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes.extend_from_slice(&entries);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let path = self.dir.join(format!("shard-{:06}.kdc", self.next_shard));
        crate::atomic::write_file(&path, &bytes).map_err(|e| format!("cannot write the teacher cache {}: {e}", path.display()))?;
        self.next_shard += 1;
        self.written += count;
        self.pending.clear();
        self.pending_bytes = 0;
        self.pending_at.clear();
        self.read_shard(&path).map_err(|why| format!("the teacher cache shard {} did not read back: {why}", path.display()))
    }

    /// Bytes per position on disk: fixed for top-k; for sampled entries the mean over those
    /// stored, None before any is.
    pub fn bytes_per_token(&self) -> Option<f64> {
        match self.mode {
            CacheMode::TopK(k) => Some(BlockEntry::topk_bytes(self.seq, k, self.id_bytes) as f64 / self.seq as f64),
            CacheMode::Sample(_) => {
                let stored = self.index.values().map(|&(_, start, end)| end - start).sum::<usize>() + self.pending_bytes;
                (self.filled() > 0).then(|| stored as f64 / (self.filled() * self.seq) as f64)
            }
        }
    }

    /// Bytes of all shards on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shards.iter().map(|m| m.len() as u64).sum()
    }
}

/// The mode as the shard header's two words: kind (0 top-k, 1 sampled) and k or draws.
fn mode_words(mode: CacheMode) -> (usize, usize) {
    match mode {
        CacheMode::TopK(k) => (0, k),
        CacheMode::Sample(n) => (1, n),
    }
}
