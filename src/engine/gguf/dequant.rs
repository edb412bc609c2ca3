//! ggml's tensor types and their block formats, turned into f32. The layouts and the order
//! of float operations follow ggml-quants.c (`dequantize_row_*`), so results match llama.cpp
//! and gguf-py bit for bit. `reader` supplies the bytes; `llama` calls `dequantize`.

use rayon::prelude::*;

/// A ggml tensor type as GGUF numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

/// Elements in a K-quant super-block.
const QK_K: usize = 256;

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const BF16: GgmlType = GgmlType(30);

    /// What the error for an unreadable type lists.
    pub const READABLE: &'static str = "F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q4_1, Q4_K, Q6_K";

    pub fn name(self) -> String {
        const NAMES: [(u32, &str); 34] = [
            (0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (6, "Q5_0"), (7, "Q5_1"), (8, "Q8_0"),
            (9, "Q8_1"), (10, "Q2_K"), (11, "Q3_K"), (12, "Q4_K"), (13, "Q5_K"), (14, "Q6_K"),
            (15, "Q8_K"), (16, "IQ2_XXS"), (17, "IQ2_XS"), (18, "IQ3_XXS"), (19, "IQ1_S"),
            (20, "IQ4_NL"), (21, "IQ3_S"), (22, "IQ2_S"), (23, "IQ4_XS"), (24, "I8"), (25, "I16"),
            (26, "I32"), (27, "I64"), (28, "F64"), (29, "IQ1_M"), (30, "BF16"), (34, "TQ1_0"),
            (35, "TQ2_0"), (39, "MXFP4"), (40, "NVFP4"), (41, "Q1_0"),
        ];
        NAMES.iter().find(|(id, _)| *id == self.0).map(|(_, n)| n.to_string()).unwrap_or_else(|| format!("type {}", self.0))
    }

    /// (elements per block, bytes per block) for the types kdl reads; `None` otherwise.
    pub fn block(self) -> Option<(usize, usize)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_K => (QK_K, 144),
            GgmlType::Q6_K => (QK_K, 210),
            _ => return None,
        })
    }
}

/// IEEE half to single, exactly (subnormals, infinities and NaNs included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // Subnormal: shift the mantissa up until its leading one is the implicit bit.
            let shift = mant.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((mant << shift) & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn block_q4_0(x: &[u8], y: &mut [f32]) {
    let d = half(x, 0);
    let qs = &x[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(x: &[u8], y: &mut [f32]) {
    let (d, m) = (half(x, 0), half(x, 2));
    let qs = &x[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0f) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

fn block_q5_0(x: &[u8], y: &mut [f32]) {
    let d = half(x, 0);
    let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
    let qs = &x[6..22];
    for j in 0..16 {
        // The fifth bit of value j is bit j of qh; of value j + 16, bit j + 16.
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((qs[j] & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

fn block_q8_0(x: &[u8], y: &mut [f32]) {
    let d = half(x, 0);
    for (out, &q) in y.iter_mut().zip(&x[2..34]) {
        *out = (q as i8) as f32 * d;
    }
}

/// The j-th 6-bit (scale, min) pair of a Q4_K super-block (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn block_q4_k(x: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half(x, 0), half(x, 2));
    let scales = &x[4..16];
    let qs = &x[16..144];
    for (chunk, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0f) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn block_q6_k(x: &[u8], y: &mut [f32]) {
    let (ql, qh, sc) = (&x[0..128], &x[128..192], &x[192..208]);
    let d = half(x, 208);
    for half_block in 0..2 {
        let (ql, qh, sc) = (&ql[64 * half_block..], &qh[32 * half_block..], &sc[8 * half_block..]);
        let y = &mut y[128 * half_block..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

fn block_scalar(ty: GgmlType, x: &[u8], y: &mut [f32]) {
    y[0] = match ty {
        GgmlType::F32 => f32::from_le_bytes([x[0], x[1], x[2], x[3]]),
        GgmlType::F16 => half(x, 0),
        _ => f32::from_bits((u16::from_le_bytes([x[0], x[1]]) as u32) << 16),
    };
}

/// Blocks per rayon task: big enough that scheduling costs nothing, small enough that two
/// cores share a 576-wide norm vector's neighbours and a 28M-element embedding alike.
const ELEMENTS_PER_TASK: usize = 1 << 16;

/// `data` holds exactly `n / block` blocks of `ty` (the reader checked); returns `n` floats.
/// `None` for a type kdl cannot read or a length that is not whole blocks.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Option<Vec<f32>> {
    let (block, bytes) = ty.block()?;
    if n % block != 0 || data.len() != n / block * bytes {
        return None;
    }
    let mut out = vec![0f32; n];
    if ty == GgmlType::F32 {
        // No arithmetic: a plain little-endian copy.
        out.par_chunks_mut(ELEMENTS_PER_TASK).zip(data.par_chunks(ELEMENTS_PER_TASK * 4)).for_each(|(y, x)| {
            for (v, b) in y.iter_mut().zip(x.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        });
        return Some(out);
    }
    let blocks_per_task = (ELEMENTS_PER_TASK / block).max(1);
    let decode: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q4_K => block_q4_k,
        GgmlType::Q6_K => block_q6_k,
        GgmlType::F16 => |x, y| block_scalar(GgmlType::F16, x, y),
        _ => |x, y| block_scalar(GgmlType::BF16, x, y),
    };
    out.par_chunks_mut(blocks_per_task * block).zip(data.par_chunks(blocks_per_task * bytes)).for_each(|(y, x)| {
        for (yb, xb) in y.chunks_exact_mut(block).zip(x.chunks_exact(bytes)) {
            decode(xb, yb);
        }
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_is_exact_for_every_kind_of_value() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }

    #[test]
    fn half_conversion_matches_libtorch_for_all_65536_values() {
        let bits: Vec<i16> = (0..=u16::MAX).map(|b| b as i16).collect();
        let halves = tch::Tensor::from_slice(&bits).view_dtype(tch::Kind::Half).to_kind(tch::Kind::Float);
        let theirs = Vec::<f32>::try_from(&halves).unwrap_or_default();
        assert_eq!(theirs.len(), 65536);
        for (b, t) in (0..=u16::MAX).zip(theirs) {
            let ours = f16_to_f32(b);
            assert!(ours.to_bits() == t.to_bits() || (ours.is_nan() && t.is_nan()), "{b:#06x}: {ours} vs {t}");
        }
    }

    #[test]
    fn wrong_lengths_are_refused_not_read_past() {
        assert!(dequantize(GgmlType::Q4_0, &[0; 17], 32).is_none());
        assert!(dequantize(GgmlType::Q4_0, &[0; 18], 31).is_none());
        assert!(dequantize(GgmlType(7), &[0; 24], 32).is_none(), "Q5_1 is not read");
        assert_eq!(dequantize(GgmlType::Q4_0, &[0; 18], 32).map(|v| v.len()), Some(32));
    }
}
