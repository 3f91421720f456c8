//! ggml's storage types to f32, block by block, exactly as ggml's `dequantize_row_*`
//! (`ggml-quants.c`) compute them, in the same f32 operations and order, so the values are
//! bit-identical to llama.cpp's (and to the `gguf` Python package's numpy de-quantisers).
//!
//! Block layouts (`ggml-common.h`; `d`, `m`, `dmin` are f16; `QK_K` = 256):
//! - `Q8_0`, 32 values in 34 bytes: `d`, 32 × i8 `qs`; `x = d·q`.
//! - `Q4_0`, 32 in 18: `d`, 16 bytes of nibbles; the low nibble of byte `j` is value `j`, the
//!   high nibble value `j + 16`; `x = d·(q − 8)`.
//! - `Q4_1`, 32 in 20: `d`, `m`, 16 bytes of nibbles as `Q4_0`; `x = d·q + m`.
//! - `Q4_K`, 256 in 144: `d`, `dmin`, 12 bytes of eight 6-bit scales and eight 6-bit mins, 128
//!   bytes of nibbles. Each 64 values are two sub-blocks of 32 sharing 32 bytes: low nibbles
//!   first, then high; sub-block `s` is `x = d·scale[s]·q − dmin·min[s]`.
//! - `Q5_K`, 256 in 176: as `Q4_K` with 32 bytes `qh` more, after the scales; bit `s` of
//!   `qh[l]` is the fifth bit of value `l` of sub-block `s`.
//! - `Q6_K`, 256 in 210: 128 bytes `ql` (low four bits), 64 bytes `qh` (high two bits), sixteen
//!   i8 scales (one per 16 values), then `d`; `x = d·scale·(q − 32)`.

use half::{bf16, f16};

use crate::GgmlType;

/// Values per K-quant super-block (`QK_K`).
const QK_K: usize = 256;

/// The f32 values of `bytes`, which hold whole blocks of `ty`. `None` when `ty` is a type this
/// module does not read ([`GgmlType::can_dequantize`]) or `bytes` is not a whole number of
/// blocks.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let block = ty.block_bytes() as usize;
    if !ty.can_dequantize() || !bytes.len().is_multiple_of(block) {
        return None;
    }
    let blocks = bytes.chunks_exact(block);
    let mut out = Vec::with_capacity(bytes.len() / block * ty.block_elements() as usize);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| half16(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q4_K => blocks.for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q5_K => blocks.for_each(|b| q5_k(b, &mut out)),
        GgmlType::Q6_K => blocks.for_each(|b| q6_k(b, &mut out)),
        _ => return None,
    }
    Some(out)
}

/// The f16 at `bytes[at..at + 2]` as f32.
fn half16(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn q8_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half16(block, 0);
    out.extend(block[2..34].iter().map(|&q| q as i8 as f32 * d));
}

fn q4_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half16(block, 0);
    let qs = &block[2..18];
    out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
    out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
}

fn q4_1(block: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half16(block, 0), half16(block, 2));
    let qs = &block[4..20];
    out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
    out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes (ggml's `get_scale_min_k4`):
/// sub-blocks 0–3 keep theirs in the low six bits of bytes `j` and `j + 4`; 4–7 in the nibbles
/// of byte `j + 4` with their top two bits in the spare top bits of bytes `j − 4` and `j`.
fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

fn q4_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half16(block, 0), half16(block, 2));
    let scales = &block[4..16];
    let qs = &block[16..144];
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        out.extend(q.iter().map(|&q| d1 * (q & 0x0F) as f32 - m1));
        out.extend(q.iter().map(|&q| d2 * (q >> 4) as f32 - m2));
    }
}

fn q5_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, min) = (half16(block, 0), half16(block, 2));
    let scales = &block[4..16];
    let qh = &block[16..48];
    let ql = &block[48..176];
    for (pair, q) in ql.chunks_exact(32).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * pair, scales);
        let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
        let high = |l: usize, bit: u8| if qh[l] & bit != 0 { 16 } else { 0 };
        out.extend((0..32).map(|l| d1 * ((q[l] & 0x0F) + high(l, u1)) as f32 - m1));
        out.extend((0..32).map(|l| d2 * ((q[l] >> 4) + high(l, u2)) as f32 - m2));
    }
}

fn q6_k(block: &[u8], out: &mut Vec<f32>) {
    let d = half16(block, 208);
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let y = &mut out[start..];
    // Two halves of 128 values, each from 64 bytes of `ql`, 32 of `qh` and 8 scales.
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let scale = |k: usize| d * sc[is + k] as i8 as f32;
            y[l] = scale(0) * q1 as f32;
            y[l + 32] = scale(2) * q2 as f32;
            y[l + 64] = scale(4) * q3 as f32;
            y[l + 96] = scale(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_scale_times_signed_byte() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let values = dequantize(GgmlType::Q8_0, &block).unwrap();
        assert_eq!(values.len(), 32);
        assert_eq!((values[0], values[16], values[31]), (-8.0, 0.0, 7.5));
    }

    #[test]
    fn q4_0_puts_low_nibbles_first_then_high_nibbles() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend((0..16).map(|j| (15 - j as u8) << 4 | j as u8));
        let values = dequantize(GgmlType::Q4_0, &block).unwrap();
        let expected: Vec<f32> = (0..16)
            .map(|j| 2.0 * (j - 8) as f32)
            .chain((0..16).map(|j| 2.0 * (15 - j - 8) as f32))
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn q4_1_adds_the_minimum() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend([0x3F; 16]);
        let values = dequantize(GgmlType::Q4_1, &block).unwrap();
        assert_eq!(
            (values[0], values[16]),
            (15.0 * 0.25 - 1.0, 3.0 * 0.25 - 1.0)
        );
    }

    #[test]
    fn k_quant_scales_unpack_as_ggml_packs_them() {
        // Sub-block j < 4: low six bits of bytes j and j + 4. j ≥ 4: nibbles of byte j + 4 and
        // the top two bits of bytes j − 4 (scale) and j (min).
        let scales = [0b11_000001, 2, 3, 4, 0b10_000101, 6, 7, 8, 0x9A, 0, 0, 0];
        assert_eq!(scale_min_k4(0, &scales), (1, 5));
        assert_eq!(scale_min_k4(4, &scales), (0xA | 0b11 << 4, 0x9 | 0b10 << 4));
    }

    #[test]
    fn q6_k_reads_d_from_the_end_of_the_block() {
        let mut block = vec![0u8; 210];
        block[192..208].fill(1);
        block[208..210].copy_from_slice(&f16_bytes(1.0));
        // ql = 0 and qh = 0: every q is 0 − 32.
        assert!(dequantize(GgmlType::Q6_K, &block)
            .unwrap()
            .iter()
            .all(|&v| v == -32.0));
    }

    #[test]
    fn partial_blocks_and_unsupported_types_are_refused() {
        assert!(dequantize(GgmlType::Q8_0, &[0; 33]).is_none());
        assert!(dequantize(GgmlType::Q5_0, &[0; 22]).is_none());
        assert_eq!(dequantize(GgmlType::F32, &[]).unwrap(), Vec::<f32>::new());
    }
}
