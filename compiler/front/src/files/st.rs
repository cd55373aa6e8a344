//! safetensors weight files, parsed and validated by the `safetensors` crate.
//!
//! Invariant: the crate checks, before any value is converted, that the header fits the file, that
//! tensors' data offsets tile the data section in order and end exactly at the end of the file,
//! and that each tensor's byte range is its shape × element size (with checked arithmetic). The
//! conversion then allocates each tensor's values once.

use super::{
    FileError, FileErrorKind, SourceDType, WeightFile, WeightTensor, check_values, decode,
    read_all, write_atomic,
};
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};
use sprig_ir::Shape;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// Reads a safetensors file: every tensor converted to f32, in file order, with the file's
/// metadata. A tensor of an unsupported dtype makes the whole read fail.
pub fn read_safetensors(path: &Path) -> Result<WeightFile, FileError> {
    let bytes = read_all(path)?;
    parse_safetensors(&bytes).map_err(|kind| FileError::new(path, kind))
}

/// Writes `tensors` (name, shape, row-major values) as an F32 safetensors file, with optional
/// `__metadata__` strings. Names must be distinct and not `__metadata__`; each value slice must
/// hold exactly its shape's element count. The tensors are laid out as the safetensors library
/// orders them (by name, all being F32). The file is assembled in memory, then written atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Shape, &[f32])],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), FileError> {
    let err = |kind| FileError::new(path, kind);
    let mut seen = HashSet::new();
    for (name, shape, values) in tensors {
        let what = format!("tensor `{name}`");
        let bad = |reason: &str| FileErrorKind::BadInput {
            what: what.clone(),
            reason: reason.to_string(),
        };
        if name == "__metadata__" {
            return Err(err(bad(
                "`__metadata__` is reserved for the file's metadata",
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(err(bad("the name is given twice")));
        }
        check_values(&what, shape.dims(), values.len()).map_err(err)?;
    }
    let views = tensors.iter().map(|(name, shape, values)| {
        (
            name.as_str(),
            F32View {
                shape: shape.dims(),
                values,
            },
        )
    });
    let info: Option<HashMap<String, String>> = metadata.map(|m| m.clone().into_iter().collect());
    let bytes = safetensors::serialize(views, info).map_err(|e| {
        err(FileErrorKind::Io {
            action: "encode the safetensors file",
            error: io::Error::other(e.to_string()),
        })
    })?;
    write_atomic(path, |file| file.write_all(&bytes))
}

/// An f32 tensor as the safetensors serializer sees it; its bytes are produced on demand.
struct F32View<'a> {
    shape: &'a [usize],
    values: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.values.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        // In memory as f32, so this byte count is addressable.
        self.values.len() * 4
    }
}

fn parse_safetensors(bytes: &[u8]) -> Result<WeightFile, FileErrorKind> {
    let len = bytes.len() as u64;
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(FileErrorKind::Truncated {
            what: "the 8-byte header length",
            len,
        });
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    if header_len > len - 8 {
        return Err(FileErrorKind::HeaderPastEnd {
            offset: 8,
            header_len,
            len,
        });
    }
    let (n, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| describe(e, header_len, len))?;
    let invalid = |reason: String| FileErrorKind::Safetensors { reason };
    let data = bytes
        .get(8 + n..)
        .ok_or_else(|| invalid("the data section is missing".into()))?;
    let names = metadata.offset_keys();
    let mut tensors = Vec::with_capacity(names.len());
    let mut index = HashMap::with_capacity(names.len());
    for name in names {
        let Some(info) = metadata.info(&name) else {
            return Err(invalid(format!(
                "tensor `{name}` has no entry in the header"
            )));
        };
        let Some(dtype) = source_dtype(info.dtype) else {
            return Err(FileErrorKind::UnsupportedTensorDtype {
                name,
                dtype: info.dtype.to_string(),
            });
        };
        let (start, end) = info.data_offsets;
        let raw = data.get(start..end.max(start)).unwrap_or_default();
        // Already validated by the crate; checked again so a mismatch can never reach the IR.
        let count = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if count.and_then(|c| c.checked_mul(dtype.size())) != Some(raw.len()) || end < start {
            return Err(invalid(format!(
                "tensor `{name}`: data offsets {start}..{end} do not hold its shape {} of {dtype}",
                super::shape_text(&info.shape)
            )));
        }
        let values: Arc<[f32]> = decode(raw, dtype, false);
        index.insert(name.clone(), tensors.len());
        tensors.push(WeightTensor {
            name,
            shape: info.shape.clone(),
            dtype,
            values,
        });
    }
    let metadata = metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(WeightFile {
        tensors,
        index,
        metadata,
    })
}

/// The element types sprig converts; `None` for the rest (8-bit and smaller floats, complex).
fn source_dtype(dtype: Dtype) -> Option<SourceDType> {
    Some(match dtype {
        Dtype::F64 => SourceDType::F64,
        Dtype::F32 => SourceDType::F32,
        Dtype::F16 => SourceDType::F16,
        Dtype::BF16 => SourceDType::BF16,
        Dtype::I64 => SourceDType::I64,
        Dtype::I32 => SourceDType::I32,
        Dtype::I16 => SourceDType::I16,
        Dtype::I8 => SourceDType::I8,
        Dtype::U64 => SourceDType::U64,
        Dtype::U32 => SourceDType::U32,
        Dtype::U16 => SourceDType::U16,
        Dtype::U8 => SourceDType::U8,
        Dtype::BOOL => SourceDType::Bool,
        _ => return None,
    })
}

/// A readable reason for the crate's validation errors. `header_len` has been checked to fit in
/// the file of `len` bytes.
fn describe(e: SafeTensorError, header_len: u64, len: u64) -> FileErrorKind {
    let header_end = 8 + header_len;
    let reason = match e {
        SafeTensorError::InvalidHeader(e) => {
            format!("the header (bytes 8..{header_end}) is not UTF-8 text: {e}")
        }
        SafeTensorError::InvalidHeaderDeserialization(e) | SafeTensorError::JsonError(e) => {
            format!("the header (bytes 8..{header_end}) is not a safetensors JSON header: {e}")
        }
        SafeTensorError::HeaderTooLarge => {
            format!(
                "the header is {header_len} bytes long, more than the 100 MB safetensors allows"
            )
        }
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            format!("the header length {header_len} does not fit in the file of {len} bytes")
        }
        SafeTensorError::InvalidOffset(name) => format!(
            "tensor `{name}`: its data offsets do not start where the previous tensor's data ends (offsets must tile the data section in order)"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data offsets span a different number of bytes than its shape and dtype need"
                .to_string()
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensors' data offsets do not end at the end of the file: {} bytes of data follow the header at byte {header_end} (truncated file, or bytes left over)",
            len - header_end
        ),
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape has more elements than this machine can address".to_string()
        }
        SafeTensorError::MisalignedSlice => {
            "a tensor of a sub-byte dtype does not end on a byte boundary".to_string()
        }
        other => other.to_string(),
    };
    FileErrorKind::Safetensors { reason }
}
