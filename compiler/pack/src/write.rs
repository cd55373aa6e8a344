//! Writing artifacts: [`pack`] lays out the header, the graph section and one section per weight
//! (see the crate docs for the format), decodes each section again to check it, and accounts for
//! every byte in the [`SizeReport`].

use crate::bits;
use crate::read::{
    FLAG_HUFFMAN, FLAG_PARTITION, FLAG_PRUNED, FLAG_SHARED, KIND_GRAPH, KIND_WEIGHT,
    PROVENANCE_COMPUTED, PROVENANCE_FILE, PROVENANCE_LITERAL, PROVENANCE_SEEDED, Reader,
    decode_section,
};
use crate::{
    CHECKSUM_BYTES, HEADER_BYTES, LayerSize, MAGIC, MAX_ELEMENTS_PER_BYTE, PackError, Packed,
    SECTION_FRAME_BYTES, SizeReport, Total, VERSION,
};
use sprig_ir::encoding::{CentroidInit, PartitionScheme};
use sprig_ir::{Distribution, Graph, GraphInfo, RandomInit, Weight, WeightInit};
use sprig_passes::algo::huffman::{HuffmanCode, symbol_frequencies};
use sprig_passes::algo::sparse::{encode_relative, interleave_codes};

/// The declaration of a weight whose values live in its section.
const PLACEHOLDER: RandomInit = RandomInit {
    dist: Distribution::Uniform {
        low: 0.0,
        high: 0.0,
    },
    density: 0.0,
    seed: 0,
};

/// What a weight section holds, for the report.
struct Stored {
    weight_bits: u32,
    index_bits: f64,
    huffman_weight_bits: Option<f64>,
    huffman_index_bits: Option<f64>,
    density: f64,
    /// Elements a reader materialises for this weight.
    materialised: u64,
}

/// Packs a verified graph (`_info` is the proof that it verified) into an artifact.
pub fn pack(graph: &Graph, _info: &GraphInfo) -> Result<Packed, PackError> {
    let count = u32::try_from(graph.weights.len()).map_err(|_| PackError::Graph {
        reason: format!("{} weights; at most 2^32 - 1 fit", graph.weights.len()),
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());

    let skeleton = skeleton(graph);
    check_skeleton(graph, &skeleton)?;
    let mut body = Vec::new();
    match &graph.weights_file {
        Some(file) => {
            body.push(1);
            put_str(&mut body, file).map_err(|reason| PackError::Graph { reason })?;
        }
        None => body.push(0),
    }
    body.extend_from_slice(skeleton.as_bytes());
    put_section(&mut out, KIND_GRAPH, &body);

    let mut layers = Vec::with_capacity(graph.weights.len());
    let mut materialised = 0u64;
    let mut dense_bytes = 0u64;
    for (_, w) in graph.weights.iter() {
        let (body, stored) = write_weight(w)?;
        check_section(w, &body)?;
        let start = out.len();
        put_section(&mut out, KIND_WEIGHT, &body);
        materialised += stored.materialised;
        dense_bytes += 4 * w.len() as u64;
        layers.push(LayerSize {
            name: w.name.clone(),
            shape: w.ty.shape.dims().to_vec(),
            params: w.len() as u64,
            density: stored.density,
            weight_bits: stored.weight_bits,
            index_bits: stored.index_bits,
            huffman_weight_bits: stored.huffman_weight_bits,
            huffman_index_bits: stored.huffman_index_bits,
            bytes: (out.len() - start) as u64,
        });
    }
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());

    let packed_bytes = out.len() as u64;
    if materialised > MAX_ELEMENTS_PER_BYTE.saturating_mul(packed_bytes) {
        return Err(PackError::Graph {
            reason: format!(
                "{materialised} stored weight elements in {packed_bytes} bytes exceed the reader's limit of {MAX_ELEMENTS_PER_BYTE} per byte"
            ),
        });
    }
    let layer_bytes: u64 = layers.iter().map(|l| l.bytes).sum();
    let report = SizeReport {
        layers,
        other_bytes: packed_bytes - layer_bytes,
        total: Total {
            dense_bytes,
            packed_bytes,
            ratio: dense_bytes as f64 / packed_bytes as f64,
        },
    };
    debug_assert_eq!(
        report.other_bytes as usize,
        HEADER_BYTES + SECTION_FRAME_BYTES + body.len() + CHECKSUM_BYTES
    );
    Ok(Packed { bytes: out, report })
}

