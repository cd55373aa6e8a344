//! Canonical Huffman coding of 16-bit symbols, with a compact table format.
//!
//! Input: symbol frequencies over an alphabet `0..A` with `A <= 2^16` (symbols with frequency 0
//! get no code). Output: a [`HuffmanCode`] that encodes symbol slices into a [`BitStream`] and
//! decodes them back, and serialises to a few bytes holding only the code lengths.
//!
//! Code lengths: the optimal (minimum total length) prefix code, built by the two-queue merge
//! over the frequencies sorted ascending (ties broken by symbol, so the result is deterministic).
//! Lengths are capped at [`MAX_CODE_LENGTH`] = 24 bits: if the optimal code is deeper (only for
//! extremely skewed frequencies, e.g. Fibonacci-like counts over more than 24 symbols), the lengths
//! are recomputed by package-merge, which gives the optimal code among those with no length above
//! the cap. Special cases: no used symbol gives an empty code (only the empty sequence encodes);
//! exactly one used symbol gets a 1-bit code (`0`), so every symbol costs one bit and the code is
//! incomplete (the word `1` decodes as an error).
//!
//! Canonical assignment: symbols sorted by (length, symbol) get consecutive code values, the
//! first code of each length being `(first + count of the previous length) << 1`. A code is
//! determined by its lengths alone, which is why the table stores only lengths.
//!
//! Bit order: MSB-first. Each code word is written most significant bit first, code words follow
//! each other without gaps, bit `i` of the stream is bit `7 − i % 8` of byte `i / 8`, and the last
//! byte is padded with zero bits. `bit_len` is the number of meaningful bits;
//! `bytes.len() == ceil(bit_len / 8)` for encoder output.
//!
//! Decoding: one table lookup on the next 11 bits for codes of up to 11 bits; longer codes are
//! resolved by canonical decoding on the left-justified 24-bit window (compare against each
//! length's upper limit). Decoding checks every step: a window that matches no code, a code that
//! runs past `bit_len`, or bits left over after `count` symbols are errors, never panics.
//!
//! Table format (`to_bytes`/`from_bytes`), for alphabet size `A` and largest length `L`:
//! byte 0 = `w`, the number of bits of `L` (0 when no symbol has a code, at most 5 since L <= 24);
//! then `A` as an unsigned LEB128 varint (at most 65536); then `A` code lengths of `w` bits each,
//! MSB-first, zero-padded to a whole byte. The reader accepts exactly what the writer produces:
//! it rejects truncation, trailing bytes, a width that is not the width of the largest length,
//! non-zero padding, lengths above 24, and lengths violating the Kraft inequality (Σ 2^−len > 1).
//!
//! Complexity: building is O(A log A) (sort) plus O(A · 24) when the cap applies; encoding and
//! decoding are O(symbols) with one table lookup each (O(24) for codes longer than 11 bits).
//!
//! The bit loops are written here rather than on a bit I/O crate: encoding packs into a 64-bit
//! accumulator flushed 32 bits at a time, and table-driven decoding needs to peek 24 bits ahead
//! without consuming them, which a read-only bit reader does not offer at this speed.

use thiserror::Error;

/// Symbols are `u16`, so alphabets have at most 2^16 symbols.
pub const MAX_ALPHABET: usize = 1 << 16;

/// No code word is longer than this many bits.
pub const MAX_CODE_LENGTH: u8 = 24;

/// Code words up to this many bits decode with a single table lookup.
const PRIMARY_BITS: u8 = 11;

const LENGTH_SLOTS: usize = MAX_CODE_LENGTH as usize + 1;

/// Encoded symbols: `bit_len` meaningful bits, MSB-first, in `bytes` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BitStream {
    /// The packed bits; the unused low bits of the last byte are zero.
    pub bytes: Vec<u8>,
    /// Number of meaningful bits.
    pub bit_len: u64,
}

/// A canonical prefix code over `0..alphabet_len()`; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanCode {
    /// Code length per symbol; 0 means the symbol has no code.
    lengths: Vec<u8>,
    /// Per symbol `(code << 8) | length`, the code right-aligned; 0 for symbols without code.
    encode_table: Vec<u32>,
    /// Largest code length (0 when no symbol has a code).
    max_length: u8,
    /// `min(max_length, PRIMARY_BITS)`.
    primary_bits: u8,
    /// Indexed by the next `primary_bits` bits: `(symbol << 8) | length` for a code of at most
    /// `primary_bits` bits starting with those bits, or 0 (longer code or no code).
    primary: Vec<u32>,
    /// Canonical code value of the first code of each length.
    first_code: [u32; LENGTH_SLOTS],
    /// Index in `sorted_symbols` of the first symbol of each length.
    first_index: [u32; LENGTH_SLOTS],
    /// `limit[len]`: one past the last code of length `len`, left-justified to `max_length`
    /// bits. A `max_length`-bit window belongs to the shortest length whose limit exceeds it.
    limit: [u64; LENGTH_SLOTS],
    /// Symbols with a code, sorted by (length, symbol): the canonical order.
    sorted_symbols: Vec<u16>,
}

