//! Retraining: `sprig finetune` (train a model or artifact further, optionally dense → sparse →
//! dense), and the compression pipeline with training between passes that `sprig compile
//! --train-data` runs: each `prune` step becomes rounds of prune → retrain, each `quantize`
//! step is followed by trained quantization (and, with `--calibration-data`, least-squares
//! refinement of the centroids).
//!
//! Invariants: every graph handed on has verified and its weights equal what their encodings
//! decode to (`sprig_train::Net::store`); checkpoints and outputs are packed artifacts written
//! atomically; the same data, options and seed give byte-identical outputs.

use crate::InputError;
use crate::evaluate::{Split, model_inputs, read_split};
use crate::pipeline::PipelineArgs;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sprig_front::Parsed;
use sprig_front::files::Dataset;
use sprig_ir::{Graph, GraphInfo};
use sprig_passes::manager::{Pipeline, Step};
use sprig_train::schedule::{LayerDensity, prune_densities, prune_step_to, round_densities};
use sprig_train::{LrSchedule, Net, Samples, TrainOptions, Trainer, evaluate};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The same rate throughout.
    Constant,
    /// Cosine decay to zero over each training phase.
    Cosine,
}

/// SGD hyperparameters (the paper's retraining settings by default).
#[derive(Args, Debug, Clone)]
pub struct TrainOptionArgs {
    /// Epochs of each retraining phase.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Base learning rate (retraining uses about a tenth of the original training's rate).
    #[arg(long, default_value_t = 0.005)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// L2 weight decay on weights (not biases).
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub lr_schedule: ScheduleArg,
    /// Seed of the sample shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N training samples.
    #[arg(long, value_name = "N")]
    pub train_samples: Option<usize>,
}

impl TrainOptionArgs {
    fn options(&self, epochs: usize) -> anyhow::Result<TrainOptions> {
        let positive = |name: &str, ok: bool| -> anyhow::Result<()> {
            if ok {
                Ok(())
            } else {
                Err(InputError(format!("error: --{name} must be positive and finite")).into())
            }
        };
        positive("batch", self.batch > 0)?;
        positive("lr", self.lr.is_finite() && self.lr >= 0.0)?;
        positive(
            "momentum",
            self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum),
        )?;
        positive(
            "weight-decay",
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
        )?;
        Ok(TrainOptions {
            epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: match self.lr_schedule {
                ScheduleArg::Constant => LrSchedule::Constant,
                ScheduleArg::Cosine => LrSchedule::Cosine,
            },
            seed: self.seed,
            pieces: 2,
        })
    }
}

/// Training inside `sprig compile`.
#[derive(Args, Debug, Clone)]
pub struct TrainingArgs {
    /// Retrain between passes on this labelled data: mnist:DIR (MNIST's 60,000 training
    /// images) or npz:FILE (arrays x and y).
    #[arg(long, value_name = "DATA")]
    pub train_data: Option<String>,
    /// Prune in this many rounds, each followed by retraining (densities fall geometrically).
    #[arg(long, default_value_t = 1)]
    pub prune_rounds: usize,
    /// Epochs of trained quantization after each quantize step (default: --epochs).
    #[arg(long, value_name = "N", requires = "train_data")]
    pub quant_epochs: Option<usize>,
    /// Learning rate of trained quantization (default: --lr / 10: a centroid's gradient sums
    /// those of all its weights).
    #[arg(long, value_name = "LR", requires = "train_data")]
    pub quant_lr: Option<f32>,
    /// Choose each layer's sparsity by sensitivity analysis on held-out training samples: the
    /// largest sparsity (alone) that loses at most this fraction of accuracy, e.g. 0.01.
    #[arg(long, value_name = "LOSS", requires = "train_data")]
    pub sensitivity_budget: Option<f64>,
    /// Training samples held out (from the end) for the sensitivity analysis.
    #[arg(long, default_value_t = 5000)]
    pub holdout: usize,
    /// Refine shared centroids by least squares on these inputs (labels unused): mnist:DIR
    /// (training images) or npz:FILE.
    #[arg(long, value_name = "DATA")]
    pub calibration_data: Option<String>,
    /// Calibration samples to use (from the start).
    #[arg(long, default_value_t = 256)]
    pub calibration_samples: usize,
    #[command(flatten)]
    pub sgd: TrainOptionArgs,
}

