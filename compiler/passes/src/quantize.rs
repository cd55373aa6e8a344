//! `quantize`: trained-quantization's weight sharing — per layer, 1-D k-means over the stored
//! weights (the survivors of pruning, or every weight of a dense layer) into at most `2^bits`
//! shared values.
//!
//! Invariants: the layer's values become the codebook values of their codes (so the interpreter
//! runs the quantized network); the codebook is per layer, never shared across layers. With
//! `zero_code` (the default for pruned layers, and EIE's convention) code 0 stands for zero and
//! `2^bits − 1` clusters hold the survivors; no survivor is ever quantized to zero, so the pruned
//! set is unchanged. Defaults follow the paper: 8 bits for conv layers, 5 for fc layers, linear
//! initialisation.

use crate::algo::kmeans::{Init, KMeansOptions, kmeans_1d};
use crate::layers::{layers, nonzero_positions};
use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::Options;
use sprig_ir::encoding::{CentroidInit, Shared};
use sprig_ir::{Graph, GraphInfo};

#[derive(Debug)]
pub struct Quantize;

const NAME: &str = "quantize";

/// Relative centroid movement under which Lloyd iterations stop.
pub const DEFAULT_TOLERANCE: f64 = 1e-6;
pub const DEFAULT_MAX_ITERATIONS: u64 = 300;

fn init_of(init: CentroidInit) -> Init {
    match init {
        CentroidInit::Linear => Init::Linear,
        CentroidInit::Density => Init::Density,
        CentroidInit::Random => Init::Random,
        CentroidInit::KMeansPlusPlus => Init::KMeansPlusPlus,
    }
}

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "weight sharing: per-layer 1-D k-means into 2^bits shared values (conv 8 bits, fc 5 by default)"
    }

    fn options(&self) -> &'static [OptionDoc] {
        &[
            OptionDoc {
                name: "bits",
                meaning: "code width; 2^bits shared values (default: conv 8, fc 5)",
            },
            OptionDoc {
                name: "init",
                meaning: "centroid initialisation: linear, density, random or kmeans++ (default linear)",
            },
            OptionDoc {
                name: "tolerance",
                meaning: "stop when no centroid moves more than this fraction of the value range",
            },
            OptionDoc {
                name: "max_iterations",
                meaning: "Lloyd iteration cap (default 300)",
            },
            OptionDoc {
                name: "seed",
                meaning: "seed for the random and kmeans++ initialisations",
            },
            OptionDoc {
                name: "zero_code",
                meaning: "reserve code 0 for zero (default: true for pruned layers)",
            },
            OptionDoc {
                name: "biases",
                meaning: "quantize biases too (default false)",
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
                "bits",
                "init",
                "stored",
                "iterations",
                "rms error",
            ],
            ..PassReport::default()
        };
        let opt = |e| PassError::option(NAME, e);
        for layer in layers(graph, info) {
            let names = Some(layer.names());
            if layer.is_bias && options.flag("biases", names).map_err(opt)? != Some(true) {
                continue;
            }
            let default_bits = layer.kind.default_bits();
            let bits = options
                .integer("bits", names, 1, 16)
                .map_err(opt)?
                .unwrap_or(default_bits) as u8;
            let init = match options.word("init", names) {
                None => CentroidInit::Linear,
                Some(w) => CentroidInit::from_name(w).ok_or_else(|| {
                    PassError::failed(
                        NAME,
                        format!("unknown init `{w}` (known: linear, density, random, kmeans++)"),
                    )
                })?,
            };
            let tolerance = options
                .number_in("tolerance", names, 0.0, 1.0)
                .map_err(opt)?
                .unwrap_or(DEFAULT_TOLERANCE);
            let max_iterations = options
                .integer("max_iterations", names, 1, 1 << 20)
                .map_err(opt)?
                .unwrap_or(DEFAULT_MAX_ITERATIONS) as usize;
            let seed = options
                .integer("seed", names, 0, u64::MAX)
                .map_err(opt)?
                .unwrap_or(0);
            let weight = &graph.weights[layer.weight];
            let pruned = weight.encoding.pruned.is_some();
            let zero_code = options
                .flag("zero_code", names)
                .map_err(opt)?
                .unwrap_or(pruned);
            if zero_code && bits < 2 {
                return Err(PassError::failed(
                    NAME,
                    format!(
                        "@{}: 1-bit codes with a reserved zero code leave no shared value",
                        layer.weight_name
                    ),
                ));
            }
            let values = weight.values();
            // The stored values (survivors of pruning, or every value) and, when pruned, where
            // they sit.
            let (stored, positions): (Vec<f32>, Option<Vec<usize>>) = if pruned {
                let positions = nonzero_positions(&values);
                (
                    positions.iter().map(|&p| values[p]).collect(),
                    Some(positions),
                )
            } else {
                (values.to_vec(), None)
            };
            let clusters = (1usize << bits) - usize::from(zero_code);
            let kmeans_options = KMeansOptions {
                clusters,
                init: init_of(init),
                tolerance,
                max_iterations,
                seed,
            };
            let (mut codebook, mut codes, iterations) = if stored.is_empty() {
                (Vec::new(), Vec::new(), 0)
            } else {
                let c = kmeans_1d(&stored, &kmeans_options)
                    .map_err(|e| PassError::failed(NAME, format!("@{}: {e}", layer.weight_name)))?;
                (c.centroids, c.codes, c.iterations)
            };
            if zero_code {
                // A survivor must stay non-zero: a centroid of exactly 0.0 moves to the smallest
                // positive f32, which no f32 arithmetic downstream distinguishes from it.
                for c in &mut codebook {
                    if *c == 0.0 {
                        *c = f32::from_bits(1);
                    }
                }
                codebook.insert(0, 0.0);
                codes.iter_mut().for_each(|c| *c += 1);
            }
            let squared_error: f64 = stored
                .iter()
                .zip(&codes)
                .map(|(&v, &c)| (v as f64 - codebook[c as usize] as f64).powi(2))
                .sum();
            drop(values);
            let rms = if stored.is_empty() {
                0.0
            } else {
                (squared_error / stored.len() as f64).sqrt()
            };
            let weight = graph.weights.get_mut(layer.weight);
            // Decoded in place: survivors (or every value) become their codebook values.
            let out = weight.values_mut();
            match &positions {
                Some(positions) => {
                    for (&p, &c) in positions.iter().zip(&codes) {
                        out[p] = codebook[c as usize];
                    }
                }
                None => {
                    for (o, &c) in out.iter_mut().zip(&codes) {
                        *o = codebook[c as usize];
                    }
                }
            }
            weight.encoding.shared = Some(Shared {
                bits,
                init,
                codebook,
                zero_code,
                codes: codes.into(),
            });
            report.rows.push(vec![
                layer.node_name.clone(),
                format!("@{}", layer.weight_name),
                bits.to_string(),
                init.name().to_string(),
                stored.len().to_string(),
                iterations.to_string(),
                format!("{rms:.3e}"),
            ]);
        }
        Ok(report)
    }
}
