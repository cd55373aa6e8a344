//! `sprig run`: execute a model on input arrays.
//!
//! Inputs bind by shape: an array whose shape equals the input's declared shape is one sample;
//! an array with one more leading axis `N`, whose remaining elements match the input's element
//! count, is a batch of `N` samples (each sample reshaped to the declared shape; so MNIST's
//! `[N, 28, 28]` feeds an `f32[784]` input). Batched outputs gain the same leading axis.
//! An input declared with a leading unit axis (`f32[1, 784]`, as ONNX models import: their batch
//! axis becomes 1) takes an array `[N, 784]` as `N` samples along that axis; then outputs whose
//! leading axis is 1 stack along it (`[N, 10]`, as the ONNX runtime gives), others gain a new
//! leading axis.

use crate::InputError;
use anyhow::Context;
use clap::{Args, ValueEnum};
use sprig_front::files;
use sprig_ir::{DType, Distribution, Graph, GraphInfo, RandomInit, Shape, Tensor};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Loads and verifies a model (text, ONNX or a packed artifact), turning load errors into
/// printable input errors; import notes (dropped ONNX outputs) go to stderr. An artifact's graph
/// is reported as text (it is the graph its text form describes).
pub fn load_noted(path: &Path) -> anyhow::Result<sprig_front::Loaded> {
    if let Some(parsed) = crate::load_artifact(path)? {
        return Ok(sprig_front::Loaded {
            parsed,
            format: sprig_front::ModelFormat::Text,
            notes: Vec::new(),
        });
    }
    let loaded = sprig_front::load(path).map_err(|e| match e {
        sprig_front::LoadError::Diagnostics(d) => InputError(d.render().trim_end().to_string()),
        other => InputError(format!("error: {other}")),
    })?;
    for note in &loaded.notes {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("note: {}: {note}", path.display());
        }
    }
    Ok(loaded)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The f32 reference interpreter.
    Interp,
    /// sprig's CPU kernels on the packed weights (SPRIG_CPU=scalar|avx2|avx512 forces a variant).
    Cpu,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// The inputs: X.npy (models with one input), X.npz (one array per input, named like the
    /// inputs), or random:density=D,seed=S (each element non-zero with probability D, |N(0, 1)|).
    #[arg(long)]
    pub input: String,
    /// Save the outputs: .npy (one output) or .npz (every output, by name).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// What executes the model.
    #[arg(long, value_enum, default_value_t = Engine::Interp)]
    pub engine: Engine,
    /// Worker threads of the CPU engine.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

fn input_error(message: String) -> anyhow::Error {
    InputError(format!("error: {message}")).into()
}

/// Parses `random:density=D,seed=S` (both optional: density 1, seed 0).
pub(crate) fn parse_random(spec: &str) -> anyhow::Result<(f64, u64)> {
    let mut density = 1.0;
    let mut seed = 0;
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            input_error(format!("--input random:{spec}: `{part}` is not KEY=VALUE"))
        })?;
        match key {
            "density" => {
                density = value
                    .parse::<f64>()
                    .ok()
                    .filter(|d| (0.0..=1.0).contains(d))
                    .ok_or_else(|| {
                        input_error(format!(
                            "--input random:{spec}: density must be a number in [0, 1]"
                        ))
                    })?
            }
            "seed" => {
                seed = value.parse().map_err(|_| {
                    input_error(format!(
                        "--input random:{spec}: seed must be a non-negative integer"
                    ))
                })?
            }
            _ => {
                return Err(input_error(format!(
                    "--input random:{spec}: unknown key `{key}` (expected density or seed)"
                )));
            }
        }
    }
    Ok((density, seed))
}

/// The values of a `random:` input of `len` elements: each non-zero with probability `density`,
/// |N(0, 1)| (a ReLU'd activation); input number i of a model uses `seed + i`.
pub(crate) fn random_input(len: usize, density: f64, seed: u64) -> Vec<f32> {
    let init = RandomInit {
        dist: Distribution::Normal {
            mean: 0.0,
            std: 1.0,
        },
        density,
        seed,
    };
    init.generate(len).into_iter().map(f32::abs).collect()
}