/// Why building, encoding, decoding or reading a table failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HuffmanError {
    /// More than 2^16 symbols.
    #[error("alphabet of {len} symbols; at most {MAX_ALPHABET} are supported")]
    AlphabetTooLarge {
        /// The rejected alphabet size.
        len: usize,
    },
    /// A symbol outside `0..alphabet` was counted.
    #[error("symbol {symbol} at position {index} is outside the alphabet of {alphabet} symbols")]
    SymbolOutOfRange {
        /// The symbol.
        symbol: u16,
        /// Its position in the input.
        index: usize,
        /// The alphabet size.
        alphabet: usize,
    },
    /// A symbol to encode has no code (frequency 0 or outside the alphabet).
    #[error("symbol {symbol} at position {index} has no code")]
    NoCode {
        /// The symbol.
        symbol: u16,
        /// Its position in the input.
        index: usize,
    },
    /// `bit_len` claims more bits than `bytes` holds.
    #[error("bit stream claims {bit_len} bits but holds only {bytes} bytes")]
    StreamTooShort {
        /// The claimed length.
        bit_len: u64,
        /// Bytes present.
        bytes: usize,
    },
    /// The stream ended before `requested` symbols were decoded.
    #[error("bit stream ended after {decoded} of {requested} symbols")]
    UnexpectedEnd {
        /// Symbols decoded before the end.
        decoded: usize,
        /// Symbols asked for.
        requested: usize,
    },
    /// The bits at `bit_offset` start no code word.
    #[error("no code word starts at bit {bit_offset}")]
    InvalidCode {
        /// Position of the offending bits.
        bit_offset: u64,
    },
    /// Bits remain after the requested symbols.
    #[error("{consumed} of {bit_len} bits decode the requested symbols; the rest is unexplained")]
    TrailingBits {
        /// Bits used by the decoded symbols.
        consumed: u64,
        /// Bits in the stream.
        bit_len: u64,
    },
    /// The table ends early.
    #[error("Huffman table is truncated")]
    TableTruncated,
    /// The width byte is not the bit width of the largest length.
    #[error("Huffman table width {width} does not match its largest code length {max_length}")]
    TableWidth {
        /// The width byte.
        width: u8,
        /// The largest length found (0 when unreadable).
        max_length: u8,
    },
    /// The alphabet size varint is malformed or too large.
    #[error("Huffman table alphabet size is malformed or above {MAX_ALPHABET}")]
    TableAlphabet,
    /// A code length above the cap.
    #[error("symbol {symbol} has code length {length}, above the limit of {MAX_CODE_LENGTH}")]
    CodeTooLong {
        /// The symbol.
        symbol: usize,
        /// Its length.
        length: u8,
    },
    /// The lengths describe more code words than fit (Σ 2^−len > 1).
    #[error("code lengths violate the Kraft inequality")]
    KraftViolated,
    /// Bytes after the table.
    #[error("{extra} unexpected bytes after the Huffman table")]
    TableTrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The padding bits of the last byte are not zero.
    #[error("Huffman table padding bits are not zero")]
    TablePadding,
}

/// Counts each symbol of `symbols` over the alphabet `0..alphabet_len`.
pub fn symbol_frequencies(symbols: &[u16], alphabet_len: usize) -> Result<Vec<u64>, HuffmanError> {
    if alphabet_len > MAX_ALPHABET {
        return Err(HuffmanError::AlphabetTooLarge { len: alphabet_len });
    }
    let mut frequencies = vec![0u64; alphabet_len];
    for (index, &symbol) in symbols.iter().enumerate() {
        match frequencies.get_mut(usize::from(symbol)) {
            Some(count) => *count += 1,
            None => {
                return Err(HuffmanError::SymbolOutOfRange {
                    symbol,
                    index,
                    alphabet: alphabet_len,
                });
            }
        }
    }
    Ok(frequencies)
}

impl HuffmanCode {
    /// The optimal canonical code for `frequencies[s]` occurrences of symbol `s`, lengths capped
    /// at [`MAX_CODE_LENGTH`] (see the module documentation).
    pub fn from_frequencies(frequencies: &[u64]) -> Result<Self, HuffmanError> {
        if frequencies.len() > MAX_ALPHABET {
            return Err(HuffmanError::AlphabetTooLarge {
                len: frequencies.len(),
            });
        }
        let mut used: Vec<(u64, usize)> = frequencies
            .iter()
            .enumerate()
            .filter(|&(_, &frequency)| frequency > 0)
            .map(|(symbol, &frequency)| (frequency, symbol))
            .collect();
        used.sort_unstable();
        let mut lengths = vec![0u8; frequencies.len()];
        match used.len() {
            0 => {}
            1 => lengths[used[0].1] = 1,
            _ => {
                let weights: Vec<u64> = used.iter().map(|&(frequency, _)| frequency).collect();
                let depths = optimal_lengths(&weights);
                let sorted_lengths = if depths
                    .iter()
                    .any(|&depth| depth > u32::from(MAX_CODE_LENGTH))
                {
                    length_limited_lengths(&weights, MAX_CODE_LENGTH)
                } else {
                    depths.iter().map(|&depth| depth as u8).collect()
                };
                for (&(_, symbol), length) in used.iter().zip(sorted_lengths) {
                    lengths[symbol] = length;
                }
            }
        }
        Self::from_lengths(lengths)
    }

