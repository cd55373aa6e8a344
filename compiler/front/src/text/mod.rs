//! sprig's text format: the language of hand-written descriptions and of IR dumps.
//!
//! Invariant: [`parse_text`] reads everything `sprig_ir::print` writes, giving an equal graph.

pub mod ast;
pub mod lexer;
pub mod lower;
pub mod parser;

use crate::diag::Diagnostics;
pub use lower::Parsed;
use std::path::Path;

/// Parses, resolves and verifies a description. `file_name` names it in diagnostics; the weights
/// file it names is looked up relative to `base_dir` (the current directory when `None`).
pub fn parse_text(
    source: &str,
    file_name: &str,
    base_dir: Option<&Path>,
) -> Result<Parsed, Diagnostics> {
    let (ast, diags) = parser::parse(source);
    lower::lower(ast, source, file_name, base_dir, diags)
}
