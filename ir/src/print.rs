//! The text printer: writes a graph in sprig's text format, which the front end reads back.
//!
//! Invariants:
//! - Reading what [`print`] writes gives an equal graph (`parse(print(g)) == g`), for every graph
//!   whose weights are expressible in text (file, literal, random, and computed values, which are
//!   written as literals).
//! - Output is deterministic: weights in arena order, nodes in the graph's deterministic
//!   topological order (id order when there is a cycle), attributes in schema order.
//! - Names that are not plain identifiers, or that collide with keywords, are written quoted.

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::verify::GraphInfo;
use crate::weights::{Distribution, Weight, WeightInit};
use std::fmt::{self, Write};

/// Words with a meaning of their own in the format; names spelled like them are quoted.
pub const KEYWORDS: &[&str] = &[
    "network", "weights", "weight", "input", "output", "let", "random", "normal", "uniform",
    "true", "false", "inf", "nan",
];

/// Whether `name` can be written bare: `[A-Za-z_][A-Za-z0-9_.]*` and not a keyword.
pub fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !KEYWORDS.contains(&name)
}

/// A string literal with `\\`, `\"`, `\n`, `\t` and `\u{..}` escapes.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// A value or weight name, quoted when needed.
#[derive(Clone, Copy, Debug)]
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain_name(self.0) {
            f.write_str(self.0)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

/// An f64 written so that it reads back as the same f64 (shortest round-trip form).
#[derive(Clone, Copy, Debug)]
pub struct FloatText(pub f64);

impl fmt::Display for FloatText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        float_text(f, self.0)
    }
}

/// An f32 written in its shortest round-trip form.
#[derive(Clone, Copy, Debug)]
pub struct F32Text(pub f32);

impl fmt::Display for F32Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        float_text(f, self.0)
    }
}

fn float_text<T: fmt::Debug + Into<f64> + Copy>(f: &mut fmt::Formatter<'_>, x: T) -> fmt::Result {
    let v: f64 = x.into();
    if v.is_nan() {
        f.write_str("nan")
    } else if v.is_infinite() {
        f.write_str(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        // `Debug` of floats is the shortest text that parses back to the same value, with an
        // exponent for very large and very small magnitudes; whole numbers drop their `.0`.
        let text = format!("{x:?}");
        f.write_str(text.strip_suffix(".0").unwrap_or(&text))
    }
}

/// Literal values per line in printed weights.
const VALUES_PER_LINE: usize = 8;

/// How much the printer writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrintOptions {
    /// Computed weights with more elements than this are written `= computed` (which does not
    /// read back) instead of as literals; `None` writes every value.
    pub max_computed_values: Option<usize>,
}

fn write_weight(out: &mut String, w: &Weight, options: &PrintOptions) -> fmt::Result {
    write!(out, "weight @{} : {}", Name(&w.name), w.ty)?;
    match &w.init {
        WeightInit::File { key } => {
            if key != &w.name {
                write!(out, " = file({})", Quoted(key))?;
            }
        }
        WeightInit::Random(r) => {
            out.write_str(" = random(")?;
            match r.dist {
                Distribution::Normal { mean, std } => {
                    write!(out, "normal({}, {})", FloatText(mean), FloatText(std))?
                }
                Distribution::Uniform { low, high } => {
                    write!(out, "uniform({}, {})", FloatText(low), FloatText(high))?
                }
            }
            if r.density != 1.0 {
                write!(out, ", density = {}", FloatText(r.density))?;
            }
            write!(out, ", seed = {})", r.seed)?;
        }
        WeightInit::Computed if options.max_computed_values.is_some_and(|max| w.len() > max) => {
            out.write_str(" = computed")?;
        }
        WeightInit::Literal | WeightInit::Computed => {
            let values = w.values();
            out.write_str(" = [")?;
            let multiline = values.len() > VALUES_PER_LINE;
            for (i, v) in values.iter().enumerate() {
                if multiline && i % VALUES_PER_LINE == 0 {
                    out.write_str("\n    ")?;
                } else if i > 0 {
                    out.write_str(" ")?;
                }
                write!(out, "{}", F32Text(*v))?;
                if i + 1 < values.len() {
                    out.write_char(',')?;
                }
            }
            if multiline {
                out.write_char('\n')?;
            }
            out.write_char(']')?;
        }
    }
    if !w.encoding.is_dense() {
        write!(out, "  # {}", w.encoding)?;
    }
    out.write_char('\n')
}

