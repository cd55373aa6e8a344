//! `sprig dump`: a model's IR as sprig text, JSON or Graphviz dot.
//!
//! Invariant: the text form is exactly `sprig_ir::print` (with type comments), which sprig reads
//! back to an equal graph; JSON uses snake_case keys and stable key order.
//!
//! Weights files are named so that the dump reads back where it is written: the weights file of
//! a text description, or of an imported ONNX model (the model itself), is named relative to the
//! output file's directory (or, on standard output, relative to the working directory). `--save-weights FILE`
//! writes every weight to a safetensors file and the dump names that file instead, with every
//! weight read from it.
//!
//! With `--passes`/`--preset` the dump shows the IR after the pipeline (or after `--stop-after
//! PASS`); weight encodings appear as comments after each weight.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use sprig_ir::op::AttrValue;
use sprig_ir::{Distribution, Graph, GraphInfo, Op, WeightInit};
use std::fmt::Write;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// sprig's text format (reads back with every sprig command).
    Text,
    /// One JSON object: network, inputs, weights, nodes, outputs.
    Json,
    /// Graphviz dot (render with `dot -Tsvg`).
    Dot,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write every weight to this safetensors file; the dump reads its weights from it.
    #[arg(long, value_name = "FILE")]
    pub save_weights: Option<PathBuf>,
    /// Print every value of weights computed by passes (by default those over 4096 values are
    /// written `= computed`, which does not read back; --save-weights keeps them all).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub pipeline: crate::pipeline::PipelineArgs,
}

/// Computed weights larger than this are elided from text dumps unless `--full` is given.
const MAX_COMPUTED_VALUES: usize = 4096;

/// `target` as the dump at `output` (standard output when `None`) must name it: relative to the
/// output's directory when both lie in the same directory, else as given when writing to
/// standard output (relative to the working directory, where a redirect lands), else absolute.
fn name_from_output(target: &Path, output: Option<&Path>) -> String {
    let dir_of = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    match output {
        None => target.display().to_string(),
        Some(out) if dir_of(out) == dir_of(target) => target.file_name().map_or_else(
            || target.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        ),
        Some(_) => std::path::absolute(target)
            .unwrap_or_else(|_| target.to_path_buf())
            .display()
            .to_string(),
    }
}

/// Writes every weight to `path` (safetensors, keyed by weight name) and makes the graph read
/// them from there.
fn save_weights(graph: &mut Graph, path: &Path) -> anyhow::Result<()> {
    let tensors: Vec<(String, sprig_ir::Shape, std::sync::Arc<[f32]>)> = graph
        .weights
        .iter()
        .map(|(_, w)| (w.name.clone(), w.ty.shape.clone(), w.values()))
        .collect();
    let borrowed: Vec<(String, sprig_ir::Shape, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
        .collect();
    sprig_front::files::write_safetensors(path, &borrowed, None)
        .map_err(|e| crate::InputError(format!("error: {e}")))?;
    let ids: Vec<_> = graph.weights.iter().map(|(id, _)| id).collect();
    for id in ids {
        let w = graph.weights.get_mut(id);
        w.init = WeightInit::File {
            key: w.name.clone(),
        };
    }
    Ok(())
}

pub fn run(args: DumpArgs) -> anyhow::Result<()> {
    let loaded = crate::run::load_noted(&args.model)?;
    let mut parsed = args.pipeline.apply(loaded.parsed)?;
    let output = args.output.as_deref();
    if let Some(path) = &args.save_weights {
        save_weights(&mut parsed.graph, path)?;
        parsed.graph.weights_file = Some(name_from_output(path, output));
    } else if loaded.format == sprig_front::ModelFormat::Onnx {
        parsed.graph.weights_file = Some(name_from_output(&args.model, output));
    } else if let Some(file) = &parsed.graph.weights_file {
        let model_dir = args.model.parent().unwrap_or(Path::new(""));
        parsed.graph.weights_file = Some(name_from_output(&model_dir.join(file), output));
    }
    let text = match args.format {
        Format::Text => {
            let options = sprig_ir::print::PrintOptions {
                max_computed_values: (!args.full).then_some(MAX_COMPUTED_VALUES),
            };
            sprig_ir::print::print_with(&parsed.graph, Some(&parsed.info), &options)
        }
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&to_json(&parsed.graph, &parsed.info))?;
            s.push('\n');
            s
        }
        Format::Dot => to_dot(&parsed.graph, &parsed.info),
    };
    match &args.output {
        Some(path) => sprig_front::files::write_atomic(path, |f| f.write_all(text.as_bytes()))
            .map_err(|e| crate::InputError(format!("error: {e}")))?,
        None => {
            #[allow(clippy::print_stdout)]
            {
                print!("{text}");
            }
        }
    }
    Ok(())
}

fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Int(i) => json!(i),
        AttrValue::Float(f) => json!(f),
        AttrValue::Bool(b) => json!(b),
        AttrValue::Ints(l) => json!(l),
        AttrValue::DType(d) => json!(d.name()),
    }
}

fn type_json(ty: &sprig_ir::TensorType) -> Value {
    json!({ "dtype": ty.dtype, "shape": ty.shape })
}

/// The graph as one JSON object.
pub fn to_json(graph: &Graph, info: &GraphInfo) -> Value {
    let inputs: Vec<Value> = graph
        .inputs()
        .iter()
        .map(|&id| json!({ "name": graph.node(id).name, "type": type_json(info.ty(id)) }))
        .collect();
    let weights: Vec<Value> = graph
        .weights
        .iter()
        .map(|(_, w)| {
            let init = match &w.init {
                WeightInit::File { key } => json!({ "kind": "file", "key": key }),
                WeightInit::Random(r) => {
                    let dist = match r.dist {
                        Distribution::Normal { mean, std } => {
                            json!({ "kind": "normal", "mean": mean, "std": std })
                        }
                        Distribution::Uniform { low, high } => {
                            json!({ "kind": "uniform", "low": low, "high": high })
                        }
                    };
                    json!({ "kind": "random", "distribution": dist, "density": r.density, "seed": r.seed })
                }
                WeightInit::Literal => json!({ "kind": "literal", "values": &*w.values() }),
                WeightInit::Computed => json!({ "kind": "computed", "values": &*w.values() }),
            };
            json!({
                "name": w.name,
                "type": type_json(&w.ty),
                "params": w.len(),
                "init": init,
                "encoding": w.encoding.to_string(),
            })
        })
        .collect();
    let nodes: Vec<Value> = info
        .order
        .iter()
        .filter(|&&id| !matches!(graph.node(id).op, Op::Input(_)))
        .map(|&id| {
            let node = graph.node(id);
            let operands: Vec<&str> = graph
                .operands(id)
                .into_iter()
                .map(|o| graph.node(o).name.as_str())
                .collect();
            let weights: Vec<&str> = node
                .op
                .weights()
                .into_iter()
                .map(|w| graph.weights[w].name.as_str())
                .collect();
            let attrs: Map<String, Value> = node
                .op
                .attrs()
                .iter()
                .map(|(k, v)| (k.clone(), attr_json(v)))
                .collect();
            json!({
                "name": node.name,
                "op": node.op.name(),
                "operands": operands,
                "weights": weights,
                "attrs": attrs,
                "type": type_json(info.ty(id)),
            })
        })
        .collect();
    let outputs: Vec<&str> = graph
        .outputs()
        .iter()
        .map(|&id| graph.node(id).name.as_str())
        .collect();
    json!({
        "network": graph.name,
        "weights_file": graph.weights_file,
        "parameters": graph.weights.parameter_count(),
        "inputs": inputs,
        "weights": weights,
        "nodes": nodes,
        "outputs": outputs,
    })
}

/// A dot string literal.
fn dot_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The graph for Graphviz: one box per value (name, op, weights, type), edges from operands.
pub fn to_dot(graph: &Graph, info: &GraphInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_str(&graph.name));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(
        out,
        "  node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    for &id in &info.order {
        let node = graph.node(id);
        let mut label = match &node.op {
            Op::Input(_) => format!("input {}", node.name),
            op => format!("{} = {}", node.name, op.name()),
        };
        for w in node.op.weights() {
            let w = &graph.weights[w];
            let _ = write!(label, "\n@{} {}", w.name, w.ty.shape);
        }
        let _ = write!(label, "\n{}", info.ty(id));
        let style = if graph.outputs().contains(&id) {
            ", style=bold"
        } else if matches!(node.op, Op::Input(_)) {
            ", shape=ellipse"
        } else {
            ""
        };
        let _ = writeln!(out, "  n{} [label={}{style}];", id.index(), dot_str(&label));
    }
    for &id in &info.order {
        for operand in graph.operands(id) {
            let _ = writeln!(out, "  n{} -> n{};", operand.index(), id.index());
        }
    }
    out.push_str("}\n");
    out
}
