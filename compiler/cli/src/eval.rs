//! `sprig eval`: top-1 (and, with more than five classes, top-5) accuracy of a model or packed
//! artifact on a labelled data set, on one of sprig's engines.
//!
//! Data sets: `mnist:DIR` (MNIST's 10,000 test images, pixels scaled to [0, 1]) or `npz:FILE`
//! (arrays `x`/`X` and `y`; uint8 pixels scaled to [0, 1]). Each sample is reshaped to the
//! model's input shape; the prediction is the argmax of the model's first output (ties go to
//! the lower class, NaN never wins).
//!
//! Invariant: an engine is one arm of [`Engine::scorer`], a function from one sample to its
//! scores; the counting, progress and report are shared, so every engine is measured the same
//! way. Samples are scored in parallel and counted in sample order, so results are the same on
//! every run.

use crate::InputError;
use crate::evaluate::{Split, hits, read_split};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;
use sprig_ir::{Graph, GraphInfo, Tensor};
use std::path::PathBuf;

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

    /// A function from one sample (shaped as the model's input) to the scores of the model's
    /// first output.
    pub fn scorer<'a>(self, graph: &'a Graph, info: &'a GraphInfo) -> anyhow::Result<Scorer<'a>> {
        match self {
            Engine::Interp => Ok(Box::new(move |sample| {
                let out = sprig_ir::interpret(graph, info, &[sample])
                    .map_err(|e| InputError(format!("error: {e}")))?;
                Ok(out.into_iter().next().map(|t| t.data).unwrap_or_default())
            })),
            Engine::Cpu => {
                // Samples are scored in parallel, so each runs on one thread.
                let options = sprig_cpu::Options::from_env(1)
                    .map_err(|e| InputError(format!("error: {e}")))?;
                let executor = sprig_cpu::Executor::new(graph, info, &options)
                    .map_err(|e| InputError(format!("error: {e}")))?;
                Ok(Box::new(move |sample| {
                    let out = executor
                        .run(&[sample])
                        .map_err(|e| InputError(format!("error: {e}")))?;
                    Ok(out.into_iter().next().map(|t| t.data).unwrap_or_default())
                }))
            }
            Engine::Eie => Err(InputError(format!(
                "error: the {} engine is not available in `sprig eval`; use --engine interp",
                self.name()
            ))
            .into()),
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// The labelled data: mnist:DIR (the test split) or npz:FILE (arrays x and y).
    #[arg(long, value_name = "DATA")]
    pub dataset: String,
    #[arg(long, value_enum, default_value_t = Engine::Interp)]
    pub engine: Engine,
    /// Use only the first N samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
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

/// Accuracy of `graph` on `data` with `engine`, with a progress bar on stderr.
pub fn measure(
    graph: &Graph,
    info: &GraphInfo,
    data: &sprig_front::files::Dataset,
    engine: Engine,
) -> anyhow::Result<Measured> {
    let [input] = graph.inputs() else {
        return Err(InputError("error: eval needs a model with one input".to_string()).into());
    };
    let shape = info.ty(*input).shape.clone();
    let n = data.labels.len();
    let per = data.images.len() / n.max(1);
    if per != shape.len() {
        return Err(InputError(format!(
            "error: the data set's samples hold {per} values but the model's input is {}",
            info.ty(*input)
        ))
        .into());
    }
    let score = engine.scorer(graph, info)?;
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed}] {bar:20} {pos}/{len} samples ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    let results: Vec<anyhow::Result<(bool, bool, usize)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let sample = Tensor::new(
                shape.clone(),
                data.images.data[i * per..(i + 1) * per].to_vec(),
            );
            let scores = score(sample)?;
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

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let parsed = crate::load(&args.model)?;
    let data = read_split(&args.dataset, Split::Test, args.samples)?;
    let m = measure(&parsed.graph, &parsed.info, &data, args.engine)?;
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
