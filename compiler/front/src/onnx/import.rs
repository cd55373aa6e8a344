//! The graph walk: checks the ONNX graph's structure, picks the outputs to import, orders the
//! nodes and drives the converters of [`super::ops`], keeping constants as data (so shape
//! arithmetic folds) until an op needs them as weights or values.
//!
//! Contract:
//! - Structure first: every value is defined once (graph input, initializer or node output),
//!   every node input is defined, every graph output is computed, and the nodes needed for the
//!   kept outputs form no cycle. Each problem names the value or node.
//! - Outputs computed through a node of the `ai.onnx.ml` domain are dropped (a [`Note`] each);
//!   only the nodes the kept outputs need are converted.
//! - Support is checked for every needed node before any conversion, so one error lists every
//!   unsupported op; converters that meet an unsupported use (a bidirectional LSTM, a computed
//!   Reshape shape) add to the same list. A node whose operand failed is skipped silently.
//! - Every sprig node is typed as it is added ([`sprig_ir::verify::infer_type`]), so converters
//!   see static shapes; the finished graph is verified once more as a whole.

use super::ops::{self, NodeIn};
use super::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto, type_proto};
use super::tensor::{self, Data};
use super::{Imported, Note, OnnxErrorKind, Unsupported};
use sprig_ir::{DType, Graph, NodeId, Op, TensorType, Weight, WeightId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::rc::Rc;

/// A constant known at import: an initializer, a `Constant` node's value, or a folded result.
#[derive(Debug)]
pub(crate) struct Const {
    /// The ONNX value it is.
    pub name: String,
    pub dims: Vec<usize>,
    pub data: Data,
    /// The initializer holding exactly these dims and (converted) values, if any: such a
    /// constant becomes a file weight keyed by that name.
    pub source: Option<String>,
}

impl Const {
    pub(crate) fn new(name: &str, dims: Vec<usize>, data: Data) -> Rc<Const> {
        Rc::new(Const {
            name: name.to_string(),
            dims,
            data,
            source: None,
        })
    }

    pub(crate) fn is_float(&self) -> bool {
        matches!(self.data, Data::F32(_))
    }
}

/// What an ONNX value is during import.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Node(NodeId),
    Const(Rc<Const>),
}

/// Why a node did not convert.
#[derive(Debug)]
pub(crate) enum Conv {
    /// A use sprig does not support; the text qualifies the op type (`direction reverse`).
    Unsupported(String),
    /// The node is malformed.
    Invalid(String),
}

pub(crate) fn invalid(m: impl Into<String>) -> Conv {
    Conv::Invalid(m.into())
}

pub(crate) fn unsupported(m: impl Into<String>) -> Conv {
    Conv::Unsupported(m.into())
}

/// The graph under construction and what converters need to know about it.
pub(crate) struct Ctx<'a> {
    pub graph: Graph,
    pub opset: i64,
    pub model_dir: &'a Path,
    types: HashMap<NodeId, TensorType>,
    node_names: HashSet<String>,
    weight_names: HashSet<String>,
    file_weights: HashMap<String, WeightId>,
    const_nodes: HashMap<String, NodeId>,
    /// How many needed nodes read each value, plus one for a kept graph output.
    pub uses: HashMap<String, usize>,
    /// `matmul` nodes made from a MatMul, without bias, whose value has exactly one use: an Add
    /// of a bias vector may fuse into them.
    pub fusable: HashSet<NodeId>,
}

