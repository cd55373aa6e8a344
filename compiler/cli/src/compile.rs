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
    /// A program for the EIE accelerator (.eie): per-layer configurations, codebooks, pointers
    /// and packed sparse-matrix entries for each PE; `sprig sim` runs it, `sprig disasm` lists it.
    Eie,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// What to compile for: cpu writes the packed artifact; eie an EIE program (the eie preset
    /// unless --passes or --preset says otherwise).
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
    /// EIE: the PE count of the eie preset (partition and load-balanced pruning), 1-256;
    /// default 64.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pes: Option<u16>,
    /// EIE: inputs whose activation ranges choose the 16-bit fixed-point formats (.npy: one
    /// sample or a batch along a leading axis); default 8 seeded samples of |N(0, 1)|.
    #[arg(long, value_name = "X.npy")]
    pub act_calibration: Option<PathBuf>,
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
    /// Retraining between passes (--train-data) and least-squares refinement
    /// (--calibration-data).
    #[command(flatten)]
    pub training: crate::finetune::TrainingArgs,
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
        return run_eie(args);
    }
    if args.pes.is_some() || args.act_calibration.is_some() {
        return Err(InputError(
            "error: --pes and --act-calibration apply to --target eie only".to_string(),
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
    let mut observe = |pass: &'static str, graph: &sprig_ir::Graph, info: &sprig_ir::GraphInfo| {
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
    };
    let parsed = if args.training.active() {
        let eval = args
            .eval_data
            .as_deref()
            .map(|spec| (spec, args.eval_samples));
        crate::finetune::compress(&args.pipeline, &args.training, eval, parsed, &mut observe)?
    } else {
        args.pipeline.apply_observed(parsed, &mut observe)?
    };
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

/// A compression rate: dense bytes over stored bytes.
fn rate(dense: u64, stored: u64) -> String {
    if stored == 0 {
        "-".to_string()
    } else {
        format!("{:.1}x", dense as f64 / stored as f64)
    }
}

/// The report as a table like the paper's tables 2–5: one row per weight (with its
/// compression rate, dense f32 bytes over the bytes of its section), a row for the rest of the
/// artifact, a total row, and the sizes with the compression ratio.
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
                rate(4 * l.params, l.bytes),
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
        dash(),
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
        rate(report.total.dense_bytes, report.total.packed_bytes),
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
            "rate",
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

/// `--target eie`: stack unquantized LSTMs, compress (the eie preset with `--pes`, unless a
/// pipeline is given), lower to a program, write it atomically and print the per-layer report.
/// Loads a model for the EIE target: every LSTM stacked into one product per time step (see
/// `sprig_eie::lower::stack_lstms`), then verified again.
pub(crate) fn load_stacked(path: &std::path::Path) -> anyhow::Result<sprig_front::Parsed> {
    let sprig_front::Parsed { mut graph, info } = crate::load(path)?;
    if sprig_eie::lower::stack_lstms(&mut graph).is_empty() {
        return Ok(sprig_front::Parsed { graph, info });
    }
    let info = sprig_ir::verify(&graph).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        InputError(format!("error: {}: {}", path.display(), text.join("; ")))
    })?;
    Ok(sprig_front::Parsed { graph, info })
}

fn run_eie(mut args: CompileArgs) -> anyhow::Result<()> {
    use sprig_eie::lower::{LowerOptions, check_supported, eie_pipeline, lower, pipeline_text};
    let model = args.model.display().to_string();
    let input_error = |e: &dyn std::fmt::Display| InputError(format!("error: {model}: {e}"));
    if args.eval_data.is_some() || args.plots.is_some() || args.training.active() {
        return Err(InputError(
            "error: --eval-data, --plots and training options apply to --target cpu".to_string(),
        )
        .into());
    }
    let sprig_front::Parsed { graph, info } = load_stacked(&args.model)?;
    check_supported(&graph, &info).map_err(|e| input_error(&e))?;
    let explicit = args.pipeline.passes.is_some()
        || args.pipeline.preset.as_deref().is_some_and(|p| p != "eie");
    if explicit {
        if args.pes.is_some() {
            return Err(InputError(
                "error: --pes sets the eie preset's PE count; with another pipeline, give partition(pes=N)"
                    .to_string(),
            )
            .into());
        }
    } else {
        let pes = usize::from(args.pes.unwrap_or(64));
        let pipeline = eie_pipeline(&graph, &info, pes).map_err(|e| input_error(&e))?;
        args.pipeline.passes = Some(pipeline_text(&pipeline));
        args.pipeline.preset = None;
    }
    let parsed = args.pipeline.apply(sprig_front::Parsed { graph, info })?;
    if args.pipeline.stop_after.is_some() {
        return Err(InputError(
            "error: --stop-after leaves the graph half compressed; EIE lowering needs the whole pipeline".to_string(),
        )
        .into());
    }
    let mut options = LowerOptions::default();
    if let Some(path) = &args.act_calibration {
        options.calibration = calibration_samples(path, &parsed.graph, &parsed.info)?;
    }
    let lowered = lower(&parsed.graph, &parsed.info, &options).map_err(|e| input_error(&e))?;
    let write = |path: &PathBuf, bytes: &[u8]| {
        sprig_front::files::write_atomic(path, |f| f.write_all(bytes))
            .map_err(|e| InputError(format!("error: {e}")))
    };
    write(&args.output, &lowered.bytes)?;
    if let Some(path) = &args.report_json {
        let mut text = serde_json::to_string_pretty(&eie_report_json(&lowered))?;
        text.push('\n');
        write(path, text.as_bytes())?;
    }
    #[allow(clippy::print_stdout)]
    {
        print!("{}", eie_report_table(&lowered));
        println!(
            "wrote {} ({} bytes)",
            args.output.display(),
            lowered.bytes.len()
        );
    }
    Ok(())
}