    /// The canonical code with the given length per symbol (0 = no code). Fails if the alphabet
    /// is too large, a length exceeds [`MAX_CODE_LENGTH`], or the Kraft inequality is violated.
    pub fn from_lengths(lengths: Vec<u8>) -> Result<Self, HuffmanError> {
        if lengths.len() > MAX_ALPHABET {
            return Err(HuffmanError::AlphabetTooLarge { len: lengths.len() });
        }
        let mut count = [0u32; LENGTH_SLOTS];
        for (symbol, &length) in lengths.iter().enumerate() {
            if length > MAX_CODE_LENGTH {
                return Err(HuffmanError::CodeTooLong { symbol, length });
            }
            count[usize::from(length)] += 1;
        }
        count[0] = 0;
        // Kraft: Σ 2^(24 − len) <= 2^24; at most 2^16 · 2^23 < 2^40, no overflow.
        let kraft: u64 = (1..LENGTH_SLOTS)
            .map(|length| u64::from(count[length]) << (LENGTH_SLOTS - 1 - length))
            .sum();
        if kraft > 1 << MAX_CODE_LENGTH {
            return Err(HuffmanError::KraftViolated);
        }
        let max_length = lengths.iter().copied().max().unwrap_or(0);

        let mut first_code = [0u32; LENGTH_SLOTS];
        let mut first_index = [0u32; LENGTH_SLOTS];
        let mut limit = [0u64; LENGTH_SLOTS];
        let mut code = 0u32;
        let mut index = 0u32;
        for length in 1..=usize::from(max_length) {
            // Kraft guarantees `code + count[length] <= 2^length`.
            first_code[length] = code;
            first_index[length] = index;
            limit[length] = u64::from(code + count[length]) << (usize::from(max_length) - length);
            code = (code + count[length]) << 1;
            index += count[length];
        }

        let mut next_code = first_code;
        let mut encode_table = vec![0u32; lengths.len()];
        let mut sorted_symbols = vec![0u16; index as usize];
        for (symbol, &length) in lengths.iter().enumerate() {
            if length == 0 {
                continue;
            }
            let slot = usize::from(length);
            let code = next_code[slot];
            next_code[slot] += 1;
            encode_table[symbol] = (code << 8) | u32::from(length);
            sorted_symbols[(first_index[slot] + code - first_code[slot]) as usize] = symbol as u16;
        }

        let primary_bits = max_length.min(PRIMARY_BITS);
        let mut primary = vec![0u32; 1 << primary_bits];
        for (symbol, &length) in lengths.iter().enumerate() {
            if length == 0 || length > primary_bits {
                continue;
            }
            let code = encode_table[symbol] >> 8;
            let spread = primary_bits - length;
            let start = (code as usize) << spread;
            primary[start..start + (1 << spread)].fill(((symbol as u32) << 8) | u32::from(length));
        }

        Ok(Self {
            lengths,
            encode_table,
            max_length,
            primary_bits,
            primary,
            first_code,
            first_index,
            limit,
            sorted_symbols,
        })
    }

    /// Code length of each symbol (0 = no code).
    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// Number of symbols of the alphabet (coded or not).
    pub fn alphabet_len(&self) -> usize {
        self.lengths.len()
    }

    /// The longest code word, in bits (0 for an empty code).
    pub fn max_length(&self) -> u8 {
        self.max_length
    }

    /// The canonical code word of `symbol` as (value, length), right-aligned; `None` if the
    /// symbol has no code.
    pub fn code(&self, symbol: u16) -> Option<(u32, u8)> {
        let entry = *self.encode_table.get(usize::from(symbol))?;
        (entry != 0).then_some((entry >> 8, entry as u8))
    }

    /// Total bits needed for `frequencies[s]` occurrences of each symbol `s`; `None` if a
    /// symbol with a non-zero frequency has no code.
    pub fn coded_bits(&self, frequencies: &[u64]) -> Option<u128> {
        let mut total = 0u128;
        for (symbol, &frequency) in frequencies.iter().enumerate() {
            if frequency == 0 {
                continue;
            }
            let length = *self.lengths.get(symbol)?;
            if length == 0 {
                return None;
            }
            total += u128::from(frequency) * u128::from(length);
        }
        Some(total)
    }

    /// Encodes `symbols` MSB-first; fails on a symbol without code.
    pub fn encode(&self, symbols: &[u16]) -> Result<BitStream, HuffmanError> {
        let mut bytes = Vec::with_capacity(symbols.len() / 2 + 8);
        // Invariant: the low `pending` bits of `accumulator` are not yet written; pending < 32
        // between symbols, so adding a code of at most 24 bits never overflows 64 bits.
        let mut accumulator = 0u64;
        let mut pending = 0u32;
        let mut bit_len = 0u64;
        for (index, &symbol) in symbols.iter().enumerate() {
            let entry = self
                .encode_table
                .get(usize::from(symbol))
                .copied()
                .unwrap_or(0);
            let length = entry & 0xFF;
            if length == 0 {
                return Err(HuffmanError::NoCode { symbol, index });
            }
            accumulator = (accumulator << length) | u64::from(entry >> 8);
            pending += length;
            bit_len += u64::from(length);
            if pending >= 32 {
                pending -= 32;
                bytes.extend_from_slice(&((accumulator >> pending) as u32).to_be_bytes());
            }
        }
        while pending >= 8 {
            pending -= 8;
            bytes.push((accumulator >> pending) as u8);
        }
        if pending > 0 {
            bytes.push((accumulator << (8 - pending)) as u8);
        }
        Ok(BitStream { bytes, bit_len })
    }

