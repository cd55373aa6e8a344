//! Reading artifacts: [`unpack`] checks the frame (magic, version, checksum), parses the graph
//! text, then decodes each weight section into a weight with its encoding (see the crate docs for
//! the format). Every read is bounds-checked against the bytes present, and every error names
//! the byte offset where the offending field starts.

use crate::bits;
use crate::{CHECKSUM_BYTES, HEADER_BYTES, MAGIC, MAX_ELEMENTS_PER_BYTE, PackError, VERSION};
use sprig_ir::encoding::{CentroidInit, Huffman, Partition, PartitionScheme, Pruned, Shared};
use sprig_ir::{Encoding, Graph, GraphInfo, RandomInit, Weight, WeightInit};
use sprig_passes::algo::huffman::{BitStream, HuffmanCode};
use sprig_passes::algo::sparse::{decode_relative, encode_relative, strip_fillers};
use std::sync::Arc;

pub(crate) const KIND_GRAPH: u8 = 1;
pub(crate) const KIND_WEIGHT: u8 = 2;

pub(crate) const FLAG_PRUNED: u8 = 1;
pub(crate) const FLAG_SHARED: u8 = 2;
pub(crate) const FLAG_HUFFMAN: u8 = 4;
pub(crate) const FLAG_PARTITION: u8 = 8;

pub(crate) const PROVENANCE_COMPUTED: u8 = 0;
pub(crate) const PROVENANCE_LITERAL: u8 = 1;
pub(crate) const PROVENANCE_FILE: u8 = 2;
pub(crate) const PROVENANCE_SEEDED: u8 = 3;

/// Whether `bytes` starts like an artifact (its magic).
pub fn looks_like_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// A bounds-checked cursor over part of an artifact; offsets in errors are from the file start.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// File offset of `bytes[0]`.
    base: u64,
    file: &'a str,
}

