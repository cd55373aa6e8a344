//! NumPy `.npy` arrays and `.npz` archives of them.
//!
//! Invariants:
//! - Before npyz sees a header, [`screen_header`] has checked it: at most [`MAX_HEADER`] bytes,
//!   UTF-8 without escape sequences, brackets nested at most [`MAX_NESTING`] deep, and exactly one
//!   `shape` key whose tuple holds plain decimal integers whose product fits in `usize` even with
//!   zero dimensions counted as one. So npyz's own shape arithmetic (unchecked products) cannot
//!   overflow, and the shape npyz returns is the one screened (checked again after parsing).
//! - The data after the header must be exactly shape × element size bytes; that is checked before
//!   the values are allocated.
//! - An `.npz` member is decompressed only as far as its declared size, which must be no more than
//!   its compressed size allows (deflate expands at most 1032-fold), so memory stays proportional
//!   to the archive's size.

use super::{
    FileError, FileErrorKind, SourceDType, check_values, decode, read_all, shape_text, write_atomic,
};
use npyz::{DType, Endianness, NpyFile, Order, TypeChar};
use sprig_ir::{Shape, Tensor};
use std::collections::HashSet;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Longest header text read. NumPy itself refuses headers over 10000 bytes by default.
const MAX_HEADER: u64 = 65_536;
/// Deepest bracket nesting in a header: a plain dtype needs 2 (the dict and the shape tuple).
const MAX_NESTING: usize = 8;
/// The most a deflate stream can expand: 1032 output bytes per input byte, plus slack.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Reads a `.npy` file: any supported dtype, either byte order, C or Fortran order, as a
/// row-major f32 tensor.
pub fn read_npy(path: &Path) -> Result<Tensor, FileError> {
    let bytes = read_all(path)?;
    parse_npy(&bytes).map_err(|kind| FileError::new(path, kind))
}

/// Reads an `.npz` archive (stored or deflated members): every array, named without the `.npy`
/// suffix, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, FileError> {
    let bytes = read_all(path)?;
    let err = |kind| FileError::new(path, kind);
    let file_len = bytes.len() as u64;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.as_slice())).map_err(|e| {
        err(FileErrorKind::Zip {
            reason: e.to_string(),
        })
    })?;
    let mut arrays = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).map_err(|e| {
            err(FileErrorKind::Zip {
                reason: format!("member {i}: {e}"),
            })
        })?;
        if member.is_dir() {
            continue;
        }
        let member_name = member.name().to_string();
        let name = member_name
            .strip_suffix(".npy")
            .unwrap_or(&member_name)
            .to_string();
        let in_member = |kind| {
            err(FileErrorKind::InMember {
                name: name.clone(),
                member: member_name.clone(),
                kind: Box::new(kind),
            })
        };
        let declared = member.size();
        let compressed = member.compressed_size();
        let stored = member.compression() == zip::CompressionMethod::Stored;
        let raw =
            read_member(&mut member, declared, compressed, stored, file_len).map_err(in_member)?;
        let tensor = parse_npy(&raw).map_err(in_member)?;
        if !seen.insert(name.clone()) {
            return Err(err(FileErrorKind::DuplicateArray { name }));
        }
        arrays.push((name, tensor));
    }
    Ok(arrays)
}

/// Writes `tensor` as a `.npy` file: `<f4`, C order.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), FileError> {
    check_values("the array", tensor.dims(), tensor.data.len())
        .map_err(|kind| FileError::new(path, kind))?;
    let header = npy_header(tensor.dims());
    write_atomic(path, |file| {
        let mut w = BufWriter::new(file);
        w.write_all(&header)?;
        write_f32s(&mut w, &tensor.data)?;
        w.flush()
    })
}

