//! `sprig bench`: time every fully connected layer of models on the CPU kernels, next to two
//! baselines measured in the same run on the same decoded weights and the same input vector: a
//! dense f32 matrix × vector (faer) and a plain f32 CSR kernel.
//!
//! A layer's input is the activation vector it sees when the model runs on the given input (the
//! first sample of a batch). Each timing repeats the product until both `--samples` runs and
//! `--min-ms` have passed and reports the median and the minimum. `--scaling-threads N` also
//! times the kernels on N threads, alternating run by run with the main timing so that both see
//! the same load, and prints the two side by side. The machine's read bandwidth is measured
//! once; `bound_us` is the time to read the bytes a product touches (the packed entries it walks,
//! their pointers, the activations and the outputs) at that bandwidth.

use crate::InputError;
use crate::pipeline::PipelineArgs;
use clap::Args;
use serde_json::json;
use sprig_cpu::baseline::{CsrBaseline, DenseBaseline, read_bandwidth};
use sprig_cpu::{Activation, Active, Executor, Options, Traversal};
use sprig_ir::Tensor;
use sprig_ir::op::Op;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models: .sprig text descriptions, ONNX models or packed artifacts.
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Inputs: X.npy / X.npz or random:density=D,seed=S; one for every model, or one per model
    /// in order (default random:density=1,seed=1).
    #[arg(long)]
    pub input: Vec<String>,
    /// Worker threads for sprig's kernels (the baselines run on one thread).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also time the kernels on this many threads, alternating run by run with the `--threads`
    /// timing so that both see the same machine load, and report the speed-up.
    #[arg(long, value_name = "N")]
    pub scaling_threads: Option<usize>,
    /// How the kernels walk sparse matrices: auto (by input density), columns or rows.
    #[arg(long, default_value = "auto", value_parser = parse_traversal)]
    pub traversal: Traversal,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed runs per measurement, at least.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// Time per measurement, at least, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub min_ms: u64,
    /// Skip the read-bandwidth probe (no `bound_us`).
    #[arg(long)]
    pub no_bandwidth: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

fn parse_traversal(text: &str) -> Result<Traversal, String> {
    [Traversal::Auto, Traversal::Columns, Traversal::Rows]
        .into_iter()
        .find(|t| t.name() == text)
        .ok_or_else(|| format!("`{text}`: expected auto, columns or rows"))
}

/// Median and minimum of repeated runs, in microseconds.
#[derive(Clone, Copy, Debug)]
struct Timing {
    median_us: f64,
    min_us: f64,
}

impl Timing {
    fn of(mut times: Vec<f64>) -> Timing {
        times.sort_by(f64::total_cmp);
        Timing {
            median_us: times[times.len() / 2],
            min_us: times[0],
        }
    }
}

/// Repeated runs of `f` until both `samples` runs and `min` have passed.
fn time(samples: usize, min: Duration, mut f: impl FnMut()) -> Timing {
    time_alternating(samples, min, &mut [&mut f]).remove(0)
}

/// Repeated runs of every function in `fs`, one after the other in turn (so that all see the
/// same machine load), until both `samples` rounds and `min` have passed.
fn time_alternating(samples: usize, min: Duration, fs: &mut [&mut dyn FnMut()]) -> Vec<Timing> {
    for f in fs.iter_mut() {
        f();
    }
    let mut times = vec![Vec::with_capacity(samples); fs.len()];
    let start = Instant::now();
    while times[0].len() < samples || start.elapsed() < min {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let at = Instant::now();
            f();
            t.push(at.elapsed().as_secs_f64() * 1e6);
        }
        if times[0].len() >= 100_000 {
            break;
        }
    }
    times.into_iter().map(Timing::of).collect()
}

