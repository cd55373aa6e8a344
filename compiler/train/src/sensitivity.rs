//! Sensitivity analysis: how accuracy falls when one layer alone is pruned to a sparsity, over a
//! sweep of sparsities, and the per-layer sparsity that keeps the loss within a budget.
//!
//! Pruning here is the `prune` pass's magnitude rule on one layer: the `round((1 − s)·n)`
//! largest magnitudes survive, ties broken by position (lowest first). Layers already pruned
//! further than a sweep point are left as they are at that point.

use crate::TrainError;
use crate::net::Net;
use crate::train::{Samples, evaluate};
use sprig_ir::{Graph, GraphInfo};

/// Accuracy with one layer pruned, at each sparsity of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The weight's name.
    pub weight: String,
    pub elements: usize,
    /// `(sparsity, top-1 accuracy)`, in sweep order.
    pub points: Vec<(f64, f64)>,
}

/// The whole analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// Accuracy of the network as given.
    pub baseline: f64,
    pub samples: usize,
    pub curves: Vec<Curve>,
}

/// The default sweep: 0 to 95% in steps of 5%, then 97% and 99%.
pub fn default_sweep() -> Vec<f64> {
    let mut s: Vec<f64> = (0..20).map(|i| f64::from(i) * 0.05).collect();
    s.extend([0.97, 0.99]);
    s
}

/// Zeroes all but the `keep` largest magnitudes of `values` (ties: lowest position survives).
pub fn prune_magnitudes(values: &mut [f32], keep: usize) {
    if keep >= values.len() {
        return;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()).then(a.cmp(&b)));
    for &i in &order[keep..] {
        values[i] = 0.0;
    }
}

/// Prunes each fc/conv weight alone at every sparsity of `sweep` and measures top-1 accuracy
/// on `data`; `progress` is called after each measurement with (done, total).
pub fn analyse(
    graph: &Graph,
    info: &GraphInfo,
    data: Samples<'_>,
    sweep: &[f64],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Sensitivity, TrainError> {
    let mut net = Net::from_graph(graph, info)?;
    let baseline = evaluate(&net, data).top1;
    let layers: Vec<usize> = sprig_passes::layers::layers(graph, info)
        .iter()
        .filter(|l| !l.is_bias)
        .filter_map(|l| net.params.iter().position(|p| p.weight == l.weight))
        .collect();
    let total = layers.len() * sweep.len();
    let mut curves = Vec::new();
    for (li, &p) in layers.iter().enumerate() {
        let original = net.params[p].values.clone();
        let n = original.len();
        let mut points = Vec::new();
        for (si, &s) in sweep.iter().enumerate() {
            let keep = ((1.0 - s) * n as f64).round() as usize;
            let mut values = original.clone();
            prune_magnitudes(&mut values, keep);
            net.params[p].values = values;
            points.push((s, evaluate(&net, data).top1));
            progress(li * sweep.len() + si + 1, total);
        }
        net.params[p].values = original;
        curves.push(Curve {
            weight: net.params[p].name.clone(),
            elements: n,
            points,
        });
    }
    Ok(Sensitivity {
        baseline,
        samples: data.len(),
        curves,
    })
}

/// Per layer, the largest sparsity of the sweep up to which every point stays within `budget`
/// (a fraction, e.g. 0.01 for one point of accuracy) of the baseline.
pub fn choose_sparsities(analysis: &Sensitivity, budget: f64) -> Vec<(String, f64)> {
    analysis
        .curves
        .iter()
        .map(|c| {
            let mut chosen = 0.0;
            for &(s, acc) in &c.points {
                if acc + budget < analysis.baseline {
                    break;
                }
                chosen = s;
            }
            (c.weight.clone(), chosen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_pruning_keeps_the_largest_and_breaks_ties_by_position() {
        let mut v = vec![0.5, -2.0, 0.5, 1.0, -0.1];
        prune_magnitudes(&mut v, 3);
        assert_eq!(v, vec![0.5, -2.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn the_chosen_sparsity_stops_at_the_first_point_over_budget() {
        let analysis = Sensitivity {
            baseline: 0.98,
            samples: 100,
            curves: vec![Curve {
                weight: "w".to_string(),
                elements: 10,
                points: vec![(0.0, 0.98), (0.5, 0.975), (0.8, 0.95), (0.9, 0.979)],
            }],
        };
        assert_eq!(
            choose_sparsities(&analysis, 0.01),
            vec![("w".to_string(), 0.5)]
        );
    }
}