/// The graph text: every weight declared, seeded ones with their generator and the rest with
/// the placeholder; no weights file.
fn skeleton(graph: &Graph) -> String {
    let mut g = graph.clone();
    g.weights_file = None;
    let ids: Vec<_> = g.weights.iter().map(|(id, _)| id).collect();
    for id in ids {
        let w = g.weights.get_mut(id);
        let init = match &w.init {
            WeightInit::Random(init) => *init,
            _ => PLACEHOLDER,
        };
        *w = Weight::random(w.name.clone(), w.ty.clone(), init);
    }
    sprig_ir::print(&g, None)
}

/// Checks that the graph text reads back to `graph`'s structure, so that no artifact is written
/// that cannot be read.
fn check_skeleton(graph: &Graph, text: &str) -> Result<(), PackError> {
    let parsed =
        sprig_front::parse_text(text, "graph section", None).map_err(|d| PackError::Graph {
            reason: format!(
                "its text form does not read back:\n{}",
                d.render().trim_end()
            ),
        })?;
    let mut restored = parsed.graph;
    restored.weights = graph.weights.clone();
    restored.weights_file = graph.weights_file.clone();
    if restored != *graph {
        return Err(PackError::Graph {
            reason: "its text form reads back to a different graph".to_string(),
        });
    }
    Ok(())
}

/// Decodes `body` as the reader will and checks that it gives back `w` exactly.
fn check_section(w: &Weight, body: &[u8]) -> Result<(), PackError> {
    let mut r = Reader::new(body, 0, "the new section");
    let mut budget = u64::MAX;
    let fail = |e: PackError| PackError::Weight {
        weight: w.name.clone(),
        reason: format!("its section does not read back: {e}"),
    };
    let decoded = decode_section(&mut r, w, &mut budget).map_err(fail)?;
    r.finish("section").map_err(fail)?;
    if !decoded.matches(w) {
        return Err(PackError::Weight {
            weight: w.name.clone(),
            reason: "its section reads back to different values or a different encoding (are the values exactly what the encoding decodes to?)".to_string(),
        });
    }
    Ok(())
}

