//! `sprig check`: parse, verify, summarise on one screen.

use clap::Args;
use sprig_ir::{Graph, GraphInfo, Op, print::Name};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The model: a .sprig text description.
    pub model: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let parsed = crate::load(&args.model)?;
    let text = summary(&parsed.graph, &parsed.info);
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(())
}

/// Thousands separators for counts people read.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B/KB/MB/GB (powers of 1000, as model sizes are quoted).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

fn summary(graph: &Graph, info: &GraphInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: ok", graph.name);
    let values = |ids: &[sprig_ir::NodeId]| {
        ids.iter()
            .map(|&id| format!("{} : {}", Name(&graph.node(id).name), info.ty(id)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  inputs   {}", values(graph.inputs()));
    let _ = writeln!(out, "  outputs  {}", values(graph.outputs()));
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for id in graph.node_ids() {
        if !matches!(graph.node(id).op, Op::Input(_)) {
            *ops.entry(graph.node(id).op.name()).or_default() += 1;
        }
    }
    let op_list = ops
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let op_count: usize = ops.values().sum();
    let _ = writeln!(out, "  ops      {op_count} ({op_list})");
    let params = graph.weights.parameter_count();
    let _ = writeln!(
        out,
        "  weights  {} tensors, {} parameters ({} as f32)",
        graph.weights.len(),
        grouped(params),
        human_bytes(params * 4)
    );
    if let Some(file) = &graph.weights_file {
        let _ = writeln!(out, "  file     {file}");
    }
    out
}
