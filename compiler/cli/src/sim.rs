//! `sprig sim`: run an EIE program on the cycle-level simulator and report cycles, latency,
//! load balance, accesses and energy per layer.
//!
//! PROGRAM is an EIE program (`.eie`, written by `sprig compile --target eie`, recognised by its
//! magic bytes) or a model (text, ONNX or packed artifact), which is compressed and lowered here
//! exactly as `sprig compile --target eie --pes N` does. A program's PE count is fixed when it is
//! lowered, so `--pes` must match it; a PE sweep (`--sweep pes=...`) therefore needs a model,
//! which is lowered once per PE count (every other sweep reuses the one program).
//!
//! Inputs come from `--input` as `sprig run` reads them (`X.npy`, `X.npz` by input name, or
//! `random:density=D,seed=S`), one sample, converted to each input's fixed-point format.
//! `--trace` steps the machine cycle by cycle and writes every cycle of every PE (CSV, or Chrome
//! trace JSON for `.json`); it refuses runs above `--trace-limit` records (`TRACE_LIMIT`).

use crate::InputError;
use crate::pipeline::{PipelineArgs, table};
use crate::plots::line_plot_svg;
use clap::Args;
use sprig_eie::isa::{self, Program};
use sprig_eie_sim::{EnergyTable, Report, SimConfig, Simulation, Stepping, execute_with};
use sprig_front::files;
use sprig_ir::{Shape, Tensor};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Most trace records (cycles × (PEs + 1)) `--trace` writes.
pub const TRACE_LIMIT: u64 = 2_000_000;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// An EIE program (.eie) or a model to lower for EIE (.sprig, .onnx, .sprigpack).
    pub program: PathBuf,
    /// The inputs: X.npy (one input), X.npz (arrays named like the inputs), or
    /// random:density=D,seed=S (each element non-zero with probability D, |N(0, 1)|).
    #[arg(long)]
    pub input: String,
    /// PEs (1-256); must match a program's PE count; a model is lowered for it (default 64).
    #[arg(long)]
    pub pes: Option<usize>,
    /// Depth of each PE's activation FIFO.
    #[arg(long, default_value_t = 8)]
    pub fifo: usize,
    /// Clock in MHz.
    #[arg(long, default_value_t = 800.0)]
    pub clock: f64,
    /// Width of a sparse-matrix SRAM read in bits (a multiple of 8).
    #[arg(long, default_value_t = 64)]
    pub sram_width: u32,
    /// A JSON object overriding entries of the 45 nm per-access energy table (picojoules).
    #[arg(long, value_name = "FILE")]
    pub energy: Option<PathBuf>,
    /// Print the report as one JSON object (`layers[]`, `total`).
    #[arg(long)]
    pub json: bool,
    /// Write a per-cycle trace: FILE.csv, or FILE.json (Chrome trace format).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Largest trace --trace writes, in records (cycles × (PEs + 1)).
    #[arg(long, value_name = "RECORDS", default_value_t = TRACE_LIMIT)]
    pub trace_limit: u64,
    /// Run once per value: fifo=1,2,4,... or pes=1,2,4,... (pes needs a model) or
    /// sram_width=8,16,...
    #[arg(long, value_name = "PARAM=V1,V2,...")]
    pub sweep: Option<String>,
    /// With --sweep: write an SVG line plot of the sweep.
    #[arg(long, value_name = "FILE.svg", requires = "sweep")]
    pub plot: Option<PathBuf>,
    /// Save the outputs: .npy (one output) or .npz (every output, by name).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

fn input_error(message: String) -> anyhow::Error {
    InputError(format!("error: {message}")).into()
}

/// The program at `path`: decoded, or lowered from a model for `pes` PEs.
enum Source {
    Program(Program),
    Model,
}

fn read_source(path: &Path) -> anyhow::Result<Source> {
    Ok(read_program(path)?.map_or(Source::Model, Source::Program))
}

