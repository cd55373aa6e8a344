//! The `sprig` command line: the only part of sprig that reads the terminal, prints or exits.
//!
//! Exit status: 0 on success, 1 when an input (model, weights, array) is at fault, 2 for a bad
//! command line. Output files are written atomically (temporary file, then rename).

mod bench;
mod check;
mod compile;
mod disasm;
mod dump;
mod eval;
mod evaluate;
mod finetune;
mod pipeline;
mod plots;
mod run;
mod sensitivity;
mod sim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sprig",
    version,
    about = "sprig: a compiler that makes trained neural networks small and fast",
    long_about = "sprig reads a network description (sprig's text format, with weights from a \
safetensors file, inline values or seeded generators), checks it, compresses it into a packed artifact, prints its IR and runs it.\n\n\
Start with:\n  sprig check examples/lenet_300_100.sprig\n  sprig dump examples/lenet_300_100.sprig\n  \
sprig run examples/lenet5.sprig --input examples/inputs/mnist_digits_8.npy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Time every fully connected layer on the CPU kernels against a dense (faer) and a CSR
    /// baseline, measured in the same run; --json for a report.
    Bench(bench::BenchArgs),
    /// Parse and verify a model; print a one-screen summary (inputs, outputs, ops, parameters).
    Check(check::CheckArgs),
    /// Compress a model (the deep-compression preset unless --passes/--preset says otherwise)
    /// and write the packed artifact with a size report; --target eie writes an EIE program
    /// (the eie preset) with a per-layer report.
    Compile(compile::CompileArgs),
    /// List an EIE program, one instruction per line (large payloads summarised).
    Disasm(disasm::DisasmArgs),
    /// Print a model's IR as sprig text (which sprig reads back), JSON or Graphviz dot.
    Dump(dump::DumpArgs),
    /// Top-1 (and top-5) accuracy of a model or artifact on a labelled data set.
    Eval(eval::EvalArgs),
    /// Train a model further (SGD with momentum; pruned weights stay zero, shared weights train
    /// their centroids), optionally dense -> sparse -> dense; writes a packed artifact.
    Finetune(finetune::FinetuneArgs),
    /// Execute a model on input arrays (.npy/.npz) and print or save the outputs.
    Run(run::RunArgs),
    /// Accuracy with each layer pruned alone over a sweep of sparsities: table, SVG plot and
    /// the per-layer sparsity within an accuracy budget.
    Sensitivity(sensitivity::SensitivityArgs),
    /// Run an EIE program (or a model lowered for EIE) on the cycle-level simulator: cycles,
    /// latency, load balance, SRAM reads and energy per layer; traces and parameter sweeps.
    Sim(sim::SimArgs),
}

/// An error whose message is complete as it stands (diagnostics, file errors): printed as is.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Loads and verifies a model or a packed artifact, turning load errors into printable input
/// errors.
pub fn load(path: &std::path::Path) -> anyhow::Result<sprig_front::Parsed> {
    run::load_noted(path).map(|loaded| loaded.parsed)
}

/// Reads `path` as a packed artifact when it starts with the artifact's magic bytes; `None`
/// for anything else (a text description or an ONNX model).
pub fn load_artifact(path: &std::path::Path) -> anyhow::Result<Option<sprig_front::Parsed>> {
    use std::io::Read;
    let mut head = [0u8; sprig_pack::MAGIC.len()];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    if !sprig_pack::looks_like_artifact(&head[..n]) {
        return Ok(None);
    }
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| InputError(format!("error: {name}: {e}")))?;
    let (graph, info) =
        sprig_pack::unpack(&bytes, &name).map_err(|e| InputError(format!("error: {e}")))?;
    Ok(Some(sprig_front::Parsed { graph, info }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Disasm(args) => disasm::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Run(args) => run::run(args),
        Command::Sensitivity(args) => sensitivity::run(args),
        Command::Sim(args) => sim::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            match e.downcast_ref::<InputError>() {
                Some(input) => eprintln!("{input}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}