struct Row {
    name: String,
    shape: [usize; 2],
    kernel: &'static str,
    traversal: &'static str,
    weight_density: f64,
    activation_density: f64,
    packed_bytes: usize,
    bytes_read: usize,
    sprig: Timing,
    dense: Timing,
    csr: Timing,
    bound_us: Option<f64>,
    /// The kernels on `--scaling-threads` threads, timed alternately with `sprig`.
    scaling: Option<Timing>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.input.len() > 1 && args.input.len() != args.models.len() {
        return Err(InputError(format!(
            "error: {} --input given for {} models: give one for all, or one per model",
            args.input.len(),
            args.models.len()
        ))
        .into());
    }
    let mut options =
        Options::from_env(args.threads).map_err(|e| InputError(format!("error: {e}")))?;
    options.traversal = args.traversal;
    let bandwidth = (!args.no_bandwidth).then(|| read_bandwidth(512 << 20));
    let min = Duration::from_millis(args.min_ms);
    let mut rows = Vec::new();
    for (m, path) in args.models.iter().enumerate() {
        let spec = match args.input.len() {
            0 => "random:density=1,seed=1",
            1 => &args.input[0],
            _ => &args.input[m],
        };
        let parsed = args.pipeline.apply(crate::load(path)?)?;
        let (graph, info) = (&parsed.graph, &parsed.info);
        let unnormalised: Vec<&str> = graph
            .node_ids()
            .map(|id| graph.node(id))
            .filter(|n| matches!(n.op, Op::MatMul(_)))
            .map(|n| n.name.as_str())
            .collect();
        if !unnormalised.is_empty() {
            return Err(InputError(format!(
                "error: {}: `{}` multiply by [in, out] weights (matmul), which bench does not \
                 time: add `simplify` to --passes to rewrite them as dense layers",
                path.display(),
                unnormalised.join("`, `")
            ))
            .into());
        }
        let arrays = crate::run::read_inputs(spec, graph, info)?;
        // The first sample of each input.
        let sample: Vec<Tensor> = graph
            .inputs()
            .iter()
            .zip(&arrays)
            .map(|(&id, a)| {
                let shape = info.ty(id).shape.clone();
                let len = shape.len();
                if a.data.len() < len {
                    return Err(InputError(format!(
                        "error: {spec}: input `{}` needs {len} values, the array has {}",
                        graph.node(id).name,
                        a.data.len()
                    )));
                }
                Ok(Tensor::new(shape, a.data[..len].to_vec()))
            })
            .collect::<Result<_, _>>()?;
        let fail = |e: sprig_cpu::CpuError| InputError(format!("error: {}: {e}", path.display()));
        let executor = Executor::new(graph, info, &options).map_err(fail)?;
        let scaling_executor = args
            .scaling_threads
            .map(|threads| Executor::new(graph, info, &Options { threads, ..options }))
            .transpose()
            .map_err(fail)?;
        let mut layer_inputs = Vec::new();
        executor
            .run_observed(&sample, &mut |id, operands| {
                layer_inputs.push((id, operands[0].data.clone()));
            })
            .map_err(fail)?;
        let matrices = executor.matrices();
        let scaling_matrices = scaling_executor.as_ref().map(|e| e.matrices());
        for (id, x) in layer_inputs {
            let node = graph.node(id);
            let Op::Dense(d) = &node.op else { continue };
            let Some(layer) = matrices.iter().find(|l| l.node == node.name) else {
                continue;
            };
            let m = layer.matrix;
            let (r, c) = (m.rows(), m.cols());
            let x = &x[..c];
            let values = graph.weights[d.weight].values();
            let bias = d.bias.map(|b| graph.weights[b].values().to_vec());
            let mut active = Active::default();
            active.gather(x);
            let mut y = vec![0.0f32; r];
            let rt = executor.runtime();
            let mut run = || m.matvec(rt, x, bias.as_deref(), Activation::Identity, &mut y);
            let (sprig, scaling) = match (&scaling_executor, &scaling_matrices) {
                (Some(other), Some(others)) => {
                    let m2 = others
                        .iter()
                        .find(|l| l.node == node.name)
                        .expect("both executors pack the same layers")
                        .matrix;
                    let mut y2 = vec![0.0f32; r];
                    let rt2 = other.runtime();
                    let mut run2 =
                        || m2.matvec(rt2, x, bias.as_deref(), Activation::Identity, &mut y2);
                    let t = time_alternating(args.samples, min, &mut [&mut run, &mut run2]);
                    (t[0], Some(t[1]))
                }
                _ => (time(args.samples, min, run), None),
            };
            let mut dense = DenseBaseline::new(&values, r, c);
            let dense_timing = time(args.samples, min, || dense.run(x, &mut y));
            drop(dense);
            let csr = CsrBaseline::new(&values, r, c);
            let csr_timing = time(args.samples, min, || csr.run(x, &mut y));
            let traversal = m.traversal_for(rt.traversal(), &active.index);
            let bytes_read = m.bytes_read(traversal, &active.index) + r * 4;
            rows.push(Row {
                name: format!("{}/{}", graph.name, node.name),
                shape: [r, c],
                kernel: m.kind().name(),
                traversal: traversal.name(),
                weight_density: csr.nonzeros() as f64 / (r * c).max(1) as f64,
                activation_density: active.len() as f64 / c.max(1) as f64,
                packed_bytes: m.bytes(),
                bytes_read,
                sprig,
                dense: dense_timing,
                csr: csr_timing,
                bound_us: bandwidth.map(|bw| bytes_read as f64 / bw * 1e6),
                scaling,
            });
        }
    }
    let text = if args.json {
        json_report(&rows, &args, options.isa.name(), bandwidth)
    } else {
        table(&rows, &args, options.isa.name(), bandwidth)
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(())
}

fn geomean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    if n == 0 { 0.0 } else { (sum / n as f64).exp() }
}

/// Geometric-mean speed-ups over dense and CSR, by medians and by minima.
fn speedups(rows: &[Row]) -> [f64; 4] {
    [
        geomean(rows.iter().map(|r| r.dense.median_us / r.sprig.median_us)),
        geomean(rows.iter().map(|r| r.csr.median_us / r.sprig.median_us)),
        geomean(rows.iter().map(|r| r.dense.min_us / r.sprig.min_us)),
        geomean(rows.iter().map(|r| r.csr.min_us / r.sprig.min_us)),
    ]
}

