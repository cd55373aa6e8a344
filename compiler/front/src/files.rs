//! Weight and tensor files: safetensors weights, NumPy `.npy` arrays and `.npz` archives.
//!
//! Contract:
//! - Reading converts every element to f32 and hands out row-major data. The element types read
//!   are listed in [`SourceDType`]; all others are an error naming the tensor and its type.
//!   Integers and f64 convert with Rust's `as f32` (round to nearest, so integers beyond 2^24 and
//!   f64 beyond the f32 range round or become infinite); f16 and bf16 convert exactly; a bool byte
//!   is 1.0 when non-zero, else 0.0.
//! - [`read_safetensors`] keeps the file's order (ascending data offset), which is also the order
//!   the safetensors library writes (by element type, then by name). Names are looked up with
//!   [`WeightFile::get`].
//! - [`read_npy`] accepts C and Fortran order; Fortran-order data is transposed into row-major,
//!   so the tensor is the same array NumPy shows. Byte order is `<`, `>` or `|`, as the header says.
//! - [`read_npz`] returns the arrays in archive order, named as NumPy names them: the member name
//!   without its `.npy` suffix. Members are stored or deflated (`np.savez`, `np.savez_compressed`);
//!   directory entries are skipped.
//! - Writers emit f32 only: safetensors `F32`, `.npy` `<f4` in C order (format 1.0, or 2.0 when
//!   the header needs it), `.npz` with stored members as `np.savez` does. Every write goes to a
//!   fresh temporary file in the target's directory, synced, then renamed over the target: the
//!   target name only ever holds a complete file, and no temporary file survives an error.
//!
//! Invariants: bad input (truncated, wrong magic, garbage headers, shapes that overflow or do not
//! match the data) is a [`FileError`] naming the file, the place and the reason, never a panic.
//! A file is read with one `std::fs::read`; beyond that, nothing is allocated before the declared
//! shape × element size has been checked (with checked arithmetic) against the bytes actually
//! present. Nothing here prints.

mod mnist;
mod npy;
mod st;

pub use mnist::{Dataset, MnistSplit, read_mnist, read_npz_dataset};
pub use npy::{read_npy, read_npz, write_npy, write_npz};
pub use st::{read_safetensors, write_safetensors};

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An element type sprig reads from a file, spelled as safetensors spells it. These are all of
/// them: safetensors F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8 and BOOL; NumPy
/// `f8 f4 f2 i8 i4 i2 i1 u8 u4 u2 u1 b1` (NumPy has no bfloat16). Not read: 8-bit and smaller
/// floats, complex numbers, float128, strings, objects, datetimes and structured dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl SourceDType {
    pub fn name(self) -> &'static str {
        match self {
            SourceDType::F64 => "F64",
            SourceDType::F32 => "F32",
            SourceDType::F16 => "F16",
            SourceDType::BF16 => "BF16",
            SourceDType::I64 => "I64",
            SourceDType::I32 => "I32",
            SourceDType::I16 => "I16",
            SourceDType::I8 => "I8",
            SourceDType::U64 => "U64",
            SourceDType::U32 => "U32",
            SourceDType::U16 => "U16",
            SourceDType::U8 => "U8",
            SourceDType::Bool => "BOOL",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            SourceDType::F64 | SourceDType::I64 | SourceDType::U64 => 8,
            SourceDType::F32 | SourceDType::I32 | SourceDType::U32 => 4,
            SourceDType::F16 | SourceDType::BF16 | SourceDType::I16 | SourceDType::U16 => 2,
            SourceDType::I8 | SourceDType::U8 | SourceDType::Bool => 1,
        }
    }
}

impl fmt::Display for SourceDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a weights file, converted to f32 (row-major).
///
/// Invariant: `values.len()` is the product of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The element type stored in the file, before conversion.
    pub dtype: SourceDType,
    pub values: Arc<[f32]>,
}

impl WeightTensor {
    /// A copy of the values as an IR tensor.
    pub fn to_tensor(&self) -> sprig_ir::Tensor {
        sprig_ir::Tensor {
            shape: sprig_ir::Shape::new(self.shape.clone()),
            data: self.values.to_vec(),
        }
    }
}

