//! The teacher's next-token distribution as the cache keeps it: per position the `k` most
//! likely ids with their log-probabilities at T = 1 (rounded to f16, as stored), the exact
//! log of the mass outside them (`tail`) and the log-probability of the data's next token
//! (`target`, for `ce(teacher)`). A run with a cache always reads the teacher in this form,
//! whether it just ran the teacher or read the cache, so both give the same numbers.

use tch::{Kind, Tensor};

/// One micro-batch's sparse teacher.
pub struct SparseTeacher {
    /// `[B, T, K]` int64, most likely first.
    pub ids: Tensor,
    /// `[B, T, K]` f32: log p at T = 1, f16-rounded.
    pub log_probs: Tensor,
    /// `[B, T]` f32: log(1 − Σ kept p), computed from the whole vocabulary (−inf when the
    /// kept ids are the whole vocabulary).
    pub tail: Tensor,
    /// `[B, T]` f32: log p(next token).
    pub target: Tensor,
}

/// One block's entry, as bytes go to disk, and the target's log-probability per position.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockEntry {
    pub payload: Payload,
    pub target: Vec<f32>,
}

/// What an entry keeps of the teacher's distribution at each of its `seq` positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// `seq × k` ids, their f16 log-probability bit patterns, and `seq` tails.
    TopK { ids: Vec<u32>, log_probs: Vec<i16>, tail: Vec<f32> },
    /// Per position, how many distinct ids its draws hit (`distinct`, `seq` of them); then
    /// those ids, ascending within a position, and how many of the draws each got.
    Sampled { distinct: Vec<u8>, ids: Vec<u32>, counts: Vec<u8> },
}

impl SparseTeacher {
    /// From the teacher's logits `[B, T, V]` and the next-token ids `[B, T]`.
    pub fn from_logits(logits: &Tensor, targets: &Tensor, k: usize) -> SparseTeacher {
        tch::no_grad(|| {
            let log_p = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
            let k = (k as i64).min(log_p.size()[2]);
            let (values, ids) = log_p.topk(k, -1, true, true);
            // log Σ_{v ∉ kept} p_v over the vocabulary itself, not 1 − Σ kept: at a large k
            // the kept mass is within rounding of 1 and the subtraction would be noise.
            let tail = log_p.scatter_value(-1, &ids, f64::NEG_INFINITY).logsumexp([-1], false);
            let target = log_p.gather(-1, &targets.clamp_min(0).unsqueeze(-1), false).squeeze_dim(-1);
            SparseTeacher { ids, log_probs: values.to_kind(Kind::Half).to_kind(Kind::Float), tail, target }
        })
    }

    /// Kept ids per position (the widest position's, for sampled entries).
    pub fn k(&self) -> usize {
        self.ids.size().last().copied().unwrap_or(0) as usize
    }

    /// The entries of a top-k batch's rows, in order.
    pub fn entries(&self) -> Vec<BlockEntry> {
        let (b, t, k) = match self.ids.size()[..] {
            [b, t, k] => (b, t, k),
            _ => return Vec::new(),
        };
        let ids = Vec::<i64>::try_from(self.ids.reshape([-1])).unwrap_or_default();
        let lp = Vec::<i16>::try_from(self.log_probs.to_kind(Kind::Half).reshape([-1]).view_dtype(Kind::Int16)).unwrap_or_default();
        let tail = Vec::<f32>::try_from(self.tail.reshape([-1])).unwrap_or_default();
        let target = Vec::<f32>::try_from(self.target.reshape([-1])).unwrap_or_default();
        let (row, per) = ((t * k) as usize, t as usize);
        (0..b as usize)
            .map(|i| BlockEntry {
                payload: Payload::TopK {
                    ids: ids[i * row..(i + 1) * row].iter().map(|&x| x as u32).collect(),
                    log_probs: lp[i * row..(i + 1) * row].to_vec(),
                    tail: tail[i * per..(i + 1) * per].to_vec(),
                },
                target: target[i * per..(i + 1) * per].to_vec(),
            })
            .collect()
    }

    /// A batch from entries of `seq` positions each, all of one kind. Sampled entries are
    /// padded to the batch's most distinct ids at a position: a padding slot repeats the
    /// position's first id with log-probability −inf, so it carries no teacher mass.
    pub fn from_entries(entries: &[BlockEntry], seq: usize) -> SparseTeacher {
        let b = entries.len() as i64;
        let target: Vec<f32> = entries.iter().flat_map(|e| e.target.iter().copied()).collect();
        let target = Tensor::from_slice(&target).view([b, seq as i64]);
        let widest = entries.iter().map(|e| e.payload.width(seq)).max().unwrap_or(1).max(1);
        match entries.first().map(|e| &e.payload) {
            Some(Payload::Sampled { .. }) => {
                let slots = entries.len() * seq * widest;
                let (mut ids, mut lp) = (Vec::with_capacity(slots), Vec::with_capacity(slots));
                for e in entries {
                    e.payload.sampled_rows(seq, widest, &mut ids, &mut lp);
                }
                let shape = [b, seq as i64, widest as i64];
                SparseTeacher { ids: Tensor::from_slice(&ids).view(shape), log_probs: Tensor::from_slice(&lp).view(shape), tail: Tensor::full([b, seq as i64], f64::NEG_INFINITY, (Kind::Float, tch::Device::Cpu)), target }
            }
            _ => {
                let k = widest as i64;
                let (mut ids, mut lp, mut tail) = (Vec::new(), Vec::new(), Vec::new());
                for e in entries {
                    if let Payload::TopK { ids: i, log_probs: l, tail: t } = &e.payload {
                        ids.extend(i.iter().map(|&x| x as i64));
                        lp.extend_from_slice(l);
                        tail.extend_from_slice(t);
                    }
                }
                SparseTeacher {
                    ids: Tensor::from_slice(&ids).view([b, seq as i64, k]),
                    log_probs: Tensor::from_slice(&lp).view_dtype(Kind::Half).to_kind(Kind::Float).view([b, seq as i64, k]),
                    tail: Tensor::from_slice(&tail).view([b, seq as i64]),
                    target,
                }
            }
        }
    }