/// The arrays to bind, by input position.
pub(crate) fn read_inputs(
    spec: &str,
    graph: &Graph,
    info: &GraphInfo,
) -> anyhow::Result<Vec<Tensor>> {
    let inputs = graph.inputs();
    if let Some(rest) = spec.strip_prefix("random:") {
        let (density, seed) = parse_random(rest)?;
        return inputs
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let ty = info.ty(id);
                if ty.dtype != DType::F32 {
                    return Err(input_error(format!(
                        "input `{}` is {ty}; random inputs are f32 only",
                        graph.node(id).name
                    )));
                }
                let data = random_input(ty.shape.len(), density, seed.wrapping_add(i as u64));
                Ok(Tensor::new(ty.shape.clone(), data))
            })
            .collect();
    }
    let path = Path::new(spec);
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if is_npz {
        let arrays = files::read_npz(path).map_err(|e| input_error(e.to_string()))?;
        if inputs.len() == 1 && arrays.len() == 1 {
            return Ok(vec![arrays.into_iter().next().expect("one array").1]);
        }
        inputs
            .iter()
            .map(|&id| {
                let name = &graph.node(id).name;
                arrays
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| {
                        let have: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
                        input_error(format!(
                            "{spec}: no array named `{name}` for the model's input `{name}` (the archive holds: {})",
                            have.join(", ")
                        ))
                    })
            })
            .collect()
    } else {
        if inputs.len() != 1 {
            return Err(input_error(format!(
                "the model has {} inputs; give them as an .npz archive with one array per input name",
                inputs.len()
            )));
        }
        Ok(vec![
            files::read_npy(path).map_err(|e| input_error(e.to_string()))?,
        ])
    }
}

/// A batch: how many samples, and whether they run along the input's leading unit axis (rather
/// than along an extra leading axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Batch {
    n: usize,
    unit_axis: bool,
}

/// How many samples an array holds for an input of shape `declared`: `None` for one unbatched
/// sample, `Some(batch)` for a batch.
fn batch_of(array: &Shape, declared: &Shape) -> Option<Option<Batch>> {
    if array == declared {
        return Some(None);
    }
    let (&n, rest) = array.dims().split_first()?;
    if declared.dims().first() == Some(&1) && rest == &declared.dims()[1..] {
        return Some(Some(Batch { n, unit_axis: true }));
    }
    let per_sample: usize = rest.iter().product();
    (per_sample == declared.len()).then_some(Some(Batch {
        n,
        unit_axis: false,
    }))
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let parsed = crate::load(&args.model)?;
    let (graph, info) = (&parsed.graph, &parsed.info);
    let arrays = read_inputs(&args.input, graph, info)?;
    let mut batch: Option<Batch> = None;
    for (&id, array) in graph.inputs().iter().zip(&arrays) {
        let declared = &info.ty(id).shape;
        let this = batch_of(&array.shape, declared).ok_or_else(|| {
            input_error(format!(
                "{}: input `{}` is {}, but the array has shape {} (expected {declared}, or a batch [N, ...] of such samples)",
                args.input,
                graph.node(id).name,
                info.ty(id),
                array.shape
            ))
        })?;
        match (batch, this) {
            (None, n) if id == graph.inputs()[0] => batch = n,
            (b, n) if b == n => {}
            _ => {
                return Err(input_error(format!(
                    "{}: inputs disagree on the batch size",
                    args.input
                )));
            }
        }
    }
    let outputs = match args.engine {
        Engine::Interp => execute(graph, info, &arrays, batch, &|inputs: &[Tensor]| {
            sprig_ir::interpret(graph, info, inputs).map_err(|e| input_error(e.to_string()))
        })?,
        Engine::Cpu => {
            let options = sprig_cpu::Options::from_env(args.threads)
                .map_err(|e| input_error(e.to_string()))?;
            let executor = sprig_cpu::Executor::new(graph, info, &options)
                .map_err(|e| input_error(format!("{}: {e}", args.model.display())))?;
            execute(graph, info, &arrays, batch, &|inputs: &[Tensor]| {
                executor.run(inputs).map_err(|e| input_error(e.to_string()))
            })?
        }
    };
    let batch = batch.map(|b| b.n);
    let names: Vec<String> = graph
        .outputs()
        .iter()
        .map(|&id| graph.node(id).name.clone())
        .collect();
    match &args.output {
        Some(path) => save(path, &names, outputs)?,
        None => {
            let text = show(&names, &outputs, batch);
            #[allow(clippy::print_stdout)]
            {
                print!("{text}");
            }
        }
    }
    Ok(())
}

