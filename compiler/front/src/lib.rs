//! sprig-front: everything that turns files into sprig's IR.
//!
//! - [`text`]: the text format (logos lexer, parser, name resolution), with diagnostics that
//!   point at the offending text and report every error of a file at once.
//! - [`files`]: safetensors weight files and NumPy `.npy`/`.npz` arrays.
//! - [`load_model`]: reads a model file, recognised by its content.
//!
//! Invariants: bad input is an error value naming the file, the place and the reason, never a
//! panic; nothing here prints; graphs handed out have verified.

pub mod diag;
pub mod files;
pub mod text;

pub use diag::{Diag, Diagnostics};
pub use text::{Parsed, parse_text};

use std::path::{Path, PathBuf};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{0}")]
    Diagnostics(Diagnostics),
}

/// Reads and verifies the model at `path`. Text descriptions are recognised by content (valid
/// UTF-8 without NUL bytes); weights files are resolved relative to the model's directory.
pub fn load_model(path: &Path) -> Result<Parsed, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let source = match std::str::from_utf8(&bytes) {
        Ok(s) if !s.contains('\0') => s,
        Ok(s) => {
            let at = s.find('\0').unwrap_or(0);
            return Err(not_text(path, at));
        }
        Err(e) => return Err(not_text(path, e.valid_up_to())),
    };
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    parse_text(source, &path.display().to_string(), base).map_err(LoadError::Diagnostics)
}

fn not_text(path: &Path, offset: usize) -> LoadError {
    LoadError::Format {
        path: path.to_path_buf(),
        reason: format!(
            "not a sprig text description (binary content at byte {offset}); sprig reads models written in its text format"
        ),
    }
}