fn write_call(out: &mut String, graph: &Graph, id: NodeId) -> fmt::Result {
    let node = graph.node(id);
    write!(out, "{}(", node.op.name())?;
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push_str(", ");
        }
    };
    for operand in graph.operands(id) {
        sep(out);
        write!(out, "{}", Name(&graph.node(operand).name))?;
    }
    for w in node.op.weights() {
        sep(out);
        write!(out, "@{}", Name(&graph.weights[w].name))?;
    }
    for (name, value) in node.op.attrs() {
        sep(out);
        write!(out, "{name} = {value}")?;
    }
    out.write_char(')')
}

/// Column at which type comments start, unless a statement is longer.
const COMMENT_COLUMN: usize = 48;

/// Prints `graph` in the text format. With `info` (from a successful verify), each statement is
/// followed by a comment giving the type of the value it defines.
pub fn print(graph: &Graph, info: Option<&GraphInfo>) -> String {
    print_with(graph, info, &PrintOptions::default())
}

/// [`print`] with options; only the default options guarantee text that reads back.
pub fn print_with(graph: &Graph, info: Option<&GraphInfo>, options: &PrintOptions) -> String {
    let mut out = String::new();
    write_graph(&mut out, graph, info, options).expect("writing to a String cannot fail");
    out
}

fn write_graph(
    out: &mut String,
    graph: &Graph,
    info: Option<&GraphInfo>,
    options: &PrintOptions,
) -> fmt::Result {
    writeln!(out, "network {}", Name(&graph.name))?;
    if let Some(file) = &graph.weights_file {
        writeln!(out, "weights {}", Quoted(file))?;
    }
    if !graph.inputs().is_empty() {
        out.push('\n');
    }
    for &id in graph.inputs() {
        let node = graph.node(id);
        if let Op::Input(input) = &node.op {
            writeln!(out, "input {} : {}", Name(&node.name), input.ty)?;
        }
    }
    if !graph.weights.is_empty() {
        out.push('\n');
    }
    for (_, w) in graph.weights.iter() {
        write_weight(out, w, options)?;
    }

    let order = match info {
        Some(info) => info.order.clone(),
        None => graph
            .topological_order()
            .unwrap_or_else(|_| graph.node_ids().collect()),
    };
    let body: Vec<NodeId> = order
        .into_iter()
        .filter(|&id| !matches!(graph.node(id).op, Op::Input(_)))
        .collect();
    // Outputs are written inline (`output y = ...`) when that preserves their order; otherwise
    // every output is listed at the end (`output y`).
    let inline_order: Vec<NodeId> = body
        .iter()
        .copied()
        .filter(|id| graph.outputs().contains(id))
        .collect();
    let inline = inline_order == graph.outputs();
    if !body.is_empty() {
        out.push('\n');
    }
    for &id in &body {
        let mut line = String::new();
        let keyword = if inline && graph.outputs().contains(&id) {
            "output"
        } else {
            "let"
        };
        write!(line, "{keyword} {} = ", Name(&graph.node(id).name))?;
        write_call(&mut line, graph, id)?;
        if let Some(info) = info {
            let pad = COMMENT_COLUMN.saturating_sub(line.chars().count()).max(2);
            write!(line, "{:pad$}# {}", "", info.ty(id))?;
        }
        out.push_str(&line);
        out.push('\n');
    }
    if !inline {
        for &id in graph.outputs() {
            writeln!(out, "output {}", Name(&graph.node(id).name))?;
        }
    }
    Ok(())
}
