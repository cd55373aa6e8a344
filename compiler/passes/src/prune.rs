//! `prune`: magnitude pruning, per layer.
//!
//! Rules (one per layer; a layer with no rule is left as it is):
//! - `sparsity=S`: remove the fraction S of the weights with the smallest magnitudes;
//! - `density=D`: keep the fraction D with the largest magnitudes;
//! - `quality=Q`: keep the weights with |w| > Q·σ, σ the standard deviation of the layer's
//!   weights (the paper's rule).
//!
//! `biases=true` prunes biases too (they stay dense by default). `balance_pes=N` prunes
//! load-balance-aware (ESE): the rows of PE k are those with i mod N = k, and every PE keeps the
//! same number of weights — the rule's total divided by N, rounded down.
//!
//! Invariants: exactly the requested count survives (ties at the threshold magnitude are broken
//! by position, lowest first), so the result is deterministic; pruned weights become exact zeros
//! and the weight's encoding records the survivors. The report lists, per dense layer, neurons
//! left with no inputs (all-zero weight rows) and inputs no longer used (all-zero columns).

use crate::layers::{Layer, layers};
use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::Options;
use rayon::prelude::*;
use sprig_ir::encoding::Pruned;
use sprig_ir::{Graph, GraphInfo};
use std::ops::Range;
use std::sync::Arc;

#[derive(Debug)]
pub struct Prune;

const NAME: &str = "prune";

/// How a layer's survivors are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Sparsity(f64),
    Density(f64),
    Quality(f64),
}

impl Rule {
    fn describe(self) -> String {
        match self {
            Rule::Sparsity(s) => format!("sparsity {s}"),
            Rule::Density(d) => format!("density {d}"),
            Rule::Quality(q) => format!("|w| > {q}σ"),
        }
    }
}

fn rule_for(options: &Options, layer: &Layer) -> Result<Option<Rule>, PassError> {
    let names = Some(layer.names());
    let err = |e| PassError::option(NAME, e);
    let sparsity = options
        .number_in("sparsity", names, 0.0, 1.0)
        .map_err(err)?;
    let density = options.number_in("density", names, 0.0, 1.0).map_err(err)?;
    let quality = options.number_in("quality", names, 0.0, 1e6).map_err(err)?;
    Ok(match (sparsity, density, quality) {
        (Some(s), _, _) => Some(Rule::Sparsity(s)),
        (None, Some(d), _) => Some(Rule::Density(d)),
        (None, None, Some(q)) => Some(Rule::Quality(q)),
        (None, None, None) => None,
    })
}

/// Magnitudes compare as the bits of |w| (order-preserving for non-negative floats); NaN is
/// treated as the largest magnitude so it is never silently dropped.
fn magnitude_bits(w: f32) -> u32 {
    w.abs().to_bits()
}

/// Elements per parallel work unit of the histogram and write passes.
const CHUNK: usize = 1 << 20;

/// The slices of `values` covered by `ranges`, split into work units of at most [`CHUNK`].
fn pieces<'a>(values: &'a [f32], ranges: &'a [Range<usize>]) -> Vec<(usize, &'a [f32])> {
    ranges
        .iter()
        .flat_map(|r| {
            (r.start..r.end)
                .step_by(CHUNK)
                .map(move |s| (s, &values[s..(s + CHUNK).min(r.end)]))
        })
        .collect()
}

