//! `simplify`: cleans and reshapes the graph by equality saturation (egg) and picks, among the
//! equivalent graphs found, the cheapest by the target's cost model.
//!
//! The graph is loaded into an e-graph ([`lang`]), the rules of [`rules::RULES`] run under an
//! egg `Runner` with iteration, node and time limits, and the graph is rebuilt from the e-node
//! the target's cost function ([`cost::EieCost`] or [`cost::CpuCost`]) picks in every e-class.
//! Options: `target=cpu|eie` (default cpu), `iterations`, `nodes`, `time_ms` (the limits).
//!
//! The ONNX importer keeps a product's weight in the layout the model stores it: Gemm with
//! `transB = 1` becomes `dense` (weight `[out, in]`), Gemm without it and MatMul become `matmul`
//! (weight `[in, out]`); alpha and beta are folded at import. `gemm-transb-normal-form` rewrites
//! every `matmul` to `dense` over the transposed weight, the normal form the compression passes
//! and the backends consume, so after this pass no `matmul` is left. Some clean-ups need no
//! rule: the importer passes Dropout and Identity through where it can. Casts stay as written
//! (`drop-noop-cast` removes those to the value's own type).
//!
//! Contract:
//! - Takes a verified graph and leaves one that verifies and computes the same outputs (up to
//!   f32 rounding of folded weights), with the same inputs in the same order and the same
//!   output names in the same order (an output whose value became another value's, or an
//!   input's, is written `identity` of it so its name stays).
//! - Nodes keep the name of the earliest original node whose value they compute; a weight
//!   computed to replace another takes that weight's name when the original is no longer used
//!   (so per-layer options keep naming the layer), otherwise its name with the rule's suffix.
//!   Weights that only the removed nodes used are dropped; the others keep their order, and
//!   computed weights follow.
//! - Deterministic: the rules run in table order over e-classes in id order with egg's
//!   deterministic hashing, and nothing depends on time unless the time limit is hit (the
//!   report says so; the default limit is far above what the examples need).
//! - Weight-changing rewrites never touch a weight that carries an encoding, so the pass is
//!   meant to run before pruning, as the presets do.
//! - The report lists how often each rule applied, the runner's iterations, stop reason and
//!   e-graph size, the node count before and after, and the cost before and after.

pub mod cost;
pub mod lang;
pub mod rules;

use crate::manager::{OptionDoc, Pass, PassError, PassReport};
use crate::options::{OptValue, Options};
use cost::{CpuCost, EieCost, Target, own_cost};
use egg::{CostFunction, Extractor, Id, Runner, SimpleScheduler, StopReason};
use lang::{ENode, Meta, SGraph};
use sprig_ir::{Graph, GraphInfo, NodeId, Op, Weights};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::time::Duration;

#[derive(Debug)]
pub struct Simplify;

const NAME: &str = "simplify";

/// Default runner limits: far above what any example needs (they saturate in a few
/// iterations), low enough to bound a pathological graph.
pub const DEFAULT_ITERATIONS: u64 = 30;
pub const DEFAULT_NODES: u64 = 100_000;
pub const DEFAULT_TIME_MS: u64 = 10_000;

/// What one run of the rules did, for the report and for tests.
#[derive(Clone, Debug, PartialEq)]
pub struct SimplifyStats {
    pub target: Target,
    pub iterations: usize,
    pub stop_reason: String,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    /// Applications per rule, in [`rules::RULES`] order.
    pub applied: Vec<(&'static str, usize)>,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub cost_before: u64,
    pub cost_after: u64,
}

/// The runner's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            iterations: DEFAULT_ITERATIONS as usize,
            nodes: DEFAULT_NODES as usize,
            time: Duration::from_millis(DEFAULT_TIME_MS),
        }
    }
}

fn stop_text(reason: Option<&StopReason>) -> String {
    match reason {
        None => "none".to_string(),
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
        Some(StopReason::Other(s)) => s.clone(),
    }
}

