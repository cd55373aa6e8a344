//! Lowering: resolves the names of an [`Ast`], loads the weights it refers to, builds the
//! [`Graph`] and verifies it, turning every problem into a diagnostic at its source text.
//!
//! Invariants:
//! - Either a graph that verified (with its [`GraphInfo`]) or every error of the file; the
//!   verifier runs only when names and attributes resolved, so its errors never cascade from
//!   earlier ones.
//! - Weights enter the arena in declaration order, then undeclared file weights in order of first
//!   use; random weights stay lazy.

use super::ast::*;
use crate::diag::{Diag, Diagnostics};
use crate::files::{self, WeightFile};
use sprig_ir::op::{Arity, BuildError};
use sprig_ir::{
    Distribution, Graph, GraphInfo, Location, NodeId, Op, OpKind, RandomInit, TensorType, Weight,
    WeightId,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A description that parsed and verified.
#[derive(Debug)]
pub struct Parsed {
    pub graph: Graph,
    pub info: GraphInfo,
}

/// The closest candidate to `name`, when one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit && *d < name.chars().count())
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean(found: Option<&str>, prefix: &str) -> String {
    found.map_or(String::new(), |c| format!("; did you mean `{prefix}{c}`?"))
}

fn span_of(s: &Span) -> sprig_ir::Span {
    sprig_ir::Span::new(s.start, s.end)
}

struct Lowerer {
    diags: Vec<Diag>,
    graph: Graph,
    file: Option<WeightFile>,
    /// False when a weights file was named but could not be read (its error is already out).
    file_ok: bool,
    /// Declared weights; `None` for declarations that failed (their uses raise no more errors).
    weight_names: HashMap<String, (Option<WeightId>, Span)>,
}

/// Lowers a parsed description. `base_dir` resolves the weights file name; `diags` holds the
/// syntax errors found so far.
pub fn lower(
    ast: Ast,
    source: &str,
    file_name: &str,
    base_dir: Option<&Path>,
    diags: Vec<Diag>,
) -> Result<Parsed, Diagnostics> {
    let name = ast
        .network
        .as_ref()
        .map_or_else(|| default_network_name(file_name), |n| n.value.clone());
    let mut l = Lowerer {
        diags,
        graph: Graph::new(name),
        file: None,
        file_ok: true,
        weight_names: HashMap::new(),
    };
    l.load_weights_file(&ast, base_dir);
    for decl in &ast.weights {
        l.declare_weight(decl);
    }
    for name in &ast.broken_weights {
        l.weight_names
            .entry(name.value.clone())
            .or_insert((None, name.span.clone()));
    }
    let nodes = l.define_values(&ast);
    l.connect(&ast, &nodes);
    l.mark_outputs(&ast, &nodes, source);
    if !l.diags.is_empty() {
        return Err(Diagnostics::new(file_name, source, l.diags));
    }
    match sprig_ir::verify(&l.graph) {
        Ok(info) => Ok(Parsed {
            graph: l.graph,
            info,
        }),
        Err(errors) => {
            let diags = errors
                .into_iter()
                .map(|e| verify_diag(&l.graph, &ast, e))
                .collect();
            Err(Diagnostics::new(file_name, source, diags))
        }
    }
}

/// A weights file: an ONNX model (its initializers, by name) when its content starts like one,
/// else safetensors.
fn read_weights_file(path: &Path) -> Result<WeightFile, String> {
    let mut head = [0u8; 9];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    // A safetensors file starts with its header length, then `{`.
    let safetensors = n == head.len() && head[8] == b'{';
    if !safetensors && crate::onnx::looks_like_onnx(&head[..n]) {
        crate::onnx::read_initializers(path).map_err(|e| e.to_string())
    } else {
        files::read_safetensors(path).map_err(|e| e.to_string())
    }
}

/// The file stem when it is a plain name, else `network`.
fn default_network_name(file_name: &str) -> String {
    let stem = Path::new(file_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("network");
    if stem.is_empty() {
        "network".to_string()
    } else {
        stem.to_string()
    }
}

fn verify_diag(graph: &Graph, ast: &Ast, e: sprig_ir::VerifyError) -> Diag {
    let (span, label) = match e.at {
        Location::Node(id) if graph.contains(id) => (
            graph.node(id).span.map(|s| s.range()),
            format!("in `{}`", graph.node(id).name),
        ),
        Location::Weight(w) if w.index() < graph.weights.len() => (
            graph.weights[w].span.map(|s| s.range()),
            format!("weight `@{}`", graph.weights[w].name),
        ),
        _ => (None, String::new()),
    };
    let span = span
        .or_else(|| ast.network.as_ref().map(|n| n.span.clone()))
        .unwrap_or(0..0);
    let label = if label.is_empty() {
        "here".to_string()
    } else {
        label
    };
    Diag::error(e.message, span, label)
}

impl Lowerer {
    fn load_weights_file(&mut self, ast: &Ast, base_dir: Option<&Path>) {
        let Some(file) = &ast.weights_file else {
            return;
        };
        self.graph.weights_file = Some(file.value.clone());
        let path = base_dir.map_or_else(
            || Path::new(&file.value).to_path_buf(),
            |d| d.join(&file.value),
        );
        match read_weights_file(&path) {
            Ok(w) => self.file = Some(w),
            Err(e) => {
                self.file_ok = false;
                self.diags.push(Diag::error(
                    format!("cannot read the weights file: {e}"),
                    file.span.clone(),
                    "named here",
                ));
            }
        }
    }

    fn duplicate_weight(&mut self, name: &Spanned<String>) -> bool {
        if let Some((_, first)) = self.weight_names.get(&name.value) {
            let first = first.clone();
            self.diags.push(
                Diag::error(
                    format!("weight `@{}` is declared twice", name.value),
                    name.span.clone(),
                    "declared again here",
                )
                .with_secondary(first, "first declared here"),
            );
            return true;
        }
        false
    }

    /// The values of tensor `key` from the weights file, or a diagnostic at `span`.
    fn file_tensor(
        &mut self,
        weight: &str,
        key: &str,
        span: &Span,
    ) -> Option<(Vec<usize>, Arc<[f32]>)> {
        let Some(file) = &self.file else {
            if self.file_ok {
                self.diags.push(
                    Diag::error(
                        format!("weight `@{weight}` has no values"),
                        span.clone(),
                        "no `= ...` here and no weights file",
                    )
                    .with_note(
                        "name a safetensors or ONNX file with `weights \"FILE\"`, or give values: `= [..]` or `= random(normal(0, 0.01), seed = 1)`",
                    ),
                );
            }
            return None;
        };
        match file.get(key) {
            Some(t) => Some((t.shape.clone(), t.values.clone())),
            None => {
                let hint = did_you_mean(suggest(key, file.names()), "");
                let file_name = self.graph.weights_file.clone().unwrap_or_default();
                self.diags.push(Diag::error(
                    format!("missing weight: `{file_name}` has no tensor `{key}`{hint}"),
                    span.clone(),
                    "not in the weights file",
                ));
                None
            }
        }
    }

    fn declare_weight(&mut self, decl: &WeightDecl) {
        if self.duplicate_weight(&decl.name) {
            return;
        }
        // Registered as failed first; a successful declaration replaces the entry.
        self.weight_names
            .insert(decl.name.value.clone(), (None, decl.name.span.clone()));
        let ty = TensorType::new(decl.ty.dtype, decl.ty.dims.clone());
        if decl.ty.dtype != sprig_ir::DType::F32 {
            self.diags.push(Diag::error(
                format!(
                    "weight `@{}` has element type {}, but weights are f32",
                    decl.name.value, decl.ty.dtype
                ),
                decl.ty.span.clone(),
                "expected f32",
            ));
            return;
        }
        let Some(len) = ty.shape.checked_len() else {
            self.diags.push(Diag::error(
                format!(
                    "weight `@{}` has more elements than memory can address",
                    decl.name.value
                ),
                decl.ty.span.clone(),
                "element count overflows",
            ));
            return;
        };
        let name = decl.name.value.clone();
        let weight = match &decl.init {
            WeightInitExpr::FromFile | WeightInitExpr::FileKey(_) => {
                let (key, key_span) = match &decl.init {
                    WeightInitExpr::FileKey(k) => (k.value.clone(), k.span.clone()),
                    _ => (name.clone(), decl.name.span.clone()),
                };
                let Some((shape, values)) = self.file_tensor(&name, &key, &key_span) else {
                    return;
                };
                if shape != decl.ty.dims {
                    let file_name = self.graph.weights_file.clone().unwrap_or_default();
                    self.diags.push(Diag::error(
                        format!(
                            "wrong weight shape: `@{name}` is declared {ty} but `{file_name}` holds `{key}` as {}",
                            sprig_ir::Shape::new(shape)
                        ),
                        decl.ty.span.clone(),
                        "declared shape",
                    ));
                    return;
                }
                Weight::from_file(name.clone(), ty, key, values)
            }
            WeightInitExpr::Literal(values) => {
                if values.len() != len {
                    self.diags.push(Diag::error(
                        format!(
                            "bad literal: `@{name}` is {ty}, which needs {len} value{}, but {} {} given",
                            if len == 1 { "" } else { "s" },
                            values.len(),
                            if values.len() == 1 { "is" } else { "are" }
                        ),
                        decl.init_span.clone(),
                        format!("{} values", values.len()),
                    ));
                    return;
                }
                Weight::literal(name.clone(), ty, values.clone())
            }
            WeightInitExpr::Random {
                dist,
                density,
                seed,
            } => {
                let dist = match *dist {
                    DistExpr::Normal(mean, std) => Distribution::Normal { mean, std },
                    DistExpr::Uniform(low, high) => Distribution::Uniform { low, high },
                };
                Ok(Weight::random(
                    name.clone(),
                    ty,
                    RandomInit {
                        dist,
                        density: *density,
                        seed: *seed,
                    },
                ))
            }
        };
        match weight {
            Ok(w) => {
                let id = self.graph.add_weight(w.with_span(span_of(&decl.span)));
                self.weight_names
                    .insert(name, (Some(id), decl.name.span.clone()));
            }
            Err(e) => self
                .diags
                .push(Diag::error(e.to_string(), decl.span.clone(), "here")),
        }
    }

    /// The weight called `name`, taking it from the weights file on first use if undeclared.
    fn weight_ref(&mut self, name: &Spanned<String>) -> Option<WeightId> {
        if let Some((id, _)) = self.weight_names.get(&name.value) {
            return *id;
        }
        let in_file = self
            .file
            .as_ref()
            .is_some_and(|f| f.get(&name.value).is_some());
        if !in_file {
            if self.file_ok {
                let mut candidates: Vec<String> = self.weight_names.keys().cloned().collect();
                if let Some(f) = &self.file {
                    candidates.extend(f.names().map(str::to_string));
                }
                candidates.sort();
                let hint = did_you_mean(
                    suggest(&name.value, candidates.iter().map(String::as_str)),
                    "@",
                );
                let reason = match &self.graph.weights_file {
                    Some(f) => format!("not declared and not in `{f}`"),
                    None => "not declared, and there is no weights file".to_string(),
                };
                self.diags.push(Diag::error(
                    format!("missing weight `@{}`{hint}", name.value),
                    name.span.clone(),
                    reason,
                ));
            }
            return None;
        }
        let (shape, values) = self.file_tensor(&name.value, &name.value, &name.span)?;
        let ty = TensorType::f32(shape);
        match Weight::from_file(name.value.clone(), ty, name.value.clone(), values) {
            Ok(w) => {
                let id = self.graph.add_weight(w.with_span(span_of(&name.span)));
                self.weight_names
                    .insert(name.value.clone(), (Some(id), name.span.clone()));
                Some(id)
            }
            Err(e) => {
                self.diags
                    .push(Diag::error(e.to_string(), name.span.clone(), "here"));
                None
            }
        }
    }

    /// Creates a node for every input and `let`; the map gives `None` for names whose op failed,
    /// so their uses raise no further errors.
    fn define_values(&mut self, ast: &Ast) -> HashMap<String, (Option<NodeId>, Span)> {
        let mut nodes: HashMap<String, (Option<NodeId>, Span)> = ast
            .broken_values
            .iter()
            .map(|n| (n.value.clone(), (None, n.span.clone())))
            .collect();
        let mut claim = |l: &mut Self, name: &Spanned<String>| -> bool {
            if let Some((_, first)) = nodes.get(&name.value) {
                l.diags.push(
                    Diag::error(
                        format!("duplicate name `{}`", name.value),
                        name.span.clone(),
                        "defined again here",
                    )
                    .with_secondary(first.clone(), "first defined here"),
                );
                return false;
            }
            nodes.insert(name.value.clone(), (None, name.span.clone()));
            true
        };
        let mut defined = Vec::new();
        for input in &ast.inputs {
            if claim(self, &input.name) {
                let ty = TensorType::new(input.ty.dtype, input.ty.dims.clone());
                let id = self.graph.add_input(input.name.value.clone(), ty);
                self.graph.node_mut(id).span = Some(span_of(&input.ty.span));
                defined.push((input.name.value.clone(), id));
            }
        }
        for stmt in &ast.lets {
            if !claim(self, &stmt.name) {
                continue;
            }
            if let Some(op) = self.build_op(&stmt.call) {
                let id = self.graph.add_node(stmt.name.value.clone(), op, &[]);
                self.graph.node_mut(id).span = Some(span_of(&stmt.call.span));
                defined.push((stmt.name.value.clone(), id));
            }
        }
        for (name, id) in defined {
            if let Some(entry) = nodes.get_mut(&name) {
                entry.0 = Some(id);
            }
        }
        nodes
    }

    fn build_op(&mut self, call: &Call) -> Option<Op> {
        let Some(kind) = OpKind::from_name(&call.op.value) else {
            let hint = did_you_mean(suggest(&call.op.value, OpKind::callable_names()), "");
            self.diags.push(
                Diag::error(
                    format!("unknown op `{}`{hint}", call.op.value),
                    call.op.span.clone(),
                    "not an operation sprig knows",
                )
                .with_note(format!(
                    "sprig's ops: {}",
                    OpKind::callable_names().collect::<Vec<_>>().join(", ")
                )),
            );
            return None;
        };
        let schema = kind.schema();
        let mut ok = true;
        let mut weights = Vec::new();
        let mut attrs = Vec::new();
        let mut values = 0usize;
        let mut seen_attr: Option<Span> = None;
        for arg in &call.args {
            match arg {
                Arg::Value(v) | Arg::Weight(v) if seen_attr.is_some() => {
                    self.diags.push(
                        Diag::error(
                            "operands must come before attributes",
                            v.span.clone(),
                            "operand after an attribute",
                        )
                        .with_secondary(seen_attr.clone().unwrap_or_default(), "first attribute"),
                    );
                    ok = false;
                }
                Arg::Value(_) => values += 1,
                Arg::Weight(w) => match self.weight_ref(w) {
                    Some(id) => weights.push(id),
                    None => ok = false,
                },
                Arg::Attr(k, v) => {
                    seen_attr.get_or_insert(k.span.clone());
                    attrs.push((k.value.clone(), v.value.clone()));
                }
            }
        }
        if !schema.values.accepts(values) {
            let what = match schema.values {
                Arity::Exactly(0) => "no value operands".to_string(),
                a => a.to_string(),
            };
            self.diags.push(Diag::error(
                format!("`{}` takes {what}, found {values}", schema.name),
                call.span.clone(),
                format!(
                    "{values} value operand{}",
                    if values == 1 { "" } else { "s" }
                ),
            ));
            ok = false;
        }
        if !ok {
            return None;
        }
        match Op::build(kind, &weights, &attrs) {
            Ok(op) => Some(op),
            Err(e) => {
                let span = match &e {
                    BuildError::UnknownAttr { attr, .. } | BuildError::DuplicateAttr { attr } => {
                        attr_key_span(call, attr, matches!(e, BuildError::DuplicateAttr { .. }))
                    }
                    BuildError::BadAttr { attr, .. } => attr_value_span(call, attr),
                    BuildError::WeightCount { .. } => None,
                };
                let label = match &e {
                    BuildError::WeightCount { .. } => {
                        format!("{} weight operand(s)", weights.len())
                    }
                    BuildError::UnknownAttr { .. } => "unknown attribute".to_string(),
                    BuildError::DuplicateAttr { .. } => "given again here".to_string(),
                    BuildError::BadAttr { .. } => "bad value".to_string(),
                };
                let mut diag = Diag::error(e.to_string(), span.unwrap_or(call.span.clone()), label);
                if let BuildError::UnknownAttr { attr, .. } = &e
                    && let Some(s) = suggest(attr, schema.attrs.iter().copied())
                {
                    diag = diag.with_note(format!("did you mean `{s}`?"));
                }
                self.diags.push(diag);
                None
            }
        }
    }

    fn connect(&mut self, ast: &Ast, nodes: &HashMap<String, (Option<NodeId>, Span)>) {
        let mut names: Vec<&str> = nodes.keys().map(String::as_str).collect();
        names.sort_unstable();
        for stmt in &ast.lets {
            let Some((Some(id), _)) = nodes.get(&stmt.name.value) else {
                continue;
            };
            // A duplicate `let` maps to the first definition's node; only that one is connected.
            if self.graph.node(*id).span != Some(span_of(&stmt.call.span)) {
                continue;
            }
            let mut pos = 0u32;
            for arg in &stmt.call.args {
                let Arg::Value(v) = arg else { continue };
                match nodes.get(&v.value) {
                    Some((Some(operand), _)) => {
                        self.graph.add_edge_at(*operand, *id, pos);
                    }
                    Some((None, _)) => {}
                    None => {
                        let hint = did_you_mean(suggest(&v.value, names.iter().copied()), "");
                        self.diags.push(Diag::error(
                            format!("undefined name `{}`{hint}", v.value),
                            v.span.clone(),
                            "not defined anywhere in this file",
                        ));
                    }
                }
                pos += 1;
            }
        }
    }

    fn mark_outputs(
        &mut self,
        ast: &Ast,
        nodes: &HashMap<String, (Option<NodeId>, Span)>,
        source: &str,
    ) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for out in &ast.outputs {
            if let Some(first) = seen.get(out.value.as_str()) {
                self.diags.push(
                    Diag::error(
                        format!("`{}` is marked as an output twice", out.value),
                        out.span.clone(),
                        "again here",
                    )
                    .with_secondary(first.clone(), "first here"),
                );
                continue;
            }
            seen.insert(&out.value, out.span.clone());
            match nodes.get(&out.value) {
                Some((Some(id), _)) => self.graph.add_output(*id),
                Some((None, _)) => {}
                None => self.diags.push(Diag::error(
                    format!("undefined name `{}`", out.value),
                    out.span.clone(),
                    "no value of this name to output",
                )),
            }
        }
        if ast.outputs.is_empty() && !ast.broken_output {
            let end = source.trim_end().len();
            self.diags.push(
                Diag::error(
                    format!("network `{}` has no outputs", self.graph.name),
                    ast.network.as_ref().map_or(end..end, |n| n.span.clone()),
                    "nothing is marked as an output",
                )
                .with_note(
                    "mark a value as a result with `output NAME = op(...)` or `output NAME`",
                ),
            );
        }
    }
}

fn attr_key_span(call: &Call, attr: &str, last: bool) -> Option<Span> {
    let mut spans = call.args.iter().filter_map(|a| match a {
        Arg::Attr(k, _) if k.value == attr => Some(k.span.clone()),
        _ => None,
    });
    if last {
        spans.next_back()
    } else {
        spans.next()
    }
}

fn attr_value_span(call: &Call, attr: &str) -> Option<Span> {
    call.args.iter().find_map(|a| match a {
        Arg::Attr(k, v) if k.value == attr => Some(v.span.clone()),
        _ => None,
    })
}
