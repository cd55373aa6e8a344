//! The rewrite rules, one table with kebab-case names.
//!
//! Each rule is a matcher over one e-node (looking into its children's e-classes where the rule
//! spans two ops) and a builder that adds the equivalent e-node; the runner unions it with the
//! matched e-class. Rules never add commutativity or associativity (they would only bloat the
//! e-graph), and every one shrinks or fuses work, so saturation is reached in a few iterations.
//!
//! Invariants:
//! - A builder adds only e-nodes whose type it has checked (it compares the type the new e-node
//!   infers with the matched class's type), so every class keeps one type.
//! - Weight-changing rules (folding, fusing, merging, stacking) compute new weights from the
//!   constants, never change an existing weight, and do not apply when any weight they read
//!   carries an encoding (they run before pruning; values of an encoded weight are bound to its
//!   encoding). Computed weights are remembered by rule and source weights, so a rule that
//!   matches again adds the same e-node.
//! - `gemm-transb-normal-form` always applies to an unencoded `matmul` (a matmul's weight never
//!   carries an encoding: the compression passes refuse the op): it adds the `dense` over the
//!   transposed weight, with the same bias, and the cost models rank a matmul above its dense
//!   form, so extraction always picks `dense`.
//! - `merge-dense` computes the product only when the target's cost model says the merged
//!   layer is cheaper than the two it replaces (estimating the product's density from its
//!   factors'); extraction then decides with the exact non-zero count.
//! - `stack-dense` takes every dense product over one input class (one per class, in class id
//!   order, none of them a stacked product already) and stacks them only when the cost model
//!   says each member's share of the stacked product, plus its slice, is cheaper than the
//!   member alone; so extraction, which charges a slice its row share of the stacked product
//!   (see [`super::cost`]), picks the slices of all members or of none. On EIE a member that
//!   feeds a `relu` is not stacked (EIE applies relu only in a product's write-back).

use super::cost::{Target, matrix, nonzeros, product_cost, slice_cost};
use super::lang::{ENode, Meta, SGraph};
use egg::{Applier, Id, Rewrite, SearchMatches, Searcher, Subst, Var};
use sprig_ir::op::{Conv2d, Dense, LstmStacked, Reshape, Slice, Transpose};
use sprig_ir::{Op, TensorType, Weight, WeightId, Weights};
use std::sync::{Arc, Mutex};

/// Finds the matches of a rule at one e-node of a class: each match is the chain of e-nodes it
/// spans, outermost first.
type Find = dyn Fn(&SGraph, Id, &ENode) -> Vec<Vec<ENode>> + Send + Sync;
/// Adds the e-node equivalent to a match in class `Id` and returns its class.
type Build = dyn Fn(&mut SGraph, Id, &[ENode]) -> Option<Id> + Send + Sync;

/// The matches of the latest search, which the applier reads back by index.
type Table = Arc<Mutex<Vec<Vec<ENode>>>>;

fn match_var() -> Var {
    "?match".parse().expect("a valid variable name")
}

struct RuleSearcher {
    find: Arc<Find>,
    table: Table,
}

struct RuleApplier {
    build: Arc<Build>,
    table: Table,
}

impl RuleSearcher {
    fn search_class(
        &self,
        egraph: &SGraph,
        eclass: Id,
        table: &mut Vec<Vec<ENode>>,
        limit: usize,
    ) -> Option<SearchMatches<'static, ENode>> {
        let mut substs = Vec::new();
        for enode in &egraph[eclass].nodes {
            for found in (self.find)(egraph, eclass, enode) {
                if substs.len() >= limit {
                    break;
                }
                let mut subst = Subst::with_capacity(1);
                subst.insert(match_var(), Id::from(table.len()));
                table.push(found);
                substs.push(subst);
            }
        }
        (!substs.is_empty()).then_some(SearchMatches {
            eclass,
            substs,
            ast: None,
        })
    }
}

impl Searcher<ENode, Meta> for RuleSearcher {
    fn search_eclass_with_limit(
        &self,
        egraph: &SGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, ENode>> {
        let mut table = self.table.lock().expect("rule table");
        self.search_class(egraph, egraph.find(eclass), &mut table, limit)
    }

    /// Searches every class in id order, replacing the previous search's matches.
    fn search_with_limit(&self, egraph: &SGraph, limit: usize) -> Vec<SearchMatches<'_, ENode>> {
        let mut table = self.table.lock().expect("rule table");
        table.clear();
        let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        classes.sort_unstable();
        let mut out = Vec::new();
        let mut left = limit;
        for class in classes {
            if left == 0 {
                break;
            }
            if let Some(m) = self.search_class(egraph, class, &mut table, left) {
                left -= m.substs.len();
                out.push(m);
            }
        }
        out
    }

