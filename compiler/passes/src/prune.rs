//! `prune`: magnitude pruning, per layer.
//!
//! Rules (one per layer; a layer with no rule is left as it is):
//! - `sparsity=S`: remove the fraction S of the weights with the smallest magnitudes;
//! - `density=D`: keep the fraction D with the largest magnitudes;
//! - `quality=Q`: keep the weights with |w| > Q·σ, σ the standard deviation of the layer's
//!   weights (the paper's rule).
//!
//! `remove_dead=true` then removes the neurons left dead between two dense layers (see
//! [`crate::dead`]).
//!
//! `biases=true` prunes biases too (they stay dense by default). `balance_pes=N` prunes
//! load-balance-aware (ESE): the rows of PE k are those with i mod N = k, and every PE keeps the
//! same number of weights — the rule's total divided by N, rounded down.
//!
//! Invariants: exactly the requested count survives (ties at the threshold magnitude are broken
//! by position, lowest first), so the result is deterministic; pruned weights become exact zeros
//! and the weight's encoding records the survivors. The report lists, per dense layer, neurons
//! left with no inputs (all-zero weight rows) and inputs no longer used (all-zero columns).

use crate::layers::{CHUNK, Layer, layers};
use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::Options;
use rayon::prelude::*;
use sprig_ir::encoding::Pruned;
use sprig_ir::{Graph, GraphInfo};
use std::ops::Range;

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

/// Which elements of a set of ranges survive: magnitudes above `threshold`, and the first
/// `ties` (by position) of those equal to it.
#[derive(Clone, Debug)]
struct Selection {
    ranges: Vec<Range<usize>>,
    threshold: u32,
    ties: usize,
    /// How many elements have exactly the threshold magnitude.
    tied: usize,
    keep: usize,
}

/// Chooses the `keep` largest magnitudes of `ranges`.
fn select(values: &[f32], ranges: Vec<Range<usize>>, keep: usize) -> Selection {
    let (threshold, ties, tied) = if keep == 0 {
        (u32::MAX, 0, 0)
    } else {
        threshold(&pieces(values, &ranges), keep)
    };
    Selection {
        ranges,
        threshold,
        ties,
        tied,
        keep,
    }
}

/// Zeroes, in place, every element of the selection's ranges that does not survive; ties at the
/// threshold go to the lowest positions. Returns how many survivors are non-zero.
fn apply(values: &mut [f32], selection: &Selection) -> u64 {
    let t = selection.threshold;
    if selection.keep == 0 {
        for r in &selection.ranges {
            values[r.clone()].iter_mut().for_each(|v| *v = 0.0);
        }
        return 0;
    }
    if let [range] = &selection.ranges[..]
        && selection.ties == selection.tied
    {
        // One contiguous range, and every element at the threshold survives: order does not
        // matter, so the pass runs in parallel over disjoint chunks.
        return values[range.clone()]
            .par_chunks_mut(CHUNK)
            .map(|chunk| {
                let mut nonzeros = 0u64;
                for v in chunk {
                    if magnitude_bits(*v) >= t {
                        nonzeros += u64::from(*v != 0.0);
                    } else {
                        *v = 0.0;
                    }
                }
                nonzeros
            })
            .sum();
    }
    let mut ties = selection.ties;
    let mut nonzeros = 0u64;
    for r in &selection.ranges {
        for v in &mut values[r.clone()] {
            let bits = magnitude_bits(*v);
            if bits > t || (bits == t && ties > 0) {
                if bits == t {
                    ties -= 1;
                }
                nonzeros += u64::from(*v != 0.0);
            } else {
                *v = 0.0;
            }
        }
    }
    nonzeros
}

