//! ggml's block formats from f32, the other way from `dequant`: what the GGUF writer
//! stores. Each encoder follows ggml-quants.c's reference (`quantize_row_*_ref`) in the
//! order gguf-py's numpy port computes it (gguf/quants.py), so the bytes equal gguf-py's
//! and llama.cpp's for the same row: f32 arithmetic throughout, scales stored as IEEE
//! half rounded to nearest even, the same rounding of each value (half away from zero
//! for Q8_0, truncation after +8.5 / +16.5 for Q4_0 / Q5_0). The K-quants' searches
//! live in `kquant`.

use super::dequant::GgmlType;
use rayon::prelude::*;

/// f32 to IEEE half, rounded to nearest even, as numpy's `astype(float16)` and the
/// F16C instruction do: overflow to infinity, subnormals kept, NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinity, or a quiet NaN that keeps the top of its payload.
        return sign | 0x7c00 | if mant != 0 { 0x200 | (mant >> 13) as u16 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A half subnormal (or zero): the value is mant' × 2^-24.
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000; // the implicit one
        let shift = (14 - e) as u32; // 24-bit significand down to the subnormal's 10 bits
        let half = m >> shift;
        let rest = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = rest > halfway || (rest == halfway && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    let round = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa moves into the exponent, up to infinity: still right.
    sign | (half + round as u32) as u16
}

/// f32 to bfloat16, rounded to nearest even, NaN made quiet (ggml_compute_fp32_to_bf16).
pub fn f32_to_bf16(x: f32) -> u16 {
    let n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return ((n >> 16) | 64) as u16;
    }
    ((n as u64 + (0x7fff + ((n >> 16) & 1)) as u64) >> 16) as u16
}

/// The entry of a block with the largest magnitude, signed; the first of equals.
fn signed_max(x: &[f32]) -> f32 {
    let mut best = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            best = v;
        }
    }
    best
}

fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Q8_0: `{ f16 d; i8 q[32] }`, d = amax / 127, q = round(x / d).
fn block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, &v) in out[2..34].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
}

/// Q4_0: `{ f16 d; u8 qs[16] }`, d = max / -8, q = min(15, trunc(x / d + 8.5)); byte j
/// holds value j in its low nibble and value j + 16 in its high one.
fn block_q4_0(x: &[f32], out: &mut [u8]) {
    let d = signed_max(x) / -8.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5).trunc() as i32).clamp(0, 15) as u8;
    for j in 0..16 {
        out[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
}

/// Q5_0: `{ f16 d; u32 qh; u8 qs[16] }`, d = max / -16, q = min(31, trunc(x / d + 16.5)):
/// the low four bits as in Q4_0, the fifth bit of value j in bit j of qh.
fn block_q5_0(x: &[f32], out: &mut [u8]) {
    let d = signed_max(x) / -16.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    let q: [u32; 32] = std::array::from_fn(|j| ((x[j] * id + 16.5).trunc() as i32).clamp(0, 31) as u32);
    let qh = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | ((v >> 4) << j));
    out[2..6].copy_from_slice(&qh.to_le_bytes());
    for j in 0..16 {
        out[6 + j] = ((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4)) as u8;
    }
}

/// The bytes of `values` (whole rows of a tensor, row-major) as `ty`, or `None` for a
/// type kdl does not write. The length must be a multiple of the block size.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let (block, bytes) = ty.block()?;
    if values.len() % block != 0 {
        return None;
    }
    let blocks = values.len() / block;
    let mut out = vec![0u8; blocks * bytes];
    let encode: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::F32 => |x, o| o.copy_from_slice(&x[0].to_le_bytes()),
        GgmlType::F16 => |x, o| o.copy_from_slice(&f32_to_f16(x[0]).to_le_bytes()),
        GgmlType::BF16 => |x, o| o.copy_from_slice(&f32_to_bf16(x[0]).to_le_bytes()),
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q4_K => super::kquant::block_q4_k,
        GgmlType::Q6_K => super::kquant::block_q6_k,
        _ => return None,
    };
    // Large blocks of work per task: a block is a few dozen bytes.
    let chunk = 4096;
    out.par_chunks_mut(bytes * chunk).zip(values.par_chunks(block * chunk)).for_each(|(o, x)| {
        for (ob, xb) in o.chunks_mut(bytes).zip(x.chunks(block)) {
            encode(xb, ob);
        }
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::dequant::{dequantize, f16_to_f32};
    use super::*;

    #[test]
    fn half_rounding_matches_ieee() {
        for (x, h) in [(1.0f32, 0x3c00u16), (-2.0, 0xc000), (65504.0, 0x7bff), (65520.0, 0x7c00), (6.0e-8, 0x0001), (1.0e-9, 0), (f32::INFINITY, 0x7c00)] {
            assert_eq!(f32_to_f16(x), h, "{x}");
        }
        // Ties go to even: 1 + 2^-11 is halfway between 1 and the next half.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert!(f32_to_f16(f32::NAN) & 0x7c00 == 0x7c00 && f32_to_f16(f32::NAN) & 0x3ff != 0);
        // Every half survives the round trip.
        for h in (0u16..0x7c00).step_by(7) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h);
        }
    }

    #[test]
    fn blocks_decode_close_to_their_values() {
        let values: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0).collect();
        for (ty, tolerance) in [(GgmlType::Q8_0, 0.01), (GgmlType::Q5_0, 0.09), (GgmlType::Q4_0, 0.17), (GgmlType::Q6_K, 0.03), (GgmlType::Q4_K, 0.12), (GgmlType::F16, 1e-3), (GgmlType::BF16, 1e-2)] {
            let back = dequantize(ty, &quantize(ty, &values).unwrap(), values.len()).unwrap();
            let worst = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < tolerance, "{}: off by {worst}", ty.name());
        }
        assert!(quantize(GgmlType::Q8_0, &values[..40]).is_none(), "not a whole block");
    }
}