fn json_report(rows: &[Row], args: &BenchArgs, isa: &str, bandwidth: Option<f64>) -> String {
    let layers: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut layer = json!({
                "name": r.name,
                "shape": r.shape,
                "kernel": r.kernel,
                "traversal": r.traversal,
                "isa": isa,
                "threads": args.threads,
                "median_us": r.sprig.median_us,
                "min_us": r.sprig.min_us,
                "baseline_dense_us": r.dense.median_us,
                "baseline_dense_min_us": r.dense.min_us,
                "baseline_csr_us": r.csr.median_us,
                "baseline_csr_min_us": r.csr.min_us,
                "weight_density": r.weight_density,
                "activation_density": r.activation_density,
                "packed_bytes": r.packed_bytes,
                "bytes_read": r.bytes_read,
                "bound_us": r.bound_us,
            });
            if let (Some(t), Some(threads)) = (r.scaling, args.scaling_threads) {
                layer["scaling"] = json!({
                    "threads": threads,
                    "median_us": t.median_us,
                    "min_us": t.min_us,
                    "speedup_median": r.sprig.median_us / t.median_us,
                    "speedup_min": r.sprig.min_us / t.min_us,
                });
            }
            layer
        })
        .collect();
    let [dense, csr, dense_min, csr_min] = speedups(rows);
    let report = json!({
        "layers": layers,
        "total": {
            "read_bandwidth_gb_s": bandwidth.map(|b| b / 1e9),
            "geomean_speedup_dense": dense,
            "geomean_speedup_csr": csr,
            "geomean_speedup_dense_min": dense_min,
            "geomean_speedup_csr_min": csr_min,
        },
    });
    let mut s = serde_json::to_string_pretty(&report).expect("JSON values serialize");
    s.push('\n');
    s
}

fn table(rows: &[Row], args: &BenchArgs, isa: &str, bandwidth: Option<f64>) -> String {
    let mut out = String::new();
    let scaling = args
        .scaling_threads
        .filter(|_| rows.iter().any(|r| r.scaling.is_some()));
    let _ = write!(
        out,
        "{:<14} {:>12} {:<13} {:<7} {:>5} {:>5} {:>10} {:>9} {:>10} {:>9} {:>6} {:>6} {:>8}",
        "layer",
        "shape",
        "kernel",
        "walk",
        "w%",
        "a%",
        "median_us",
        "min_us",
        "dense_us",
        "csr_us",
        "xdense",
        "xcsr",
        "bound_us"
    );
    if let Some(n) = scaling {
        let _ = write!(
            out,
            " {:>10} {:>9} {:>5}",
            format!("{n}t_med_us"),
            format!("{n}t_min_us"),
            format!("x{n}t")
        );
    }
    out.push('\n');
    for r in rows {
        let _ = write!(
            out,
            "{:<14} {:>12} {:<13} {:<7} {:>5.1} {:>5.1} {:>10.1} {:>9.1} {:>10.1} {:>9.1} {:>6.1} {:>6.1} {:>8}",
            r.name,
            format!("{}x{}", r.shape[0], r.shape[1]),
            r.kernel,
            r.traversal,
            r.weight_density * 100.0,
            r.activation_density * 100.0,
            r.sprig.median_us,
            r.sprig.min_us,
            r.dense.median_us,
            r.csr.median_us,
            r.dense.median_us / r.sprig.median_us,
            r.csr.median_us / r.sprig.median_us,
            r.bound_us.map_or("-".to_string(), |b| format!("{b:.1}")),
        );
        if let Some(t) = r.scaling {
            let _ = write!(
                out,
                " {:>10.1} {:>9.1} {:>5.2}",
                t.median_us,
                t.min_us,
                r.sprig.median_us / t.median_us
            );
        }
        out.push('\n');
    }
    let [dense, csr, dense_min, csr_min] = speedups(rows);
    let _ = writeln!(
        out,
        "{} layer(s), {} thread(s), {isa} kernels; geometric mean speed-up: {dense:.1}x over dense, {csr:.1}x over CSR (by minima: {dense_min:.1}x, {csr_min:.1}x){}",
        rows.len(),
        args.threads,
        bandwidth.map_or(String::new(), |b| format!(
            "; read bandwidth {:.1} GB/s",
            b / 1e9
        )),
    );
    if let Some(n) = scaling {
        let with: Vec<&Row> = rows.iter().filter(|r| r.scaling.is_some()).collect();
        let ratio = |f: fn(&Timing) -> f64| {
            geomean(
                with.iter()
                    .map(|r| f(&r.sprig) / f(&r.scaling.expect("filtered"))),
            )
        };
        let _ = writeln!(
            out,
            "{n} threads vs {}: geometric mean speed-up {:.2}x by medians, {:.2}x by minima (timed alternately)",
            args.threads,
            ratio(|t| t.median_us),
            ratio(|t| t.min_us),
        );
    }
    out
}
