//! `sprig eval`: top-1 (and, with more than five classes, top-5) accuracy of a model, packed
//! artifact or EIE program on a labelled data set, on one of sprig's engines.
//!
//! Data sets: `mnist:DIR` (MNIST's 10,000 test images, pixels scaled to [0, 1]) or `npz:FILE`
//! (arrays `x`/`X` and `y`; uint8 pixels scaled to [0, 1]). Each sample is reshaped to the
//! model's input shape; the prediction is the argmax of the model's first output (ties go to
//! the lower class, NaN never wins).
//!
//! The EIE engine runs every sample through the cycle-level simulator. It takes an EIE program
//! (`sprig compile --target eie`) as it is, or a compressed model whose weight layers carry
//! 4-bit codes with code 0 for zero (an artifact, or a model quantized by `--passes`): such a
//! model is partitioned over `--pes` PEs when it is not partitioned yet (which changes no
//! value) and lowered with activation formats calibrated on `--calibration` (default: the
//! first [`CALIBRATION_SAMPLES`] training images for `mnist:DIR`, the first evaluated samples
//! for `npz:FILE`). Uncompressed weights are refused rather than compressed here, so that the
//! EIE and interpreter engines evaluate the same weights.
//!
//! Invariant: an engine is a [`Scorer`], a function from one sample to its scores; the
//! counting, progress and report are shared, so every engine is measured the same way.
//! Samples are scored in parallel and counted in sample order, so results are the same on
//! every run.

use crate::InputError;
use crate::evaluate::{Split, hits, keep_first, read_split};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;
use sprig_eie::isa::Program;
use sprig_ir::{Graph, GraphInfo, Op, Shape, Tensor};
use std::path::PathBuf;

/// Samples the EIE engine calibrates activation formats on by default.
pub const CALIBRATION_SAMPLES: usize = 256;

/// One sample (shaped as the model's input) to the scores of the model's first output.
pub type Scorer<'a> = Box<dyn Fn(Tensor) -> anyhow::Result<Vec<f32>> + Send + Sync + 'a>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The f32 reference interpreter.
    Interp,
    /// The CPU sparse kernels.
    Cpu,
    /// The EIE simulator (fully connected layers).
    Eie,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => "interp",
            Engine::Cpu => "cpu",
            Engine::Eie => "eie",
        }
    }
}

fn fail(message: impl std::fmt::Display) -> anyhow::Error {
    InputError(format!("error: {message}")).into()
}

/// The interpreter or the CPU engine over `graph`.
pub fn graph_scorer<'a>(
    engine: Engine,
    graph: &'a Graph,
    info: &'a GraphInfo,
) -> anyhow::Result<Scorer<'a>> {
    match engine {
        Engine::Interp => Ok(Box::new(move |sample| {
            let out = sprig_ir::interpret(graph, info, &[sample]).map_err(fail)?;
            Ok(out.into_iter().next().map(|t| t.data).unwrap_or_default())
        })),
        Engine::Cpu => {
            // Samples are scored in parallel, so each runs on one thread.
            let options = sprig_cpu::Options::from_env(1).map_err(fail)?;
            let executor = sprig_cpu::Executor::new(graph, info, &options).map_err(fail)?;
            Ok(Box::new(move |sample| {
                let out = executor.run(&[sample]).map_err(fail)?;
                Ok(out.into_iter().next().map(|t| t.data).unwrap_or_default())
            }))
        }
        Engine::Eie => Err(fail(
            "the EIE engine runs programs: lower the graph with `eie_program` first",
        )),
    }
}

/// The simulator running `program` on one sample at a time; the scores are the first output
/// after dequantization and its host function (e.g. softmax).
pub fn program_scorer(program: Program) -> Scorer<'static> {
    let config = sprig_eie_sim::SimConfig {
        pes: usize::from(program.pes),
        ..sprig_eie_sim::SimConfig::default()
    };
    Box::new(move |sample| {
        let inputs = sprig_eie_sim::quantize_inputs(&program, &[sample.data]).map_err(fail)?;
        let simulation = sprig_eie_sim::execute(&program, &config, &inputs).map_err(fail)?;
        Ok(simulation
            .outputs
            .into_iter()
            .next()
            .map(|o| o.real)
            .unwrap_or_default())
    })
}

