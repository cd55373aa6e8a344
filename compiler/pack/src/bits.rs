//! Fixed-width bit streams, MSB-first (bit `i` is bit `7 − i % 8` of byte `i / 8`), with zero
//! padding in the last byte: the masks and plain codes of the artifact.

/// Bytes holding `count` fields of `width` bits, or `None` on overflow.
pub(crate) fn packed_len(count: usize, width: u8) -> Option<usize> {
    count.checked_mul(usize::from(width)).map(|b| b.div_ceil(8))
}

/// Appends `values`, each `width` bits (1..=16), as one MSB-first stream.
pub(crate) fn write_fields(out: &mut Vec<u8>, values: impl IntoIterator<Item = u16>, width: u8) {
    let mut acc: u64 = 0;
    let mut held: u32 = 0;
    for v in values {
        acc = (acc << width) | u64::from(v);
        held += u32::from(width);
        while held >= 8 {
            held -= 8;
            out.push((acc >> held) as u8);
        }
        acc &= (1u64 << held) - 1;
    }
    if held > 0 {
        out.push((acc << (8 - held)) as u8);
    }
}

/// Reads `count` fields of `width` bits from exactly `packed_len(count, width)` bytes; `Err`
/// gives the byte (relative to `bytes`) and the reason when the padding bits are not zero.
pub(crate) fn read_fields(bytes: &[u8], width: u8, count: usize) -> Result<Vec<u16>, String> {
    debug_assert_eq!(Some(bytes.len()), packed_len(count, width));
    let mut out = Vec::with_capacity(count);
    let mut acc: u64 = 0;
    let mut held: u32 = 0;
    let mut next = bytes.iter();
    let mask = (1u64 << width) - 1;
    for _ in 0..count {
        while held < u32::from(width) {
            // `bytes` holds exactly enough bytes for `count` fields.
            acc = (acc << 8) | u64::from(*next.next().unwrap_or(&0));
            held += 8;
        }
        held -= u32::from(width);
        out.push(((acc >> held) & mask) as u16);
        acc &= (1u64 << held) - 1;
    }
    if acc != 0 {
        return Err("padding bits after the last field are not zero".to_string());
    }
    Ok(out)
}

/// Appends the mask of `values`: bit `i` set when `values[i]` is non-zero.
pub(crate) fn write_mask(out: &mut Vec<u8>, values: &[f32]) {
    for chunk in values.chunks(8) {
        let mut byte = 0u8;
        for (i, v) in chunk.iter().enumerate() {
            if *v != 0.0 {
                byte |= 0x80 >> i;
            }
        }
        out.push(byte);
    }
}

/// The set positions of a mask over `len` elements held in exactly `⌈len/8⌉` bytes.
pub(crate) fn read_mask(bytes: &[u8], len: usize) -> Result<Vec<u64>, String> {
    debug_assert_eq!(bytes.len(), len.div_ceil(8));
    if !len.is_multiple_of(8) {
        let last = bytes[bytes.len() - 1];
        if last & (0xFFu8 >> (len % 8)) != 0 {
            return Err("padding bits after the mask are not zero".to_string());
        }
    }
    let mut positions = Vec::new();
    for (i, &byte) in bytes.iter().enumerate() {
        let mut b = byte;
        while b != 0 {
            let bit = b.leading_zeros();
            positions.push((i * 8) as u64 + u64::from(bit));
            b &= !(0x80u8 >> bit);
        }
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(width in 1u8..=16, raw in prop::collection::vec(any::<u16>(), 0..200)) {
            let values: Vec<u16> = raw.iter().map(|v| (u32::from(*v) & ((1u32 << width) - 1)) as u16).collect();
            let mut out = Vec::new();
            write_fields(&mut out, values.iter().copied(), width);
            prop_assert_eq!(Some(out.len()), packed_len(values.len(), width));
            prop_assert_eq!(read_fields(&out, width, values.len()).unwrap(), values);
        }

        #[test]
        fn masks_round_trip(values in prop::collection::vec(prop_oneof![Just(0.0f32), -2.0f32..2.0], 0..100)) {
            let mut out = Vec::new();
            write_mask(&mut out, &values);
            let positions: Vec<u64> = (0..values.len() as u64).filter(|&i| values[i as usize] != 0.0).collect();
            prop_assert_eq!(read_mask(&out, values.len()).unwrap(), positions);
        }
    }

    #[test]
    fn padding_must_be_zero() {
        assert!(read_fields(&[0b1010_0001], 3, 2).is_err());
        assert_eq!(read_fields(&[0b1010_0000], 3, 2).unwrap(), vec![5, 0]);
        assert!(read_mask(&[0b0000_0001], 7).is_err());
        assert_eq!(read_mask(&[0b0100_0000], 2).unwrap(), vec![1]);
    }
}
