//! `sprig disasm PROGRAM`: decodes an EIE program (validating it: a malformed file is an input
//! error naming the byte offset and the reason) and prints its listing, one instruction per line.

use crate::InputError;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// The program (written by `sprig compile --target eie`).
    pub program: PathBuf,
}

pub fn run(args: DisasmArgs) -> anyhow::Result<()> {
    let name = args.program.display();
    let bytes =
        std::fs::read(&args.program).map_err(|e| InputError(format!("error: {name}: {e}")))?;
    let program =
        sprig_eie::isa::decode(&bytes).map_err(|e| InputError(format!("error: {name}: {e}")))?;
    #[allow(clippy::print_stdout)]
    {
        print!("{}", sprig_eie::isa::disassemble(&program));
    }
    Ok(())
}
