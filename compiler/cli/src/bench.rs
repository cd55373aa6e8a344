//! `sprig bench`: time every fully connected layer of models on the CPU kernels, next to two
//! baselines measured in the same run on the same decoded weights and the same input vector: a
//! dense f32 matrix × vector (faer) and a plain f32 CSR kernel.
//!
//! A layer's input is the activation vector it sees when the model runs on the given input (the
//! first sample of a batch). Each timing repeats the product until both `--samples` runs and
//! `--min-ms` have passed and reports the median and the minimum. The machine's read bandwidth
//! is measured once; `bound_us` is the time to read the bytes a product touches (the packed
//! entries of the active columns and their pointers) at that bandwidth.

use crate::InputError;
use crate::pipeline::PipelineArgs;
use clap::Args;
use serde_json::json;
use sprig_cpu::baseline::{CsrBaseline, DenseBaseline, read_bandwidth};
use sprig_cpu::{Activation, Active, Executor, Options};
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

/// Median and minimum of repeated runs of `f`, in microseconds.
fn time(samples: usize, min: Duration, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut times = Vec::with_capacity(samples);
    let start = Instant::now();
    while times.len() < samples || start.elapsed() < min {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        if times.len() >= 100_000 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

struct Row {
    name: String,
    shape: [usize; 2],
    kernel: &'static str,
    weight_density: f64,
    activation_density: f64,
    packed_bytes: usize,
    bytes_read: usize,
    median_us: f64,
    min_us: f64,
    dense_us: f64,
    csr_us: f64,
    bound_us: Option<f64>,
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
    let options = Options::from_env(args.threads).map_err(|e| InputError(format!("error: {e}")))?;
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
        let executor = Executor::new(graph, info, &options)
            .map_err(|e| InputError(format!("error: {}: {e}", path.display())))?;
        let mut layer_inputs = Vec::new();
        executor
            .run_observed(&sample, &mut |id, operands| {
                layer_inputs.push((id, operands[0].data.clone()));
            })
            .map_err(|e| InputError(format!("error: {}: {e}", path.display())))?;
        let matrices = executor.matrices();
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
            let (median_us, min_us) = time(args.samples, min, || {
                m.matvec(rt, x, bias.as_deref(), Activation::Identity, &mut y);
            });
            let mut dense = DenseBaseline::new(&values, r, c);
            let (dense_us, _) = time(args.samples, min, || dense.run(x, &mut y));
            drop(dense);
            let csr = CsrBaseline::new(&values, r, c);
            let (csr_us, _) = time(args.samples, min, || csr.run(x, &mut y));
            let bytes_read = m.bytes_read(&active.index) + c * 4 + r * 4;
            rows.push(Row {
                name: format!("{}/{}", graph.name, node.name),
                shape: [r, c],
                kernel: m.kind().name(),
                weight_density: csr.nonzeros() as f64 / (r * c).max(1) as f64,
                activation_density: active.len() as f64 / c.max(1) as f64,
                packed_bytes: m.bytes(),
                bytes_read,
                median_us,
                min_us,
                dense_us,
                csr_us,
                bound_us: bandwidth.map(|bw| bytes_read as f64 / bw * 1e6),
            });
        }
    }
    let text = if args.json {
        json_report(&rows, args.threads, options.isa.name(), bandwidth)
    } else {
        table(&rows, args.threads, options.isa.name(), bandwidth)
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

fn json_report(rows: &[Row], threads: usize, isa: &str, bandwidth: Option<f64>) -> String {
    let layers: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "shape": r.shape,
                "kernel": r.kernel,
                "isa": isa,
                "threads": threads,
                "median_us": r.median_us,
                "min_us": r.min_us,
                "baseline_dense_us": r.dense_us,
                "baseline_csr_us": r.csr_us,
                "weight_density": r.weight_density,
                "activation_density": r.activation_density,
                "packed_bytes": r.packed_bytes,
                "bytes_read": r.bytes_read,
                "bound_us": r.bound_us,
            })
        })
        .collect();
    let report = json!({
        "layers": layers,
        "total": {
            "read_bandwidth_gb_s": bandwidth.map(|b| b / 1e9),
            "geomean_speedup_dense": geomean(rows.iter().map(|r| r.dense_us / r.median_us)),
            "geomean_speedup_csr": geomean(rows.iter().map(|r| r.csr_us / r.median_us)),
        },
    });
    let mut s = serde_json::to_string_pretty(&report).expect("JSON values serialize");
    s.push('\n');
    s
}

fn table(rows: &[Row], threads: usize, isa: &str, bandwidth: Option<f64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>12} {:<13} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>9}",
        "layer",
        "shape",
        "kernel",
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
    for r in rows {
        let _ = writeln!(
            out,
            "{:<14} {:>12} {:<13} {:>6.1} {:>6.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>7.1} {:>7.1} {:>9}",
            r.name,
            format!("{}x{}", r.shape[0], r.shape[1]),
            r.kernel,
            r.weight_density * 100.0,
            r.activation_density * 100.0,
            r.median_us,
            r.min_us,
            r.dense_us,
            r.csr_us,
            r.dense_us / r.median_us,
            r.csr_us / r.median_us,
            r.bound_us.map_or("-".to_string(), |b| format!("{b:.1}")),
        );
    }
    let _ = writeln!(
        out,
        "{} layer(s), {threads} thread(s), {isa} kernels; geometric mean speed-up: {:.1}x over dense, {:.1}x over CSR{}",
        rows.len(),
        geomean(rows.iter().map(|r| r.dense_us / r.median_us)),
        geomean(rows.iter().map(|r| r.csr_us / r.median_us)),
        bandwidth.map_or(String::new(), |b| format!(
            "; read bandwidth {:.1} GB/s",
            b / 1e9
        )),
    );
    out
}