impl Ctx<'_> {
    /// The type of a value.
    pub(crate) fn ty(&self, v: &Val) -> TensorType {
        match v {
            Val::Node(id) => self.types[id].clone(),
            Val::Const(c) => {
                let dtype = if c.is_float() { DType::F32 } else { DType::I64 };
                TensorType::new(dtype, c.dims.clone())
            }
        }
    }

    pub(crate) fn dims(&self, v: &Val) -> Vec<usize> {
        self.ty(v).shape.dims().to_vec()
    }

    /// A node name no ONNX value and no earlier helper uses, derived from `base`.
    pub(crate) fn fresh_name(&mut self, base: &str) -> String {
        fresh(&mut self.node_names, base)
    }

    /// The file weight of an initializer used unchanged (one weight however often it is used).
    fn file_weight(&mut self, key: &str, c: &Const) -> Result<WeightId, Conv> {
        if let Some(&id) = self.file_weights.get(key) {
            return Ok(id);
        }
        let name = fresh(&mut self.weight_names, key);
        let w = Weight::from_file(name, TensorType::f32(c.dims.clone()), key, c.data.to_f32())
            .map_err(|e| invalid(e.to_string()))?;
        let id = self.graph.add_weight(w);
        self.file_weights.insert(key.to_string(), id);
        Ok(id)
    }

    /// `c` as a weight of its own shape: a file weight when it is an unchanged initializer,
    /// else a literal.
    pub(crate) fn weight(&mut self, c: &Const) -> Result<WeightId, Conv> {
        match &c.source {
            Some(key) => {
                let key = key.clone();
                self.file_weight(&key, c)
            }
            None => self.literal(&c.name, c.dims.clone(), c.data.to_f32().to_vec()),
        }
    }

    /// `c` as a weight of shape `dims` (same element count): the file weight when the shape is
    /// unchanged, else a literal.
    pub(crate) fn weight_as(&mut self, c: &Const, dims: Vec<usize>) -> Result<WeightId, Conv> {
        if dims == c.dims {
            self.weight(c)
        } else {
            self.literal(&c.name, dims, c.data.to_f32().to_vec())
        }
    }

    /// A literal weight named after `base`.
    pub(crate) fn literal(
        &mut self,
        base: &str,
        dims: Vec<usize>,
        values: Vec<f32>,
    ) -> Result<WeightId, Conv> {
        let name = fresh(&mut self.weight_names, base);
        let w = Weight::literal(name, TensorType::f32(dims), values)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(self.graph.add_weight(w))
    }

    /// The node computing `v`; a constant becomes a `constant` node (one per constant).
    pub(crate) fn node_of(&mut self, v: &Val) -> Result<NodeId, Conv> {
        match v {
            Val::Node(id) => Ok(*id),
            Val::Const(c) => {
                if let Some(&id) = self.const_nodes.get(&c.name) {
                    return Ok(id);
                }
                let w = self.weight(c)?;
                // The constant's ONNX name is reserved for it and no other node computes it.
                let op = Op::Constant(sprig_ir::op::Constant { value: w });
                let id = self.add(c.name.clone(), op, &[])?;
                self.const_nodes.insert(c.name.clone(), id);
                Ok(id)
            }
        }
    }

    /// Adds a node named `name` after typing it; a node that does not type is not added.
    pub(crate) fn add(
        &mut self,
        name: String,
        op: Op,
        operands: &[NodeId],
    ) -> Result<NodeId, Conv> {
        let tys: Vec<(String, TensorType)> = operands
            .iter()
            .map(|&o| (self.graph.node(o).name.clone(), self.types[&o].clone()))
            .collect();
        let named: Vec<(&str, &TensorType)> = tys.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let ty = sprig_ir::verify::infer_type(&op, &self.graph.weights, &named).map_err(invalid)?;
        let id = self.graph.add_node(name.clone(), op, operands);
        self.node_names.insert(name);
        self.types.insert(id, ty);
        Ok(id)
    }

    /// Renames node `id` to the ONNX value `name` (reserved for it).
    pub(crate) fn rename(&mut self, id: NodeId, name: &str) {
        self.graph.node_mut(id).name = name.to_string();
    }
}

/// `base`, or `base_2`, `base_3`, ... : the first that `used` does not hold (then added).
fn fresh(used: &mut HashSet<String>, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 2;
    while used.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    used.insert(name.clone());
    name
}

/// A node's name for messages: its own, or its position and op type when it has none.
pub(crate) fn node_label(index: usize, node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("#{index} {}", node.op_type.as_deref().unwrap_or("?")),
    }
}

fn is_default_domain(node: &NodeProto) -> bool {
    matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"))
}

/// The sprig type of a graph input. Symbolic or missing dims become 1 (the batch policy).
fn input_type(vi: &ValueInfoProto) -> Result<TensorType, String> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("is not a tensor; sprig's inputs are tensors".to_string());
    };
    let code = t.elem_type.unwrap_or(0);
    let dtype = match code {
        1 => DType::F32,
        7 => DType::I64,
        _ => {
            return Err(format!(
                "has element type {}; sprig's inputs are FLOAT (f32) or INT64 (i64 indices)",
                tensor::type_name(code)
            ));
        }
    };
    let shape = t
        .shape
        .as_ref()
        .ok_or("has no shape; sprig needs the rank and the static dims of every input")?;
    let mut dims = Vec::with_capacity(shape.dim.len());
    for d in &shape.dim {
        use super::proto::tensor_shape_proto::dimension::Value;
        dims.push(match d.value {
            Some(Value::DimValue(v)) => {
                usize::try_from(v).map_err(|_| format!("has a negative dim {v}"))?
            }
            Some(Value::DimParam(_)) | None => 1,
        });
    }
    let ty = TensorType::new(dtype, dims);
    if ty.shape.checked_len().is_none_or(|n| n > (1 << 40)) {
        return Err(format!("{ty} is too large to be an input"));
    }
    Ok(ty)
}