/// Lowers a compressed graph to an EIE program for evaluation (see the module docs):
/// partitioned over `pes` PEs when no weight layer is partitioned yet, activation formats
/// calibrated on `calibration` (flat samples in the model's input layout).
pub fn eie_program(
    parsed: sprig_front::Parsed,
    model: &str,
    pes: Option<u16>,
    calibration: &sprig_front::files::Dataset,
) -> anyhow::Result<Program> {
    use sprig_eie::lower::{LowerOptions, check_supported, lower};
    let in_model = |e: &dyn std::fmt::Display| fail(format!("{model}: {e}"));
    let sprig_front::Parsed { graph, info } = parsed;
    check_supported(&graph, &info).map_err(|e| in_model(&e))?;
    let layer_weights: Vec<_> = info
        .order
        .iter()
        .filter_map(|&id| match &graph.node(id).op {
            Op::Dense(d) => Some(d.weight),
            Op::LstmStacked(l) => Some(l.weight),
            _ => None,
        })
        .collect();
    let partitioned: Vec<usize> = layer_weights
        .iter()
        .filter_map(|&w| graph.weights[w].encoding.partition.as_ref().map(|p| p.pes))
        .collect();
    let parsed = match (partitioned.first(), pes) {
        (Some(&found), Some(asked)) if found != usize::from(asked) => {
            return Err(in_model(&format!(
                "its layers are partitioned over {found} PEs, not {asked}"
            )));
        }
        (Some(_), _) => sprig_front::Parsed { graph, info },
        (None, pes) => {
            let args = crate::pipeline::PipelineArgs {
                passes: Some(format!("partition(pes={})", pes.unwrap_or(64))),
                ..crate::pipeline::PipelineArgs::default()
            };
            args.apply(sprig_front::Parsed { graph, info })?
        }
    };
    let [input] = parsed.graph.inputs() else {
        return Err(in_model(&"eval needs a model with one input"));
    };
    let shape = parsed.info.ty(*input).shape.clone();
    let options = LowerOptions {
        calibration: {
            sample_len(calibration, &shape)?;
            (0..calibration.labels.len())
                .map(|i| vec![sample(calibration, &shape, i)])
                .collect()
        },
        ..LowerOptions::default()
    };
    let lowered = lower(&parsed.graph, &parsed.info, &options).map_err(|e| in_model(&e))?;
    Ok(lowered.program)
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: a .sprig text description, an ONNX model, a packed artifact or (with
    /// `--engine eie`) an EIE program.
    pub model: PathBuf,
    /// The labelled data: mnist:DIR (the test split) or npz:FILE (arrays x and y).
    #[arg(long, value_name = "DATA")]
    pub dataset: String,
    #[arg(long, value_enum, default_value_t = Engine::Interp)]
    pub engine: Engine,
    /// Use only the first N samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// EIE engine: the PEs a model that is not partitioned yet is partitioned over (default 64).
    #[arg(long, value_name = "N")]
    pub pes: Option<u16>,
    /// EIE engine: samples the activation formats are calibrated on (mnist:DIR reads its
    /// training split; default: the evaluated data set, as described in `sprig eval --help`).
    #[arg(long, value_name = "DATA")]
    pub calibration: Option<String>,
    /// Print one JSON object: {samples, accuracy, top5_accuracy, engine}.
    #[arg(long)]
    pub json: bool,
}

/// What an evaluation measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub samples: usize,
    pub top1: f64,
    /// `None` when the model has five classes or fewer.
    pub top5: Option<f64>,
}

/// The values per sample of `data`, checked against `shape`.
fn sample_len(data: &sprig_front::files::Dataset, shape: &Shape) -> anyhow::Result<usize> {
    let per = data.images.len() / data.labels.len().max(1);
    if per != shape.len() {
        return Err(fail(format!(
            "the data set's samples hold {per} values but the model's input holds {} ({shape})",
            shape.len()
        )));
    }
    Ok(per)
}

/// Sample `i` of `data` shaped as `shape` (whose size [`sample_len`] checked).
fn sample(data: &sprig_front::files::Dataset, shape: &Shape, i: usize) -> Tensor {
    let per = shape.len();
    Tensor::new(
        shape.clone(),
        data.images.data[i * per..(i + 1) * per].to_vec(),
    )
}