/// A 65536-bucket histogram of `bucket(bits)` over the magnitude bits of `pieces`, in parallel.
fn histogram(
    pieces: &[(usize, &[f32])],
    bucket: impl Fn(u32) -> Option<usize> + Sync,
) -> Vec<usize> {
    pieces
        .par_iter()
        .fold(
            || vec![0usize; 1 << 16],
            |mut hist, (_, piece)| {
                for &v in *piece {
                    if let Some(b) = bucket(magnitude_bits(v)) {
                        hist[b] += 1;
                    }
                }
                hist
            },
        )
        .reduce(
            || vec![0usize; 1 << 16],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// Walks buckets from the largest down to the one holding the `remaining`-th largest element;
/// returns that bucket and how many of its elements are still to be taken.
fn descend(hist: &[usize], mut remaining: usize) -> (usize, usize) {
    for b in (0..hist.len()).rev() {
        if hist[b] >= remaining {
            return (b, remaining);
        }
        remaining -= hist[b];
    }
    (0, remaining)
}

/// The threshold magnitude bits `t` of the `keep` largest magnitudes among `pieces` (two
/// histogram passes over the high and low 16 bits: O(n), no copy), how many elements of
/// magnitude exactly `t` are kept, and how many there are. `keep` ≥ 1.
fn threshold(pieces: &[(usize, &[f32])], keep: usize) -> (u32, usize, usize) {
    let high_hist = histogram(pieces, |bits| Some((bits >> 16) as usize));
    let (high, remaining) = descend(&high_hist, keep);
    let low_hist = histogram(pieces, |bits| {
        ((bits >> 16) as usize == high).then_some((bits & 0xffff) as usize)
    });
    let (low, ties) = descend(&low_hist, remaining);
    (((high as u32) << 16) | low as u32, ties, low_hist[low])
}

/// Keeps exactly the `keep` largest magnitudes of `ranges` in `out`, which must be zero there;
/// ties at the threshold go to the lowest positions. Returns how many kept values are non-zero.
fn keep_largest(values: &[f32], ranges: &[Range<usize>], keep: usize, out: &mut [f32]) -> u64 {
    if keep == 0 {
        return 0;
    }
    let pieces = pieces(values, ranges);
    let (t, ties, tied) = threshold(&pieces, keep);
    if let [range] = ranges
        && ties == tied
    {
        // One contiguous range, and every element at the threshold is kept: order does not
        // matter, so the write pass runs in parallel over disjoint chunks.
        return out[range.clone()]
            .par_chunks_mut(CHUNK)
            .zip(values[range.clone()].par_chunks(CHUNK))
            .map(|(out, piece)| {
                let mut nonzeros = 0u64;
                for (o, &v) in out.iter_mut().zip(piece) {
                    if magnitude_bits(v) >= t {
                        *o = v;
                        nonzeros += u64::from(v != 0.0);
                    }
                }
                nonzeros
            })
            .sum();
    }
    let mut ties = ties;
    let mut nonzeros = 0u64;
    for &(start, piece) in &pieces {
        for (i, &v) in piece.iter().enumerate() {
            let bits = magnitude_bits(v);
            if bits > t || (bits == t && ties > 0) {
                if bits == t {
                    ties -= 1;
                }
                out[start + i] = v;
                nonzeros += u64::from(v != 0.0);
            }
        }
    }
    nonzeros
}

/// Population standard deviation, accumulated in f64 in index order.
fn std_dev(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// How many weights a rule keeps out of `values`.
fn keep_count(rule: Rule, values: &[f32]) -> usize {
    let n = values.len();
    match rule {
        Rule::Sparsity(s) => ((1.0 - s) * n as f64).round() as usize,
        Rule::Density(d) => (d * n as f64).round() as usize,
        Rule::Quality(q) => {
            let t = q * std_dev(values);
            values.iter().filter(|&&v| (v.abs() as f64) > t).count()
        }
    }
    .min(n)
}

/// The row ranges of PE `pe` out of `pes` (interleaved rows).
fn pe_rows(layer: &Layer, pe: usize, pes: usize) -> Vec<Range<usize>> {
    (pe..layer.rows)
        .step_by(pes)
        .map(|r| r * layer.row_len..(r + 1) * layer.row_len)
        .collect()
}

/// Rows whose weights are all zero, and columns (of a 2-D weight) that are all zero.
fn dead_neurons(layer: &Layer, values: &[f32]) -> (usize, usize) {
    if layer.row_len == 0 {
        return (0, 0);
    }
    let rows = values
        .chunks(layer.row_len)
        .filter(|r| r.iter().all(|&v| v == 0.0))
        .count();
    let mut used = vec![false; layer.row_len];
    for row in values.chunks(layer.row_len) {
        for (u, &v) in used.iter_mut().zip(row) {
            *u |= v != 0.0;
        }
    }
    (rows, used.iter().filter(|u| !**u).count())
}

impl Pass for Prune {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "magnitude pruning per layer: by sparsity, density, or |w| > quality·σ; optionally load-balanced across PEs"
    }

    fn options(&self) -> &'static [OptionDoc] {
        &[
            OptionDoc {
                name: "sparsity",
                meaning: "fraction of the weights to remove (0-1)",
            },
            OptionDoc {
                name: "density",
                meaning: "fraction of the weights to keep (0-1)",
            },
            OptionDoc {
                name: "quality",
                meaning: "keep |w| > quality × the layer's standard deviation",
            },
            OptionDoc {
                name: "biases",
                meaning: "prune biases too (default false)",
            },
            OptionDoc {
                name: "balance_pes",
                meaning: "give each of N interleaved PEs the same number of weights",
            },
        ]
    }

    fn run(
        &self,
        graph: &mut Graph,
        info: &GraphInfo,
        options: &Options,
    ) -> Result<PassReport, PassError> {
        let mut report = PassReport {
            headers: vec![
                "layer", "weight", "kind", "rule", "params", "kept", "density",
            ],
            ..PassReport::default()
        };
        for layer in layers(graph, info) {
            let names = Some(layer.names());
            let biases = options
                .flag("biases", names)
                .map_err(|e| PassError::option(NAME, e))?;
            if layer.is_bias && biases != Some(true) {
                continue;
            }
            let Some(rule) = rule_for(options, &layer)? else {
                continue;
            };
            let pes = options
                .integer("balance_pes", names, 1, 1 << 20)
                .map_err(|e| PassError::option(NAME, e))?
                .map(|p| p as usize);
            let weight = &graph.weights[layer.weight];
            let values = weight.values();
            // Built in place as the `Arc` the weight keeps: converting a `Vec` would copy it.
            let mut out_values: Arc<[f32]> = std::iter::repeat_n(0.0f32, values.len()).collect();
            let out = Arc::get_mut(&mut out_values).expect("a fresh Arc is unique");
            let keep = keep_count(rule, &values);
            let mut nonzeros = 0u64;
            let mut balance_note = String::new();
            match pes {
                Some(pes) if layer.rows > 0 => {
                    let pes = pes.min(layer.rows);
                    let smallest = layer.rows / pes * layer.row_len;
                    let quota = (keep / pes).min(smallest);
                    for pe in 0..pes {
                        nonzeros += keep_largest(&values, &pe_rows(&layer, pe, pes), quota, out);
                    }
                    balance_note = format!(" ({quota} per PE × {pes})");
                }
                _ => {
                    nonzeros =
                        keep_largest(&values, std::slice::from_ref(&(0..values.len())), keep, out)
                }
            }
            if !layer.is_bias && layer.row_len > 0 && layer.kind == crate::layers::LayerKind::Fc {
                let (no_inputs, unused_inputs) = dead_neurons(&layer, out);
                if no_inputs + unused_inputs > 0 {
                    report.notes.push(format!(
                        "@{}: {no_inputs} neuron(s) left with no inputs, {unused_inputs} input(s) no longer used",
                        layer.weight_name
                    ));
                }
            }
            let len = out.len() as u64;
            let weight = graph.weights.get_mut(layer.weight);
            weight
                .set_computed(out_values)
                .map_err(|e| PassError::failed(NAME, e.to_string()))?;
            weight.encoding.pruned = Some(Pruned { nonzeros, len });
            report.rows.push(vec![
                layer.node_name.clone(),
                format!("@{}", layer.weight_name),
                layer.kind.name().to_string(),
                format!("{}{balance_note}", rule.describe()),
                len.to_string(),
                nonzeros.to_string(),
                format!("{:.2}%", 100.0 * nonzeros as f64 / len.max(1) as f64),
            ]);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: sort all positions by (magnitude desc, position asc) and keep the first k.
    fn reference_keep(values: &[f32], keep: usize) -> Vec<f32> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()).then(a.cmp(&b)));
        let mut out = vec![0.0; values.len()];
        for &i in &order[..keep] {
            out[i] = values[i];
        }
        out
    }

    proptest! {
        #[test]
        fn keeps_exactly_the_largest(values in proptest::collection::vec(-4i8..=4, 1..300), frac in 0.0f64..=1.0) {
            // Small integers make many ties.
            let values: Vec<f32> = values.iter().map(|&v| v as f32 * 0.5).collect();
            let keep = ((values.len() as f64) * frac) as usize;
            let mut out = vec![0.0; values.len()];
            keep_largest(&values, std::slice::from_ref(&(0..values.len())), keep, &mut out);
            prop_assert_eq!(out, reference_keep(&values, keep));
        }
    }

    #[test]
    fn quality_rule_counts_weights_beyond_q_sigma() {
        let values = [3.0f32, -3.0, 1.0, -1.0, 0.0, 0.0];
        // mean 0, σ = sqrt(20/6) ≈ 1.826: |w| > 1.0σ keeps only the two 3s.
        assert_eq!(keep_count(Rule::Quality(1.0), &values), 2);
        assert_eq!(keep_count(Rule::Quality(0.5), &values), 4);
        assert_eq!(keep_count(Rule::Sparsity(0.5), &values), 3);
        assert_eq!(keep_count(Rule::Density(1.0), &values), 6);
    }
}