/// Writes `arrays` as an `.npz` archive with stored (uncompressed) members `NAME.npy`, in the given
/// order, as `np.savez` does. Names must be non-empty and distinct. The archive is assembled in
/// memory, then written atomically.
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<(), FileError> {
    let err = |kind| FileError::new(path, kind);
    let mut seen = HashSet::new();
    for (name, tensor) in arrays {
        let what = format!("array `{name}`");
        let bad = |reason: &str| FileErrorKind::BadInput {
            what: what.clone(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(err(bad("an array name must not be empty")));
        }
        if !seen.insert(name.as_str()) {
            return Err(err(bad("the name is given twice")));
        }
        check_values(&what, tensor.dims(), tensor.data.len()).map_err(err)?;
    }
    let zip_err = |e: zip::result::ZipError| {
        err(FileErrorKind::Io {
            action: "assemble the archive",
            error: io::Error::other(e.to_string()),
        })
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, tensor) in arrays {
        let header = npy_header(tensor.dims());
        // Fits: the data is in memory as f32, so 4 bytes per value is an addressable size.
        let size = header.len() as u64 + 4 * tensor.data.len() as u64;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(format!("{name}.npy"), options)
            .map_err(zip_err)?;
        zip.write_all(&header)
            .and_then(|()| write_f32s(&mut zip, &tensor.data))
            .map_err(|e| zip_err(e.into()))?;
    }
    let bytes = zip.finish().map_err(zip_err)?.into_inner();
    write_atomic(path, |file| file.write_all(&bytes))
}

/// Decompresses one archive member, refusing sizes its compressed bytes cannot justify.
fn read_member(
    member: &mut impl Read,
    declared: u64,
    compressed: u64,
    stored: bool,
    file_len: u64,
) -> Result<Vec<u8>, FileErrorKind> {
    let zip_err = |reason: String| FileErrorKind::Zip { reason };
    if compressed > file_len {
        return Err(zip_err(format!(
            "the member claims {compressed} compressed bytes, but the whole archive is {file_len} bytes"
        )));
    }
    let limit = if stored {
        compressed
    } else {
        compressed
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(64)
    };
    if declared > limit {
        return Err(zip_err(format!(
            "the member claims {declared} uncompressed bytes, more than its {compressed} compressed bytes can hold"
        )));
    }
    // Grows only as bytes actually arrive; one byte past `declared` detects a size lie.
    let mut raw = Vec::new();
    member
        .take(declared.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| zip_err(format!("cannot decompress the member: {e}")))?;
    if raw.len() as u64 != declared {
        return Err(zip_err(format!(
            "the member holds {} uncompressed bytes, but the archive says {declared}",
            raw.len()
        )));
    }
    Ok(raw)
}

/// Why a header failed the screen.
enum Screen {
    Bad(String),
    /// The shape, as written, has more elements than `usize` can count.
    Overflow(String),
}

/// Parses a whole `.npy` file held in memory.
pub(super) fn parse_npy(bytes: &[u8]) -> Result<Tensor, FileErrorKind> {
    let len = bytes.len() as u64;
    if !bytes.starts_with(MAGIC) {
        return Err(if MAGIC.starts_with(bytes) {
            FileErrorKind::Truncated {
                what: "the magic bytes",
                len,
            }
        } else {
            FileErrorKind::BadMagic {
                format: ".npy",
                magic: "\\x93NUMPY",
            }
        });
    }
    let (Some(&major), Some(&minor)) = (bytes.get(6), bytes.get(7)) else {
        return Err(FileErrorKind::Truncated {
            what: "the format version",
            len,
        });
    };
    let prefix: usize = match (major, minor) {
        (1, 0) => 10,
        (2, 0) | (3, 0) => 12,
        _ => return Err(FileErrorKind::UnsupportedVersion { major, minor }),
    };
    let Some(len_bytes) = bytes.get(8..prefix) else {
        return Err(FileErrorKind::Truncated {
            what: "the header length",
            len,
        });
    };
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    // No overflow: header_len < 2^32 and prefix is 10 or 12.
    let end = prefix as u64 + header_len;
    let Some(text) = usize::try_from(end)
        .ok()
        .and_then(|end| bytes.get(prefix..end))
    else {
        return Err(FileErrorKind::HeaderPastEnd {
            offset: prefix as u64,
            header_len,
            len,
        });
    };
    let bad = |reason: String| FileErrorKind::BadHeader {
        offset: prefix as u64,
        end,
        reason,
    };
    let dims = match screen_header(text) {
        Ok(dims) => dims,
        Err(Screen::Bad(reason)) => return Err(bad(reason)),
        Err(Screen::Overflow(shape)) => return Err(FileErrorKind::ShapeOverflow { shape }),
    };

    let npy = NpyFile::new(bytes).map_err(|e| bad(e.to_string()))?;
    let header = npy.header();
    if header.shape() != dims.as_slice() {
        return Err(bad(format!(
            "the shape reads as {} and as {}",
            shape_text(header.shape()),
            shape_text(&dims)
        )));
    }
    let type_str = match header.dtype() {
        DType::Plain(t) => t,
        other => {
            return Err(FileErrorKind::UnsupportedNpyDtype {
                dtype: other.descr(),
            });
        }
    };
    let unsupported = || FileErrorKind::UnsupportedNpyDtype {
        dtype: type_str.to_string(),
    };
    let dtype = match (type_str.type_char(), type_str.size_field()) {
        (TypeChar::Float, 2) => SourceDType::F16,
        (TypeChar::Float, 4) => SourceDType::F32,
        (TypeChar::Float, 8) => SourceDType::F64,
        (TypeChar::Int, 1) => SourceDType::I8,
        (TypeChar::Int, 2) => SourceDType::I16,
        (TypeChar::Int, 4) => SourceDType::I32,
        (TypeChar::Int, 8) => SourceDType::I64,
        (TypeChar::Uint, 1) => SourceDType::U8,
        (TypeChar::Uint, 2) => SourceDType::U16,
        (TypeChar::Uint, 4) => SourceDType::U32,
        (TypeChar::Uint, 8) => SourceDType::U64,
        (TypeChar::Bool, 1) => SourceDType::Bool,
        _ => return Err(unsupported()),
    };
    let big_endian = type_str.endianness() == Endianness::Big;
    let fortran = header.order() == Order::Fortran;
    // The screen guarantees every dimension and their product fit in usize.
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let values = dims.iter().product::<usize>();
    let data = npy.into_inner();
    let offset = (bytes.len() - data.len()) as u64;
    let expected =
        values
            .checked_mul(dtype.size())
            .ok_or_else(|| FileErrorKind::ShapeOverflow {
                shape: shape_text(&dims),
            })?;
    if data.len() != expected {
        return Err(FileErrorKind::DataSize {
            shape: shape_text(&dims),
            values,
            dtype: format!("'{type_str}'"),
            expected: expected as u64,
            actual: data.len() as u64,
            offset,
        });
    }
    let mut values: Vec<f32> = decode(data, dtype, big_endian);
    if fortran && dims.len() > 1 {
        values = fortran_to_c(&values, &dims);
    }
    Ok(Tensor {
        shape: Shape::new(dims),
        data: values,
    })
}

/// Checks a header's text (see the module invariants) and returns its shape.
fn screen_header(text: &[u8]) -> Result<Vec<u64>, Screen> {
    let bad = |s: &str| Screen::Bad(s.to_string());
    if text.len() as u64 > MAX_HEADER {
        return Err(Screen::Bad(format!(
            "the header is {} bytes long; sprig reads headers of at most {MAX_HEADER} bytes",
            text.len()
        )));
    }
    let text = std::str::from_utf8(text).map_err(|_| bad("the header is not UTF-8 text"))?;
    if text.contains('\\') {
        return Err(bad("the header contains an escape sequence"));
    }
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Screen::Bad(format!(
                        "the header nests brackets more than {MAX_NESTING} deep"
                    )));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if text.matches("shape").count() != 1 {
        return Err(bad("the header must name the `shape` key exactly once"));
    }
    let at = text.find("shape").unwrap_or(0);
    let (before, after) = (&text[..at], &text[at + "shape".len()..]);
    let quote = before
        .chars()
        .next_back()
        .filter(|&q| q == '\'' || q == '"');
    let Some(rest) = quote.and_then(|q| after.strip_prefix(q)) else {
        return Err(bad("`shape` is not a quoted dictionary key"));
    };
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return Err(bad("`shape` is not followed by `:`"));
    };
    let rest = rest.trim_start();
    let (close, mut rest) = match rest.chars().next() {
        Some('(') => (')', &rest[1..]),
        Some('[') => (']', &rest[1..]),
        _ => return Err(bad("the shape is not a tuple")),
    };
    let mut digits: Vec<&str> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with(close) {
            break;
        }
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let d = &rest[..n];
        if d.is_empty() || (d.len() > 1 && d.starts_with('0')) {
            return Err(bad(
                "the shape holds something other than non-negative decimal integers",
            ));
        }
        digits.push(d);
        rest = rest[n..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if rest.is_empty() {
            return Err(bad("the shape tuple is not closed"));
        } else if !rest.starts_with(close) {
            return Err(bad(
                "the shape holds something other than non-negative decimal integers",
            ));
        }
    }
    let overflow = || Screen::Overflow(shape_text(&digits));
    let mut dims = Vec::with_capacity(digits.len());
    let mut nonzero_product = 1usize;
    for d in &digits {
        let dim: u64 = d.parse().map_err(|_| overflow())?;
        let as_usize = usize::try_from(dim).map_err(|_| overflow())?;
        nonzero_product = nonzero_product
            .checked_mul(as_usize.max(1))
            .ok_or_else(overflow)?;
        dims.push(dim);
    }
    Ok(dims)
}