    /// Decodes exactly `count` symbols that must use exactly `stream.bit_len` bits.
    pub fn decode(&self, stream: &BitStream, count: usize) -> Result<Vec<u16>, HuffmanError> {
        let bit_len = stream.bit_len;
        let bytes = &stream.bytes;
        if bit_len.div_ceil(8) > bytes.len() as u64 {
            return Err(HuffmanError::StreamTooShort {
                bit_len,
                bytes: bytes.len(),
            });
        }
        // Every symbol takes at least one bit, so `bit_len` bounds the useful capacity.
        let capacity = count.min(usize::try_from(bit_len).unwrap_or(usize::MAX));
        let mut symbols = Vec::with_capacity(capacity);
        let primary_shift = 64 - u32::from(self.primary_bits);
        // A peeked window holds at least 57 stream bits; decode from it while the next code,
        // at most `max_length` bits, is certain to lie within them.
        let window_budget = 57 - u32::from(self.max_length);
        let mut position = 0u64;
        while symbols.len() < count {
            let window = peek_bits(bytes, position);
            let mut used = 0u32;
            while used <= window_budget && symbols.len() < count {
                let bit_offset = position + u64::from(used);
                if bit_offset >= bit_len {
                    return Err(HuffmanError::UnexpectedEnd {
                        decoded: symbols.len(),
                        requested: count,
                    });
                }
                let bits = window << used;
                // `primary` has 2^primary_bits entries; a shift by 64 (empty code) must not
                // happen.
                let entry = if self.primary_bits > 0 {
                    self.primary[(bits >> primary_shift) as usize]
                } else {
                    0
                };
                let (symbol, length) = if entry != 0 {
                    ((entry >> 8) as u16, entry & 0xFF)
                } else {
                    self.decode_long(bits)
                        .ok_or(HuffmanError::InvalidCode { bit_offset })?
                };
                if bit_offset + u64::from(length) > bit_len {
                    return Err(HuffmanError::UnexpectedEnd {
                        decoded: symbols.len(),
                        requested: count,
                    });
                }
                used += length;
                symbols.push(symbol);
            }
            position += u64::from(used);
        }
        if position != bit_len {
            return Err(HuffmanError::TrailingBits {
                consumed: position,
                bit_len,
            });
        }
        Ok(symbols)
    }

    /// Canonical decoding of a code longer than `primary_bits` from the MSB-aligned `window`.
    fn decode_long(&self, window: u64) -> Option<(u16, u32)> {
        let max_length = u32::from(self.max_length);
        if max_length == 0 {
            return None;
        }
        let justified = window >> (64 - max_length);
        for length in usize::from(self.primary_bits) + 1..=usize::from(self.max_length) {
            if justified < self.limit[length] {
                let code = (justified >> (max_length as usize - length)) as u32;
                let offset = code.checked_sub(self.first_code[length])?;
                let index = self.first_index[length].checked_add(offset)?;
                let symbol = *self.sorted_symbols.get(index as usize)?;
                return Some((symbol, length as u32));
            }
        }
        None
    }

    /// The compact table: width byte, LEB128 alphabet size, packed lengths (module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let width = bit_width(self.max_length);
        let mut bytes = vec![width];
        let mut size = self.lengths.len() as u32;
        loop {
            let low = (size & 0x7F) as u8;
            size >>= 7;
            if size == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
        let mut accumulator = 0u32;
        let mut pending = 0u32;
        for &length in &self.lengths {
            accumulator = (accumulator << width) | u32::from(length);
            pending += u32::from(width);
            while pending >= 8 {
                pending -= 8;
                bytes.push((accumulator >> pending) as u8);
            }
        }
        if pending > 0 {
            bytes.push((accumulator << (8 - pending)) as u8);
        }
        bytes
    }

    /// Reads a table written by [`HuffmanCode::to_bytes`]; `bytes` must hold exactly one table.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HuffmanError> {
        let (&width, mut rest) = bytes.split_first().ok_or(HuffmanError::TableTruncated)?;
        if width > bit_width(MAX_CODE_LENGTH) {
            return Err(HuffmanError::TableWidth {
                width,
                max_length: 0,
            });
        }
        let mut alphabet = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(HuffmanError::TableTruncated)?;
            rest = tail;
            if shift > 14 {
                return Err(HuffmanError::TableAlphabet);
            }
            alphabet |= usize::from(byte & 0x7F) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                // The writer emits no redundant zero groups.
                if byte == 0 && shift > 7 {
                    return Err(HuffmanError::TableAlphabet);
                }
                break;
            }
        }
        if alphabet > MAX_ALPHABET {
            return Err(HuffmanError::TableAlphabet);
        }
        let packed_len = (alphabet * usize::from(width)).div_ceil(8);
        if rest.len() < packed_len {
            return Err(HuffmanError::TableTruncated);
        }
        if rest.len() > packed_len {
            return Err(HuffmanError::TableTrailingBytes {
                extra: rest.len() - packed_len,
            });
        }
        let mut lengths = Vec::with_capacity(alphabet);
        let mut accumulator = 0u32;
        let mut available = 0u32;
        let mut packed = rest.iter();
        let mask = (1u32 << width) - 1;
        for _ in 0..alphabet {
            while available < u32::from(width) {
                let byte = packed.next().ok_or(HuffmanError::TableTruncated)?;
                accumulator = (accumulator << 8) | u32::from(*byte);
                available += 8;
            }
            available -= u32::from(width);
            lengths.push(((accumulator >> available) & mask) as u8);
        }
        if accumulator & ((1u32 << available) - 1) != 0 {
            return Err(HuffmanError::TablePadding);
        }
        let max_length = lengths.iter().copied().max().unwrap_or(0);
        if bit_width(max_length) != width {
            return Err(HuffmanError::TableWidth { width, max_length });
        }
        Self::from_lengths(lengths)
    }
}

