//! Iterative pruning schedules: the per-layer densities a prune step reaches, and prune steps
//! that reach a fraction of the way there, so pruning can alternate with retraining (the
//! paper's prune → retrain iterations).
//!
//! Invariant: the steps only ever replace the pruning rule (`sparsity`, `density`, `quality`)
//! with exact per-layer densities (`kept / elements`), keeping every other option of the step,
//! so the last round keeps exactly the weights the step would keep in one shot.

use crate::TrainError;
use sprig_ir::{Graph, GraphInfo};
use sprig_passes::manager::{Pipeline, Step};
use sprig_passes::options::{OptEntry, OptValue};

/// One layer's target: the weight's name and the fraction of its elements kept.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerDensity {
    pub weight: String,
    pub density: f64,
}

const RULE_KEYS: [&str; 3] = ["sparsity", "density", "quality"];

/// The densities `step` (a prune step) gives each layer it prunes, measured by running it on a
/// copy of the graph.
pub fn prune_densities(
    graph: &Graph,
    info: &GraphInfo,
    step: &Step,
) -> Result<Vec<LayerDensity>, TrainError> {
    let mut copy = graph.clone();
    let pipeline = Pipeline {
        steps: vec![without_dead_removal(step)],
    };
    let (info_after, _) = sprig_passes::run_pipeline(&mut copy, info.clone(), &pipeline, None)?;
    Ok(sprig_passes::layers::layers(&copy, &info_after)
        .iter()
        .filter_map(|l| {
            let w = &copy.weights[l.weight];
            w.encoding.pruned.as_ref().map(|p| LayerDensity {
                weight: w.name.clone(),
                density: p.density(),
            })
        })
        .collect())
}

/// `step` without `remove_dead`, which changes layer shapes and so the meaning of densities.
fn without_dead_removal(step: &Step) -> Step {
    let mut step = step.clone();
    step.options.entries.retain(|e| e.key != "remove_dead");
    step
}

/// `step` with its pruning rule replaced by the given per-layer densities; `remove_dead` is kept
/// only for the final round (it changes layer shapes, and so what later densities mean).
pub fn prune_step_to(step: &Step, densities: &[LayerDensity], final_round: bool) -> Step {
    let mut step = if final_round {
        step.clone()
    } else {
        without_dead_removal(step)
    };
    step.options
        .entries
        .retain(|e| !RULE_KEYS.contains(&e.key.as_str()));
    for d in densities {
        step.options.entries.push(OptEntry {
            layer: Some(d.weight.clone()),
            key: "density".to_string(),
            value: OptValue::Number(d.density),
        });
    }
    step
}

/// The densities of round `round` (1-based) of `rounds`: geometric steps from dense, so each
/// round removes the same fraction of the survivors; the last round gives `target` exactly.
pub fn round_densities(target: &[LayerDensity], round: usize, rounds: usize) -> Vec<LayerDensity> {
    target
        .iter()
        .map(|d| LayerDensity {
            weight: d.weight.clone(),
            density: if round >= rounds {
                d.density
            } else {
                d.density.powf(round as f64 / rounds.max(1) as f64)
            },
        })
        .collect()
}

/// The densities implied by per-layer sparsities.
pub fn from_sparsities(sparsities: &[(String, f64)]) -> Vec<LayerDensity> {
    sparsities
        .iter()
        .map(|(w, s)| LayerDensity {
            weight: w.clone(),
            density: 1.0 - s,
        })
        .collect()
}