/// Runs one sample or every sample of a batch, stacking the outputs.
fn execute(
    graph: &Graph,
    info: &GraphInfo,
    arrays: &[Tensor],
    batch: Option<Batch>,
    interp: &dyn Fn(&[Tensor]) -> anyhow::Result<Vec<Tensor>>,
) -> anyhow::Result<Vec<Tensor>> {
    let Some(Batch { n, unit_axis }) = batch else {
        return interp(arrays);
    };
    let mut stacked: Vec<Tensor> = Vec::new();
    for s in 0..n {
        let sample: Vec<Tensor> = graph
            .inputs()
            .iter()
            .zip(arrays)
            .map(|(&id, a)| {
                let shape = info.ty(id).shape.clone();
                let len = shape.len();
                Tensor::new(shape, a.data[s * len..(s + 1) * len].to_vec())
            })
            .collect();
        let outs = interp(&sample)?;
        if stacked.is_empty() {
            stacked = outs
                .iter()
                .map(|o| {
                    let mut dims = vec![n];
                    match o.dims().split_first() {
                        Some((1, rest)) if unit_axis => dims.extend_from_slice(rest),
                        _ => dims.extend_from_slice(o.dims()),
                    }
                    Tensor {
                        shape: Shape::new(dims),
                        data: Vec::with_capacity(n * o.len()),
                    }
                })
                .collect();
        }
        for (acc, o) in stacked.iter_mut().zip(outs) {
            acc.data.extend_from_slice(&o.data);
        }
    }
    Ok(stacked)
}

fn save(path: &Path, names: &[String], outputs: Vec<Tensor>) -> anyhow::Result<()> {
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if is_npz {
        let arrays: Vec<(String, Tensor)> = names.iter().cloned().zip(outputs).collect();
        files::write_npz(path, &arrays).map_err(|e| input_error(e.to_string()))?;
    } else {
        if outputs.len() != 1 {
            return Err(input_error(format!(
                "the model has {} outputs; write them to an .npz file",
                outputs.len()
            )));
        }
        files::write_npy(path, &outputs[0])
            .map_err(|e| input_error(e.to_string()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Values shown per printed row.
const SHOWN: usize = 10;
/// Samples of a batch shown.
const SHOWN_SAMPLES: usize = 8;

fn row(values: &[f32]) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(SHOWN)
        .map(|v| format!("{v:.4}"))
        .collect();
    let more = if values.len() > SHOWN {
        format!(", ... ({} more)", values.len() - SHOWN)
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(", "))
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

/// A short human-readable view of the outputs.
fn show(names: &[String], outputs: &[Tensor], batch: Option<usize>) -> String {
    let mut out = String::new();
    for (name, t) in names.iter().zip(outputs) {
        let _ = writeln!(out, "{name} : f32{}", t.shape);
        match batch {
            None => {
                let _ = writeln!(out, "  {}", row(&t.data));
                if t.dims().len() == 1 && !t.is_empty() {
                    let _ = writeln!(out, "  argmax {}", argmax(&t.data));
                }
            }
            Some(n) => {
                let per = t.len() / n.max(1);
                for s in 0..n.min(SHOWN_SAMPLES) {
                    let sample = &t.data[s * per..(s + 1) * per];
                    let _ = writeln!(out, "  [{s}] {}  argmax {}", row(sample), argmax(sample));
                }
                if n > SHOWN_SAMPLES {
                    let _ = writeln!(
                        out,
                        "  ... ({} more samples; save them with -o FILE.npy)",
                        n - SHOWN_SAMPLES
                    );
                }
            }
        }
    }
    out
}
