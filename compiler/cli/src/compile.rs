//! `sprig compile`: compress a model through a pass pipeline (the deep-compression preset unless
//! `--passes` or `--preset` says otherwise) and write the packed artifact, with a size report in
//! the layout of the Deep Compression paper's tables 2–5.
//!
//! Invariant: every byte count printed or written to `--report-json` is a count of bytes written
//! to the artifact (`sprig_pack::SizeReport`); the total is the artifact's length on disk.

use crate::InputError;
use crate::pipeline::{PipelineArgs, table};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use sprig_pack::SizeReport;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// The preset `compile` runs when no pipeline is given.
pub const DEFAULT_PRESET: &str = "deep-compression";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The packed artifact (.sprigpack): codebooks, Huffman-coded codes and relative indices;
    /// `sprig dump`, `sprig run` read it.
    Cpu,
    /// A program for the EIE accelerator (not available yet: the command fails with exit 1).
    Eie,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// What to compile for: cpu writes the packed artifact; eie is not available yet.
    #[arg(long, value_enum)]
    pub target: Target,
    /// The artifact to write (conventionally OUT.sprigpack).
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Also write the size report as JSON: layers[] {name, shape, params, density, weight_bits,
    /// index_bits, huffman_weight_bits, huffman_index_bits, bytes}, other_bytes, total
    /// {dense_bytes, packed_bytes, ratio}.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write weight histograms (SVG) for every layer before compression and after each pass
    /// that changes the values, into this directory.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Measure top-1 accuracy before and after compression on a labelled data set:
    /// mnist:DIR (MNIST's test split) or npz:FILE (arrays x and y).
    #[arg(long, value_name = "DATA")]
    pub eval_data: Option<String>,
    /// How many samples of --eval-data to use (from the start).
    #[arg(long, default_value_t = 1000)]
    pub eval_samples: usize,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// A layer's weights at each stage worth a plot: before compression, then after every pass that
/// changed them.
type Stages = Vec<(String, Vec<(&'static str, std::sync::Arc<[f32]>)>)>;

fn layer_values(
    graph: &sprig_ir::Graph,
    info: &sprig_ir::GraphInfo,
) -> Vec<(String, std::sync::Arc<[f32]>)> {
    sprig_passes::layers::layers(graph, info)
        .into_iter()
        .filter(|l| !l.is_bias)
        .map(|l| (l.weight_name.clone(), graph.weights[l.weight].values()))
        .collect()
}

pub fn run(mut args: CompileArgs) -> anyhow::Result<()> {
    if args.target == Target::Eie {
        return Err(InputError(
            "error: --target eie is not available yet; use --target cpu for the packed artifact"
                .to_string(),
        )
        .into());
    }
    if args.pipeline.passes.is_none() && args.pipeline.preset.is_none() {
        args.pipeline.preset = Some(DEFAULT_PRESET.to_string());
    }
    let parsed = crate::load(&args.model)?;
    let original = args
        .eval_data
        .is_some()
        .then(|| (parsed.graph.clone(), parsed.info.clone()));
    // Plots hold every stage of every layer; without them no values are held here, so each pass
    // rewrites a layer in place and at most one layer is ever copied.
    let plotting = args.plots.is_some();
    let mut stages: Stages = if plotting {
        layer_values(&parsed.graph, &parsed.info)
            .into_iter()
            .map(|(name, values)| (name, vec![("dense", values)]))
            .collect()
    } else {
        Vec::new()
    };
    let parsed = args
        .pipeline
        .apply_observed(parsed, &mut |pass, graph, info| {
            if !plotting {
                return;
            }
            for (name, values) in layer_values(graph, info) {
                if let Some((_, layer)) = stages.iter_mut().find(|(n, _)| *n == name)
                    && layer
                        .last()
                        .is_some_and(|(_, last)| !std::sync::Arc::ptr_eq(last, &values))
                {
                    layer.push((pass, values));
                }
            }
        })?;
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| {
            InputError(format!(
                "error: {}: cannot create the directory: {e}",
                dir.display()
            ))
        })?;
        for (name, layer) in &stages {
            let views: Vec<(&str, &[f32])> =
                layer.iter().map(|(stage, v)| (*stage, &v[..])).collect();
            crate::plots::write_layer_plots(dir, name, &views)
                .map_err(|e| InputError(format!("error: {}: {e}", dir.display())))?;
        }
    }
    let eval = match (&args.eval_data, &original) {
        (Some(spec), Some((graph, info))) => {
            let data = crate::evaluate::read_dataset(spec, args.eval_samples)?;
            let before = crate::evaluate::accuracy(graph, info, &data)?;
            let after = crate::evaluate::accuracy(&parsed.graph, &parsed.info, &data)?;
            Some((data.labels.len(), before, after))
        }
        _ => None,
    };
    let packed = sprig_pack::pack(&parsed.graph, &parsed.info)
        .map_err(|e| InputError(format!("error: {}: {e}", args.model.display())))?;
    let write = |path: &PathBuf, bytes: &[u8]| {
        sprig_front::files::write_atomic(path, |f| f.write_all(bytes))
            .map_err(|e| InputError(format!("error: {e}")))
    };
    write(&args.output, &packed.bytes)?;
    if let Some(path) = &args.report_json {
        let mut json = report_json(&packed.report);
        if let Some((samples, before, after)) = eval {
            json["eval"] =
                json!({ "samples": samples, "accuracy_before": before, "accuracy_after": after });
        }
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        write(path, text.as_bytes())?;
    }
    #[allow(clippy::print_stdout)]
    {
        print!("{}", report_table(&packed.report));
        if let Some((samples, before, after)) = eval {
            println!(
                "top-1 accuracy on {samples} samples: {:.2}% before, {:.2}% after compression",
                100.0 * before,
                100.0 * after
            );
        }
        println!(
            "wrote {} ({} bytes)",
            args.output.display(),
            packed.bytes.len()
        );
    }
    Ok(())
}

fn optional(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |x| json!(x))
}

