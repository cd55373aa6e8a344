//! Relative sparse indices with filler entries (Deep Compression's sparse format, as in EIE).
//!
//! Input: the positions of the non-zeros of a vector (a matrix column or row in storage order),
//! strictly increasing, and the index width `b` in bits (1..=16). Output: a [`RelativeIndex`]:
//! one entry per stored value, each holding the number of positions skipped since the previous
//! entry, plus a flag marking filler entries.
//!
//! Convention (exact):
//! - Entries are visited in order; `next` is the first position the next entry may occupy,
//!   starting at 0. An entry with difference `d` occupies position `next + d`; then
//!   `next = next + d + 1`. So `d` is the number of zeros skipped before the entry.
//! - Differences are at most `2^b − 1`. A gap of `g` zeros before a non-zero (leading zeros for
//!   the first one, `positions[i] − positions[i−1] − 1` otherwise) is written as
//!   `⌊g / 2^b⌋` filler entries with difference `2^b − 1`, each standing for a zero weight that
//!   occupies one position (so each consumes `2^b` positions), followed by the non-zero's entry
//!   with difference `g mod 2^b`.
//! - Hence the number of fillers is exactly `Σ_i ⌊g_i / 2^b⌋`, and the entry count is
//!   `positions.len()` plus that. Zeros after the last non-zero produce no entries (the vector
//!   length is stored elsewhere).
//! - Example (EIE, b = 4): `[0,0,1,2,0×18,3]` has non-zeros at 2, 3, 22; the entries are the
//!   values `[1,2,0,3]` with differences `[2,0,15,2]`, the third being a filler.
//! - Weight codes per entry (from [`interleave_codes`]) use code 0 for fillers, matching the EIE
//!   convention that code 0 means zero.
//!
//! Complexity: O(entries) time and memory for every function. Encoding sizes its output first and
//! fails with [`SparseError::TooManyEntries`] rather than aborting if the fillers cannot be stored.

use thiserror::Error;

/// Relative indices of one sparse vector; see the module documentation for the convention.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelativeIndex {
    /// Zeros skipped before each entry (fillers included), each at most `2^bits − 1`.
    pub diffs: Vec<u16>,
    /// Whether each entry is a filler (a stored zero); same length as `diffs`.
    pub is_filler: Vec<bool>,
    /// Number of filler entries.
    pub fillers: usize,
}

/// Why encoding or decoding relative indices failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SparseError {
    /// The index width is outside 1..=16.
    #[error("relative index width must be 1 to 16 bits, got {bits}")]
    IndexBits {
        /// The rejected width.
        bits: u8,
    },
    /// `positions[index]` does not exceed `positions[index − 1]`.
    #[error("positions must be strictly increasing; position {index} is not")]
    NotIncreasing {
        /// Index of the offending position.
        index: usize,
    },
    /// The fillers needed do not fit in memory.
    #[error("{entries} entries (fillers included) cannot be stored")]
    TooManyEntries {
        /// Entries that would be needed.
        entries: u128,
    },
    /// `diffs` and `is_filler` differ in length.
    #[error("{diffs} differences but {flags} filler flags")]
    LengthMismatch {
        /// Length of `diffs`.
        diffs: usize,
        /// Length of `is_filler`.
        flags: usize,
    },
    /// A decoded position exceeds `u64::MAX`.
    #[error("entry {entry} lies beyond the largest representable position")]
    PositionOverflow {
        /// Index of the entry.
        entry: usize,
    },
    /// The number of codes differs from the number of non-filler entries.
    #[error("{codes} codes for {non_zeros} non-filler entries")]
    CodeCountMismatch {
        /// Codes supplied.
        codes: usize,
        /// Non-filler entries.
        non_zeros: usize,
    },
}

/// Largest difference representable in `index_bits` bits: `2^index_bits − 1`.
pub fn max_diff(index_bits: u8) -> Result<u16, SparseError> {
    if !(1..=16).contains(&index_bits) {
        return Err(SparseError::IndexBits { bits: index_bits });
    }
    Ok(((1u32 << index_bits) - 1) as u16)
}

/// Number of fillers [`encode_relative`] inserts: `Σ_i ⌊g_i / 2^index_bits⌋` over the gaps.
pub fn filler_count(positions: &[u64], index_bits: u8) -> Result<u128, SparseError> {
    max_diff(index_bits)?;
    let mut fillers = 0u128;
    for_each_gap(positions, |_, gap| fillers += u128::from(gap >> index_bits))?;
    Ok(fillers)
}

/// Calls `visit(i, gap)` for each position with the number of zeros before it; checks that the
/// positions increase strictly.
fn for_each_gap(positions: &[u64], mut visit: impl FnMut(usize, u64)) -> Result<(), SparseError> {
    let mut previous: Option<u64> = None;
    for (index, &position) in positions.iter().enumerate() {
        let gap = match previous {
            None => position,
            Some(previous) if position > previous => position - previous - 1,
            Some(_) => return Err(SparseError::NotIncreasing { index }),
        };
        visit(index, gap);
        previous = Some(position);
    }
    Ok(())
}