/// The version of the default (`ai.onnx`) opset the model imports.
fn default_opset(model: &ModelProto) -> Result<i64, OnnxErrorKind> {
    let v = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| {
            OnnxErrorKind::Model("the model imports no version of the default opset".to_string())
        })?;
    if v < 9 {
        return Err(OnnxErrorKind::Model(format!(
            "opset {v} is older than sprig reads (opset 9 and later)"
        )));
    }
    Ok(v)
}

pub(crate) fn import(path: &Path, model: ModelProto) -> Result<Imported, OnnxErrorKind> {
    let opset = default_opset(&model)?;
    let g: GraphProto = model
        .graph
        .ok_or_else(|| OnnxErrorKind::Model("the model has no graph".to_string()))?;
    if !g.sparse_initializer.is_empty() {
        return Err(OnnxErrorKind::Model(
            "sparse initializers are not supported".to_string(),
        ));
    }
    let model_dir = super::model_dir(path);
    let name = match g.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("network")
            .to_string(),
    };
    let mut graph = Graph::new(name);
    graph.weights_file = path.file_name().map(|f| f.to_string_lossy().into_owned());

    // Every value name, to check single definitions and keep helper names clear of them.
    let mut defined: HashSet<String> = HashSet::new();
    let mut define = |name: &str, what: &str| -> Result<(), OnnxErrorKind> {
        if !name.is_empty() && !defined.insert(name.to_string()) {
            return Err(OnnxErrorKind::Model(format!(
                "value `{name}` is defined twice (again as {what})"
            )));
        }
        Ok(())
    };
    let mut env: HashMap<String, Val> = HashMap::new();
    for (i, t) in g.initializer.iter().enumerate() {
        let tname = t.name.clone().unwrap_or_default();
        if tname.is_empty() {
            return Err(OnnxErrorKind::Tensor {
                name: format!("#{i}"),
                reason: "an initializer has no name".to_string(),
            });
        }
        define(&tname, "an initializer")?;
        let d = tensor::decode(t, model_dir).map_err(|reason| OnnxErrorKind::Tensor {
            name: tname.clone(),
            reason,
        })?;
        let c = Const {
            name: tname.clone(),
            dims: d.dims,
            data: d.data,
            source: Some(tname.clone()),
        };
        env.insert(tname, Val::Const(Rc::new(c)));
    }
    let mut input_protos = Vec::new();
    for vi in &g.input {
        let iname = vi.name.clone().unwrap_or_default();
        // Older exporters list initializers among the inputs too; the initializer wins.
        if env.contains_key(&iname) {
            continue;
        }
        if iname.is_empty() {
            return Err(OnnxErrorKind::Model(
                "a graph input has no name".to_string(),
            ));
        }
        define(&iname, "a graph input")?;
        input_protos.push(vi);
    }
    let mut producer: HashMap<String, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for out in &n.output {
            define(out, &format!("an output of node `{}`", node_label(i, n)))?;
            if !out.is_empty() {
                producer.insert(out.clone(), i);
            }
        }
    }
    let is_defined = |v: &str| defined.contains(v);

    // Outputs: drop those computed through ai.onnx.ml ops; the rest decide the needed nodes.
    let mut notes = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for vi in &g.output {
        let oname = vi.name.clone().unwrap_or_default();
        if !is_defined(&oname) {
            return Err(OnnxErrorKind::Model(format!(
                "graph output `{oname}` is not computed by any node, input or initializer"
            )));
        }
        let cone = cone(&g, &producer, std::slice::from_ref(&oname), &is_defined)?;
        let ml = cone
            .iter()
            .copied()
            .find(|&i| g.node[i].domain.as_deref() == Some("ai.onnx.ml"));
        match ml {
            Some(i) => notes.push(Note::DroppedOutput {
                output: oname,
                node: node_label(i, &g.node[i]),
                op: g.node[i].op_type.clone().unwrap_or_default(),
                domain: "ai.onnx.ml".to_string(),
            }),
            None if !kept.contains(&oname) => kept.push(oname),
            None => {}
        }
    }
    if kept.is_empty() {
        let why = match notes.first() {
            Some(n) => format!("every graph output was dropped ({n})"),
            None => "the graph has no outputs".to_string(),
        };
        return Err(OnnxErrorKind::Model(why));
    }
    let needed = cone(&g, &producer, &kept, &is_defined)?;
    let order = topological(&g, &producer, &needed)?;

    // Support, for every needed node at once.
    let mut missing: Vec<Unsupported> = Vec::new();
    fn report(missing: &mut Vec<Unsupported>, op: String, node: String) {
        match missing.iter_mut().find(|u| u.op == op) {
            Some(u) => u.nodes.push(node),
            None => missing.push(Unsupported {
                op,
                nodes: vec![node],
            }),
        }
    }
    for &i in &order {
        let n = &g.node[i];
        let op = n.op_type.as_deref().unwrap_or("");
        if !is_default_domain(n) {
            report(
                &mut missing,
                format!("{}.{op}", n.domain.as_deref().unwrap_or("")),
                node_label(i, n),
            );
        } else if ops::converter(op).is_none() {
            report(&mut missing, op.to_string(), node_label(i, n));
        }
    }
    if !missing.is_empty() {
        return Err(OnnxErrorKind::Unsupported(missing));
    }

    let mut uses: HashMap<String, usize> = HashMap::new();
    for &i in &order {
        for inp in g.node[i].input.iter().filter(|s| !s.is_empty()) {
            *uses.entry(inp.clone()).or_default() += 1;
        }
    }
    for o in &kept {
        *uses.entry(o.clone()).or_default() += 1;
    }
    let mut cx = Ctx {
        graph,
        opset,
        model_dir,
        types: HashMap::new(),
        node_names: defined.clone(),
        weight_names: HashSet::new(),
        file_weights: HashMap::new(),
        const_nodes: HashMap::new(),
        uses,
        fusable: HashSet::new(),
    };
    for vi in input_protos {
        let iname = vi.name.clone().unwrap_or_default();
        let ty = input_type(vi).map_err(|reason| OnnxErrorKind::Input {
            name: iname.clone(),
            reason,
        })?;
        let id = cx.graph.add_input(iname.clone(), ty.clone());
        cx.types.insert(id, ty);
        env.insert(iname, Val::Node(id));
    }

    let mut first_invalid: Option<OnnxErrorKind> = None;
    for &i in &order {
        let n = &g.node[i];
        let op = n.op_type.clone().unwrap_or_default();
        // A node whose operand failed is skipped: its own error was reported.
        let Some(inputs) = n
            .input
            .iter()
            .map(|s| {
                if s.is_empty() {
                    Some(None)
                } else {
                    env.get(s).cloned().map(Some)
                }
            })
            .collect::<Option<Vec<Option<Val>>>>()
        else {
            continue;
        };
        let used: Vec<bool> = n
            .output
            .iter()
            .map(|o| !o.is_empty() && cx.uses.get(o).copied().unwrap_or(0) > 0)
            .collect();
        let node_in = NodeIn {
            proto: n,
            inputs,
            used: used.clone(),
        };
        let convert = ops::converter(&op).expect("support checked above");
        let result = convert(&mut cx, &node_in).and_then(|vals| {
            for (k, u) in used.iter().enumerate() {
                if *u && vals.get(k).is_none_or(Option::is_none) {
                    return Err(unsupported(format!("output #{k}")));
                }
            }
            Ok(vals)
        });
        match result {
            Ok(vals) => {
                for (out, v) in n.output.iter().zip(vals) {
                    if let Some(v) = v
                        && !out.is_empty()
                    {
                        env.insert(out.clone(), v);
                    }
                }
            }
            Err(Conv::Unsupported(what)) => {
                report(&mut missing, format!("{op} ({what})"), node_label(i, n))
            }
            Err(Conv::Invalid(reason)) => {
                first_invalid.get_or_insert(OnnxErrorKind::Node {
                    node: node_label(i, n),
                    op: op.clone(),
                    reason,
                });
            }
        }
    }
    if !missing.is_empty() {
        return Err(OnnxErrorKind::Unsupported(missing));
    }
    if let Some(e) = first_invalid {
        return Err(e);
    }

    // Outputs keep their ONNX names.
    let mut outputs: Vec<NodeId> = Vec::new();
    for oname in &kept {
        let v = env.get(oname).cloned().ok_or_else(|| {
            OnnxErrorKind::Model(format!("graph output `{oname}` was not computed"))
        })?;
        let id = match v {
            Val::Node(id) if cx.graph.node(id).name == *oname => id,
            Val::Node(id) => {
                let to_name = |e| output_error(oname, e);
                cx.add(oname.clone(), Op::Identity, &[id])
                    .map_err(to_name)?
            }
            Val::Const(c) if c.name == *oname => cx
                .node_of(&Val::Const(c))
                .map_err(|e| output_error(oname, e))?,
            Val::Const(c) => {
                let to_name = |e| output_error(oname, e);
                let w = cx.weight(&c).map_err(to_name)?;
                cx.add(
                    oname.clone(),
                    Op::Constant(sprig_ir::op::Constant { value: w }),
                    &[],
                )
                .map_err(to_name)?
            }
        };
        if !outputs.contains(&id) {
            outputs.push(id);
        }
    }
    let mut graph = cx.graph;
    graph.set_outputs(outputs);
    match sprig_ir::verify(&graph) {
        Ok(info) => Ok(Imported { graph, info, notes }),
        Err(errors) => Err(OnnxErrorKind::Verify(
            errors
                .into_iter()
                .map(|e| match e.at {
                    sprig_ir::Location::Node(id) if graph.contains(id) => {
                        format!("`{}`: {}", graph.node(id).name, e.message)
                    }
                    _ => e.message,
                })
                .collect(),
        )),
    }
}