type Result<T> = std::result::Result<T, PackError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], base: u64, file: &'a str) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base,
            file,
        }
    }

    /// An error at `at` (an index into this reader's bytes).
    pub(crate) fn error(&self, at: usize, reason: impl Into<String>) -> PackError {
        PackError::Malformed {
            file: self.file.to_string(),
            offset: self.base + at as u64,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                self.pos += n;
                Ok(&self.bytes[at..at + n])
            }
            _ => Err(self.error(
                at,
                format!(
                    "truncated: {what} needs {n} bytes but only {} remain",
                    self.remaining()
                ),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn str(&mut self, what: &str) -> Result<&'a str> {
        let len = self.u32(what)?;
        let at = self.pos;
        let bytes = self.take(u64::from(len), what)?;
        std::str::from_utf8(bytes).map_err(|e| self.error(at, format!("{what} is not UTF-8: {e}")))
    }

    fn f32s(&mut self, count: usize, what: &str) -> Result<Vec<f32>> {
        let bytes = self.take((count as u64).saturating_mul(4), what)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Reads a section frame of `kind` and returns a reader over its body.
    fn section(&mut self, kind: u8, what: &str) -> Result<Reader<'a>> {
        let at = self.pos;
        let found = self.u8(what)?;
        if found != kind {
            return Err(self.error(
                at,
                format!("expected the {what} (kind {kind}), found section kind {found}"),
            ));
        }
        let len_at = self.pos;
        let len = self.u64(what)?;
        let body_at = self.pos;
        let body = self.take(len, what).map_err(|_| {
            self.error(
                len_at,
                format!(
                    "the {what} claims {len} bytes but only {} remain before the checksum",
                    self.remaining()
                ),
            )
        })?;
        Ok(Reader::new(body, self.base + body_at as u64, self.file))
    }

    pub(crate) fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(
                self.pos,
                format!(
                    "{} unexpected bytes at the end of the {what}",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }
}

/// Reads the artifact `bytes` (named `name` in errors) back into the graph it was packed from,
/// verified.
pub fn unpack(bytes: &[u8], name: &str) -> Result<(Graph, GraphInfo)> {
    let top = Reader::new(bytes, 0, name);
    if !looks_like_artifact(bytes) {
        let reason = if MAGIC.starts_with(bytes) {
            "truncated: the file ends inside the magic bytes".to_string()
        } else {
            "not a sprig artifact: it does not start with the magic bytes \"SPRIGPK\\0\""
                .to_string()
        };
        return Err(top.error(0, reason));
    }
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(top.error(
            bytes.len(),
            format!(
                "truncated: {} bytes, shorter than the {} of a header and checksum",
                bytes.len(),
                HEADER_BYTES + CHECKSUM_BYTES
            ),
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(top.error(
            8,
            format!("format version {version}; this sprig reads version {VERSION} only"),
        ));
    }
    let body_len = bytes.len() - CHECKSUM_BYTES;
    let stored = u32::from_le_bytes([
        bytes[body_len],
        bytes[body_len + 1],
        bytes[body_len + 2],
        bytes[body_len + 3],
    ]);
    let computed = crc32fast::hash(&bytes[..body_len]);
    if stored != computed {
        return Err(top.error(
            body_len,
            format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is damaged or truncated"
            ),
        ));
    }
    let reserved = u16::from_le_bytes([bytes[10], bytes[11]]);
    if reserved != 0 {
        return Err(top.error(10, format!("reserved field is {reserved}, expected 0")));
    }
    let count = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);

    let mut r = Reader::new(&bytes[..body_len], 0, name);
    r.pos = HEADER_BYTES;
    let (mut graph, weights_file) = read_graph(&mut r)?;
    if graph.weights.len() != count as usize {
        return Err(r.error(
            12,
            format!(
                "the header announces {count} weights but the graph declares {}",
                graph.weights.len()
            ),
        ));
    }
    let mut budget = MAX_ELEMENTS_PER_BYTE.saturating_mul(bytes.len() as u64);
    let ids: Vec<_> = graph.weights.iter().map(|(id, _)| id).collect();
    for id in ids {
        let skeleton = &graph.weights[id];
        let what = format!("section of weight `@{}`", skeleton.name);
        let mut section = r.section(KIND_WEIGHT, &what)?;
        let weight = decode_weight(&mut section, skeleton, &mut budget)?;
        section.finish(&what)?;
        *graph.weights.get_mut(id) = weight;
    }
    r.finish("artifact before the checksum")?;
    graph.weights_file = weights_file;
    let info = sprig_ir::verify(&graph).map_err(|errors| {
        let reasons: Vec<String> = errors.into_iter().map(|e| e.message).collect();
        r.error(
            HEADER_BYTES,
            format!("the graph does not verify: {}", reasons.join("; ")),
        )
    })?;
    Ok((graph, info))
}

/// The graph section: the graph with placeholder weights, and the weights file name.
fn read_graph(r: &mut Reader<'_>) -> Result<(Graph, Option<String>)> {
    let mut g = r.section(KIND_GRAPH, "graph section")?;
    let flag_at = g.pos;
    let weights_file = match g.u8("weights-file flag")? {
        0 => None,
        1 => Some(g.str("weights file name")?.to_string()),
        other => return Err(g.error(flag_at, format!("weights-file flag is {other}, not 0 or 1"))),
    };
    let text_at = g.pos;
    let rest = g.remaining() as u64;
    let text = g.take(rest, "graph text")?;
    let text = std::str::from_utf8(text)
        .map_err(|e| g.error(text_at, format!("the graph text is not UTF-8: {e}")))?;
    // Parsed in two steps so that a text naming a weights file is refused before any file is
    // opened: the artifact carries every value itself.
    let (ast, diags) = sprig_front::text::parser::parse(text);
    if let Some(file) = &ast.weights_file {
        return Err(g.error(
            text_at + file.span.start,
            "the graph text names a weights file; an artifact carries its own values",
        ));
    }
    let parsed = sprig_front::text::lower::lower(ast, text, g.file, None, diags).map_err(|d| {
        g.error(
            text_at,
            format!(
                "the graph text does not read back:\n{}",
                d.render().trim_end()
            ),
        )
    })?;
    Ok((parsed.graph, weights_file))
}

#[derive(Debug)]
enum Provenance {
    Computed,
    Literal,
    File(String),
    Seeded(RandomInit),
}

/// Decodes one weight section body; `skeleton` is the weight as the graph text declares it (its
/// name, type and, for seeded weights, generator). `budget` is what is left of the elements this
/// artifact may materialise.
pub(crate) fn decode_weight(
    r: &mut Reader<'_>,
    skeleton: &Weight,
    budget: &mut u64,
) -> Result<Weight> {
    let payload_at = r.pos;
    decode_section(r, skeleton, budget)?.into_weight(skeleton, r, payload_at)
}

/// The values a section stores: every element, or the kept ones of a pruned weight (the rest
/// are +0.0). Kept sparse until a weight is built, so checking a section needs no dense copy.
#[derive(Debug)]
enum StoredValues {
    /// A seeded weight stored by its generator alone.
    Generated,
    Dense(Vec<f32>),
    Sparse {
        len: usize,
        positions: Vec<u64>,
        kept: Vec<f32>,
    },
}

impl StoredValues {
    fn into_dense(self) -> Vec<f32> {
        match self {
            StoredValues::Generated => Vec::new(),
            StoredValues::Dense(values) => values,
            StoredValues::Sparse {
                len,
                positions,
                kept,
            } => {
                let mut values = vec![0.0f32; len];
                for (&p, &v) in positions.iter().zip(&kept) {
                    values[p as usize] = v;
                }
                values
            }
        }
    }

    /// Whether these are bit for bit `values`.
    fn same_bits(&self, values: &[f32]) -> bool {
        match self {
            StoredValues::Generated => true,
            StoredValues::Dense(stored) => sprig_ir::same_bits(stored, values),
            StoredValues::Sparse {
                len,
                positions,
                kept,
            } => {
                let mut next = positions.iter().zip(kept).peekable();
                *len == values.len()
                    && values.iter().enumerate().all(|(i, v)| match next.peek() {
                        Some(&(&p, k)) if p == i as u64 => {
                            next.next();
                            v.to_bits() == k.to_bits()
                        }
                        _ => v.to_bits() == 0,
                    })
            }
        }
    }
}

/// One decoded weight section, before it becomes a [`Weight`].
#[derive(Debug)]
pub(crate) struct DecodedSection {
    provenance: Provenance,
    encoding: Encoding,
    values: StoredValues,
}

impl DecodedSection {
    /// The weight the section stores; `skeleton` gives its name and type.
    fn into_weight(self, skeleton: &Weight, r: &Reader<'_>, payload_at: usize) -> Result<Weight> {
        let name = skeleton.name.clone();
        let ty = skeleton.ty.clone();
        let DecodedSection {
            provenance,
            encoding,
            values,
        } = self;
        if let (Provenance::Seeded(init), StoredValues::Generated) = (&provenance, &values) {
            let mut w = Weight::random(name, ty, *init);
            w.encoding = encoding;
            return Ok(w);
        }
        let weight = match provenance {
            Provenance::Computed => Weight::computed(name, ty, values.into_dense()),
            Provenance::Literal => Weight::literal(name, ty, values.into_dense()),
            Provenance::File(key) => {
                Weight::from_file(name, ty, key, Arc::from(values.into_dense()))
            }
            Provenance::Seeded(init) => {
                let w = Weight::random(name, ty, init);
                if !values.same_bits(&w.values()) {
                    return Err(r.error(
                        payload_at,
                        "the stored values differ from those of the weight's generator",
                    ));
                }
                Ok(w)
            }
        };
        let mut weight = weight.map_err(|e| r.error(payload_at, e.to_string()))?;
        weight.encoding = encoding;
        Ok(weight)
    }

    /// Whether the section stores exactly `w` (provenance, encoding and values), compared without
    /// materialising the section's values densely.
    pub(crate) fn matches(&self, w: &Weight) -> bool {
        let same_provenance = match (&self.provenance, &w.init) {
            (Provenance::Computed, WeightInit::Computed)
            | (Provenance::Literal, WeightInit::Literal) => true,
            (Provenance::File(a), WeightInit::File { key: b }) => a == b,
            (Provenance::Seeded(a), WeightInit::Random(b)) => a == b,
            _ => false,
        };
        same_provenance && self.encoding == w.encoding && self.values.same_bits(&w.values())
    }
}

/// Decodes one weight section body without building the weight (see [`decode_weight`]).
pub(crate) fn decode_section(
    r: &mut Reader<'_>,
    skeleton: &Weight,
    budget: &mut u64,
) -> Result<DecodedSection> {
    let n = skeleton.len();
    let at = r.pos;
    let provenance = match r.u8("provenance")? {
        PROVENANCE_COMPUTED => Provenance::Computed,
        PROVENANCE_LITERAL => Provenance::Literal,
        PROVENANCE_FILE => Provenance::File(r.str("weights-file key")?.to_string()),
        PROVENANCE_SEEDED => match &skeleton.init {
            WeightInit::Random(init) => Provenance::Seeded(*init),
            _ => {
                return Err(r.error(
                    at,
                    "the weight is marked seeded but the graph text gives it no generator",
                ));
            }
        },
        other => return Err(r.error(at, format!("unknown provenance {other}"))),
    };
    let flags_at = r.pos;
    let flags = r.u8("encoding flags")?;
    if flags & !(FLAG_PRUNED | FLAG_SHARED | FLAG_HUFFMAN | FLAG_PARTITION) != 0 {
        return Err(r.error(flags_at, format!("unknown encoding flags {flags:#04x}")));
    }
    let pruned = flags & FLAG_PRUNED != 0;
    let is_huffman = flags & FLAG_HUFFMAN != 0;
    if is_huffman && flags & FLAG_SHARED == 0 {
        return Err(r.error(flags_at, "Huffman coding without weight sharing"));
    }

    let shared = if flags & FLAG_SHARED != 0 {
        let at = r.pos;
        let bits = r.u8("code width")?;
        if !(1..=16).contains(&bits) {
            return Err(r.error(at, format!("code width {bits} is outside 1..=16")));
        }
        let at = r.pos;
        let init = r.u8("centroid initialisation")?;
        let init = *CentroidInit::ALL
            .get(usize::from(init))
            .ok_or_else(|| r.error(at, format!("unknown centroid initialisation {init}")))?;
        let at = r.pos;
        let zero_code = match r.u8("zero-code flag")? {
            0 => false,
            1 => true,
            other => return Err(r.error(at, format!("zero-code flag is {other}, not 0 or 1"))),
        };
        let at = r.pos;
        let k = r.u32("codebook length")?;
        if u64::from(k) > 1u64 << bits {
            return Err(r.error(
                at,
                format!(
                    "codebook of {k} values for {bits}-bit codes (at most {})",
                    1u64 << bits
                ),
            ));
        }
        let codebook = r.f32s(k as usize, "codebook")?;
        if zero_code && codebook.first().is_none_or(|&c| c != 0.0) {
            return Err(r.error(at, "a zero code needs codebook entry 0 to be 0.0"));
        }
        Some((bits, init, zero_code, codebook))
    } else {
        None
    };
    let index_width = if is_huffman {
        let at = r.pos;
        let width = r.u8("relative index width")?;
        let ok = if pruned {
            (1..=16).contains(&width)
        } else {
            width == 0
        };
        if !ok {
            return Err(r.error(
                at,
                format!(
                    "relative index width {width} (expected {})",
                    if pruned {
                        "1..=16"
                    } else {
                        "0 for an unpruned weight"
                    }
                ),
            ));
        }
        Some(width)
    } else {
        None
    };
    let partition = if flags & FLAG_PARTITION != 0 {
        let at = r.pos;
        let pes = r.u32("processing element count")?;
        if pes == 0 {
            return Err(r.error(at, "zero processing elements"));
        }
        let at = r.pos;
        let scheme = r.u8("partition scheme")?;
        if scheme != 0 {
            return Err(r.error(at, format!("unknown partition scheme {scheme}")));
        }
        Some(Partition {
            pes: pes as usize,
            scheme: PartitionScheme::Interleave,
        })
    } else {
        None
    };

    let mut encoding = Encoding {
        partition,
        ..Encoding::default()
    };
    if let (Provenance::Seeded(_), false, None) = (&provenance, pruned, &shared) {
        return Ok(DecodedSection {
            provenance,
            encoding,
            values: StoredValues::Generated,
        });
    }

    let payload_at = r.pos;
    if n as u64 > *budget {
        return Err(r.error(
            payload_at,
            format!(
                "the weights decode to more than {MAX_ELEMENTS_PER_BYTE} elements per byte of the file"
            ),
        ));
    }
    *budget -= n as u64;

    let values = match &shared {
        None if !pruned => StoredValues::Dense(r.f32s(n, "values")?),
        None => {
            let positions = read_mask(r, n)?;
            let at = r.pos;
            let kept = r.f32s(positions.len(), "kept values")?;
            if let Some(i) = kept.iter().position(|&v| v == 0.0) {
                return Err(r.error(
                    at + 4 * i,
                    format!(
                        "kept element {} is zero; a pruned weight keeps non-zeros only",
                        positions[i]
                    ),
                ));
            }
            encoding.pruned = Some(Pruned {
                nonzeros: positions.len() as u64,
                len: n as u64,
            });
            StoredValues::Sparse {
                len: n,
                positions,
                kept,
            }
        }
        Some((bits, init, zero_code, codebook)) => {
            let (positions, codes) = match index_width {
                None => {
                    let positions = if pruned { Some(read_mask(r, n)?) } else { None };
                    let m = positions.as_ref().map_or(n, Vec::len);
                    let at = r.pos;
                    let len = bits::packed_len(m, *bits).unwrap_or(usize::MAX);
                    let bytes = r.take(len as u64, "codes")?;
                    let codes = bits::read_fields(bytes, *bits, m)
                        .map_err(|e| r.error(at + bytes.len().saturating_sub(1), e))?;
                    (positions, codes)
                }
                Some(width) => {
                    let (positions, codes, record) =
                        read_huffman(r, n, *bits, *zero_code, pruned, width)?;
                    encoding.huffman = Some(record);
                    (positions, codes)
                }
            };
            let at = r.pos;
            let kept = shared_values(positions.as_deref(), &codes, codebook, *zero_code)
                .map_err(|e| r.error(at, e))?;
            if let Some(positions) = &positions {
                encoding.pruned = Some(Pruned {
                    nonzeros: positions.len() as u64,
                    len: n as u64,
                });
            }
            encoding.shared = Some(Shared {
                bits: *bits,
                init: *init,
                codebook: codebook.clone(),
                zero_code: *zero_code,
                codes: codes.into(),
            });
            match positions {
                Some(positions) => StoredValues::Sparse {
                    len: n,
                    positions,
                    kept,
                },
                None => StoredValues::Dense(kept),
            }
        }
    };
    Ok(DecodedSection {
        provenance,
        encoding,
        values,
    })
}

/// A mask over `n` elements; the kept positions.
fn read_mask(r: &mut Reader<'_>, n: usize) -> Result<Vec<u64>> {
    let at = r.pos;
    let bytes = r.take(n.div_ceil(8) as u64, "mask")?;
    bits::read_mask(bytes, n).map_err(|e| r.error(at + bytes.len().saturating_sub(1), e))
}

/// Values of a shared weight: `codebook[code]` for every stored code (the kept positions of a
/// pruned weight, given as `positions`, or every element).
fn shared_values(
    positions: Option<&[u64]>,
    codes: &[u16],
    codebook: &[f32],
    zero_code: bool,
) -> std::result::Result<Vec<f32>, String> {
    let lookup = |i: usize, code: u16| {
        codebook.get(usize::from(code)).copied().ok_or_else(|| {
            format!(
                "code {code} of entry {i} is outside the codebook of {} values",
                codebook.len()
            )
        })
    };
    match positions {
        None => codes
            .iter()
            .enumerate()
            .map(|(i, &c)| lookup(i, c))
            .collect(),
        Some(positions) => {
            let mut values = Vec::with_capacity(codes.len());
            for (i, (&p, &code)) in positions.iter().zip(codes).enumerate() {
                if zero_code && code == 0 {
                    return Err(format!("kept element {p} has the zero code"));
                }
                let v = lookup(i, code)?;
                if v == 0.0 {
                    return Err(format!(
                        "kept element {p} decodes to zero; a pruned weight keeps non-zeros only"
                    ));
                }
                values.push(v);
            }
            Ok(values)
        }
    }
}

/// A Huffman table of at most `alphabet` symbols.
fn read_table(r: &mut Reader<'_>, alphabet: usize, what: &str) -> Result<HuffmanCode> {
    let len = r.u32(what)?;
    let at = r.pos;
    let bytes = r.take(u64::from(len), what)?;
    let code = HuffmanCode::from_bytes(bytes).map_err(|e| r.error(at, format!("{what}: {e}")))?;
    if code.alphabet_len() > alphabet {
        return Err(r.error(
            at,
            format!(
                "{what} has {} symbols, more than the {alphabet} of its field",
                code.alphabet_len()
            ),
        ));
    }
    Ok(code)
}

/// A bit stream: its bit length, then its bytes with zero padding.
fn read_stream(r: &mut Reader<'_>, what: &str) -> Result<(BitStream, usize)> {
    let bit_len = r.u64(what)?;
    let at = r.pos;
    let bytes = r.take(bit_len.div_ceil(8), what)?;
    if !bit_len.is_multiple_of(8) && bytes[bytes.len() - 1] & (0xFFu8 >> (bit_len % 8)) != 0 {
        return Err(r.error(
            at + bytes.len() - 1,
            format!("{what}: padding bits are not zero"),
        ));
    }
    Ok((
        BitStream {
            bytes: bytes.to_vec(),
            bit_len,
        },
        at,
    ))
}

/// Decodes `count` symbols of `stream` (read at `at`), each costing at least one bit.
fn decode_stream(
    r: &Reader<'_>,
    code: &HuffmanCode,
    stream: &BitStream,
    at: usize,
    count: u64,
    what: &str,
) -> Result<Vec<u16>> {
    if count > stream.bit_len {
        return Err(r.error(
            at,
            format!(
                "{what}: {count} symbols cannot fit in {} bits",
                stream.bit_len
            ),
        ));
    }
    code.decode(stream, count as usize)
        .map_err(|e| r.error(at, format!("{what}: {e}")))
}

/// The Huffman payload: kept positions (when pruned), codes per kept element (per element
/// otherwise), and the rebuilt Huffman record.
fn read_huffman(
    r: &mut Reader<'_>,
    n: usize,
    bits: u8,
    zero_code: bool,
    pruned: bool,
    width: u8,
) -> Result<(Option<Vec<u64>>, Vec<u16>, Huffman)> {
    let weight_code = read_table(r, 1 << bits, "weight-code Huffman table")?;
    let entries_at = r.pos;
    let entries = r.u64("entry count")?;
    if !pruned && entries != n as u64 {
        return Err(r.error(
            entries_at,
            format!("{entries} entries for an unpruned weight of {n} elements"),
        ));
    }
    let (stream, at) = read_stream(r, "weight-code stream")?;
    let entry_codes = decode_stream(r, &weight_code, &stream, at, entries, "weight-code stream")?;
    let per_symbol = |bits: u64| {
        if entries == 0 {
            0.0
        } else {
            bits as f64 / entries as f64
        }
    };
    let weight_bits = per_symbol(stream.bit_len);
    if !pruned {
        let record = Huffman {
            index_width: 0,
            entries,
            fillers: 0,
            weight_bits,
            index_bits: 0.0,
        };
        return Ok((None, entry_codes, record));
    }
    let index_code = read_table(r, 1 << width, "index Huffman table")?;
    let (index_stream, index_at) = read_stream(r, "index stream")?;
    let diffs = decode_stream(
        r,
        &index_code,
        &index_stream,
        index_at,
        entries,
        "index stream",
    )?;
    let is_filler: Vec<bool> = entry_codes.iter().map(|&c| zero_code && c == 0).collect();
    let positions = decode_relative(&diffs, &is_filler)
        .map_err(|e| r.error(index_at, format!("index stream: {e}")))?;
    if let Some(&last) = positions.last()
        && last >= n as u64
    {
        return Err(r.error(
            index_at,
            format!("index stream: kept element {last} lies beyond the weight's {n} elements"),
        ));
    }
    let canonical = encode_relative(&positions, width)
        .map_err(|e| r.error(index_at, format!("index stream: {e}")))?;
    if canonical.diffs != diffs || canonical.is_filler != is_filler {
        return Err(r.error(
            index_at,
            "index stream: fillers differ from those the relative-index encoding inserts",
        ));
    }
    let codes = strip_fillers(&entry_codes, &is_filler)
        .map_err(|e| r.error(at, format!("weight-code stream: {e}")))?;
    let record = Huffman {
        index_width: width,
        entries,
        fillers: canonical.fillers as u64,
        weight_bits,
        index_bits: per_symbol(index_stream.bit_len),
    };
    Ok((Some(positions), codes, record))
}