/// Encodes the strictly increasing `positions` as relative indices of `index_bits` bits.
pub fn encode_relative(positions: &[u64], index_bits: u8) -> Result<RelativeIndex, SparseError> {
    let max = max_diff(index_bits)?;
    let fillers = filler_count(positions, index_bits)?;
    let entries = positions.len() as u128 + fillers;
    let too_many = SparseError::TooManyEntries { entries };
    let capacity = usize::try_from(entries).map_err(|_| too_many.clone())?;
    // Every entry starts out as a filler; the pass below skips over the fillers of each gap
    // and overwrites the entry of the non-zero that follows them.
    let mut diffs: Vec<u16> = Vec::new();
    let mut is_filler: Vec<bool> = Vec::new();
    diffs
        .try_reserve_exact(capacity)
        .map_err(|_| too_many.clone())?;
    is_filler
        .try_reserve_exact(capacity)
        .map_err(|_| too_many)?;
    diffs.resize(capacity, max);
    is_filler.resize(capacity, true);

    let mut entry = 0usize;
    for_each_gap(positions, |_, gap| {
        // Each filler covers 2^bits positions: 2^bits − 1 skipped zeros and itself. The sum of
        // the skips is `fillers`, so `entry < capacity` holds.
        entry += (gap >> index_bits) as usize;
        diffs[entry] = (gap & u64::from(max)) as u16;
        is_filler[entry] = false;
        entry += 1;
    })?;
    Ok(RelativeIndex {
        diffs,
        is_filler,
        fillers: capacity - positions.len(),
    })
}

/// Positions of the non-filler entries described by `diffs` and `is_filler`.
pub fn decode_relative(diffs: &[u16], is_filler: &[bool]) -> Result<Vec<u64>, SparseError> {
    if diffs.len() != is_filler.len() {
        return Err(SparseError::LengthMismatch {
            diffs: diffs.len(),
            flags: is_filler.len(),
        });
    }
    let non_zeros = is_filler.iter().filter(|&&filler| !filler).count();
    // One spare slot: every entry's position is written at `decoded`, which advances only
    // for non-fillers (branch-free), so a trailing filler writes one past the end.
    let mut positions = vec![0u64; non_zeros + 1];
    let mut decoded = 0usize;
    // First position the next entry may occupy; u128 so that one past u64::MAX is representable.
    let mut next = 0u128;
    for (entry, (&diff, &filler)) in diffs.iter().zip(is_filler).enumerate() {
        let position = next + u128::from(diff);
        let position =
            u64::try_from(position).map_err(|_| SparseError::PositionOverflow { entry })?;
        positions[decoded] = position;
        decoded += usize::from(!filler);
        next = u128::from(position) + 1;
    }
    positions.truncate(decoded);
    Ok(positions)
}

/// Per-entry weight codes: the next of `codes` (one per non-zero, in order) for each non-filler
/// entry and code 0 for each filler.
pub fn interleave_codes(codes: &[u16], is_filler: &[bool]) -> Result<Vec<u16>, SparseError> {
    let non_zeros = is_filler.iter().filter(|&&filler| !filler).count();
    if non_zeros != codes.len() {
        return Err(SparseError::CodeCountMismatch {
            codes: codes.len(),
            non_zeros,
        });
    }
    let mut remaining = codes.iter();
    Ok(is_filler
        .iter()
        .map(|&filler| {
            if filler {
                0
            } else {
                remaining.next().copied().unwrap_or(0)
            }
        })
        .collect())
}