/// The tensors of a safetensors file, in file order, with the file's `__metadata__`.
///
/// Invariant: names are unique; `index` maps each name to its position in `tensors`.
#[derive(Clone, Debug, Default)]
pub struct WeightFile {
    tensors: Vec<WeightTensor>,
    index: std::collections::HashMap<String, usize>,
    metadata: std::collections::BTreeMap<String, String>,
}

impl WeightFile {
    /// A weight file of `tensors`, in the order given (for formats other than safetensors that
    /// hold named tensors, such as an ONNX model's initializers). A repeated name is returned as
    /// the error.
    pub fn from_tensors(tensors: Vec<WeightTensor>) -> Result<WeightFile, String> {
        let mut index = std::collections::HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(t.name.clone());
            }
        }
        Ok(WeightFile {
            tensors,
            index,
            metadata: Default::default(),
        })
    }

    /// The tensors in file order (ascending data offset).
    pub fn tensors(&self) -> &[WeightTensor] {
        &self.tensors
    }

    pub fn get(&self, name: &str) -> Option<&WeightTensor> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The file's free-form `__metadata__` strings (empty when it has none).
    pub fn metadata(&self) -> &std::collections::BTreeMap<String, String> {
        &self.metadata
    }

    pub fn into_tensors(self) -> Vec<WeightTensor> {
        self.tensors
    }
}

/// A file that could not be read or written: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    /// Shown in this error's message, so not also its `source()`.
    pub kind: FileErrorKind,
}

impl FileError {
    fn new(path: &Path, kind: FileErrorKind) -> FileError {
        FileError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

/// Why a file could not be read or written. Every message carries its whole explanation (no
/// `source()` chain to print as well). Byte offsets count from the start of the file (for an
/// `.npz` member, from the start of the member's uncompressed bytes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileErrorKind {
    #[error("cannot {action}: {error}")]
    Io {
        action: &'static str,
        error: io::Error,
    },
    #[error("not a {format} file: it does not start with the {magic} magic bytes")]
    BadMagic {
        format: &'static str,
        magic: &'static str,
    },
    #[error("truncated: the file ends after {len} bytes, inside {what}")]
    Truncated { what: &'static str, len: u64 },
    #[error(".npy format version {major}.{minor} is not one sprig reads (1.0, 2.0 and 3.0 are)")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error(
        "the header at byte {offset} says it is {header_len} bytes long, but the file ends after {len} bytes"
    )]
    HeaderPastEnd {
        offset: u64,
        header_len: u64,
        len: u64,
    },
    #[error("malformed header (bytes {offset}..{end}): {reason}")]
    BadHeader {
        offset: u64,
        end: u64,
        reason: String,
    },
    #[error(
        "the array has dtype '{dtype}', which sprig cannot read (it reads f2, f4, f8, i1, i2, i4, i8, u1, u2, u4, u8 and b1)"
    )]
    UnsupportedNpyDtype { dtype: String },
    #[error(
        "tensor `{name}` has dtype {dtype}, which sprig cannot read (it reads F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8 and BOOL)"
    )]
    UnsupportedTensorDtype { name: String, dtype: String },
    #[error("header says shape {shape}, which has more elements than this machine can address")]
    ShapeOverflow { shape: String },
    #[error(
        "header says shape {shape} ({values} values) but the file holds {actual} bytes of data after byte {offset} ({values} values of {dtype} take {expected} bytes)"
    )]
    DataSize {
        shape: String,
        values: usize,
        dtype: String,
        expected: u64,
        actual: u64,
        offset: u64,
    },
    #[error("invalid safetensors file: {reason}")]
    Safetensors { reason: String },
    #[error("not a readable .npz (zip) archive: {reason}")]
    Zip { reason: String },
    #[error("array `{name}` (member `{member}`): {kind}")]
    InMember {
        name: String,
        member: String,
        kind: Box<FileErrorKind>,
    },
    #[error("the archive holds two arrays named `{name}`")]
    DuplicateArray { name: String },
    #[error("cannot write {what}: {reason}")]
    BadInput { what: String, reason: String },
}

