//! `huffman`: stores each shared layer as Deep Compression does — survivors in row-major order
//! with relative indices (the number of zeros skipped, `index_bits` wide, filler zeros where a
//! gap is wider) — and Huffman-codes the weight codes and the indices.
//!
//! Invariants: values and codes never change (Huffman coding is lossless); the encoding records
//! the index width, the entry and filler counts and the coded bits per symbol, all recomputed
//! from the codes. Defaults follow the paper: 8-bit indices for conv layers, 5-bit for fc.
//! A pruned layer needs its zero code for the fillers (the quantize default for pruned layers).

use crate::algo::huffman::{HuffmanCode, symbol_frequencies};
use crate::algo::sparse::{encode_relative, interleave_codes};
use crate::layers::{layers, nonzero_positions};
use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::Options;
use sprig_ir::encoding::Huffman;
use sprig_ir::{Graph, GraphInfo};

#[derive(Debug)]
pub struct HuffmanPass;

const NAME: &str = "huffman";

/// Average coded bits per symbol of `symbols` over an alphabet of `alphabet` symbols.
fn coded_bits_per_symbol(symbols: &[u16], alphabet: usize) -> Result<f64, String> {
    if symbols.is_empty() {
        return Ok(0.0);
    }
    let frequencies = symbol_frequencies(symbols, alphabet).map_err(|e| e.to_string())?;
    let code = HuffmanCode::from_frequencies(&frequencies).map_err(|e| e.to_string())?;
    let bits = code
        .coded_bits(&frequencies)
        .ok_or("a symbol has no code")?;
    Ok(bits as f64 / symbols.len() as f64)
}

impl Pass for HuffmanPass {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "sparse storage with relative indices and Huffman coding of weight codes and indices"
    }

    fn options(&self) -> &'static [OptionDoc] {
        &[OptionDoc {
            name: "index_bits",
            meaning: "width of a relative index (default: conv 8, fc 5)",
        }]
    }

    fn run(
        &self,
        graph: &mut Graph,
        info: &GraphInfo,
        options: &Options,
    ) -> Result<PassReport, PassError> {
        crate::layers::require_dense_normal_form(graph, info, NAME)?;
        let mut report = PassReport {
            headers: vec![
                "layer",
                "weight",
                "entries",
                "fillers",
                "index bits",
                "b/w",
                "b/idx",
            ],
            ..PassReport::default()
        };
        for layer in layers(graph, info) {
            let weight = &graph.weights[layer.weight];
            let Some(shared) = &weight.encoding.shared else {
                continue;
            };
            let names = Some(layer.names());
            let default_width = layer.kind.default_bits();
            let fail = |reason: String| {
                PassError::failed(NAME, format!("@{}: {reason}", layer.weight_name))
            };
            let (entry_codes, diffs, fillers, width) = if weight.encoding.pruned.is_some() {
                let width = options
                    .integer("index_bits", names, 1, 16)
                    .map_err(|e| PassError::option(NAME, e))?
                    .unwrap_or(default_width) as u8;
                let values = weight.values();
                let positions: Vec<u64> = nonzero_positions(&values)
                    .into_iter()
                    .map(|p| p as u64)
                    .collect();
                let relative =
                    encode_relative(&positions, width).map_err(|e| fail(e.to_string()))?;
                if relative.fillers > 0 && !shared.zero_code {
                    return Err(fail(
                        "filler zeros need a zero code: quantize pruned layers with zero_code=true"
                            .to_string(),
                    ));
                }
                let entry_codes = interleave_codes(&shared.codes, &relative.is_filler)
                    .map_err(|e| fail(e.to_string()))?;
                (entry_codes, relative.diffs, relative.fillers as u64, width)
            } else {
                (shared.codes.to_vec(), Vec::new(), 0, 0)
            };
            let weight_bits =
                coded_bits_per_symbol(&entry_codes, 1 << shared.bits).map_err(fail)?;
            let index_bits = if width == 0 {
                0.0
            } else {
                coded_bits_per_symbol(&diffs, 1 << width).map_err(fail)?
            };
            let record = Huffman {
                index_width: width,
                entries: entry_codes.len() as u64,
                fillers,
                weight_bits,
                index_bits,
            };
            report.rows.push(vec![
                layer.node_name.clone(),
                format!("@{}", layer.weight_name),
                record.entries.to_string(),
                record.fillers.to_string(),
                width.to_string(),
                format!("{weight_bits:.2}"),
                format!("{index_bits:.2}"),
            ]);
            graph.weights.get_mut(layer.weight).encoding.huffman = Some(record);
        }
        Ok(report)
    }
}
