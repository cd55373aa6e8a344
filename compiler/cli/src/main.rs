//! The `sprig` command line: the only part of sprig that reads the terminal, prints or exits.
//!
//! Exit status: 0 on success, 1 when an input (model, weights, array) is at fault, 2 for a bad
//! command line. Output files are written atomically (temporary file, then rename).

mod check;
mod dump;
mod pipeline;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sprig",
    version,
    about = "sprig: a compiler that makes trained neural networks small and fast",
    long_about = "sprig reads a network description (sprig's text format, with weights from a \
safetensors file, inline values or seeded generators), checks it, prints its IR and runs it.\n\n\
Start with:\n  sprig check examples/lenet_300_100.sprig\n  sprig dump examples/lenet_300_100.sprig\n  \
sprig run examples/lenet5.sprig --input examples/inputs/mnist_digits_8.npy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse and verify a model; print a one-screen summary (inputs, outputs, ops, parameters).
    Check(check::CheckArgs),
    /// Print a model's IR as sprig text (which sprig reads back), JSON or Graphviz dot.
    Dump(dump::DumpArgs),
    /// Execute a model on input arrays (.npy/.npz) and print or save the outputs.
    Run(run::RunArgs),
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

/// Loads and verifies a model, turning load errors into printable input errors.
pub fn load(path: &std::path::Path) -> anyhow::Result<sprig_front::Parsed> {
    run::load_noted(path).map(|loaded| loaded.parsed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Run(args) => run::run(args),
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