/// The report as JSON (keys as in the CLI contract).
pub fn report_json(report: &SizeReport) -> Value {
    let layers: Vec<Value> = report
        .layers
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "shape": l.shape,
                "params": l.params,
                "density": l.density,
                "weight_bits": l.weight_bits,
                "index_bits": l.index_bits,
                "huffman_weight_bits": optional(l.huffman_weight_bits),
                "huffman_index_bits": optional(l.huffman_index_bits),
                "bytes": l.bytes,
            })
        })
        .collect();
    json!({
        "layers": layers,
        "other_bytes": report.other_bytes,
        "total": {
            "dense_bytes": report.total.dense_bytes,
            "packed_bytes": report.total.packed_bytes,
            "ratio": report.total.ratio,
        },
    })
}

fn percent(x: f64) -> String {
    let p = 100.0 * x;
    if p >= 99.95 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn bits(x: f64) -> String {
    if x == 0.0 {
        "-".to_string()
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Bytes in KB (1000 bytes), as the paper's tables give sizes.
fn kilobytes(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

/// The report as a table like the paper's tables 2–5: one row per weight, a row for the rest
/// of the artifact, a total row, and the sizes with the compression ratio.
pub fn report_table(report: &SizeReport) -> String {
    let mut rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.params.to_string(),
                percent(l.density),
                bits(f64::from(l.weight_bits)),
                bits(l.index_bits),
                l.huffman_weight_bits
                    .map_or("-".to_string(), |b| format!("{b:.2}")),
                l.huffman_index_bits
                    .map_or("-".to_string(), |b| format!("{b:.2}")),
                l.bytes.to_string(),
            ]
        })
        .collect();
    let dash = || "".to_string();
    rows.push(vec![
        "(graph, headers, checksum)".to_string(),
        dash(),
        dash(),
        dash(),
        dash(),
        dash(),
        dash(),
        report.other_bytes.to_string(),
    ]);
    let params: u64 = report.layers.iter().map(|l| l.params).sum();
    let kept: f64 = report
        .layers
        .iter()
        .map(|l| l.density * l.params as f64)
        .sum();
    rows.push(vec![
        "total".to_string(),
        params.to_string(),
        percent(if params == 0 {
            0.0
        } else {
            kept / params as f64
        }),
        dash(),
        dash(),
        dash(),
        dash(),
        report.total.packed_bytes.to_string(),
    ]);
    let mut out = table(
        &[
            "layer",
            "#weights",
            "weights%",
            "weight bits",
            "index bits",
            "Huffman b/w",
            "Huffman b/idx",
            "bytes",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "dense {} ({}) -> packed {} bytes ({}): compressed {:.1}x",
        report.total.dense_bytes,
        kilobytes(report.total.dense_bytes),
        report.total.packed_bytes,
        kilobytes(report.total.packed_bytes),
        report.total.ratio
    );
    out
}