/// The inverse of [`interleave_codes`]: the codes of the non-filler entries, in order.
pub fn strip_fillers(entry_codes: &[u16], is_filler: &[bool]) -> Result<Vec<u16>, SparseError> {
    if entry_codes.len() != is_filler.len() {
        return Err(SparseError::LengthMismatch {
            diffs: entry_codes.len(),
            flags: is_filler.len(),
        });
    }
    Ok(entry_codes
        .iter()
        .zip(is_filler)
        .filter(|&(_, &filler)| !filler)
        .map(|(&code, _)| code)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn eie_example() {
        let dense = [
            0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3u16,
        ];
        let positions: Vec<u64> = (0..dense.len() as u64)
            .filter(|&i| dense[i as usize] != 0)
            .collect();
        assert_eq!(positions, [2, 3, 22]);
        let values: Vec<u16> = positions.iter().map(|&i| dense[i as usize]).collect();

        let index = encode_relative(&positions, 4).unwrap();
        assert_eq!(index.diffs, [2, 0, 15, 2]);
        assert_eq!(index.is_filler, [false, false, true, false]);
        assert_eq!(index.fillers, 1);
        assert_eq!(
            interleave_codes(&values, &index.is_filler).unwrap(),
            [1, 2, 0, 3]
        );
        assert_eq!(
            decode_relative(&index.diffs, &index.is_filler).unwrap(),
            positions
        );
        assert_eq!(
            strip_fillers(&[1, 2, 0, 3], &index.is_filler).unwrap(),
            values
        );
    }

    #[test]
    fn gaps_at_the_width_boundary() {
        // At 4 bits a gap of 15 fits; 16 needs one filler and leaves 0; 31 one filler and 15;
        // 32 two fillers and 0.
        for (gap, fillers, last) in [(15u64, 0usize, 15u16), (16, 1, 0), (31, 1, 15), (32, 2, 0)] {
            let index = encode_relative(&[gap], 4).unwrap();
            assert_eq!(index.fillers, fillers, "gap {gap}");
            assert_eq!(index.diffs.last(), Some(&last), "gap {gap}");
            assert_eq!(
                decode_relative(&index.diffs, &index.is_filler).unwrap(),
                [gap]
            );
        }
    }

    #[test]
    fn empty_and_extreme_inputs() {
        let empty = encode_relative(&[], 5).unwrap();
        assert_eq!(empty, RelativeIndex::default());
        assert!(decode_relative(&[], &[]).unwrap().is_empty());

        // Positions near the top of u64 with small gaps between them need few entries.
        let top = [u64::MAX - 70_000, u64::MAX - 1, u64::MAX];
        let gaps_only = encode_relative(&[0, 70_000 - 2, 70_000], 16).unwrap();
        assert_eq!(gaps_only.fillers, 1);
        // A 2^64-position gap needs 2^48 fillers at 16 bits and 2^63 at one bit: refused.
        for bits in [1, 16] {
            assert!(matches!(
                encode_relative(&top, bits),
                Err(SparseError::TooManyEntries { .. })
            ));
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            encode_relative(&[1], 0),
            Err(SparseError::IndexBits { bits: 0 })
        );
        assert_eq!(
            encode_relative(&[1], 17),
            Err(SparseError::IndexBits { bits: 17 })
        );
        assert_eq!(
            encode_relative(&[1, 1], 4),
            Err(SparseError::NotIncreasing { index: 1 })
        );
        assert_eq!(
            encode_relative(&[5, 2], 4),
            Err(SparseError::NotIncreasing { index: 1 })
        );
        assert_eq!(
            decode_relative(&[1, 2], &[false]),
            Err(SparseError::LengthMismatch { diffs: 2, flags: 1 })
        );
        assert_eq!(
            interleave_codes(&[1], &[true, true]),
            Err(SparseError::CodeCountMismatch {
                codes: 1,
                non_zeros: 0
            })
        );
        assert_eq!(
            strip_fillers(&[1], &[false, true]),
            Err(SparseError::LengthMismatch { diffs: 1, flags: 2 })
        );
    }

    fn positions_with_gaps() -> impl Strategy<Value = Vec<u64>> {
        let gap = prop_oneof![4 => 0u64..20, 2 => 0u64..300, 1 => 0u64..5000];
        prop::collection::vec(gap, 0..500).prop_map(|gaps| {
            let mut next = 0u64;
            gaps.into_iter()
                .map(|gap| {
                    let position = next + gap;
                    next = position + 1;
                    position
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn round_trips(positions in positions_with_gaps(), bits in 1u8..=16) {
            let index = encode_relative(&positions, bits).unwrap();
            let max = max_diff(bits).unwrap();
            prop_assert_eq!(index.diffs.len(), index.is_filler.len());
            prop_assert_eq!(index.diffs.len(), positions.len() + index.fillers);
            prop_assert!(index.diffs.iter().all(|&d| d <= max));
            prop_assert!(index.diffs.iter().zip(&index.is_filler).all(|(&d, &f)| !f || d == max));
            prop_assert_eq!(decode_relative(&index.diffs, &index.is_filler).unwrap(), positions.clone());

            let codes: Vec<u16> = (0..positions.len()).map(|i| 1 + (i % 31) as u16).collect();
            let entry_codes = interleave_codes(&codes, &index.is_filler).unwrap();
            prop_assert!(entry_codes.iter().zip(&index.is_filler).all(|(&c, &f)| (c == 0) == f));
            prop_assert_eq!(strip_fillers(&entry_codes, &index.is_filler).unwrap(), codes);
        }

        #[test]
        fn filler_count_matches_the_gap_formula(positions in positions_with_gaps(), bits in 1u8..=16) {
            let index = encode_relative(&positions, bits).unwrap();
            let mut previous: Option<u64> = None;
            let mut expected = 0u64;
            for &position in &positions {
                let gap = match previous { None => position, Some(p) => position - p - 1 };
                expected += gap / (1u64 << bits);
                previous = Some(position);
            }
            prop_assert_eq!(index.fillers as u64, expected);
            prop_assert_eq!(filler_count(&positions, bits).unwrap(), u128::from(expected));
        }

        #[test]
        fn decoding_arbitrary_entries_never_panics(diffs in prop::collection::vec(any::<u16>(), 0..200), flags in prop::collection::vec(any::<bool>(), 0..200)) {
            if let Ok(positions) = decode_relative(&diffs, &flags) {
                prop_assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
            }
        }
    }
}