    fn vars(&self) -> Vec<Var> {
        vec![match_var()]
    }
}

impl Applier<ENode, Meta> for RuleApplier {
    fn apply_one(
        &self,
        egraph: &mut SGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&egg::PatternAst<ENode>>,
        _rule_name: egg::Symbol,
    ) -> Vec<Id> {
        let Some(found) = subst.get(match_var()).and_then(|&i| {
            let table = self.table.lock().expect("rule table");
            table.get(usize::from(i)).cloned()
        }) else {
            return Vec::new();
        };
        match (self.build)(egraph, eclass, &found) {
            Some(new) if egraph.union(eclass, new) => vec![new],
            _ => Vec::new(),
        }
    }
}

fn rule(name: &'static str, find: Arc<Find>, build: Arc<Build>) -> Rewrite<ENode, Meta> {
    let table: Table = Arc::default();
    Rewrite::new(
        name,
        RuleSearcher {
            find,
            table: table.clone(),
        },
        RuleApplier { build, table },
    )
    .expect("rule variables bind")
}

/// Every rule name with what it does, in table order.
pub const RULES: &[(&str, &str)] = &[
    ("drop-dropout", "dropout(x) = x (inference)"),
    ("drop-identity", "identity(x) = x"),
    (
        "drop-noop-cast",
        "cast of x to the element type x already has = x",
    ),
    (
        "drop-noop-reshape",
        "reshape or flatten to the shape x already has = x",
    ),
    (
        "drop-noop-transpose",
        "transpose by the identity permutation = x",
    ),
    (
        "collapse-reshape-chain",
        "reshape/flatten of reshape/flatten = one reshape",
    ),
    (
        "collapse-double-transpose",
        "transpose of transpose = one transpose (or x)",
    ),
    (
        "gemm-transb-normal-form",
        "matmul(x, W [in, out]) = dense(x, W^T [out, in]): the layout every later pass consumes",
    ),
    (
        "fold-batchnorm-conv",
        "batchnorm(conv2d(x)) = conv2d(x) with scaled weights and a new bias",
    ),
    (
        "fold-batchnorm-dense",
        "batchnorm(dense(x)) = dense(x) with scaled weights and a new bias",
    ),
    (
        "fuse-bias-dense",
        "add(dense(x), constant [out]) = dense(x) with that bias",
    ),
    (
        "fuse-bias-conv",
        "add(conv2d(x), constant [out, 1, 1]) = conv2d(x) with that bias",
    ),
    (
        "merge-dense",
        "dense(dense(x)) = one dense layer, when the cost model says it is cheaper",
    ),
    (
        "stack-lstm",
        "lstm(x, W, R, B) = lstm_stacked(x, [W R Wb+Rb]): one product per step",
    ),
    (
        "stack-dense",
        "dense(x, W1), dense(x, W2), ... = slices of dense(x, [W1; W2; ...]), when the cost model says one product is cheaper",
    ),
];

/// The rules for `target` (the cost model guards `merge-dense`).
pub fn rules(target: Target) -> Vec<Rewrite<ENode, Meta>> {
    RULES
        .iter()
        .map(|&(name, _)| {
            let (find, build) = parts(name, target);
            rule(name, find, build)
        })
        .collect()
}

fn ty(egraph: &SGraph, class: Id) -> Option<&TensorType> {
    egraph[class].data.ty.as_ref()
}

/// Adds `enode` if its type is `want` (the matched class's), returning its class.
fn add_typed(egraph: &mut SGraph, class: Id, enode: ENode) -> Option<Id> {
    let want = ty(egraph, class)?.clone();
    (super::lang::node_type(egraph, &enode)? == want).then(|| egraph.add(enode))
}

/// The e-nodes in `class` for which `pick` holds.
fn nodes_in(egraph: &SGraph, class: Id, pick: impl Fn(&Op) -> bool) -> Vec<ENode> {
    egraph[class]
        .nodes
        .iter()
        .filter(|n| pick(&n.op))
        .cloned()
        .collect()
}

fn unencoded(weights: &Weights, ids: &[WeightId]) -> bool {
    ids.iter().all(|&w| weights[w].encoding.is_dense())
}