/// Simplifies `graph` for `target`: runs the rules, extracts the cheapest graph and returns it
/// with what happened. `graph` must have verified with `info`.
pub fn simplify(
    graph: &Graph,
    info: &GraphInfo,
    target: Target,
    limits: Limits,
) -> (Graph, SimplifyStats) {
    let loaded = lang::load(graph, info);
    let cost_before = original_cost(&loaded.egraph, target);
    let rules = rules::rules(target);
    let runner: Runner<ENode, Meta, ()> = Runner::new(Meta::default())
        .with_egraph(loaded.egraph)
        .with_iter_limit(limits.iterations)
        .with_node_limit(limits.nodes)
        .with_time_limit(limits.time)
        .with_scheduler(SimpleScheduler)
        .run(&rules);
    let mut applied: BTreeMap<&str, usize> = BTreeMap::new();
    for iteration in &runner.iterations {
        for (rule, n) in &iteration.applied {
            *applied.entry(rule.as_str()).or_default() += n;
        }
    }
    let egraph = &runner.egraph;
    let choice = choose(egraph, target);
    let (rebuilt, emitted) = rebuild(graph, egraph, &loaded.outputs, &choice);
    let cost_after = emitted.iter().fold(0u64, |acc, c| {
        acc.saturating_add(own_cost(target, egraph, &choice[c]))
    });
    let stats = SimplifyStats {
        target,
        iterations: runner.iterations.len(),
        stop_reason: stop_text(runner.stop_reason.as_ref()),
        egraph_nodes: egraph.total_number_of_nodes(),
        egraph_classes: egraph.number_of_classes(),
        applied: rules::RULES
            .iter()
            .map(|&(name, _)| (name, applied.get(name).copied().unwrap_or(0)))
            .collect(),
        nodes_before: graph.node_count(),
        nodes_after: rebuilt.node_count(),
        cost_before,
        cost_after,
    };
    (rebuilt, stats)
}

/// The cost of `graph` as it is (every distinct node once) on `target`, in [`Target::unit`]:
/// what the report's cost before gives, for ranking alternative graphs. `graph` must have
/// verified with `info`.
pub fn graph_cost(graph: &Graph, info: &GraphInfo, target: Target) -> u64 {
    original_cost(&lang::load(graph, info).egraph, target)
}

/// The cost of the graph as loaded: every class holds its original node(s); each counts once.
fn original_cost(egraph: &SGraph, target: Target) -> u64 {
    egraph
        .classes()
        .flat_map(|c| c.nodes.first())
        .fold(0u64, |acc, n| {
            acc.saturating_add(own_cost(target, egraph, n))
        })
}

/// The e-node the target's cost function picks in every class.
fn choose(egraph: &SGraph, target: Target) -> HashMap<Id, ENode> {
    fn pick<CF: CostFunction<ENode>>(egraph: &SGraph, cf: CF) -> HashMap<Id, ENode> {
        let extractor = Extractor::new(egraph, cf);
        egraph
            .classes()
            .map(|c| (c.id, extractor.find_best_node(c.id).clone()))
            .collect()
    }
    match target {
        Target::Eie => pick(egraph, EieCost { egraph }),
        Target::Cpu => pick(egraph, CpuCost { egraph }),
    }
}