/// Reads `path` as an EIE program when it starts with the program magic; `None` otherwise
/// (a model, read by whoever needs it).
pub(crate) fn read_program(path: &Path) -> anyhow::Result<Option<Program>> {
    use std::io::Read;
    let name = path.display();
    let mut head = [0u8; isa::MAGIC.len()];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| input_error(format!("{name}: {e}")))?;
    if head[..n] != isa::MAGIC {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| input_error(format!("{name}: {e}")))?;
    isa::decode(&bytes)
        .map(Some)
        .map_err(|e| input_error(format!("{name}: {e}")))
}

/// Compresses and lowers a model for `pes` PEs with the eie preset, as
/// `sprig compile --target eie --pes N` does.
fn lower_model(path: &Path, pes: usize) -> anyhow::Result<Program> {
    use sprig_eie::lower::{LowerOptions, eie_pipeline, lower, pipeline_text};
    let model = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| input_error(format!("{model}: {e}"));
    let sprig_front::Parsed { graph, info } = crate::compile::load_stacked(path)?;
    let pipeline = eie_pipeline(&graph, &info, pes).map_err(|e| fail(&e))?;
    let args = PipelineArgs {
        passes: Some(pipeline_text(&pipeline)),
        ..PipelineArgs::default()
    };
    let parsed = args.apply(sprig_front::Parsed { graph, info })?;
    let lowered =
        lower(&parsed.graph, &parsed.info, &LowerOptions::default()).map_err(|e| fail(&e))?;
    Ok(lowered.program)
}

/// The f32 host inputs of `program` from the `--input` spec.
fn read_inputs(spec: &str, program: &Program) -> anyhow::Result<Vec<Vec<f32>>> {
    if let Some(rest) = spec.strip_prefix("random:") {
        let (density, seed) = crate::run::parse_random(rest)?;
        return Ok(program
            .inputs
            .iter()
            .enumerate()
            .map(|(i, io)| {
                crate::run::random_input(
                    io.elements() as usize,
                    density,
                    seed.wrapping_add(i as u64),
                )
            })
            .collect());
    }
    let path = Path::new(spec);
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let arrays: Vec<Tensor> = if is_npz {
        let arrays = files::read_npz(path).map_err(|e| input_error(e.to_string()))?;
        if program.inputs.len() == 1 && arrays.len() == 1 {
            arrays.into_iter().map(|(_, a)| a).collect()
        } else {
            program
                .inputs
                .iter()
                .map(|io| {
                    arrays
                        .iter()
                        .find(|(n, _)| *n == io.name)
                        .map(|(_, t)| t.clone())
                        .ok_or_else(|| {
                            input_error(format!(
                                "{spec}: no array named `{}` for the program's input of that name",
                                io.name
                            ))
                        })
                })
                .collect::<anyhow::Result<_>>()?
        }
    } else {
        if program.inputs.len() != 1 {
            return Err(input_error(format!(
                "the program has {} inputs; give them as an .npz archive with one array per input name",
                program.inputs.len()
            )));
        }
        vec![files::read_npy(path).map_err(|e| input_error(e.to_string()))?]
    };
    program
        .inputs
        .iter()
        .zip(arrays)
        .map(|(io, array)| {
            if array.data.len() as u64 != io.elements() {
                return Err(input_error(format!(
                    "{spec}: input `{}` takes {} elements (shape {:?}), the array has shape {} ({} elements); sprig sim runs one sample",
                    io.name,
                    io.elements(),
                    io.shape,
                    array.shape,
                    array.data.len()
                )));
            }
            Ok(array.data)
        })
        .collect()
}

fn simulate(
    program: &Program,
    config: &SimConfig,
    inputs: &[Vec<f32>],
    stepping: Stepping,
    trace: Option<&mut Vec<sprig_eie_sim::RunTrace>>,
) -> anyhow::Result<Simulation> {
    let name = &program.name;
    let quantized = sprig_eie_sim::quantize_inputs(program, inputs)
        .map_err(|e| input_error(format!("program `{name}`: {e}")))?;
    execute_with(program, config, &quantized, stepping, trace)
        .map_err(|e| input_error(format!("program `{name}`: {e}")))
}

/// One sweep axis and its values.
#[derive(Clone, Debug)]
enum Sweep {
    Fifo(Vec<usize>),
    Pes(Vec<usize>),
    SramWidth(Vec<u32>),
}

