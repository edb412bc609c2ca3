//! ggml's K-quants from f32: Q4_K and Q6_K super-blocks of 256 values, as llama.cpp's
//! reference encoders write them (`quantize_row_q4_K_ref` with its `make_qkx2_quants`
//! search, `quantize_row_q6_K_ref` with `make_qx_quants`). llama-quantize uses exactly
//! these when it has no importance matrix, so the bytes must be the same: every sum is
//! taken in f32 in ggml's order (ggml's base library is built without FMA contraction or
//! fast-math, and Rust never contracts), rounding is ggml's `nearest_int` (ties to even),
//! and the scales are IEEE halves. The byte oracle is llama.cpp's own
//! `ggml_quantize_chunk` (tests/gguf_kquant.rs).

use super::dequant::f16_to_f32;
use super::quant::f32_to_f16;

pub const QK_K: usize = 256;
/// ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5 × 2^23 leaves the rounded integer (ties to even) in
/// the low mantissa bits. Valid for |x| ≤ 2^22, which every caller's values are.
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The best (scale, -min) of one group for values `min + scale·L`, L ∈ [0, nmax], by
/// weighted least squares over `nstep + 1` trial scales (ggml's `make_qkx2_quants`
/// with squared error); L holds the chosen levels.
fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], levels: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let level = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax);
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        levels[i] = level(iscale, x[i], min) as u8;
        let diff = scale * levels[i] as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut trial = [0u8; 32];
    let trial = &mut trial[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = level(iscale, x[i], min);
            trial[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * trial[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                levels.copy_from_slice(trial);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The j-th (scale, min) pair of the 12 packed 6-bit bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K: `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`, eight groups of 32 with a
/// 6-bit scale and min each, x ≈ d·sc·q − dmin·m, q ∈ [0, 15].
pub fn block_q4_k(x: &[f32], out: &mut [u8]) {
    let mut levels = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let group = &x[32 * j..32 * j + 32];
        let sum_x2 = group.iter().fold(0.0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + group[l].abs());
        (scales[j], mins[j]) = make_qkx2_quants(15, group, &weights, &mut levels[32 * j..32 * j + 32], -1.0, 0.1, 20);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut [0u8; 12];
    for j in 0..8 {
        // `uint8_t ls = nearest_int(..)` keeps the low byte, then caps at 63.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, packed);
        let d = f16_to_f32(d) * sc as f32;
        if d == 0.0 {
            continue; // the search's levels stand, as in ggml
        }
        let dm = f16_to_f32(dmin) * m as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + dm) / d).clamp(0, 15) as u8;
        }
    }
    out[0..2].copy_from_slice(&d.to_le_bytes());
    out[2..4].copy_from_slice(&dmin.to_le_bytes());
    out[4..16].copy_from_slice(packed);
    // Each 64 values fill 32 bytes: value c+i in the low nibble, c+32+i in the high one.
    for (chunk, q) in out[16..144].chunks_mut(32).enumerate() {
        let base = 64 * chunk;
        for l in 0..32 {
            q[l] = levels[base + l] | (levels[base + l + 32] << 4);
        }
    }
}

/// The scale of one group for signed levels L ∈ [−nmax, nmax), x ≈ scale·L, weighting
/// each value by x² and trying 18 scales around the first (ggml's `make_qx_quants`
/// with rmse_type 1 and no importance weights); L holds level + nmax.
fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in levels.iter_mut().zip(x) {
        *o = (level(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in levels.iter_mut().zip(x) {
                *o = (level(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q6_K: `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`, sixteen groups of 16 with
/// an 8-bit scale each, x ≈ d·sc·(q − 32), q ∈ [0, 63] split into 4 low and 2 high bits.
pub fn block_q6_k(x: &[f32], out: &mut [u8]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        scales[ib] = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut levels[16 * ib..16 * ib + 16]);
        if scales[ib].abs() > max_abs_scale {
            max_abs_scale = scales[ib].abs();
            max_scale = scales[ib];
        }
    }
    out[..210].fill(0);
    if max_abs_scale < GROUP_MAX_EPS {
        return; // an all-zero block, d = +0
    }
    let iscale = -128.0 / max_scale;
    let d = f32_to_f16(1.0 / iscale);
    let mut sc = [0i8; 16];
    for ib in 0..16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }
    for j in 0..16 {
        let d = f16_to_f32(d) * sc[j] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    let level = |i: usize| levels[i] as u8;
    for half in 0..2 {
        let (j, ql, qh) = (128 * half, 64 * half, 128 + 32 * half);
        for l in 0..32 {
            out[ql + l] = (level(j + l) & 0xf) | ((level(j + l + 64) & 0xf) << 4);
            out[ql + l + 32] = (level(j + l + 32) & 0xf) | ((level(j + l + 96) & 0xf) << 4);
            out[qh + l] = (level(j + l) >> 4) | ((level(j + l + 32) >> 4) << 2) | ((level(j + l + 64) >> 4) << 4) | ((level(j + l + 96) >> 4) << 6);
        }
    }
    for (o, s) in out[192..208].iter_mut().zip(sc) {
        *o = s as u8;
    }
    out[208..210].copy_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        for (x, n) in [(0.5f32, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-7.6, -8), (63.0, 63)] {
            assert_eq!(nearest_int(x), n, "{x}");
        }
    }
}
