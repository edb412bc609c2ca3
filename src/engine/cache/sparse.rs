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

/// One block's entry, as bytes go to disk: `seq × k` ids, `seq × k` f16 bit patterns,
/// `seq` tails and `seq` target log-probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockEntry {
    pub ids: Vec<u32>,
    pub log_probs: Vec<i16>,
    pub tail: Vec<f32>,
    pub target: Vec<f32>,
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

    /// Kept ids per position.
    pub fn k(&self) -> usize {
        self.ids.size().last().copied().unwrap_or(0) as usize
    }

    /// The entries of the batch's rows, in order.
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
                ids: ids[i * row..(i + 1) * row].iter().map(|&x| x as u32).collect(),
                log_probs: lp[i * row..(i + 1) * row].to_vec(),
                tail: tail[i * per..(i + 1) * per].to_vec(),
                target: target[i * per..(i + 1) * per].to_vec(),
            })
            .collect()
    }

    /// A batch from entries of `seq` positions × `k` ids each.
    pub fn from_entries(entries: &[BlockEntry], seq: usize, k: usize) -> SparseTeacher {
        let (b, t, k) = (entries.len() as i64, seq as i64, k as i64);
        let ids: Vec<i64> = entries.iter().flat_map(|e| e.ids.iter().map(|&x| x as i64)).collect();
        let lp: Vec<i16> = entries.iter().flat_map(|e| e.log_probs.iter().copied()).collect();
        let tail: Vec<f32> = entries.iter().flat_map(|e| e.tail.iter().copied()).collect();
        let target: Vec<f32> = entries.iter().flat_map(|e| e.target.iter().copied()).collect();
        SparseTeacher {
            ids: Tensor::from_slice(&ids).view([b, t, k]),
            log_probs: Tensor::from_slice(&lp).view_dtype(Kind::Half).to_kind(Kind::Float).view([b, t, k]),
            tail: Tensor::from_slice(&tail).view([b, t]),
            target: Tensor::from_slice(&target).view([b, t]),
        }
    }

    pub fn to_device(&self, d: tch::Device) -> SparseTeacher {
        SparseTeacher { ids: self.ids.to_device(d), log_probs: self.log_probs.to_device(d), tail: self.tail.to_device(d), target: self.target.to_device(d) }
    }
}

impl BlockEntry {
    /// Bytes on disk for one block: ids in `id_bytes` (2 when the vocabulary fits u16).
    pub fn stored_bytes(seq: usize, k: usize, id_bytes: usize) -> usize {
        seq * k * (id_bytes + 2) + seq * 8
    }

    pub fn write(&self, out: &mut Vec<u8>, id_bytes: usize) {
        for &id in &self.ids {
            if id_bytes == 2 {
                out.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        for &x in &self.log_probs {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for &x in self.tail.iter().chain(&self.target) {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// Reads one entry from exactly `stored_bytes(seq, k, id_bytes)` bytes.
    pub fn read(bytes: &[u8], seq: usize, k: usize, id_bytes: usize) -> BlockEntry {
        let n = seq * k;
        let (ids, rest) = bytes.split_at(n * id_bytes);
        let (lp, rest) = rest.split_at(n * 2);
        let (tail, target) = rest.split_at(seq * 4);
        let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>();
        BlockEntry {
            ids: if id_bytes == 2 {
                ids.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
            } else {
                ids.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            },
            log_probs: lp.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect(),
            tail: f32s(tail),
            target: f32s(target),
        }
    }
}