fn output_error(output: &str, e: Conv) -> OnnxErrorKind {
    let reason = match e {
        Conv::Unsupported(m) | Conv::Invalid(m) => m,
    };
    OnnxErrorKind::Model(format!("graph output `{output}`: {reason}"))
}

/// The nodes the values `from` depend on, nearest first; an input no one defines is an error.
fn cone(
    g: &GraphProto,
    producer: &HashMap<String, usize>,
    from: &[String],
    is_defined: &dyn Fn(&str) -> bool,
) -> Result<Vec<usize>, OnnxErrorKind> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut queue: VecDeque<usize> = from
        .iter()
        .filter_map(|v| producer.get(v).copied())
        .collect();
    while let Some(i) = queue.pop_front() {
        if !seen.insert(i) {
            continue;
        }
        out.push(i);
        let n = &g.node[i];
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if !is_defined(inp) {
                return Err(OnnxErrorKind::Node {
                    node: node_label(i, n),
                    op: n.op_type.clone().unwrap_or_default(),
                    reason: format!(
                        "reads `{inp}`, which no node, graph input or initializer defines (a missing initializer?)"
                    ),
                });
            }
            if let Some(&p) = producer.get(inp) {
                queue.push_back(p);
            }
        }
        // Subgraphs (If, Loop) may read outer values; their ops are unsupported anyway.
    }
    Ok(out)
}

