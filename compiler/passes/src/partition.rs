//! `partition`: assigns each layer's rows to N processing elements (EIE's interleave: row i goes
//! to PE i mod N) and reports the work per PE.
//!
//! Invariant: values never change; the encoding records the PE count and scheme, from which
//! every consumer derives the same assignment. Biases follow their layer's rows and are not
//! partitioned separately.

use crate::layers::layers;
use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::Options;
use sprig_ir::encoding::{Partition, PartitionScheme};
use sprig_ir::{Graph, GraphInfo};

#[derive(Debug)]
pub struct PartitionPass;

const NAME: &str = "partition";

/// EIE's PE count.
pub const DEFAULT_PES: u64 = 64;

/// Non-zero weights per PE for a `rows × row_len` matrix.
pub fn nonzeros_per_pe(
    values: &[f32],
    row_len: usize,
    pes: usize,
    scheme: PartitionScheme,
) -> Vec<u64> {
    let mut per_pe = vec![0u64; pes];
    if row_len == 0 {
        return per_pe;
    }
    for (row, chunk) in values.chunks(row_len).enumerate() {
        per_pe[scheme.pe_of(row, pes)] += chunk.iter().filter(|&&v| v != 0.0).count() as u64;
    }
    per_pe
}

impl Pass for PartitionPass {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "spreads each layer's rows over N processing elements (interleaved) and reports the balance"
    }

    fn options(&self) -> &'static [OptionDoc] {
        &[
            OptionDoc {
                name: "pes",
                meaning: "number of processing elements (default 64)",
            },
            OptionDoc {
                name: "scheme",
                meaning: "row assignment: interleave (row i to PE i mod N)",
            },
        ]
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
                "pes",
                "max nnz/PE",
                "mean nnz/PE",
                "imbalance",
            ],
            ..PassReport::default()
        };
        for layer in layers(graph, info).into_iter().filter(|l| !l.is_bias) {
            let names = Some(layer.names());
            let pes = options
                .integer("pes", names, 1, 1 << 20)
                .map_err(|e| PassError::option(NAME, e))?
                .unwrap_or(DEFAULT_PES) as usize;
            let scheme = match options.word("scheme", names) {
                None | Some("interleave") => PartitionScheme::Interleave,
                Some(other) => {
                    return Err(PassError::failed(
                        NAME,
                        format!("unknown scheme `{other}` (known: interleave)"),
                    ));
                }
            };
            let values = graph.weights[layer.weight].values();
            let per_pe = nonzeros_per_pe(&values, layer.row_len, pes, scheme);
            let max = per_pe.iter().copied().max().unwrap_or(0);
            let mean = per_pe.iter().sum::<u64>() as f64 / pes as f64;
            graph.weights.get_mut(layer.weight).encoding.partition =
                Some(Partition { pes, scheme });
            report.rows.push(vec![
                layer.node_name.clone(),
                format!("@{}", layer.weight_name),
                pes.to_string(),
                max.to_string(),
                format!("{mean:.1}"),
                if mean > 0.0 {
                    format!("{:.3}", max as f64 / mean)
                } else {
                    "-".to_string()
                },
            ]);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_rows_count_per_pe() {
        // 5 rows of 2: row i has i non-zeros (capped at 2); PEs 0..2 get rows {0,3}, {1,4}, {2}.
        let values = [0., 0., 1., 0., 1., 1., 1., 1., 1., 1.];
        assert_eq!(
            nonzeros_per_pe(&values, 2, 3, PartitionScheme::Interleave),
            vec![2, 3, 2]
        );
    }
}