/// Builds the graph of the chosen e-nodes reachable from the outputs; returns it and the
/// classes it holds.
fn rebuild(
    graph: &Graph,
    egraph: &SGraph,
    outputs: &[Id],
    choice: &HashMap<Id, ENode>,
) -> (Graph, Vec<Id>) {
    let find = |c: Id| egraph.find(c);
    // Classes needed, with their operand classes.
    let mut needed: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    let mut stack: Vec<Id> = outputs.iter().map(|&c| find(c)).collect();
    while let Some(c) = stack.pop() {
        if needed.contains_key(&c) {
            continue;
        }
        let children: Vec<Id> = choice[&c].children.iter().map(|&k| find(k)).collect();
        stack.extend(children.iter().copied());
        needed.insert(c, children);
    }
    // Emission order: topological, original nodes in their original order, a new node right
    // after its last operand.
    let mut key: HashMap<Id, (usize, usize)> = HashMap::new();
    fn key_of(
        c: Id,
        egraph: &SGraph,
        needed: &BTreeMap<Id, Vec<Id>>,
        key: &mut HashMap<Id, (usize, usize)>,
    ) -> (usize, usize) {
        if let Some(&k) = key.get(&c) {
            return k;
        }
        let k = match &egraph[c].data.origin {
            Some((pos, _)) => (*pos, 0),
            None => {
                let last = needed[&c]
                    .iter()
                    .map(|&k| key_of(k, egraph, needed, key).0)
                    .max()
                    .unwrap_or(0);
                (last, 1)
            }
        };
        key.insert(c, k);
        k
    }
    for &c in needed.keys() {
        key_of(c, egraph, &needed, &mut key);
    }
    let mut pending: BTreeMap<Id, usize> = needed
        .iter()
        .map(|(&c, ch)| {
            let distinct: HashSet<Id> = ch.iter().copied().collect();
            (c, distinct.len())
        })
        .collect();
    let mut users: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    for (&c, ch) in &needed {
        let distinct: std::collections::BTreeSet<Id> = ch.iter().copied().collect();
        for k in distinct {
            users.entry(k).or_default().push(c);
        }
    }
    let mut ready: BinaryHeap<Reverse<((usize, usize), Id)>> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(&c, _)| Reverse((key[&c], c)))
        .collect();
    let mut order = Vec::with_capacity(needed.len());
    while let Some(Reverse((_, c))) = ready.pop() {
        order.push(c);
        for &u in users.get(&c).map(Vec::as_slice).unwrap_or(&[]) {
            let n = pending.get_mut(&u).expect("needed class");
            *n -= 1;
            if *n == 0 {
                ready.push(Reverse((key[&u], u)));
            }
        }
    }

    // Names: inputs keep theirs, an output class takes the output's name, other classes the
    // name of their earliest original node, new classes a fresh name.
    let mut taken: HashSet<String> = HashSet::new();
    let mut output_name: HashMap<Id, String> = HashMap::new();
    for (&c, &out) in outputs.iter().zip(graph.outputs()) {
        output_name
            .entry(find(c))
            .or_insert_with(|| graph.node(out).name.clone());
    }
    let input_names: Vec<&str> = graph
        .inputs()
        .iter()
        .map(|&i| graph.node(i).name.as_str())
        .collect();
    taken.extend(input_names.iter().map(|s| s.to_string()));
    taken.extend(output_name.values().cloned());
    // Fresh names avoid every name an original node of the result may still take.
    let mut reserved = taken.clone();
    reserved.extend(
        needed
            .keys()
            .filter_map(|&c| egraph[c].data.origin.as_ref().map(|(_, n)| n.clone())),
    );

    // Weights: the ones the chosen nodes use (and those the original graph left unused), in
    // arena order.
    let used: std::collections::BTreeSet<sprig_ir::WeightId> =
        order.iter().flat_map(|c| choice[c].op.weights()).collect();
    let mut originally_used = HashSet::new();
    for id in graph.node_ids() {
        graph.node(id).op.for_each_weight(|w| {
            originally_used.insert(w);
        });
    }
    let arena = &egraph.analysis.weights;
    let mut keep: Vec<sprig_ir::WeightId> = arena
        .iter()
        .map(|(id, _)| id)
        .filter(|id| {
            used.contains(id) || (id.index() < graph.weights.len() && !originally_used.contains(id))
        })
        .collect();
    keep.sort_unstable();
    let mut weight_names: HashSet<String> = keep
        .iter()
        .filter(|id| !egraph.analysis.computed.contains_key(id))
        .map(|&id| arena[id].name.clone())
        .collect();
    let mut new_weights = Weights::default();
    let mut weight_map: HashMap<sprig_ir::WeightId, sprig_ir::WeightId> = HashMap::new();
    for id in keep {
        let mut w = arena[id].clone();
        if let Some(base) = egraph.analysis.computed.get(&id) {
            let name = if weight_names.contains(base) {
                fresh(&w.name, &weight_names)
            } else {
                base.clone()
            };
            weight_names.insert(name.clone());
            w.name = name;
        }
        weight_map.insert(id, new_weights.add(w));
    }

    let mut out = Graph::new(graph.name.clone());
    out.weights_file = graph.weights_file.clone();
    out.weights = new_weights;
    for &i in graph.inputs() {
        let node = graph.node(i);
        if let Op::Input(input) = &node.op {
            let id = out.add_input(node.name.clone(), input.ty.clone());
            out.node_mut(id).span = node.span;
        }
    }
    let mut node_of: HashMap<Id, NodeId> = HashMap::new();
    let original_span = |name: &str| graph.find(name).and_then(|n| graph.node(n).span);
    for &c in &order {
        let enode = &choice[&c];
        if let Op::Input(_) = enode.op {
            node_of.insert(c, out.inputs()[enode.input]);
            continue;
        }
        let name = match (output_name.get(&c), &egraph[c].data.origin) {
            (Some(n), _) => n.clone(),
            (None, Some((_, n))) if !taken.contains(n) => n.clone(),
            _ => {
                let first = needed[&c]
                    .first()
                    .and_then(|k| node_of.get(k))
                    .map(|&n| out.node(n).name.clone())
                    .unwrap_or_default();
                fresh(&format!("{first}_{}", enode.op.name()), &reserved)
            }
        };
        taken.insert(name.clone());
        reserved.insert(name.clone());
        let mut op = enode.op.clone();
        op.for_each_weight_mut(|w| *w = weight_map[w]);
        let operands: Vec<NodeId> = needed[&c].iter().map(|k| node_of[k]).collect();
        let id = out.add_node(name.clone(), op, &operands);
        out.node_mut(id).span = original_span(&name);
        node_of.insert(c, id);
    }
    for (&c, &orig) in outputs.iter().zip(graph.outputs()) {
        let name = &graph.node(orig).name;
        let node = node_of[&find(c)];
        if out.node(node).name == *name {
            out.add_output(node);
        } else {
            // The output's value is an input's or another output's: keep its name.
            let id = out.add_node(name.clone(), Op::Identity, &[node]);
            out.add_output(id);
        }
    }
    (out, order)
}