/// The needed nodes in a deterministic topological order (ready nodes by position); a cycle is
/// an error naming its nodes.
fn topological(
    g: &GraphProto,
    producer: &HashMap<String, usize>,
    needed: &[usize],
) -> Result<Vec<usize>, OnnxErrorKind> {
    let set: HashSet<usize> = needed.iter().copied().collect();
    let mut pending: BTreeMap<usize, usize> = BTreeMap::new();
    let mut users: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in needed {
        let mut count = 0;
        for inp in g.node[i].input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp).filter(|p| set.contains(p)) {
                count += 1;
                users.entry(p).or_default().push(i);
            }
        }
        pending.insert(i, count);
    }
    let mut ready: std::collections::BTreeSet<usize> = pending
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(&i, _)| i)
        .collect();
    let mut order = Vec::with_capacity(needed.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in users.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            let c = pending.get_mut(&u).expect("needed node");
            *c -= 1;
            if *c == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() < needed.len() {
        let done: HashSet<usize> = order.iter().copied().collect();
        let stuck: Vec<String> = pending
            .keys()
            .filter(|i| !done.contains(i))
            .take(10)
            .map(|&i| format!("`{}`", node_label(i, &g.node[i])))
            .collect();
        return Err(OnnxErrorKind::Model(format!(
            "the graph has a cycle through nodes {}",
            stuck.join(", ")
        )));
    }
    Ok(order)
}