/// Bits needed to write `value` (0 for 0).
fn bit_width(value: u8) -> u8 {
    (u8::BITS - value.leading_zeros()) as u8
}

/// The 64 bits starting at bit `position` of `bytes`, MSB-aligned, zeros past the end; at least
/// 57 of them are real stream bits whenever the stream has that many left.
fn peek_bits(bytes: &[u8], position: u64) -> u64 {
    let byte = (position >> 3) as usize;
    let word = match bytes.get(byte..byte + 8) {
        Some(chunk) => {
            let mut array = [0u8; 8];
            array.copy_from_slice(chunk);
            u64::from_be_bytes(array)
        }
        None => {
            let mut array = [0u8; 8];
            let tail = bytes.get(byte..).unwrap_or(&[]);
            array[..tail.len()].copy_from_slice(tail);
            u64::from_be_bytes(array)
        }
    };
    word << (position & 7)
}

/// Optimal code lengths (tree depths) for `weights` sorted ascending, at least two of them:
/// the two-queue Huffman merge. Leaves and merged nodes are each consumed in ascending order;
/// on equal weights the leaf is taken first.
fn optimal_lengths(weights: &[u64]) -> Vec<u32> {
    let leaves = weights.len();
    let nodes = 2 * leaves - 1;
    let mut weight: Vec<u128> = Vec::with_capacity(nodes);
    weight.extend(weights.iter().map(|&w| u128::from(w)));
    let mut parent = vec![0usize; nodes];
    let mut next_leaf = 0;
    let mut next_merged = leaves;
    for new_node in leaves..nodes {
        let mut children = [0usize; 2];
        for child in &mut children {
            let take_leaf = next_leaf < leaves
                && (next_merged >= new_node || weight[next_leaf] <= weight[next_merged]);
            if take_leaf {
                *child = next_leaf;
                next_leaf += 1;
            } else {
                *child = next_merged;
                next_merged += 1;
            }
        }
        weight.push(weight[children[0]] + weight[children[1]]);
        parent[children[0]] = new_node;
        parent[children[1]] = new_node;
    }
    // Parents are created after their children, so a reverse sweep sees each parent first.
    let mut depth = vec![0u32; nodes];
    for node in (0..nodes - 1).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    depth.truncate(leaves);
    depth
}