/// `base`, or `base_2`, `base_3`, ... whichever is not in `taken`.
fn fresh(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| !taken.contains(n))
        .expect("an unused name exists")
}

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "equality saturation (egg): drops inference no-ops and no-op casts, rewrites matmul to dense, folds batchnorm and biases, collapses reshapes and transposes, stacks LSTM gates and dense products over one input, merges dense layers when cheaper; picks the graph the target's cost model ranks cheapest"
    }

    fn options(&self) -> &'static [OptionDoc] {
        &[
            OptionDoc {
                name: "target",
                meaning: "cost model that ranks equivalent graphs: cpu (bytes moved and FLOPs, the default) or eie (estimated cycles)",
            },
            OptionDoc {
                name: "iterations",
                meaning: "runner iteration limit (default 30)",
            },
            OptionDoc {
                name: "nodes",
                meaning: "runner e-node limit (default 100000)",
            },
            OptionDoc {
                name: "time_ms",
                meaning: "runner time limit in milliseconds (default 10000; hitting it makes the result depend on the machine, and the report says so)",
            },
        ]
    }

    fn run(
        &self,
        graph: &mut Graph,
        info: &GraphInfo,
        options: &Options,
    ) -> Result<PassReport, PassError> {
        let target = match options.get("target", None) {
            None => Target::Cpu,
            Some(OptValue::Word(w)) if w == "cpu" => Target::Cpu,
            Some(OptValue::Word(w)) if w == "eie" => Target::Eie,
            Some(other) => {
                return Err(PassError::failed(
                    NAME,
                    format!("unknown target `{other}` (known: cpu, eie)"),
                ));
            }
        };
        let limit = |key: &str, default: u64, max: u64| -> Result<u64, PassError> {
            Ok(options
                .integer(key, None, 1, max)
                .map_err(|e| PassError::option(NAME, e))?
                .unwrap_or(default))
        };
        let limits = Limits {
            iterations: limit("iterations", DEFAULT_ITERATIONS, 10_000)? as usize,
            nodes: limit("nodes", DEFAULT_NODES, 100_000_000)? as usize,
            time: Duration::from_millis(limit("time_ms", DEFAULT_TIME_MS, 3_600_000)?),
        };
        let (simplified, stats) = simplify(graph, info, target, limits);
        *graph = simplified;
        Ok(report(&stats))
    }
}

/// The pass report: applications per rule, then the runner's and the graph's figures.
pub fn report(stats: &SimplifyStats) -> PassReport {
    PassReport {
        headers: vec!["rule", "applied"],
        rows: stats
            .applied
            .iter()
            .map(|(rule, n)| vec![rule.to_string(), n.to_string()])
            .collect(),
        notes: vec![
            format!(
                "runner: {} iterations, stop reason: {}, e-graph {} nodes in {} classes",
                stats.iterations, stats.stop_reason, stats.egraph_nodes, stats.egraph_classes
            ),
            format!(
                "graph: {} nodes -> {} nodes; {} cost ({}): {} -> {}",
                stats.nodes_before,
                stats.nodes_after,
                stats.target.name(),
                stats.target.unit(),
                stats.cost_before,
                stats.cost_after
            ),
        ],
    }
}