/// Calibration samples from an .npy array: one sample of the model's single input, or a batch
/// along a leading axis.
fn calibration_samples(
    path: &std::path::Path,
    graph: &sprig_ir::Graph,
    info: &sprig_ir::GraphInfo,
) -> anyhow::Result<Vec<Vec<sprig_ir::Tensor>>> {
    let name = path.display();
    let [input] = graph.inputs() else {
        return Err(InputError(format!(
            "error: {name}: --act-calibration takes one array, but the model has {} inputs",
            graph.inputs().len()
        ))
        .into());
    };
    let declared = info.ty(*input).shape.clone();
    let array =
        sprig_front::files::read_npy(path).map_err(|e| InputError(format!("error: {e}")))?;
    let per_sample = declared.len();
    if per_sample == 0 || array.data.is_empty() || array.data.len() % per_sample != 0 {
        return Err(InputError(format!(
            "error: {name}: an array of shape {} is neither one sample nor a batch of the input's shape {declared}",
            array.shape
        ))
        .into());
    }
    Ok(array
        .data
        .chunks(per_sample)
        .map(|chunk| vec![sprig_ir::Tensor::new(declared.clone(), chunk.to_vec())])
        .collect())
}

fn activation_name(a: sprig_eie::isa::Activation) -> &'static str {
    match a {
        sprig_eie::isa::Activation::None => "none",
        sprig_eie::isa::Activation::Relu => "relu",
    }
}

/// The EIE report as JSON: `target`, `pes`, `layers[]` and `total`.
pub fn eie_report_json(lowered: &sprig_eie::lower::Lowered) -> Value {
    let layers: Vec<Value> = lowered
        .layers
        .iter()
        .map(|l| {
            let params = u64::from(l.rows) * u64::from(l.cols);
            json!({
                "name": l.name,
                "kind": l.kind,
                "shape": [l.rows, l.cols],
                "params": params,
                "nonzeros": l.nonzeros,
                "density": l.nonzeros as f64 / params.max(1) as f64,
                "row_tiles": l.row_tiles,
                "col_tiles": l.col_tiles,
                "tiles": l.tiles,
                "padding_entries": l.padding,
                "pe_max_entries": l.pe_max_entries,
                "pe_mean_entries": l.pe_mean_entries,
                "weight_frac": l.weight_frac,
                "input_frac": l.input_frac,
                "output_frac": l.output_frac,
                "activation": activation_name(l.activation),
                "steps": l.steps,
                "resident": l.resident,
                "bytes": l.bytes,
            })
        })
        .collect();
    let program = &lowered.program;
    json!({
        "target": "eie",
        "pes": program.pes,
        "layers": layers,
        "total": {
            "program_bytes": lowered.bytes.len(),
            "instructions": program.instructions.len(),
            "nonzeros": lowered.layers.iter().map(|l| l.nonzeros).sum::<u64>(),
            "padding_entries": lowered.layers.iter().map(|l| l.padding).sum::<u64>(),
            "activation_entries_per_pe": program.activation_entries_per_pe(),
        },
        "notes": lowered.notes,
    })
}

/// The EIE report: one row per layer, then the program's totals and notes.
pub fn eie_report_table(lowered: &sprig_eie::lower::Lowered) -> String {
    let rows: Vec<Vec<String>> = lowered
        .layers
        .iter()
        .map(|l| {
            let params = u64::from(l.rows) * u64::from(l.cols);
            vec![
                l.name.clone(),
                if l.steps > 1 {
                    format!("{} ×{}", l.kind, l.steps)
                } else {
                    l.kind.to_string()
                },
                format!("{}×{}", l.rows, l.cols),
                format!("{}×{}", l.row_tiles, l.col_tiles),
                l.nonzeros.to_string(),
                percent(l.nonzeros as f64 / params.max(1) as f64),
                l.padding.to_string(),
                format!("{}/{:.0}", l.pe_max_entries, l.pe_mean_entries),
                format!("Q{}·Q{}→Q{}", l.weight_frac, l.input_frac, l.output_frac),
                activation_name(l.activation).to_string(),
                l.bytes.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "layer",
            "kind",
            "rows×cols",
            "tiles",
            "non-zeros",
            "density",
            "padding",
            "PE max/mean",
            "w·a→o",
            "act",
            "bytes",
        ],
        &rows,
    );
    let program = &lowered.program;
    let _ = writeln!(
        out,
        "program: {} PEs, {} instructions, {} bytes; activation buffers {} entries per PE",
        program.pes,
        program.instructions.len(),
        lowered.bytes.len(),
        program.activation_entries_per_pe()
    );
    for output in &program.outputs {
        if output.post == sprig_eie::isa::HostPost::Softmax {
            let _ = writeln!(
                out,
                "note: the host applies softmax to `{}` after reading it back",
                output.name
            );
        }
    }
    for note in &lowered.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