/// Optimal code lengths no longer than `limit` for `weights` sorted ascending (at least two,
/// `2^limit >= weights.len()`): package-merge. List `l` (from the deepest level up) merges the
/// leaves with packages of adjacent pairs of list `l + 1`; the first `2n − 2` items of the top
/// list are selected, and each leaf's length is the number of levels at which it is selected.
/// Selected items of every list form a prefix, so only item kinds (leaf or package) are kept.
fn length_limited_lengths(weights: &[u64], limit: u8) -> Vec<u8> {
    let leaves = weights.len();
    let keep = 2 * leaves - 2;
    let leaf_weights: Vec<u128> = weights.iter().map(|&w| u128::from(w)).collect();
    // kinds[0] is the deepest level (leaves only); true = leaf.
    let mut kinds: Vec<Vec<bool>> = vec![vec![true; leaves]];
    let mut previous = leaf_weights.clone();
    for _ in 1..limit {
        let packages: Vec<u128> = previous
            .chunks_exact(2)
            .map(|pair| pair[0] + pair[1])
            .collect();
        let mut merged = Vec::with_capacity(keep);
        let mut level_kinds = Vec::with_capacity(keep);
        let (mut leaf, mut package) = (0, 0);
        while merged.len() < keep && (leaf < leaves || package < packages.len()) {
            let take_leaf = leaf < leaves
                && (package >= packages.len() || leaf_weights[leaf] <= packages[package]);
            if take_leaf {
                merged.push(leaf_weights[leaf]);
                leaf += 1;
            } else {
                merged.push(packages[package]);
                package += 1;
            }
            level_kinds.push(take_leaf);
        }
        kinds.push(level_kinds);
        previous = merged;
    }
    let mut lengths = vec![0u8; leaves];
    let mut selected = keep;
    for level_kinds in kinds.iter().rev() {
        let prefix = &level_kinds[..selected.min(level_kinds.len())];
        let leaf_count = prefix.iter().filter(|&&is_leaf| is_leaf).count();
        for length in &mut lengths[..leaf_count] {
            *length += 1;
        }
        selected = 2 * (prefix.len() - leaf_count);
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Independent optimum: the total coded length of an optimal prefix code equals the sum of
    /// the weights of all merged nodes in a heap-driven Huffman construction.
    fn optimal_total_bits(frequencies: &[u64]) -> u128 {
        let mut heap: BinaryHeap<Reverse<u128>> = frequencies
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| Reverse(u128::from(f)))
            .collect();
        let mut total = 0;
        while heap.len() > 1 {
            let Reverse(a) = heap.pop().unwrap();
            let Reverse(b) = heap.pop().unwrap();
            total += a + b;
            heap.push(Reverse(a + b));
        }
        total
    }

    fn entropy_bits(frequencies: &[u64]) -> f64 {
        let total: f64 = frequencies.iter().map(|&f| f as f64).sum();
        frequencies
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| {
                let p = f as f64 / total;
                -(f as f64) * p.log2()
            })
            .sum()
    }

    fn kraft_sum(lengths: &[u8]) -> f64 {
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 0.5f64.powi(i32::from(l)))
            .sum()
    }

    fn round_trip(symbols: &[u16], alphabet: usize) -> (HuffmanCode, BitStream) {
        let frequencies = symbol_frequencies(symbols, alphabet).unwrap();
        let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
        let stream = code.encode(symbols).unwrap();
        assert_eq!(stream.bytes.len() as u64, stream.bit_len.div_ceil(8));
        assert_eq!(code.decode(&stream, symbols.len()).unwrap(), symbols);
        (code, stream)
    }

    #[test]
    fn textbook_example() {
        // Frequencies 45, 13, 12, 16, 9, 5 (CLRS): lengths 1, 3, 3, 3, 4, 4; 224 bits.
        let frequencies = [45, 13, 12, 16, 9, 5];
        let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
        assert_eq!(code.lengths(), &[1, 3, 3, 3, 4, 4]);
        assert_eq!(code.coded_bits(&frequencies), Some(224));
        // Canonical: length 1 → 0; length 3 → 100, 101, 110; length 4 → 1110, 1111.
        assert_eq!(code.code(0), Some((0b0, 1)));
        assert_eq!(code.code(1), Some((0b100, 3)));
        assert_eq!(code.code(3), Some((0b110, 3)));
        assert_eq!(code.code(5), Some((0b1111, 4)));
        let stream = code.encode(&[0, 5, 1]).unwrap();
        assert_eq!(stream.bit_len, 8);
        assert_eq!(stream.bytes, vec![0b0111_1100]);
    }

    #[test]
    fn empty_and_single_symbol_codes() {
        let empty = HuffmanCode::from_frequencies(&[]).unwrap();
        assert_eq!(empty.max_length(), 0);
        let stream = empty.encode(&[]).unwrap();
        assert_eq!(stream, BitStream::default());
        assert_eq!(empty.decode(&stream, 0).unwrap(), Vec::<u16>::new());
        assert!(matches!(
            empty.encode(&[0]),
            Err(HuffmanError::NoCode {
                symbol: 0,
                index: 0
            })
        ));
        assert!(matches!(
            empty.decode(&stream, 1),
            Err(HuffmanError::UnexpectedEnd { .. })
        ));
        let all_zero = HuffmanCode::from_frequencies(&[0, 0, 0]).unwrap();
        assert_eq!(all_zero.lengths(), &[0, 0, 0]);
        let bogus = BitStream {
            bytes: vec![0xFF],
            bit_len: 8,
        };
        assert!(matches!(
            all_zero.decode(&bogus, 1),
            Err(HuffmanError::InvalidCode { bit_offset: 0 })
        ));

        let (single, stream) = round_trip(&[7; 100], 10);
        assert_eq!(single.lengths()[7], 1);
        assert_eq!(stream.bit_len, 100);
        // The unused word `1` is rejected.
        let bad = BitStream {
            bytes: vec![0x80],
            bit_len: 1,
        };
        assert!(matches!(
            single.decode(&bad, 1),
            Err(HuffmanError::InvalidCode { bit_offset: 0 })
        ));
        assert_eq!(HuffmanCode::from_bytes(&single.to_bytes()).unwrap(), single);
    }

    #[test]
    fn encode_rejects_symbols_without_code() {
        let code = HuffmanCode::from_frequencies(&[3, 0, 2]).unwrap();
        assert!(matches!(
            code.encode(&[0, 1]),
            Err(HuffmanError::NoCode {
                symbol: 1,
                index: 1
            })
        ));
        assert!(matches!(
            code.encode(&[2, 9]),
            Err(HuffmanError::NoCode {
                symbol: 9,
                index: 1
            })
        ));
    }

    #[test]
    fn alphabet_limits() {
        assert!(matches!(
            HuffmanCode::from_frequencies(&vec![1; MAX_ALPHABET + 1]),
            Err(HuffmanError::AlphabetTooLarge { .. })
        ));
        assert!(matches!(
            symbol_frequencies(&[3], 3),
            Err(HuffmanError::SymbolOutOfRange { symbol: 3, .. })
        ));
        // The full alphabet with uniform counts: every code is 16 bits.
        let symbols: Vec<u16> = (0..=u16::MAX).collect();
        let (code, stream) = round_trip(&symbols, MAX_ALPHABET);
        assert!(code.lengths().iter().all(|&l| l == 16));
        assert_eq!(stream.bit_len, 16 * MAX_ALPHABET as u64);
        assert_eq!(HuffmanCode::from_bytes(&code.to_bytes()).unwrap(), code);
    }

    #[test]
    fn length_cap_applies_to_fibonacci_frequencies() {
        // Fibonacci counts make the optimal tree a path: 39 symbols need 38 bits unconstrained.
        let mut frequencies = vec![1u64, 1];
        while frequencies.len() < 40 {
            let n = frequencies.len();
            frequencies.push(frequencies[n - 1] + frequencies[n - 2]);
        }
        let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
        assert_eq!(code.max_length(), MAX_CODE_LENGTH);
        assert_eq!(kraft_sum(code.lengths()), 1.0);
        let total = code.coded_bits(&frequencies).unwrap();
        assert!(total >= optimal_total_bits(&frequencies));
        let symbols: Vec<u16> = (0..40).chain((0..40).rev()).chain([0, 0, 39, 1]).collect();
        let stream = code.encode(&symbols).unwrap();
        assert_eq!(code.decode(&stream, symbols.len()).unwrap(), symbols);
        assert_eq!(HuffmanCode::from_bytes(&code.to_bytes()).unwrap(), code);
    }

    #[test]
    fn huge_frequencies_do_not_overflow() {
        let code = HuffmanCode::from_frequencies(&[u64::MAX, u64::MAX, u64::MAX, 1]).unwrap();
        assert_eq!(kraft_sum(code.lengths()), 1.0);
    }

    /// Brute force over all length vectors with lengths in 1..=limit and Kraft <= 1.
    fn brute_force_limited_cost(weights: &[u64], limit: u8) -> u128 {
        let n = weights.len();
        let mut lengths = vec![1u8; n];
        let mut best = u128::MAX;
        loop {
            if kraft_sum(&lengths) <= 1.0 {
                let cost = weights
                    .iter()
                    .zip(&lengths)
                    .map(|(&w, &l)| u128::from(w) * u128::from(l))
                    .sum();
                best = best.min(cost);
            }
            let mut i = 0;
            while i < n && lengths[i] == limit {
                lengths[i] = 1;
                i += 1;
            }
            if i == n {
                return best;
            }
            lengths[i] += 1;
        }
    }

    #[test]
    fn textbook_table_bytes() {
        let code = HuffmanCode::from_frequencies(&[45, 13, 12, 16, 9, 5]).unwrap();
        // width 3, alphabet 6, lengths 001 011 011 011 100 100 (18 bits → 3 bytes).
        assert_eq!(
            code.to_bytes(),
            vec![3, 6, 0b0010_1101, 0b1011_1001, 0b0000_0000]
        );
    }

    #[test]
    fn malformed_tables_are_rejected() {
        use HuffmanError::*;
        let good = HuffmanCode::from_frequencies(&[45, 13, 12, 16, 9, 5])
            .unwrap()
            .to_bytes();
        assert!(matches!(HuffmanCode::from_bytes(&[]), Err(TableTruncated)));
        assert!(matches!(
            HuffmanCode::from_bytes(&good[..1]),
            Err(TableTruncated)
        ));
        assert!(matches!(
            HuffmanCode::from_bytes(&good[..4]),
            Err(TableTruncated)
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            HuffmanCode::from_bytes(&trailing),
            Err(TableTrailingBytes { extra: 1 })
        ));
        let mut padding = good.clone();
        padding[4] = 0b0000_0001;
        assert!(matches!(
            HuffmanCode::from_bytes(&padding),
            Err(TablePadding)
        ));
        // Width 6 would allow lengths above 24.
        assert!(matches!(
            HuffmanCode::from_bytes(&[6, 1, 0]),
            Err(TableWidth { width: 6, .. })
        ));
        // Width 5 with a length of 25.
        assert!(matches!(
            HuffmanCode::from_bytes(&[5, 1, 25 << 3]),
            Err(CodeTooLong {
                symbol: 0,
                length: 25
            })
        ));
        // Width 4 but the largest length is 3.
        assert!(matches!(
            HuffmanCode::from_bytes(&[4, 2, 0x33]),
            Err(TableWidth {
                width: 4,
                max_length: 3
            })
        ));
        // Three codes of length 1: Kraft sum 3/2.
        assert!(matches!(
            HuffmanCode::from_bytes(&[1, 3, 0b1110_0000]),
            Err(KraftViolated)
        ));
        // Alphabet above 2^16, and a varint with a redundant zero group.
        assert!(matches!(
            HuffmanCode::from_bytes(&[0, 0x81, 0x80, 0x04]),
            Err(TableAlphabet)
        ));
        assert!(matches!(
            HuffmanCode::from_bytes(&[0, 0x80, 0x00]),
            Err(TableAlphabet)
        ));
        assert!(matches!(
            HuffmanCode::from_bytes(&[0, 0x80, 0x80, 0x80, 0x80]),
            Err(TableAlphabet)
        ));
        assert!(matches!(
            HuffmanCode::from_bytes(&[0, 0x80]),
            Err(TableTruncated)
        ));
        // The empty code.
        assert_eq!(HuffmanCode::from_bytes(&[0, 0]).unwrap().alphabet_len(), 0);
        assert_eq!(HuffmanCode::from_bytes(&[0, 5]).unwrap().lengths(), &[0; 5]);
    }

    #[test]
    fn corrupted_streams_are_rejected() {
        let symbols: Vec<u16> = (0..200).map(|i| (i * 7 % 13) as u16).collect();
        let (code, stream) = round_trip(&symbols, 13);
        let short = BitStream {
            bytes: stream.bytes[..stream.bytes.len() - 1].to_vec(),
            bit_len: stream.bit_len,
        };
        assert!(matches!(
            code.decode(&short, symbols.len()),
            Err(HuffmanError::StreamTooShort { .. })
        ));
        let cut = BitStream {
            bytes: stream.bytes.clone(),
            bit_len: stream.bit_len - 1,
        };
        assert!(matches!(
            code.decode(&cut, symbols.len()),
            Err(HuffmanError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            code.decode(&stream, symbols.len() - 1),
            Err(HuffmanError::TrailingBits { .. })
        ));
        assert!(matches!(
            code.decode(&stream, symbols.len() + 1),
            Err(HuffmanError::UnexpectedEnd { .. })
        ));
        // An absurd count does not allocate absurdly.
        assert!(code.decode(&stream, usize::MAX).is_err());
    }

    #[test]
    fn five_bit_weight_codes_compress_like_the_paper() {
        // A peaked distribution over 32 symbols: Huffman beats the fixed 5 bits.
        let frequencies: Vec<u64> = (0..32u64)
            .map(|s| 1 + 10_000 / (1 + (s as i64 - 16).unsigned_abs().pow(2)))
            .collect();
        let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
        let total: u64 = frequencies.iter().sum();
        let bits = code.coded_bits(&frequencies).unwrap();
        assert_eq!(bits, optimal_total_bits(&frequencies));
        assert!((bits as f64) < 5.0 * total as f64);
        assert!(bits as f64 <= entropy_bits(&frequencies) + total as f64);
    }

    fn skewed_symbols() -> impl Strategy<Value = (Vec<u16>, usize)> {
        (1usize..300).prop_flat_map(|alphabet| {
            let symbol = prop_oneof![
                4 => (0..alphabet.min(4)).prop_map(|s| s as u16),
                2 => (0..alphabet.min(16)).prop_map(|s| s as u16),
                1 => (0..alphabet).prop_map(|s| s as u16),
            ];
            (prop::collection::vec(symbol, 0..3000), Just(alphabet))
        })
    }

    proptest! {
        #[test]
        fn round_trips_with_optimal_length((symbols, alphabet) in skewed_symbols()) {
            let (code, stream) = round_trip(&symbols, alphabet);
            let frequencies = symbol_frequencies(&symbols, alphabet).unwrap();
            let used = frequencies.iter().filter(|&&f| f > 0).count();
            let expected = if used == 1 { symbols.len() as u128 } else { optimal_total_bits(&frequencies) };
            prop_assert_eq!(u128::from(stream.bit_len), expected);
            prop_assert_eq!(code.coded_bits(&frequencies), Some(expected));
            prop_assert!(stream.bit_len as f64 <= entropy_bits(&frequencies) + symbols.len() as f64 + 1e-6);
            let table = code.to_bytes();
            let restored = HuffmanCode::from_bytes(&table).unwrap();
            prop_assert_eq!(&restored, &code);
            prop_assert_eq!(restored.to_bytes(), table);
            prop_assert_eq!(restored.decode(&stream, symbols.len()).unwrap(), symbols);
        }

        #[test]
        fn frequencies_give_optimal_codes(frequencies in prop::collection::vec(prop_oneof![Just(0u64), 1u64..1000, 1u64..u64::MAX / 65536], 0..400)) {
            let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
            let used = frequencies.iter().filter(|&&f| f > 0).count();
            prop_assert!(code.max_length() <= MAX_CODE_LENGTH);
            if used >= 2 {
                prop_assert_eq!(kraft_sum(code.lengths()), 1.0);
                if code.max_length() < MAX_CODE_LENGTH {
                    prop_assert_eq!(code.coded_bits(&frequencies), Some(optimal_total_bits(&frequencies)));
                }
            }
        }

        #[test]
        fn package_merge_is_optimal_under_small_limits(mut weights in prop::collection::vec(1u64..100, 2..7), limit in 3u8..5) {
            weights.sort_unstable();
            let lengths = length_limited_lengths(&weights, limit);
            prop_assert!(lengths.iter().all(|&l| 1 <= l && l <= limit));
            prop_assert!(kraft_sum(&lengths) <= 1.0);
            let cost: u128 = weights.iter().zip(&lengths).map(|(&w, &l)| u128::from(w) * u128::from(l)).sum();
            prop_assert_eq!(cost, brute_force_limited_cost(&weights, limit));
        }

        #[test]
        fn arbitrary_tables_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(code) = HuffmanCode::from_bytes(&bytes) {
                prop_assert_eq!(code.to_bytes(), bytes);
            }
        }

        #[test]
        fn corrupted_streams_never_panic((symbols, alphabet) in skewed_symbols(), flips in prop::collection::vec(any::<u64>(), 1..4), cut in any::<u64>()) {
            let frequencies = symbol_frequencies(&symbols, alphabet).unwrap();
            let code = HuffmanCode::from_frequencies(&frequencies).unwrap();
            let mut stream = code.encode(&symbols).unwrap();
            if stream.bit_len > 0 {
                for flip in flips {
                    let bit = flip % stream.bit_len;
                    stream.bytes[(bit / 8) as usize] ^= 0x80 >> (bit % 8);
                }
                let _ = code.decode(&stream, symbols.len());
                stream.bit_len = cut % (stream.bit_len + 1);
                let _ = code.decode(&stream, symbols.len());
            }
        }
    }
}