/// Reorders Fortran-order (first axis fastest) `data` of shape `dims` into row-major order.
///
/// Invariant: `data.len()` is the product of `dims`, so every offset visited is in bounds and
/// every intermediate offset stays below twice the length.
fn fortran_to_c(data: &[f32], dims: &[usize]) -> Vec<f32> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut strides = Vec::with_capacity(dims.len());
    let mut stride = 1usize;
    for &d in dims {
        strides.push(stride);
        stride *= d;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; dims.len()];
    let mut offset = 0usize;
    for _ in 0..data.len() {
        out.push(data[offset]);
        // Advance the row-major index (last axis fastest), carrying into earlier axes.
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < dims[axis] {
                break;
            }
            offset -= strides[axis] * dims[axis];
            index[axis] = 0;
        }
    }
    out
}

/// The header of a `<f4`, C-order `.npy` file of shape `dims`: magic, version, length, the
/// dictionary padded with spaces and a newline so the data starts at a multiple of 64 bytes (as
/// NumPy writes it). Version 1.0 unless the header is too long for its 16-bit length field.
fn npy_header(dims: &[usize]) -> Vec<u8> {
    let shape = match dims {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let padded = |prefix: usize| (prefix + dict.len() + 1).next_multiple_of(64) - prefix;
    let (version, prefix) = if padded(10) <= usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let text_len = padded(prefix);
    let mut out = Vec::with_capacity(prefix + text_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(text_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(text_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + text_len - 1, b' ');
    out.push(b'\n');
    out
}

/// Writes `data` as little-endian f32.
fn write_f32s(w: &mut impl Write, data: &[f32]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 * data.len().min(16_384));
    for chunk in data.chunks(16_384) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
        w.write_all(&buf)?;
    }
    Ok(())
}