fn parse_sweep(spec: &str) -> anyhow::Result<Sweep> {
    let bad = |why: &str| anyhow::Error::from(InputError(format!("error: --sweep {spec}: {why}")));
    let (key, values) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected PARAM=V1,V2,... (PARAM: fifo, pes or sram_width)"))?;
    let numbers: Vec<usize> = values
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("values must be positive integers separated by commas"))?;
    if numbers.is_empty() || numbers.contains(&0) {
        return Err(bad("values must be positive integers separated by commas"));
    }
    match key.trim() {
        "fifo" => Ok(Sweep::Fifo(numbers)),
        "pes" => Ok(Sweep::Pes(numbers)),
        "sram_width" => Ok(Sweep::SramWidth(
            numbers.into_iter().map(|n| n as u32).collect(),
        )),
        other => Err(bad(&format!(
            "unknown parameter `{other}` (expected fifo, pes or sram_width)"
        ))),
    }
}

fn config_error(e: sprig_eie_sim::ConfigError) -> anyhow::Error {
    InputError(format!("error: {e}")).into()
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let mut config = SimConfig {
        fifo_depth: args.fifo,
        clock_mhz: args.clock,
        sram_width_bits: args.sram_width,
        ..SimConfig::default()
    };
    if let Some(path) = &args.energy {
        let text = std::fs::read_to_string(path)
            .map_err(|e| input_error(format!("{}: {e}", path.display())))?;
        config.energy = EnergyTable::from_json(&text).map_err(|e| {
            input_error(format!(
                "{}:{}:{}: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
    }
    let source = read_source(&args.program)?;
    if let Some(spec) = &args.sweep {
        if args.trace.is_some() || args.output.is_some() {
            return Err(input_error(
                "--trace and -o apply to a single run, not to a sweep".to_string(),
            ));
        }
        return run_sweep(&args, &config, source, parse_sweep(spec)?);
    }
    let program = program_for(&args, source)?;
    config.pes = usize::from(program.pes);
    config.validate().map_err(config_error)?;
    let inputs = read_inputs(&args.input, &program)?;
    let simulation = simulate(&program, &config, &inputs, Stepping::SkipAhead, None)?;
    if let Some(path) = &args.trace {
        write_trace(
            path,
            args.trace_limit,
            &program,
            &config,
            &inputs,
            &simulation,
        )?;
    }
    if let Some(path) = &args.output {
        save_outputs(path, &simulation)?;
    }
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&simulation.report)?;
        text.push('\n');
        text
    } else {
        report_text(&simulation)
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(())
}

fn write_trace(
    path: &Path,
    limit: u64,
    program: &Program,
    config: &SimConfig,
    inputs: &[Vec<f32>],
    simulation: &Simulation,
) -> anyhow::Result<()> {
    let total = &simulation.report.total;
    let records = total.cycles * (total.pes as u64 + 1);
    if records > limit {
        return Err(input_error(format!(
            "--trace {}: the run takes {} cycles on {} PEs, {records} trace records, above the limit of {limit} (--trace-limit); trace a smaller layer, fewer PEs or a sparser input",
            path.display(),
            total.cycles,
            total.pes
        )));
    }
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let mut runs = Vec::new();
    let stepped = simulate(
        program,
        config,
        inputs,
        Stepping::EveryCycle,
        Some(&mut runs),
    )?;
    debug_assert_eq!(stepped.report, simulation.report);
    let text = match extension.as_deref() {
        Some("csv") => sprig_eie_sim::trace::to_csv(&runs),
        Some("json") => sprig_eie_sim::trace::to_chrome_json(&runs),
        _ => {
            return Err(input_error(format!(
                "--trace {}: the file must end in .csv or .json",
                path.display()
            )));
        }
    };
    write_text(path, &text)
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    files::write_atomic(path, |f| f.write_all(text.as_bytes()))
        .map_err(|e| InputError(format!("error: {e}")).into())
}

fn save_outputs(path: &Path, simulation: &Simulation) -> anyhow::Result<()> {
    let tensor = |o: &sprig_eie_sim::Output| {
        let dims: Vec<usize> = o.shape.iter().map(|&d| d as usize).collect();
        Tensor::new(Shape::new(dims), o.real.clone())
    };
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if is_npz {
        let arrays: Vec<(String, Tensor)> = simulation
            .outputs
            .iter()
            .map(|o| (o.name.clone(), tensor(o)))
            .collect();
        files::write_npz(path, &arrays).map_err(|e| input_error(e.to_string()))
    } else {
        let [output] = simulation.outputs.as_slice() else {
            return Err(input_error(format!(
                "the program has {} outputs; write them to an .npz file",
                simulation.outputs.len()
            )));
        };
        files::write_npy(path, &tensor(output)).map_err(|e| input_error(e.to_string()))
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The per-layer table (the paper's columns first) and the totals.
pub fn report_text(simulation: &Simulation) -> String {
    let report = &simulation.report;
    let rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                format!("{}x{}", l.cols, l.rows),
                percent(l.weight_density),
                percent(l.activation_density),
                l.cycles.to_string(),
                format!("{:.2}", l.latency_us),
                percent(l.load_balance_efficiency),
                l.macs.to_string(),
                l.padding_entries.to_string(),
                format!("{:.3}", l.energy_uj),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "layer",
            "size (in x out)",
            "weights",
            "activations",
            "cycles",
            "us",
            "load balance",
            "MACs",
            "padding",
            "energy uJ",
        ],
        &rows,
    );
    let t = &report.total;
    let _ = writeln!(
        out,
        "total: {} cycles = {:.2} us at {} MHz on {} PEs (FIFO {}), load balance {}, {} MACs ({} padding), {} padding entries stored, {:.3} uJ",
        t.cycles,
        t.latency_us,
        t.clock_mhz,
        t.pes,
        t.fifo_depth,
        percent(t.load_balance_efficiency),
        t.macs,
        t.padding_macs,
        t.padding_entries,
        t.energy_uj
    );
    let _ = writeln!(
        out,
        "SRAM reads: {} matrix ({}-bit), {} pointer, {} activation; {} host operations",
        t.matrix_reads, t.sram_width_bits, t.pointer_reads, t.activation_reads, t.host_ops
    );
    for output in &simulation.outputs {
        let shown: Vec<String> = output
            .real
            .iter()
            .take(8)
            .map(|v| format!("{v:.4}"))
            .collect();
        let more = output.real.len().saturating_sub(8);
        let _ = writeln!(
            out,
            "{} : {:?} Q{} [{}{}]",
            output.name,
            output.shape,
            output.frac,
            shown.join(", "),
            if more > 0 {
                format!(", ... ({more} more)")
            } else {
                String::new()
            }
        );
    }
    out
}

/// The program of a single run (or of a sweep that keeps the PE count): the decoded program,
/// whose PE count `--pes` must match, or the model lowered for `--pes` (64).
fn program_for(args: &SimArgs, source: Source) -> anyhow::Result<Program> {
    match source {
        Source::Program(program) => {
            let pes = usize::from(program.pes);
            if let Some(asked) = args.pes
                && asked != pes
            {
                return Err(input_error(format!(
                    "{}: the program was lowered for {pes} PEs, not {asked}; lower the model again (`sprig compile --target eie --pes {asked}`) or give the model to `sprig sim`",
                    args.program.display()
                )));
            }
            Ok(program)
        }
        Source::Model => lower_model(&args.program, args.pes.unwrap_or(64)),
    }
}

fn run_sweep(args: &SimArgs, base: &SimConfig, source: Source, sweep: Sweep) -> anyhow::Result<()> {
    let program = match (&source, &sweep) {
        (Source::Program(program), Sweep::Pes(_)) => {
            return Err(input_error(format!(
                "{}: a program is lowered for one PE count ({}); a PE sweep needs the model, which is lowered again for every PE count",
                args.program.display(),
                program.pes
            )));
        }
        (_, Sweep::Pes(_)) => None,
        _ => Some(program_for(args, source)?),
    };
    let (param, values): (&str, Vec<usize>) = match &sweep {
        Sweep::Fifo(v) => ("fifo", v.clone()),
        Sweep::Pes(v) => ("pes", v.clone()),
        Sweep::SramWidth(v) => ("sram_width", v.iter().map(|&w| w as usize).collect()),
    };
    let mut reports: Vec<(usize, Report)> = Vec::new();
    let mut inputs: Option<Vec<Vec<f32>>> = None;
    for &value in &values {
        let mut config = base.clone();
        let lowered;
        let program = match &program {
            Some(program) => program,
            None => {
                lowered = lower_model(&args.program, value)?;
                &lowered
            }
        };
        config.pes = usize::from(program.pes);
        match sweep {
            Sweep::Fifo(_) => config.fifo_depth = value,
            Sweep::SramWidth(_) => config.sram_width_bits = value as u32,
            Sweep::Pes(_) => {}
        }
        config.validate().map_err(config_error)?;
        if inputs.is_none() {
            inputs = Some(read_inputs(&args.input, program)?);
        }
        let simulation = simulate(
            program,
            &config,
            inputs.as_deref().unwrap_or_default(),
            Stepping::SkipAhead,
            None,
        )?;
        reports.push((value, simulation.report));
    }
    let mut rows = Vec::new();
    for (value, report) in &reports {
        for l in &report.layers {
            rows.push(vec![
                value.to_string(),
                l.name.clone(),
                l.cycles.to_string(),
                format!("{:.2}", l.latency_us),
                percent(l.load_balance_efficiency),
                l.padding_entries.to_string(),
                format!("{:.3}", l.energy_uj),
            ]);
        }
        if report.layers.len() > 1 {
            let t = &report.total;
            rows.push(vec![
                value.to_string(),
                "(total)".into(),
                t.cycles.to_string(),
                format!("{:.2}", t.latency_us),
                percent(t.load_balance_efficiency),
                t.padding_entries.to_string(),
                format!("{:.3}", t.energy_uj),
            ]);
        }
    }
    let text = if args.json {
        let sweep_json: Vec<serde_json::Value> = reports
            .iter()
            .map(|(value, report)| {
                serde_json::json!({ param: value, "layers": report.layers, "total": report.total })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&serde_json::json!({ "sweep": sweep_json }))?;
        text.push('\n');
        text
    } else {
        table(
            &[
                param,
                "layer",
                "cycles",
                "us",
                "load balance",
                "padding",
                "energy uJ",
            ],
            &rows,
        )
    };
    if let Some(path) = &args.plot {
        let svg = sweep_plot(param, &reports);
        write_text(path, &svg)?;
    }
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(())
}

/// The sweep's picture: load-balance efficiency per layer for a FIFO sweep, speedup over the
/// first value per layer for a PE sweep, matrix reads per layer for an SRAM-width sweep.
fn sweep_plot(param: &str, reports: &[(usize, Report)]) -> String {
    let layers = reports.first().map_or(0, |(_, r)| r.layers.len());
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..layers)
        .map(|k| {
            let name = reports[0].1.layers[k].name.clone();
            let first = reports[0].1.layers[k].cycles.max(1) as f64;
            let points = reports
                .iter()
                .filter_map(|(v, r)| r.layers.get(k).map(|l| (*v as f64, l)))
                .map(|(v, l)| match param {
                    "pes" => (v, first / l.cycles.max(1) as f64),
                    "sram_width" => (v, l.matrix_reads as f64),
                    _ => (v, l.load_balance_efficiency),
                })
                .collect();
            (name, points)
        })
        .collect();
    let (title, y) = match param {
        "pes" => (
            "Speedup with the number of PEs",
            "speedup over the first PE count",
        ),
        "sram_width" => (
            "Sparse-matrix SRAM reads by read width",
            "matrix SRAM reads",
        ),
        _ => (
            "Load-balance efficiency by FIFO depth",
            "load-balance efficiency",
        ),
    };
    let x = match param {
        "pes" => "PEs",
        "sram_width" => "SRAM width (bits)",
        _ => "FIFO depth",
    };
    line_plot_svg(title, x, y, &series, true)
}