/// New weights computed by `rule` from `sources`, remembered so a second match reuses them.
/// `make` returns, per weight, the name of the weight it replaces, its type and its values.
fn computed(
    egraph: &mut SGraph,
    rule: &'static str,
    sources: Vec<WeightId>,
    make: impl FnOnce(&Weights) -> Vec<(String, TensorType, Vec<f32>)>,
) -> Option<Vec<WeightId>> {
    let meta = &mut egraph.analysis;
    if let Some(ids) = meta.memo.get(&(rule, sources.clone())) {
        return Some(ids.clone());
    }
    let made = make(&meta.weights);
    let mut ids = Vec::with_capacity(made.len());
    for (base, ty, values) in made {
        let suffix = match rule.split('-').next() {
            Some("fold") => "folded",
            Some("fuse") => "fused",
            Some("merge") => "merged",
            Some("gemm") => "T",
            _ => "stacked",
        };
        let name = format!("{base}.{suffix}");
        let weight = Weight::computed(name, ty, values).ok()?;
        let id = meta.weights.add(weight);
        meta.computed.insert(id, base);
        ids.push(id);
    }
    meta.memo.insert((rule, sources), ids.clone());
    Some(ids)
}

/// The e-node itself when its op is `op`.
fn single(enode: &ENode, op: fn(&Op) -> bool) -> Vec<Vec<ENode>> {
    if op(&enode.op) {
        vec![vec![enode.clone()]]
    } else {
        Vec::new()
    }
}

/// `Some(base)` of a name like `conv1.weight`, for naming a bias made for it.
fn bias_name(weight: &str) -> String {
    match weight.strip_suffix(".weight") {
        Some(base) => format!("{base}.bias"),
        None => format!("{weight}.bias"),
    }
}

/// The full permutation of a transpose over `rank` axes (empty means reversed).
fn full_perm(perm: &[usize], rank: usize) -> Vec<usize> {
    if perm.is_empty() {
        (0..rank).rev().collect()
    } else {
        perm.to_vec()
    }
}