/// Accuracy of `score` on `data`, whose samples are shaped as `shape`, with a progress bar
/// on stderr.
pub fn measure(
    score: &Scorer<'_>,
    shape: &Shape,
    data: &sprig_front::files::Dataset,
) -> anyhow::Result<Measured> {
    sample_len(data, shape)?;
    let n = data.labels.len();
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed}] {bar:20} {pos}/{len} samples ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    let results: Vec<anyhow::Result<(bool, bool, usize)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let scores = score(sample(data, shape, i))?;
            bar.inc(1);
            let (top1, top5) = hits(&scores, data.labels[i] as usize);
            Ok((top1, top5, scores.len()))
        })
        .collect();
    bar.finish_and_clear();
    let (mut correct, mut correct5, mut classes) = (0usize, 0usize, 0usize);
    for r in results {
        let (top1, top5, c) = r?;
        correct += usize::from(top1);
        correct5 += usize::from(top5);
        classes = classes.max(c);
    }
    let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Ok(Measured {
        samples: n,
        top1: frac(correct),
        top5: (classes > 5).then(|| frac(correct5)),
    })
}

/// The calibration samples of the EIE engine (see the module docs).
fn calibration_data(
    args: &EvalArgs,
    data: &sprig_front::files::Dataset,
) -> anyhow::Result<sprig_front::files::Dataset> {
    match &args.calibration {
        Some(spec) => read_split(spec, Split::Train, Some(CALIBRATION_SAMPLES)),
        None if args.dataset.starts_with("mnist:") => {
            read_split(&args.dataset, Split::Train, Some(CALIBRATION_SAMPLES))
        }
        None => {
            let mut first = data.clone();
            keep_first(&mut first, CALIBRATION_SAMPLES);
            Ok(first)
        }
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let data = read_split(&args.dataset, Split::Test, args.samples)?;
    let model = args.model.display().to_string();
    let program = crate::sim::read_program(&args.model)?;
    if (args.pes.is_some() || args.calibration.is_some()) && args.engine != Engine::Eie {
        return Err(fail("--pes and --calibration apply to --engine eie"));
    }
    let m = match (program, args.engine) {
        (Some(program), Engine::Eie) => {
            if args.pes.is_some_and(|pes| pes != program.pes) || args.calibration.is_some() {
                return Err(fail(format!(
                    "{model}: an EIE program keeps the PE count ({}) and formats it was lowered with; --pes and --calibration apply to models",
                    program.pes
                )));
            }
            let Some(input) = program.inputs.first() else {
                return Err(fail(format!("{model}: the program has no input")));
            };
            let shape = Shape::new(input.shape.iter().map(|&d| d as usize).collect::<Vec<_>>());
            measure(&program_scorer(program), &shape, &data)?
        }
        (Some(_), engine) => {
            return Err(fail(format!(
                "{model}: an EIE program runs only on --engine eie, not {}",
                engine.name()
            )));
        }
        (None, Engine::Eie) => {
            let parsed = crate::compile::load_stacked(&args.model)?;
            let calibration = calibration_data(&args, &data)?;
            let [input] = parsed.graph.inputs() else {
                return Err(fail(format!("{model}: eval needs a model with one input")));
            };
            let shape = parsed.info.ty(*input).shape.clone();
            let program = eie_program(parsed, &model, args.pes, &calibration)?;
            measure(&program_scorer(program), &shape, &data)?
        }
        (None, engine) => {
            let parsed = crate::load(&args.model)?;
            let [input] = parsed.graph.inputs() else {
                return Err(fail(format!("{model}: eval needs a model with one input")));
            };
            let shape = parsed.info.ty(*input).shape.clone();
            let score = graph_scorer(engine, &parsed.graph, &parsed.info)?;
            measure(&score, &shape, &data)?
        }
    };
    #[allow(clippy::print_stdout)]
    if args.json {
        let value = json!({
            "samples": m.samples,
            "accuracy": m.top1,
            "top5_accuracy": m.top5,
            "engine": args.engine.name(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let top5 = m
            .top5
            .map_or(String::new(), |t| format!(", top-5 {:.2}%", 100.0 * t));
        println!(
            "{}: top-1 {:.2}%{top5} on {} samples ({} engine)",
            args.model.display(),
            100.0 * m.top1,
            m.samples,
            args.engine.name()
        );
    }
    Ok(())
}