    pub fn to_device(&self, d: tch::Device) -> SparseTeacher {
        SparseTeacher { ids: self.ids.to_device(d), log_probs: self.log_probs.to_device(d), tail: self.tail.to_device(d), target: self.target.to_device(d) }
    }
}

impl Payload {
    /// The most ids any of its `seq` positions keeps.
    fn width(&self, seq: usize) -> usize {
        match self {
            Payload::TopK { ids, .. } => ids.len() / seq.max(1),
            Payload::Sampled { distinct, .. } => distinct.iter().copied().max().unwrap_or(0) as usize,
        }
    }

    /// Appends a sampled entry's positions, each padded to `width` slots: ids and
    /// log(count / draws).
    fn sampled_rows(&self, seq: usize, width: usize, ids: &mut Vec<i64>, lp: &mut Vec<f32>) {
        let Payload::Sampled { distinct, ids: hit, counts } = self else { return };
        let mut at = 0;
        for &d in distinct.iter().take(seq) {
            let d = d as usize;
            let draws = counts[at..at + d].iter().map(|&c| c as u32).sum::<u32>().max(1) as f64;
            for j in 0..width {
                if j < d {
                    ids.push(hit[at + j] as i64);
                    lp.push((counts[at + j] as f64 / draws).ln() as f32);
                } else {
                    ids.push(hit.get(at).copied().unwrap_or(0) as i64);
                    lp.push(f32::NEG_INFINITY);
                }
            }
            at += d;
        }
    }
}

impl BlockEntry {
    /// Its bytes on disk.
    pub fn stored_len(&self, id_bytes: usize) -> usize {
        let seq = self.target.len();
        match &self.payload {
            Payload::TopK { ids, .. } => Self::topk_bytes(seq, ids.len() / seq.max(1), id_bytes),
            Payload::Sampled { ids, .. } => seq + ids.len() * (id_bytes + 1) + seq * 4,
        }
    }

    /// Bytes on disk of a top-k entry: ids in `id_bytes` (2 when the vocabulary fits u16).
    pub fn topk_bytes(seq: usize, k: usize, id_bytes: usize) -> usize {
        seq * k * (id_bytes + 2) + seq * 8
    }

    pub fn write(&self, out: &mut Vec<u8>, id_bytes: usize) {
        let put_id = |out: &mut Vec<u8>, id: u32| {
            if id_bytes == 2 {
                out.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&id.to_le_bytes());
            }
        };
        match &self.payload {
            Payload::TopK { ids, log_probs, tail } => {
                for &id in ids {
                    put_id(out, id);
                }
                for &x in log_probs {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                for &x in tail {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Payload::Sampled { distinct, ids, counts } => {
                out.extend_from_slice(distinct);
                for &id in ids {
                    put_id(out, id);
                }
                out.extend_from_slice(counts);
            }
        }
        for &x in &self.target {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Reads one entry of `seq` positions from exactly its bytes; `k` is the top-k width
    /// (None for a sampled entry, whose size its `distinct` counts give).
    pub fn read(bytes: &[u8], seq: usize, k: Option<usize>, id_bytes: usize) -> Result<BlockEntry, String> {
        Self::check_layout(bytes, seq, k, id_bytes)?;
        let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>();
        let ids_of = |b: &[u8]| -> Vec<u32> {
            if id_bytes == 2 {
                b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
            } else {
                b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
        };
        let (payload, target) = match k {
            Some(k) => {
                let n = seq * k;
                let (ids, rest) = bytes.split_at(n * id_bytes);
                let (lp, rest) = rest.split_at(n * 2);
                let (tail, target) = rest.split_at(seq * 4);
                (Payload::TopK { ids: ids_of(ids), log_probs: lp.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect(), tail: f32s(tail) }, target)
            }
            None => {
                let distinct = &bytes[..seq];
                let n: usize = distinct.iter().map(|&d| d as usize).sum();
                let (ids, rest) = bytes[seq..].split_at(n * id_bytes);
                let (counts, target) = rest.split_at(n);
                (Payload::Sampled { distinct: distinct.to_vec(), ids: ids_of(ids), counts: counts.to_vec() }, target)
            }
        };
        Ok(BlockEntry { payload, target: f32s(target) })
    }

    /// Whether `bytes` have the size an entry of this layout has, without decoding it (a
    /// sampled entry's size is in its first `seq` bytes, the distinct ids per position).
    pub fn check_layout(bytes: &[u8], seq: usize, k: Option<usize>, id_bytes: usize) -> Result<(), String> {
        let fits = match k {
            Some(k) => bytes.len() == Self::topk_bytes(seq, k, id_bytes),
            None => bytes.get(..seq).is_some_and(|distinct| {
                let n: usize = distinct.iter().map(|&d| d as usize).sum();
                !distinct.contains(&0) && bytes.len() == seq + n * (id_bytes + 1) + seq * 4
            }),
        };
        fits.then_some(()).ok_or_else(|| format!("an entry of {} bytes does not fit its layout", bytes.len()))
    }
}