impl TrainingArgs {
    /// Whether compile needs the training pipeline at all.
    pub fn active(&self) -> bool {
        self.train_data.is_some() || self.calibration_data.is_some()
    }
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact (pruned and
    /// shared weights keep their masks and codes).
    pub model: PathBuf,
    /// Labelled training data: mnist:DIR (the training split) or npz:FILE (arrays x and y).
    #[arg(long, value_name = "DATA")]
    pub train_data: String,
    /// The packed artifact to write.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Report accuracy on this labelled set after every epoch: mnist:DIR (test split) or
    /// npz:FILE.
    #[arg(long, value_name = "DATA")]
    pub eval_data: Option<String>,
    /// Write the model after every epoch to this artifact (atomically).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Dense → sparse → dense training: train dense, prune every fc/conv layer to this sparsity
    /// and retrain, then restore the pruned weights at zero and retrain dense at a tenth of
    /// the rate (each phase --epochs long).
    #[arg(long, value_name = "SPARSITY")]
    pub dsd: Option<f64>,
    #[command(flatten)]
    pub sgd: TrainOptionArgs,
}

/// A data set read for training, with the samples in the model's layout.
struct TrainData {
    data: Dataset,
    spec: String,
}

impl TrainData {
    fn read(spec: &str, split: Split, limit: Option<usize>) -> anyhow::Result<TrainData> {
        Ok(TrainData {
            data: read_split(spec, split, limit)?,
            spec: spec.to_string(),
        })
    }

    fn samples(&self, input_len: usize) -> anyhow::Result<Samples<'_>> {
        model_inputs(&self.data, input_len, &self.spec)
    }
}

fn input_error(e: impl std::fmt::Display) -> anyhow::Error {
    InputError(format!("error: {e}")).into()
}

#[allow(clippy::print_stderr)]
fn note(text: &str) {
    eprintln!("{text}");
}

fn epoch_bar(samples: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(samples as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed}] {bar:20} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// Trains `graph` for `options.epochs` epochs and stores the result back; reports each epoch's
/// loss and accuracy on stderr and calls `after_epoch` with the stored graph.
fn train_phase(
    graph: &mut Graph,
    info: &GraphInfo,
    train: &TrainData,
    eval: Option<&TrainData>,
    options: TrainOptions,
    label: &str,
    after_epoch: &mut dyn FnMut(&Graph) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let net = Net::from_graph(graph, info).map_err(|e| input_error(format!("training: {e}")))?;
    let samples = train.samples(net.input_len())?;
    let eval_samples = eval.map(|e| e.samples(net.input_len())).transpose()?;
    let epochs = options.epochs;
    let mut trainer = Trainer::new(net, options);
    for epoch in 0..epochs {
        let bar = epoch_bar(
            samples.len(),
            &format!("{label}: epoch {}/{epochs}", epoch + 1),
        );
        let start = std::time::Instant::now();
        let stats = trainer.epoch(samples, epoch, &mut |done, loss| {
            bar.set_position(done as u64);
            bar.set_message(format!(
                "{label}: epoch {}/{epochs} loss {loss:.4}",
                epoch + 1
            ));
        });
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let mut line = format!(
            "{label}: epoch {}/{epochs} ({seconds:.1} s): loss {:.4}, training accuracy {:.2}%",
            epoch + 1,
            stats.loss,
            100.0 * stats.accuracy
        );
        if let Some(eval) = eval_samples {
            let acc = evaluate(trainer.net(), eval);
            line.push_str(&format!(
                ", eval accuracy {:.2}% ({} samples)",
                100.0 * acc.top1,
                acc.samples
            ));
        }
        note(&line);
        trainer
            .net()
            .store(graph)
            .map_err(|e| input_error(format!("training: {e}")))?;
        after_epoch(graph)?;
    }
    Ok(())
}