fn parts(name: &str, target: Target) -> (Arc<Find>, Arc<Build>) {
    let to_child: Arc<Build> = Arc::new(|_, _, found: &[ENode]| Some(found[0].children[0]));
    match name {
        "drop-dropout" => (
            Arc::new(|_, _, n| single(n, |op| matches!(op, Op::Dropout(_)))),
            to_child,
        ),
        "drop-identity" => (
            Arc::new(|_, _, n| single(n, |op| matches!(op, Op::Identity))),
            to_child,
        ),
        "drop-noop-cast" => (
            Arc::new(
                |eg, _, n| match (&n.op, n.children.first().and_then(|&c| ty(eg, c))) {
                    (Op::Cast(c), Some(x)) if x.dtype == c.to => vec![vec![n.clone()]],
                    _ => Vec::new(),
                },
            ),
            to_child,
        ),
        "drop-noop-reshape" => (
            Arc::new(|eg, c, n| {
                let reshapes = matches!(n.op, Op::Reshape(_) | Op::Flatten(_));
                if reshapes && ty(eg, c).is_some() && ty(eg, c) == ty(eg, n.children[0]) {
                    vec![vec![n.clone()]]
                } else {
                    Vec::new()
                }
            }),
            to_child,
        ),
        "drop-noop-transpose" => (
            Arc::new(
                |eg, _, n| match (&n.op, n.children.first().and_then(|&c| ty(eg, c))) {
                    (Op::Transpose(t), Some(x)) => {
                        let perm = full_perm(&t.perm, x.shape.rank());
                        if perm.iter().enumerate().all(|(i, &p)| i == p) {
                            vec![vec![n.clone()]]
                        } else {
                            Vec::new()
                        }
                    }
                    _ => Vec::new(),
                },
            ),
            to_child,
        ),
        "collapse-reshape-chain" => (
            Arc::new(|eg, _, n| {
                let reshape = |op: &Op| matches!(op, Op::Reshape(_) | Op::Flatten(_));
                if !reshape(&n.op) {
                    return Vec::new();
                }
                nodes_in(eg, n.children[0], reshape)
                    .into_iter()
                    .map(|inner| vec![n.clone(), inner])
                    .collect()
            }),
            Arc::new(|eg, class, found| {
                let dims = ty(eg, class)?.shape.dims().to_vec();
                let shape = dims.iter().map(|&d| d as i64).collect();
                let node = ENode::new(Op::Reshape(Reshape { shape }), found[1].children.clone());
                add_typed(eg, class, node)
            }),
        ),
        "collapse-double-transpose" => (
            Arc::new(|eg, _, n| {
                if !matches!(n.op, Op::Transpose(_)) {
                    return Vec::new();
                }
                nodes_in(eg, n.children[0], |op| matches!(op, Op::Transpose(_)))
                    .into_iter()
                    .map(|inner| vec![n.clone(), inner])
                    .collect()
            }),
            Arc::new(|eg, class, found| {
                let (Op::Transpose(outer), Op::Transpose(inner)) = (&found[0].op, &found[1].op)
                else {
                    return None;
                };
                let x = found[1].children[0];
                let rank = ty(eg, x)?.shape.rank();
                let p1 = full_perm(&inner.perm, rank);
                let p2 = full_perm(&outer.perm, rank);
                // Output axis i of the outer transpose is axis p2[i] of the inner's result,
                // which is axis p1[p2[i]] of x.
                let perm: Vec<usize> = p2
                    .iter()
                    .map(|&a| p1.get(a).copied())
                    .collect::<Option<_>>()?;
                if perm.iter().enumerate().all(|(i, &p)| i == p) {
                    return Some(x);
                }
                add_typed(
                    eg,
                    class,
                    ENode::new(Op::Transpose(Transpose { perm }), vec![x]),
                )
            }),
        ),
        "gemm-transb-normal-form" => (
            Arc::new(|eg, _, n| match &n.op {
                Op::MatMul(m) if unencoded(&eg.analysis.weights, &[m.weight]) => {
                    vec![vec![n.clone()]]
                }
                _ => Vec::new(),
            }),
            Arc::new(|eg, class, found| {
                let Op::MatMul(m) = found[0].op.clone() else {
                    return None;
                };
                let ids = computed(eg, "gemm-transb-normal-form", vec![m.weight], |w| {
                    let (inp, out) = matrix(w, m.weight);
                    let (inp, out) = (inp as usize, out as usize);
                    let values = w[m.weight].values();
                    let mut t = vec![0.0f32; values.len()];
                    for (k, row) in values.chunks_exact(out.max(1)).enumerate().take(inp) {
                        for (n, &v) in row.iter().enumerate() {
                            t[n * inp + k] = v;
                        }
                    }
                    vec![(w[m.weight].name.clone(), TensorType::f32(vec![out, inp]), t)]
                })?;
                let op = Op::Dense(Dense {
                    weight: ids[0],
                    bias: m.bias,
                });
                add_typed(eg, class, ENode::new(op, found[0].children.clone()))
            }),
        ),
        "fold-batchnorm-conv" | "fold-batchnorm-dense" => {
            let conv = name == "fold-batchnorm-conv";
            let rule_name: &'static str = if conv {
                "fold-batchnorm-conv"
            } else {
                "fold-batchnorm-dense"
            };
            (
                Arc::new(move |eg, _, n| {
                    let Op::BatchNorm(bn) = &n.op else {
                        return Vec::new();
                    };
                    let inner = n.children[0];
                    let Some(inner_ty) = ty(eg, inner) else {
                        return Vec::new();
                    };
                    // The batchnorm must run along the layer's output channels.
                    let rank = inner_ty.shape.rank();
                    let channel_axis = if conv {
                        rank.checked_sub(3)
                    } else {
                        rank.checked_sub(1)
                    };
                    if channel_axis != Some(bn.axis) {
                        return Vec::new();
                    }
                    let w = &eg.analysis.weights;
                    let bn_weights = [bn.scale, bn.bias, bn.mean, bn.var];
                    if !unencoded(w, &bn_weights) {
                        return Vec::new();
                    }
                    nodes_in(eg, inner, |op| {
                        if conv {
                            matches!(op, Op::Conv2d(_))
                        } else {
                            matches!(op, Op::Dense(_))
                        }
                    })
                    .into_iter()
                    .filter(|layer| unencoded(w, &layer.op.weights()))
                    .map(|layer| vec![n.clone(), layer])
                    .collect()
                }),
                Arc::new(move |eg, class, found| {
                    let Op::BatchNorm(bn) = found[0].op.clone() else {
                        return None;
                    };
                    let (weight, bias) = match &found[1].op {
                        Op::Conv2d(c) => (c.weight, c.bias),
                        Op::Dense(d) => (d.weight, d.bias),
                        _ => return None,
                    };
                    let mut sources = vec![weight, bn.scale, bn.bias, bn.mean, bn.var];
                    sources.extend(bias);
                    let ids = computed(eg, rule_name, sources, |w| {
                        fold_batchnorm(w, weight, bias, &bn)
                    })?;
                    let op = match &found[1].op {
                        Op::Conv2d(c) => Op::Conv2d(Conv2d {
                            weight: ids[0],
                            bias: Some(ids[1]),
                            ..c.clone()
                        }),
                        _ => Op::Dense(Dense {
                            weight: ids[0],
                            bias: Some(ids[1]),
                        }),
                    };
                    add_typed(eg, class, ENode::new(op, found[1].children.clone()))
                }),
            )
        }
        "fuse-bias-dense" | "fuse-bias-conv" => {
            let conv = name == "fuse-bias-conv";
            let rule_name: &'static str = if conv {
                "fuse-bias-conv"
            } else {
                "fuse-bias-dense"
            };
            (
                Arc::new(move |eg, _, n| {
                    if !matches!(n.op, Op::Add) {
                        return Vec::new();
                    }
                    let w = &eg.analysis.weights;
                    let mut out = Vec::new();
                    for (layer_side, const_side) in [(0, 1), (1, 0)] {
                        let layers = nodes_in(eg, n.children[layer_side], |op| {
                            if conv {
                                matches!(op, Op::Conv2d(_))
                            } else {
                                matches!(op, Op::Dense(_))
                            }
                        });
                        let constants = nodes_in(eg, n.children[const_side], |op| {
                            matches!(op, Op::Constant(_))
                        });
                        for layer in &layers {
                            for constant in &constants {
                                if unencoded(w, &layer.op.weights())
                                    && unencoded(w, &constant.op.weights())
                                {
                                    out.push(vec![n.clone(), layer.clone(), constant.clone()]);
                                }
                            }
                        }
                    }
                    out
                }),
                Arc::new(move |eg, class, found| {
                    let Op::Constant(constant) = &found[2].op else {
                        return None;
                    };
                    let (weight, bias) = match &found[1].op {
                        Op::Conv2d(c) => (c.weight, c.bias),
                        Op::Dense(d) => (d.weight, d.bias),
                        _ => return None,
                    };
                    let out = matrix(&eg.analysis.weights, weight).0 as usize;
                    let cdims = eg.analysis.weights[constant.value].ty.shape.dims().to_vec();
                    // The constant must hold exactly one value per output channel, laid out
                    // along the channel axis of the layer's result.
                    let layer_ty = super::lang::node_type(eg, &found[1])?;
                    let fits = if conv {
                        cdims == [out, 1, 1]
                            || cdims == [1, out, 1, 1] && layer_ty.shape.rank() == 4
                    } else {
                        cdims == [out] || cdims == [1, out] && layer_ty.shape.rank() == 2
                    };
                    if !fits {
                        return None;
                    }
                    let mut sources = vec![constant.value];
                    sources.extend(bias);
                    let ids = computed(eg, rule_name, sources, |w| {
                        let c = w[constant.value].values();
                        let values: Vec<f32> = match bias {
                            Some(b) => w[b]
                                .values()
                                .iter()
                                .zip(c.iter())
                                .map(|(x, y)| x + y)
                                .collect(),
                            None => c.to_vec(),
                        };
                        let base = match bias {
                            Some(b) => w[b].name.clone(),
                            None => bias_name(&w[weight].name),
                        };
                        vec![(base, TensorType::f32(vec![out]), values)]
                    })?;
                    let op = match &found[1].op {
                        Op::Conv2d(c) => Op::Conv2d(Conv2d {
                            bias: Some(ids[0]),
                            ..c.clone()
                        }),
                        _ => Op::Dense(Dense {
                            weight,
                            bias: Some(ids[0]),
                        }),
                    };
                    add_typed(eg, class, ENode::new(op, found[1].children.clone()))
                }),
            )
        }
        "merge-dense" => (
            Arc::new(|eg, _, n| {
                let Op::Dense(_) = &n.op else {
                    return Vec::new();
                };
                let w = &eg.analysis.weights;
                if !unencoded(w, &n.op.weights()) {
                    return Vec::new();
                }
                nodes_in(eg, n.children[0], |op| matches!(op, Op::Dense(_)))
                    .into_iter()
                    .filter(|inner| unencoded(w, &inner.op.weights()))
                    .map(|inner| vec![n.clone(), inner])
                    .collect()
            }),
            Arc::new(move |eg, class, found| {
                let (Op::Dense(outer), Op::Dense(inner)) = (&found[0].op, &found[1].op) else {
                    return None;
                };
                let (outer, inner) = (outer.clone(), inner.clone());
                let w = &eg.analysis.weights;
                let (o, m) = matrix(w, outer.weight);
                let (m1, i) = matrix(w, inner.weight);
                if m != m1 {
                    return None;
                }
                let vectors = ty(eg, class).map_or(1, |t| {
                    let d = t.shape.dims();
                    d[..d.len().saturating_sub(1)].iter().product::<usize>() as u64
                });
                let (n2, n1) = (nonzeros(w, outer.weight), nonzeros(w, inner.weight));
                let bias_nnz = |b: Option<WeightId>| b.map_or(0, |b| nonzeros(w, b));
                let separate =
                    product_cost(target, o, m, n2, bias_nnz(outer.bias), vectors).saturating_add(
                        product_cost(target, m, i, n1, bias_nnz(inner.bias), vectors),
                    );
                // An entry of W2·W1 is non-zero unless all m of its terms are zero.
                let d2 = n2 as f64 / (o * m).max(1) as f64;
                let d1 = n1 as f64 / (m * i).max(1) as f64;
                let density = 1.0 - (1.0 - d1 * d2).powf(m as f64);
                let estimate = (density * (o * i) as f64).round() as u64;
                let merged = product_cost(target, o, i, estimate, o, vectors);
                if merged >= separate {
                    return None;
                }
                let mut sources = vec![outer.weight, inner.weight];
                sources.extend(outer.bias);
                sources.extend(inner.bias);
                let ids = computed(eg, "merge-dense", sources, |w| {
                    merge_dense(w, &outer, &inner, o as usize, m as usize, i as usize)
                })?;
                let op = Op::Dense(Dense {
                    weight: ids[0],
                    bias: Some(ids[1]),
                });
                add_typed(eg, class, ENode::new(op, found[1].children.clone()))
            }),
        ),
        "stack-lstm" => (
            Arc::new(|eg, _, n| match &n.op {
                Op::Lstm(l) => {
                    let mut read = vec![l.w, l.r];
                    read.extend(l.b);
                    if unencoded(&eg.analysis.weights, &read) {
                        vec![vec![n.clone()]]
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            }),
            Arc::new(|eg, class, found| {
                let Op::Lstm(l) = found[0].op.clone() else {
                    return None;
                };
                let mut sources = vec![l.w, l.r];
                sources.extend(l.b);
                let ids = computed(eg, "stack-lstm", sources, |w| {
                    let (rows, inp) = matrix(w, l.w);
                    let (rows, inp) = (rows as usize, inp as usize);
                    let h = rows / 4;
                    let (wv, rv) = (w[l.w].values(), w[l.r].values());
                    let bv = l.b.map(|b| w[b].values());
                    let width = inp + h + 1;
                    let mut s = Vec::with_capacity(rows * width);
                    for j in 0..rows {
                        s.extend_from_slice(&wv[j * inp..(j + 1) * inp]);
                        s.extend_from_slice(&rv[j * h..(j + 1) * h]);
                        s.push(bv.as_ref().map_or(0.0, |b| b[j] + b[rows + j]));
                    }
                    vec![(w[l.w].name.clone(), TensorType::f32(vec![rows, width]), s)]
                })?;
                let op = Op::LstmStacked(LstmStacked {
                    weight: ids[0],
                    h0: l.h0,
                    c0: l.c0,
                    last: l.last,
                });
                add_typed(eg, class, ENode::new(op, found[0].children.clone()))
            }),
        ),
        "stack-dense" => (
            Arc::new(move |eg, class, n| {
                stack_group(eg, class, n, target)
                    .map(|group| group.into_iter().map(|(_, node)| node).collect())
                    .into_iter()
                    .collect()
            }),
            Arc::new(|eg, class, found| {
                let members: Vec<(Id, Dense)> = found
                    .iter()
                    .map(|n| match &n.op {
                        Op::Dense(d) => Some((eg.lookup(n.clone())?, d.clone())),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                let x = found[0].children[0];
                let rows: Vec<usize> = members
                    .iter()
                    .map(|(_, d)| matrix(&eg.analysis.weights, d.weight).0 as usize)
                    .collect();
                let cols = matrix(&eg.analysis.weights, members[0].1.weight).1 as usize;
                let total: usize = rows.iter().sum();
                let with_bias = members.iter().any(|(_, d)| d.bias.is_some());
                let mut sources = Vec::new();
                for (_, d) in &members {
                    sources.push(d.weight);
                    sources.extend(d.bias);
                }
                let dense: Vec<Dense> = members.iter().map(|(_, d)| d.clone()).collect();
                let ids = computed(eg, "stack-dense", sources, |w| {
                    let mut weight = Vec::with_capacity(total * cols);
                    let mut bias = Vec::with_capacity(total);
                    for (d, &m) in dense.iter().zip(&rows) {
                        weight.extend_from_slice(&w[d.weight].values());
                        match d.bias {
                            Some(b) => bias.extend_from_slice(&w[b].values()),
                            None => bias.extend(std::iter::repeat_n(0.0, m)),
                        }
                    }
                    let first = &w[dense[0].weight].name;
                    let mut made =
                        vec![(first.clone(), TensorType::f32(vec![total, cols]), weight)];
                    if with_bias {
                        let base = match dense[0].bias {
                            Some(b) => w[b].name.clone(),
                            None => bias_name(first),
                        };
                        made.push((base, TensorType::f32(vec![total]), bias));
                    }
                    made
                })?;
                eg.analysis.stacked.extend(ids.iter().copied());
                let stacked = eg.add(ENode::new(
                    Op::Dense(Dense {
                        weight: ids[0],
                        bias: ids.get(1).copied(),
                    }),
                    vec![x],
                ));
                let mut start = 0;
                let mut mine = None;
                for ((member, _), &len) in members.iter().zip(&rows) {
                    let slice = ENode::new(
                        Op::Slice(Slice {
                            axis: -1,
                            start,
                            len,
                        }),
                        vec![stacked],
                    );
                    start += len;
                    let member = eg.find(*member);
                    let slice = add_typed(eg, member, slice)?;
                    if member == eg.find(class) {
                        mine = Some(slice);
                    } else {
                        eg.union(member, slice);
                    }
                }
                mine
            }),
        ),
        other => unreachable!("rule `{other}` is in RULES but has no parts"),
    }
}

/// The group `stack-dense` stacks at `enode` (in `class`): every class holding an unencoded,
/// unstacked dense product over `enode`'s input with the same column count (the first such
/// e-node of each class), in class id order, when `enode` is the first of the group's first
/// class, the group has two members or more, and stacking is cheaper for each member on
/// `target` (see the module contract).
fn stack_group(eg: &SGraph, class: Id, enode: &ENode, target: Target) -> Option<Vec<(Id, ENode)>> {
    let w = &eg.analysis.weights;
    let candidate = |n: &ENode| -> bool {
        match &n.op {
            Op::Dense(d) => {
                unencoded(w, &n.op.weights())
                    && !eg.analysis.stacked.contains(&d.weight)
                    && n.children.len() == 1
            }
            _ => false,
        }
    };
    if !candidate(enode) {
        return None;
    }
    let x = eg.find(enode.children[0]);
    let Op::Dense(first) = &enode.op else {
        return None;
    };
    let cols = matrix(w, first.weight).1;
    let mut classes: Vec<Id> = eg[x].parents().map(|p| eg.find(p)).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut group: Vec<(Id, ENode)> = Vec::new();
    for c in classes {
        // A class already holding a slice was stacked before.
        if eg[c].nodes.iter().any(|n| matches!(n.op, Op::Slice(_))) {
            continue;
        }
        let member = eg[c].nodes.iter().find(|n| {
            candidate(n)
                && eg.find(n.children[0]) == x
                && matches!(&n.op, Op::Dense(d) if matrix(w, d.weight).1 == cols)
        });
        if let Some(m) = member {
            group.push((c, m.clone()));
        }
    }
    let me = eg.find(class);
    if group.len() < 2 || group[0].0 != me || group[0].1 != *enode {
        return None;
    }
    if target == Target::Eie {
        // A relu over a member would have to run outside the product's write-back.
        let feeds_relu = group.iter().any(|(c, _)| {
            eg[*c].parents().any(|p| {
                eg[p]
                    .nodes
                    .iter()
                    .any(|n| matches!(n.op, Op::Relu) && eg.find(n.children[0]) == *c)
            })
        });
        if feeds_relu {
            return None;
        }
    }
    // The cost model's verdict, member by member.
    let vectors = ty(eg, x).map_or(1, |t| {
        let d = t.shape.dims();
        d[..d.len().saturating_sub(1)].iter().product::<usize>() as u64
    });
    let bias_nnz = |b: Option<WeightId>| b.map_or(0, |b| nonzeros(w, b));
    let mut total_rows = 0;
    let mut total_nnz = 0;
    let mut total_bias = 0;
    let mut alone = Vec::with_capacity(group.len());
    for (_, n) in &group {
        let Op::Dense(d) = &n.op else { return None };
        let (rows, _) = matrix(w, d.weight);
        let nnz = nonzeros(w, d.weight);
        total_rows += rows;
        total_nnz += nnz;
        total_bias += bias_nnz(d.bias);
        alone.push((
            rows,
            product_cost(target, rows, cols, nnz, bias_nnz(d.bias), vectors),
        ));
    }
    let stacked = product_cost(target, total_rows, cols, total_nnz, total_bias, vectors);
    let cheaper = alone.iter().all(|&(rows, cost)| {
        let share = (stacked as u128 * rows as u128).div_ceil(total_rows.max(1) as u128) as u64;
        let slice = slice_cost(target, rows.saturating_mul(vectors));
        share.saturating_add(slice) < cost
    });
    cheaper.then_some(group)
}

/// The weight and bias of a conv2d or dense layer followed by batchnorm, as one layer:
/// `s = scale / sqrt(var + eps)`, `W'[o] = s[o] W[o]`, `b'[o] = s[o] (b[o] - mean[o]) + beta[o]`.
fn fold_batchnorm(
    w: &Weights,
    weight: WeightId,
    bias: Option<WeightId>,
    bn: &sprig_ir::op::BatchNorm,
) -> Vec<(String, TensorType, Vec<f32>)> {
    let (scale, beta, mean, var) = (
        w[bn.scale].values(),
        w[bn.bias].values(),
        w[bn.mean].values(),
        w[bn.var].values(),
    );
    let s: Vec<f64> = scale
        .iter()
        .zip(var.iter())
        .map(|(&g, &v)| g as f64 / (v as f64 + bn.epsilon as f64).sqrt())
        .collect();
    let values = w[weight].values();
    let per_row = values.len() / s.len().max(1);
    let folded: Vec<f32> = values
        .iter()
        .enumerate()
        .map(|(k, &x)| (x as f64 * s[k / per_row]) as f32)
        .collect();
    let old_bias = bias.map(|b| w[b].values());
    let new_bias: Vec<f32> = (0..s.len())
        .map(|o| {
            let b = old_bias.as_ref().map_or(0.0, |b| b[o] as f64);
            (s[o] * (b - mean[o] as f64) + beta[o] as f64) as f32
        })
        .collect();
    let bias_base = match bias {
        Some(b) => w[b].name.clone(),
        None => bias_name(&w[weight].name),
    };
    vec![
        (w[weight].name.clone(), w[weight].ty.clone(), folded),
        (bias_base, TensorType::f32(vec![s.len()]), new_bias),
    ]
}

/// `W = W2 W1` (`[o, i]`) and `b = W2 b1 + b2`, in f64.
fn merge_dense(
    w: &Weights,
    outer: &Dense,
    inner: &Dense,
    o: usize,
    m: usize,
    i: usize,
) -> Vec<(String, TensorType, Vec<f32>)> {
    let (w2, w1) = (w[outer.weight].values(), w[inner.weight].values());
    let mut product = vec![0.0f64; o * i];
    for r in 0..o {
        let row = &mut product[r * i..(r + 1) * i];
        for k in 0..m {
            let a = w2[r * m + k] as f64;
            if a == 0.0 {
                continue;
            }
            for (p, &b) in row.iter_mut().zip(&w1[k * i..(k + 1) * i]) {
                *p += a * b as f64;
            }
        }
    }
    let b1 = inner.bias.map(|b| w[b].values());
    let b2 = outer.bias.map(|b| w[b].values());
    let bias: Vec<f32> = (0..o)
        .map(|r| {
            let through: f64 = b1.as_ref().map_or(0.0, |b1| {
                (0..m).map(|k| w2[r * m + k] as f64 * b1[k] as f64).sum()
            });
            (through + b2.as_ref().map_or(0.0, |b| b[r] as f64)) as f32
        })
        .collect();
    let bias_base = match outer.bias {
        Some(b) => w[b].name.clone(),
        None => bias_name(&w[outer.weight].name),
    };
    vec![
        (
            w[outer.weight].name.clone(),
            TensorType::f32(vec![o, i]),
            product.into_iter().map(|v| v as f32).collect(),
        ),
        (bias_base, TensorType::f32(vec![o]), bias),
    ]
}