/// Keeps exactly the `keep` largest magnitudes of `ranges` in `values` (zeroing the rest of
/// those ranges); returns how many survivors are non-zero.
#[cfg(test)]
fn keep_largest(values: &mut [f32], ranges: &[Range<usize>], keep: usize) -> u64 {
    let selection = select(values, ranges.to_vec(), keep);
    apply(values, &selection)
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

/// Rows whose weights are all zero, and columns (of a 2-D weight) that are all zero: one pass,
/// in parallel over blocks of rows.
fn dead_neurons(layer: &Layer, values: &[f32]) -> (usize, usize) {
    if layer.row_len == 0 {
        return (0, 0);
    }
    let rows_per_block = (CHUNK / layer.row_len).max(1);
    let (empty_rows, used) = values
        .par_chunks(rows_per_block * layer.row_len)
        .map(|block| {
            let mut used = vec![false; layer.row_len];
            let mut empty_rows = 0usize;
            for row in block.chunks(layer.row_len) {
                let mut any = false;
                for (u, &v) in used.iter_mut().zip(row) {
                    let nonzero = v != 0.0;
                    *u |= nonzero;
                    any |= nonzero;
                }
                empty_rows += usize::from(!any);
            }
            (empty_rows, used)
        })
        .reduce(
            || (0, vec![false; layer.row_len]),
            |(ea, mut ua), (eb, ub)| {
                ua.iter_mut().zip(ub).for_each(|(a, b)| *a |= b);
                (ea + eb, ua)
            },
        );
    (empty_rows, used.iter().filter(|u| !**u).count())
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
                name: "remove_dead",
                meaning: "remove neurons left with no inputs or no used outputs between two dense layers (default false)",
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
        crate::layers::require_dense_normal_form(graph, info, NAME)?;
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
            // Thresholds are chosen on a shared view of the values; the handle is then dropped so
            // the weight's own buffer is rewritten in place (no copy unless a clone shares it).
            let values = graph.weights[layer.weight].values();
            let keep = keep_count(rule, &values);
            let mut balance_note = String::new();
            let selections: Vec<Selection> = match pes {
                Some(pes) if layer.rows > 0 => {
                    let pes = pes.min(layer.rows);
                    let smallest = layer.rows / pes * layer.row_len;
                    let quota = (keep / pes).min(smallest);
                    balance_note = format!(" ({quota} per PE × {pes})");
                    (0..pes)
                        .map(|pe| select(&values, pe_rows(&layer, pe, pes), quota))
                        .collect()
                }
                _ => vec![select(
                    &values,
                    std::iter::once(0..values.len()).collect(),
                    keep,
                )],
            };
            drop(values);
            let weight = graph.weights.get_mut(layer.weight);
            let out = weight.values_mut();
            let nonzeros: u64 = selections.iter().map(|s| apply(out, s)).sum();
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
        if options
            .flag("remove_dead", None)
            .map_err(|e| PassError::option(NAME, e))?
            == Some(true)
        {
            report.notes.extend(crate::dead::remove_dead_neurons(graph));
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
            let mut out = values.clone();
            let nonzeros = keep_largest(&mut out, std::slice::from_ref(&(0..values.len())), keep);
            let reference = reference_keep(&values, keep);
            prop_assert_eq!(nonzeros as usize, reference.iter().filter(|v| **v != 0.0).count());
            prop_assert_eq!(out, reference);
        }

        #[test]
        fn balanced_ranges_keep_the_largest_of_each(values in proptest::collection::vec(-4i8..=4, 8..200), keep in 0usize..4) {
            // Rows of 2 interleaved over 2 PEs: PE 0 owns rows 0, 2, 4, ...
            let values: Vec<f32> = values.iter().map(|&v| v as f32 * 0.5).collect();
            let rows = values.len() / 2;
            let values = &values[..rows * 2];
            let ranges: Vec<Range<usize>> = (0..rows).step_by(2).map(|r| 2 * r..2 * r + 2).collect();
            let mut out = values.to_vec();
            keep_largest(&mut out, &ranges, keep.min(ranges.len() * 2));
            // The reference: gather PE 0's elements in order, keep the largest, scatter back.
            let gathered: Vec<f32> = ranges.iter().flat_map(|r| values[r.clone()].to_vec()).collect();
            let kept = reference_keep(&gathered, keep.min(gathered.len()));
            let mut expected = values.to_vec();
            for (r, chunk) in ranges.iter().zip(kept.chunks(2)) {
                expected[r.clone()].copy_from_slice(chunk);
            }
            prop_assert_eq!(out, expected);
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
