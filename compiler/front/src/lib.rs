//! sprig-front: everything that turns files into sprig's IR.
//!
//! - [`text`]: the text format (logos lexer, parser, name resolution), with diagnostics that
//!   point at the offending text and report every error of a file at once.
//! - [`onnx`]: the ONNX importer (protobuf via prost, one op table, constant folding of shape
//!   arithmetic, initializers and external data).
//! - [`files`]: safetensors weight files and NumPy `.npy`/`.npz` arrays.
//! - [`load`] / [`load_model`]: read a model file, a sprig text description or an ONNX model,
//!   recognised by its content (never by its extension).
//!
//! Invariants: bad input is an error value naming the file, the place and the reason, never a
//! panic; nothing here prints; graphs handed out have verified.

pub mod diag;
pub mod files;
pub mod onnx;
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
    #[error("{0}")]
    Onnx(#[from] onnx::OnnxError),
}

/// How a model file was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Text,
    Onnx,
}

/// A model that loaded and verified, with its format and what the import left out (always
/// empty for text descriptions).
#[derive(Debug)]
pub struct Loaded {
    pub parsed: Parsed,
    pub format: ModelFormat,
    pub notes: Vec<onnx::Note>,
}

/// Reads and verifies the model at `path`: an ONNX model when the content starts like one
/// ([`onnx::looks_like_onnx`]), else a text description (valid UTF-8 without NUL bytes), whose
/// weights file is resolved relative to the model's directory.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if onnx::looks_like_onnx(&bytes) {
        let imported = onnx::import_bytes(path, bytes)?;
        return Ok(Loaded {
            parsed: Parsed {
                graph: imported.graph,
                info: imported.info,
            },
            format: ModelFormat::Onnx,
            notes: imported.notes,
        });
    }
    let source = match std::str::from_utf8(&bytes) {
        Ok(s) if !s.contains('\0') => s,
        Ok(s) => {
            let at = s.find('\0').unwrap_or(0);
            return Err(not_text(path, at));
        }
        Err(e) => return Err(not_text(path, e.valid_up_to())),
    };
    let base = path.parent().filter(|p| !p.as_os_str().is_empty());
    let parsed =
        parse_text(source, &path.display().to_string(), base).map_err(LoadError::Diagnostics)?;
    Ok(Loaded {
        parsed,
        format: ModelFormat::Text,
        notes: Vec::new(),
    })
}

/// [`load`] without the format and notes.
pub fn load_model(path: &Path) -> Result<Parsed, LoadError> {
    load(path).map(|l| l.parsed)
}

fn not_text(path: &Path, offset: usize) -> LoadError {
    LoadError::Format {
        path: path.to_path_buf(),
        reason: format!(
            "not a sprig text description (binary content at byte {offset}) and not an ONNX model (it does not start like an ONNX protobuf)"
        ),
    }
}