fn put_section(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    let len = u32::try_from(s.len()).map_err(|_| format!("a string of {} bytes", s.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_f32s(out: &mut Vec<u8>, values: impl IntoIterator<Item = f32>) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a Huffman table for `symbols` (its alphabet ends at the largest symbol) and returns
/// the code.
fn put_table(out: &mut Vec<u8>, symbols: &[u16]) -> Result<HuffmanCode, String> {
    let alphabet = symbols.iter().max().map_or(0, |&m| usize::from(m) + 1);
    let frequencies = symbol_frequencies(symbols, alphabet).map_err(|e| e.to_string())?;
    let code = HuffmanCode::from_frequencies(&frequencies).map_err(|e| e.to_string())?;
    let table = code.to_bytes();
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(&table);
    Ok(code)
}

/// Appends `symbols` coded with `code` as a bit stream; returns its bit length.
fn put_stream(out: &mut Vec<u8>, code: &HuffmanCode, symbols: &[u16]) -> Result<u64, String> {
    let stream = code.encode(symbols).map_err(|e| e.to_string())?;
    out.extend_from_slice(&stream.bit_len.to_le_bytes());
    out.extend_from_slice(&stream.bytes);
    Ok(stream.bit_len)
}

/// Bits per symbol of a stream of `bits` bits holding `symbols` symbols.
fn per_symbol(bits: u64, symbols: usize) -> f64 {
    if symbols == 0 {
        0.0
    } else {
        bits as f64 / symbols as f64
    }
}

/// The body of `w`'s section and what it stores.
fn write_weight(w: &Weight) -> Result<(Vec<u8>, Stored), PackError> {
    let fail = |reason: String| PackError::Weight {
        weight: w.name.clone(),
        reason,
    };
    let enc = &w.encoding;
    let n = w.len();
    let mut body = Vec::new();
    let seeded = matches!(w.init, WeightInit::Random(_));
    match &w.init {
        WeightInit::Computed => body.push(PROVENANCE_COMPUTED),
        WeightInit::Literal => body.push(PROVENANCE_LITERAL),
        WeightInit::File { key } => {
            body.push(PROVENANCE_FILE);
            put_str(&mut body, key).map_err(fail)?;
        }
        WeightInit::Random(_) => body.push(PROVENANCE_SEEDED),
    }
    let mut flags = 0u8;
    for (present, flag) in [
        (enc.pruned.is_some(), FLAG_PRUNED),
        (enc.shared.is_some(), FLAG_SHARED),
        (enc.huffman.is_some(), FLAG_HUFFMAN),
        (enc.partition.is_some(), FLAG_PARTITION),
    ] {
        if present {
            flags |= flag;
        }
    }
    if enc.huffman.is_some() && enc.shared.is_none() {
        return Err(fail("Huffman coding without weight sharing".to_string()));
    }
    body.push(flags);
    if let Some(s) = &enc.shared {
        if !(1..=16).contains(&s.bits) {
            return Err(fail(format!("code width {} is outside 1..=16", s.bits)));
        }
        if s.codebook.len() as u64 > 1u64 << s.bits {
            return Err(fail(format!(
                "codebook of {} values for {}-bit codes",
                s.codebook.len(),
                s.bits
            )));
        }
        body.push(s.bits);
        let init = CentroidInit::ALL
            .iter()
            .position(|&i| i == s.init)
            .unwrap_or(0) as u8;
        body.push(init);
        body.push(u8::from(s.zero_code));
        body.extend_from_slice(&(s.codebook.len() as u32).to_le_bytes());
        put_f32s(&mut body, s.codebook.iter().copied());
    }
    if let Some(h) = &enc.huffman {
        body.push(h.index_width);
    }
    if let Some(p) = &enc.partition {
        let pes =
            u32::try_from(p.pes).map_err(|_| fail(format!("{} processing elements", p.pes)))?;
        body.extend_from_slice(&pes.to_le_bytes());
        body.push(match p.scheme {
            PartitionScheme::Interleave => 0,
        });
    }

    let mut stored = Stored {
        weight_bits: 32,
        index_bits: 0.0,
        huffman_weight_bits: None,
        huffman_index_bits: None,
        density: 1.0,
        materialised: n as u64,
    };
    if seeded && enc.pruned.is_none() && enc.shared.is_none() {
        stored.weight_bits = 0;
        stored.materialised = 0;
        return Ok((body, stored));
    }
    let values = w.values();
    let kept: Vec<u64> = if enc.pruned.is_some() {
        (0..n as u64)
            .filter(|&i| values[i as usize] != 0.0)
            .collect()
    } else {
        Vec::new()
    };
    if enc.pruned.is_some() {
        stored.density = if n == 0 {
            0.0
        } else {
            kept.len() as f64 / n as f64
        };
    }
    let mask_bits = if kept.is_empty() {
        0.0
    } else {
        n as f64 / kept.len() as f64
    };
    match (&enc.shared, &enc.huffman) {
        (None, _) => {
            if enc.pruned.is_some() {
                bits::write_mask(&mut body, &values);
                put_f32s(&mut body, kept.iter().map(|&i| values[i as usize]));
                stored.index_bits = mask_bits;
            } else {
                put_f32s(&mut body, values.iter().copied());
            }
        }
        (Some(s), None) => {
            if enc.pruned.is_some() {
                if s.codes.len() != kept.len() {
                    return Err(fail(format!(
                        "{} codes for {} kept elements",
                        s.codes.len(),
                        kept.len()
                    )));
                }
                bits::write_mask(&mut body, &values);
                stored.index_bits = mask_bits;
            }
            bits::write_fields(&mut body, s.codes.iter().copied(), s.bits);
            stored.weight_bits = u32::from(s.bits);
        }
        (Some(s), Some(h)) => {
            stored.weight_bits = u32::from(s.bits);
            let (entry_codes, diffs) = if enc.pruned.is_some() {
                let relative = encode_relative(&kept, h.index_width)
                    .map_err(|e| fail(format!("relative indices: {e}")))?;
                if relative.fillers > 0 && !s.zero_code {
                    return Err(fail(
                        "filler entries need a zero code (quantize with zero_code=true)"
                            .to_string(),
                    ));
                }
                let entry_codes = interleave_codes(&s.codes, &relative.is_filler)
                    .map_err(|e| fail(format!("codes: {e}")))?;
                (entry_codes, Some(relative.diffs))
            } else {
                (s.codes.to_vec(), None)
            };
            let code = put_table(&mut body, &entry_codes).map_err(&fail)?;
            body.extend_from_slice(&(entry_codes.len() as u64).to_le_bytes());
            let code_bits = put_stream(&mut body, &code, &entry_codes).map_err(&fail)?;
            stored.huffman_weight_bits = Some(per_symbol(code_bits, entry_codes.len()));
            if let Some(diffs) = diffs {
                let code = put_table(&mut body, &diffs).map_err(&fail)?;
                let index_bits = put_stream(&mut body, &code, &diffs).map_err(&fail)?;
                stored.index_bits = f64::from(h.index_width);
                stored.huffman_index_bits = Some(per_symbol(index_bits, diffs.len()));
            }
        }
    }
    Ok((body, stored))
}
