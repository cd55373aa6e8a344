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
    #[command(flatten)]
    pub pipeline: PipelineArgs,
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
    let parsed = args.pipeline.apply(parsed)?;
    let packed = sprig_pack::pack(&parsed.graph, &parsed.info)
        .map_err(|e| InputError(format!("error: {}: {e}", args.model.display())))?;
    let write = |path: &PathBuf, bytes: &[u8]| {
        sprig_front::files::write_atomic(path, |f| f.write_all(bytes))
            .map_err(|e| InputError(format!("error: {e}")))
    };
    write(&args.output, &packed.bytes)?;
    if let Some(path) = &args.report_json {
        let mut text = serde_json::to_string_pretty(&report_json(&packed.report))?;
        text.push('\n');
        write(path, text.as_bytes())?;
    }
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{}wrote {} ({} bytes)",
            report_table(&packed.report),
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