/// Reads the whole file at `path`.
fn read_all(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|error| {
        FileError::new(
            path,
            FileErrorKind::Io {
                action: "read",
                error,
            },
        )
    })
}

/// Distinguishes temporary files of concurrent writes within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file that is removed on drop unless it has been renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: the error that made us give up is the one to report.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `path` atomically: `fill` writes the complete contents into a new temporary file in the
/// same directory, which is synced and then renamed over `path`. On any error the temporary file
/// is removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FileError> {
    let io_err = |action, error| FileError::new(path, FileErrorKind::Io { action, error });
    let Some(file_name) = path.file_name() else {
        return Err(io_err(
            "write",
            io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A name no other writer uses: this process's id and a per-process counter. A leftover file
    // of a crashed process with the same id is skipped, a few times over.
    let mut attempt = 0;
    let (mut file, mut temp) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(
            ".{}.{}-{n}.tmp",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
        {
            Ok(f) => {
                break (
                    f,
                    TempFile {
                        path: temp_path,
                        renamed: false,
                    },
                );
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(io_err("create a temporary file next to it", e)),
        }
    };
    fill(&mut file)
        .and_then(|()| file.flush())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("write", e))?;
    drop(file);
    std::fs::rename(&temp.path, path)
        .map_err(|e| io_err("move the temporary file into place", e))?;
    temp.renamed = true;
    Ok(())
}

/// Converts `bytes` (a whole number of elements of `dtype`) to f32. Collecting into `Arc<[f32]>`
/// or `Vec<f32>` allocates once: every arm is an exact-size iterator over a slice.
fn decode<C: FromIterator<f32>>(bytes: &[u8], dtype: SourceDType, big_endian: bool) -> C {
    fn conv<const N: usize, C: FromIterator<f32>>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> C {
        let (chunks, _rest) = bytes.as_chunks::<N>();
        chunks.iter().map(|&c| f(c)).collect()
    }
    // Each arm reads its element with the file's byte order.
    macro_rules! num {
        ($t:ty, $n:literal) => {
            if big_endian {
                conv::<$n, C>(bytes, |c| <$t>::from_be_bytes(c) as f32)
            } else {
                conv::<$n, C>(bytes, |c| <$t>::from_le_bytes(c) as f32)
            }
        };
    }
    match dtype {
        SourceDType::F64 => num!(f64, 8),
        SourceDType::F32 => num!(f32, 4),
        SourceDType::I64 => num!(i64, 8),
        SourceDType::I32 => num!(i32, 4),
        SourceDType::I16 => num!(i16, 2),
        SourceDType::U64 => num!(u64, 8),
        SourceDType::U32 => num!(u32, 4),
        SourceDType::U16 => num!(u16, 2),
        SourceDType::F16 | SourceDType::BF16 => {
            let bits = |c: [u8; 2]| {
                if big_endian {
                    u16::from_be_bytes(c)
                } else {
                    u16::from_le_bytes(c)
                }
            };
            if dtype == SourceDType::F16 {
                conv::<2, C>(bytes, |c| half::f16::from_bits(bits(c)).to_f32())
            } else {
                conv::<2, C>(bytes, |c| half::bf16::from_bits(bits(c)).to_f32())
            }
        }
        SourceDType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        SourceDType::U8 => bytes.iter().map(|&b| b as f32).collect(),
        SourceDType::Bool => bytes
            .iter()
            .map(|&b| if b != 0 { 1.0 } else { 0.0 })
            .collect(),
    }
}

/// `[2, 3]`-style text for a shape, for messages.
fn shape_text<T: fmt::Display>(dims: &[T]) -> String {
    let parts: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Checks an f32 tensor handed to a writer (`what` names it in messages): its data must hold
/// exactly the product of `dims` values.
fn check_values(what: &str, dims: &[usize], len: usize) -> Result<(), FileErrorKind> {
    let bad = |reason: String| FileErrorKind::BadInput {
        what: what.to_string(),
        reason,
    };
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        None => Err(bad(format!("shape {} overflows", shape_text(dims)))),
        Some(n) if n != len => Err(bad(format!(
            "shape {} needs {n} values but {len} were given",
            shape_text(dims)
        ))),
        Some(_) => Ok(()),
    }
}