fn verify(graph: &Graph) -> anyhow::Result<GraphInfo> {
    sprig_ir::verify(graph).map_err(|errors| {
        input_error(format!(
            "the trained graph does not verify: {}",
            errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

fn run_step(graph: &mut Graph, info: GraphInfo, step: &Step) -> anyhow::Result<GraphInfo> {
    let pipeline = Pipeline {
        steps: vec![step.clone()],
    };
    let (info, _) =
        sprig_passes::run_pipeline(graph, info, &pipeline, None).map_err(input_error)?;
    Ok(info)
}

/// Writes `graph` as a packed artifact, atomically.
pub fn write_artifact(path: &Path, graph: &Graph, info: &GraphInfo) -> anyhow::Result<()> {
    let packed = sprig_pack::pack(graph, info).map_err(input_error)?;
    sprig_front::files::write_atomic(path, |f| f.write_all(&packed.bytes)).map_err(input_error)
}

/// The compile pipeline with training between passes (see the module contract).
pub fn compress(
    pipeline_args: &PipelineArgs,
    training: &TrainingArgs,
    eval_spec: Option<(&str, usize)>,
    parsed: Parsed,
    observe: &mut dyn FnMut(&'static str, &Graph, &GraphInfo),
) -> anyhow::Result<Parsed> {
    let Some(pipeline) = pipeline_args.pipeline()? else {
        return Ok(parsed);
    };
    let train = training
        .train_data
        .as_deref()
        .map(|spec| TrainData::read(spec, Split::Train, training.sgd.train_samples))
        .transpose()?;
    let eval = eval_spec
        .map(|(spec, limit)| TrainData::read(spec, Split::Test, Some(limit)))
        .transpose()?;
    let calibration = training
        .calibration_data
        .as_deref()
        .map(|spec| TrainData::read(spec, Split::Train, Some(training.calibration_samples)))
        .transpose()?;
    let original = Parsed {
        graph: parsed.graph.clone(),
        info: parsed.info.clone(),
    };
    let Parsed {
        mut graph,
        mut info,
    } = parsed;
    let stop = pipeline_args.stop_after.as_deref();
    for step in &pipeline.steps {
        match (step.pass, &train) {
            ("prune", Some(train)) => {
                let step = match training.sensitivity_budget {
                    Some(budget) => sensitivity_step(&graph, &info, step, train, training, budget)?,
                    None => step.clone(),
                };
                let target = prune_densities(&graph, &info, &step).map_err(input_error)?;
                let rounds = training.prune_rounds.max(1);
                for round in 1..=rounds {
                    let densities = round_densities(&target, round, rounds);
                    let round_step = prune_step_to(&step, &densities, round == rounds);
                    info = run_step(&mut graph, info, &round_step)?;
                    note(&density_line(round, rounds, &densities));
                    let options = training.sgd.options(training.sgd.epochs)?;
                    train_phase(
                        &mut graph,
                        &info,
                        train,
                        eval.as_ref(),
                        options,
                        &format!("retrain after pruning ({round}/{rounds})"),
                        &mut |_| Ok(()),
                    )?;
                    info = verify(&graph)?;
                }
            }
            ("quantize", _) => {
                info = run_step(&mut graph, info, step)?;
                if let Some(train) = &train {
                    let mut options = training
                        .sgd
                        .options(training.quant_epochs.unwrap_or(training.sgd.epochs))?;
                    options.lr = training.quant_lr.unwrap_or(options.lr / 10.0);
                    train_phase(
                        &mut graph,
                        &info,
                        train,
                        eval.as_ref(),
                        options,
                        "trained quantization",
                        &mut |_| Ok(()),
                    )?;
                    info = verify(&graph)?;
                }
                if let Some(calibration) = &calibration {
                    refine(&original, &mut graph, &info, calibration, eval.as_ref())?;
                    info = verify(&graph)?;
                }
            }
            _ => info = run_step(&mut graph, info, step)?,
        }
        observe(step.pass, &graph, &info);
        if stop == Some(step.pass) {
            break;
        }
    }
    Ok(Parsed { graph, info })
}

fn density_line(round: usize, rounds: usize, densities: &[LayerDensity]) -> String {
    let parts: Vec<String> = densities
        .iter()
        .map(|d| format!("{} {:.1}%", d.weight, 100.0 * d.density))
        .collect();
    format!("prune round {round}/{rounds}: {}", parts.join(", "))
}

/// The prune step with per-layer sparsities chosen by sensitivity analysis on the last
/// `--holdout` training samples.
fn sensitivity_step(
    graph: &Graph,
    info: &GraphInfo,
    step: &Step,
    train: &TrainData,
    training: &TrainingArgs,
    budget: f64,
) -> anyhow::Result<Step> {
    if !(0.0..=1.0).contains(&budget) {
        return Err(input_error("--sensitivity-budget must be between 0 and 1"));
    }
    let net = Net::from_graph(graph, info).map_err(|e| input_error(format!("training: {e}")))?;
    let samples = train.samples(net.input_len())?;
    let n = samples.len();
    let held = samples.slice(n.saturating_sub(training.holdout)..n);
    let analysis = sprig_train::sensitivity::analyse(
        graph,
        info,
        held,
        &sprig_train::sensitivity::default_sweep(),
        &mut |_, _| {},
    )
    .map_err(input_error)?;
    let chosen = sprig_train::sensitivity::choose_sparsities(&analysis, budget);
    let densities = sprig_train::schedule::from_sparsities(&chosen);
    note(&format!(
        "sensitivity ({} held-out samples, budget {:.2} points): {}",
        held.len(),
        100.0 * budget,
        chosen
            .iter()
            .map(|(w, s)| format!("{w} {:.0}% sparse", 100.0 * s))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(prune_step_to(step, &densities, true))
}

/// Least-squares refinement of the centroids, reporting the accuracy it recovers.
fn refine(
    original: &Parsed,
    graph: &mut Graph,
    info: &GraphInfo,
    calibration: &TrainData,
    eval: Option<&TrainData>,
) -> anyhow::Result<()> {
    let reference = Net::from_graph(&original.graph, &original.info)
        .map_err(|e| input_error(format!("refinement: {e}")))?;
    let mut net =
        Net::from_graph(graph, info).map_err(|e| input_error(format!("refinement: {e}")))?;
    let inputs = calibration.samples(net.input_len())?.inputs;
    let before = eval
        .map(|e| e.samples(net.input_len()).map(|s| evaluate(&net, s)))
        .transpose()?;
    let layers = sprig_train::refine::refine_centroids(&reference, &mut net, inputs)
        .map_err(|e| input_error(format!("refinement: {e}")))?;
    for l in &layers {
        note(&format!(
            "least-squares refinement of @{}: output mean squared error {:.4e} -> {:.4e}",
            l.weight, l.mse_before, l.mse_after
        ));
    }
    if let (Some(before), Some(eval)) = (before, eval) {
        let after = evaluate(&net, eval.samples(net.input_len())?);
        note(&format!(
            "least-squares refinement on {} calibration inputs: accuracy {:.2}% -> {:.2}% ({} samples)",
            calibration.data.len(),
            100.0 * before.top1,
            100.0 * after.top1,
            after.samples
        ));
    }
    net.store(graph)
        .map_err(|e| input_error(format!("refinement: {e}")))
}

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let Parsed { mut graph, info } = crate::load(&args.model)?;
    // Training multiplies by dense `[out, in]` weights: products still in ONNX's `[in, out]`
    // form (matmul) are first rewritten by simplify, which keeps every output.
    let info = if graph
        .node_ids()
        .any(|id| matches!(graph.node(id).op, sprig_ir::op::Op::MatMul(_)))
    {
        let simplify = Pipeline::parse("simplify").map_err(input_error)?;
        note(&format!(
            "note: {}: matmul products rewritten as dense layers (simplify) before training",
            args.model.display()
        ));
        run_step(&mut graph, info, &simplify.steps[0])?
    } else {
        info
    };
    let train = TrainData::read(&args.train_data, Split::Train, args.sgd.train_samples)?;
    let eval = args
        .eval_data
        .as_deref()
        .map(|spec| TrainData::read(spec, Split::Test, None))
        .transpose()?;
    let options = args.sgd.options(args.sgd.epochs)?;
    let checkpoint = args.checkpoint.clone();
    let mut save = |graph: &Graph| -> anyhow::Result<()> {
        if let Some(path) = &checkpoint {
            let info = verify(graph)?;
            write_artifact(path, graph, &info)?;
        }
        Ok(())
    };
    let mut info = info;
    match args.dsd {
        None => {
            train_phase(
                &mut graph,
                &info,
                &train,
                eval.as_ref(),
                options,
                "train",
                &mut save,
            )?;
        }
        Some(sparsity) => {
            if !(0.0..1.0).contains(&sparsity) {
                return Err(input_error("--dsd needs a sparsity in [0, 1)"));
            }
            train_phase(
                &mut graph,
                &info,
                &train,
                eval.as_ref(),
                options.clone(),
                "dense",
                &mut save,
            )?;
            let prune =
                Pipeline::parse(&format!("prune(sparsity={sparsity})")).map_err(input_error)?;
            let dense_info = verify(&graph)?;
            info = run_step(&mut graph, dense_info, &prune.steps[0])?;
            train_phase(
                &mut graph,
                &info,
                &train,
                eval.as_ref(),
                options.clone(),
                "sparse",
                &mut save,
            )?;
            // Dense again: the pruned weights return at zero and train with the others.
            let mut net = Net::from_graph(&graph, &info).map_err(input_error)?;
            for p in &mut net.params {
                if p.shared.is_none() {
                    p.mask = None;
                }
            }
            net.store(&mut graph).map_err(input_error)?;
            info = verify(&graph)?;
            let mut redense = options;
            redense.lr /= 10.0;
            train_phase(
                &mut graph,
                &info,
                &train,
                eval.as_ref(),
                redense,
                "re-dense",
                &mut save,
            )?;
        }
    }
    let info = verify(&graph)?;
    write_artifact(&args.output, &graph, &info)?;
    #[allow(clippy::print_stdout)]
    {
        println!("wrote {}", args.output.display());
    }
    Ok(())
}
