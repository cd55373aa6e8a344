//! Labelled image data sets: MNIST's IDX files and `.npz` archives of images and labels.
//!
//! Contract:
//! - [`read_mnist`] reads a split of MNIST from a directory holding the IDX files under their usual
//!   names (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//!   `t10k-labels-idx1-ubyte`), or the same names with `.gz` appended, or with `.idx` in place of
//!   `-idx` (`t10k-images.idx3-ubyte`). The first of these that exists is read. A file is
//!   recognised as gzip by its content (`1f 8b`), not by its name.
//! - An image file starts with the magic `00 00 08 03` (unsigned bytes, 3 dimensions), then the
//!   image count, rows and columns as big-endian u32; a label file with `00 00 08 01` and the
//!   label count. Any rows × columns (at least 1 × 1) is read; the counts of the two files must
//!   agree. The data after the header must be exactly what the header declares, no more, no less.
//! - Pixels are scaled to [0, 1] as `byte as f32 / 255.0` (so 0 → 0.0 and 255 → 1.0 exactly),
//!   the scaling of the usual MNIST training scripts. `images` has shape `[n, rows, cols]`.
//! - `limit` keeps the first `limit` images and labels (all of them when the file holds fewer).
//!   Only the bytes of those images are read from an uncompressed file; a gzip file is
//!   decompressed only as far as they reach, and its size trailer (ISIZE) must agree with the
//!   header.
//! - [`read_npz_dataset`] reads arrays `X` (or `x`) and `y` from an `.npz` archive. `X` has shape
//!   `[n, ...]`; float pixels are taken as they are, uint8 pixels are scaled by 1/255 as above;
//!   any other pixel type is an error. `y` has shape `[n]` and holds non-negative integers
//!   (integer dtype, or floats with integral values), each below 2^24.
//! - `classes` is one more than the largest label (0 for an empty data set). For a complete MNIST
//!   split that is 10; a caller evaluating a model checks it against the model's output width.
//!
//! Invariants: bad input is a [`FileError`] naming the file and the reason, never a panic.
//! Nothing is allocated before the declared sizes have been checked (checked arithmetic) against
//! the bytes the file can hold: an uncompressed file's length, or a gzip file's compressed length
//! times deflate's largest expansion. Byte offsets in messages about a gzip file count in its
//! decompressed stream. Nothing here prints.

use super::npy::parse_npy;
use super::{FileError, FileErrorKind, read_all, shape_text};
use npyz::{DType, NpyFile, TypeChar};
use sprig_ir::{Shape, Tensor};
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most a deflate stream can expand: 1032 output bytes per input byte, plus slack.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Labels must be exactly representable as f32 when they come from an `.npz` array.
const MAX_LABEL: f32 = 16_777_216.0;
const IMAGE_MAGIC: [u8; 4] = [0, 0, 8, 3];
const LABEL_MAGIC: [u8; 4] = [0, 0, 8, 1];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Which half of MNIST to read: the 60000 training or the 10000 test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MnistSplit {
    Train,
    Test,
}

impl MnistSplit {
    /// The file name prefix MNIST uses for the split.
    fn prefix(self) -> &'static str {
        match self {
            MnistSplit::Train => "train",
            MnistSplit::Test => "t10k",
        }
    }
}

/// Labelled images.
///
/// Invariants: `images.dims()[0] == labels.len()`; every label is below `classes`, and
/// `classes` is one more than the largest label (0 when there are no labels).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[n, rows, cols]` for IDX files; `[n, ...]` as stored for `.npz` archives.
    pub images: Tensor,
    pub labels: Vec<u32>,
    pub classes: usize,
}

impl Dataset {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads one split of MNIST from `dir` (see the module contract for names, format and scaling),
/// keeping the first `limit` samples when a limit is given.
pub fn read_mnist(
    dir: &Path,
    split: MnistSplit,
    limit: Option<usize>,
) -> Result<Dataset, FileError> {
    let prefix = split.prefix();
    let images_path = find_idx(dir, &format!("{prefix}-images"), "idx3-ubyte")?;
    let labels_path = find_idx(dir, &format!("{prefix}-labels"), "idx1-ubyte")?;

    let mut images = IdxFile::open(&images_path, IdxKind::Images)?;
    let mut labels = IdxFile::open(&labels_path, IdxKind::Labels)?;
    let count = images.dims[0];
    if labels.dims[0] != count {
        return Err(invalid(
            &labels_path,
            "use it as the labels",
            format!(
                "it holds {} labels but {} holds {count} images",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    let (rows, cols) = (images.dims[1], images.dims[2]);
    let n = limit.map_or(count, |l| l.min(count));
    // Cannot overflow: the whole file's count × rows × cols was checked in `open`.
    let pixels = images.read_items(n * rows * cols)?;
    let label_bytes = labels.read_items(n)?;

    let data: Vec<f32> = pixels.iter().map(|&b| f32::from(b) / 255.0).collect();
    let labels: Vec<u32> = label_bytes.iter().map(|&b| u32::from(b)).collect();
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    Ok(Dataset {
        images: Tensor {
            shape: Shape::new(vec![n, rows, cols]),
            data,
        },
        labels,
        classes,
    })
}

/// Reads a labelled data set from an `.npz` archive: images `X` (or `x`) and labels `y` (see the
/// module contract for the accepted types and the pixel scaling).
pub fn read_npz_dataset(path: &Path) -> Result<Dataset, FileError> {
    let bytes = read_all(path)?;
    let err = |kind| FileError::new(path, kind);
    let use_as = "use it as a data set";
    let file_len = bytes.len() as u64;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes.as_slice())).map_err(|e| {
        err(FileErrorKind::Zip {
            reason: e.to_string(),
        })
    })?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let listing = || {
        let mut sorted = names.clone();
        sorted.sort();
        if sorted.is_empty() {
            "it holds no arrays".to_string()
        } else {
            format!("it holds {}", sorted.join(", "))
        }
    };
    let x_name = match (has("X"), has("x")) {
        (true, true) => {
            return Err(invalid(
                path,
                use_as,
                "it holds both `X` and `x`, so the images are ambiguous".to_string(),
            ));
        }
        (true, false) => "X",
        (false, true) => "x",
        (false, false) => {
            return Err(invalid(
                path,
                use_as,
                format!("there is no image array `X` or `x` ({})", listing()),
            ));
        }
    };
    if !has("y") {
        return Err(invalid(
            path,
            use_as,
            format!("there is no label array `y` ({})", listing()),
        ));
    }

    let (images, x_type) = read_npz_array(&mut archive, x_name, file_len).map_err(err)?;
    let (labels, _) = read_npz_array(&mut archive, "y", file_len).map_err(err)?;

    let images = match (x_type.type_char(), x_type.size_field()) {
        (TypeChar::Float, _) => images,
        (TypeChar::Uint, 1) => Tensor {
            data: images.data.iter().map(|&v| v / 255.0).collect(),
            shape: images.shape,
        },
        _ => {
            return Err(invalid(
                path,
                use_as,
                format!(
                    "array `{x_name}` has dtype '{x_type}'; images must be floats (taken as they are) or uint8 (scaled by 1/255)"
                ),
            ));
        }
    };
    let Some(&n) = images.dims().first() else {
        return Err(invalid(
            path,
            use_as,
            format!("array `{x_name}` is a scalar; images need shape [n, ...]"),
        ));
    };
    if labels.dims() != [n] {
        return Err(invalid(
            path,
            use_as,
            format!(
                "array `y` has shape {}, but {n} labels (shape [{n}]) go with `{x_name}` of shape {}",
                shape_text(labels.dims()),
                shape_text(images.dims())
            ),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (i, &v) in labels.data.iter().enumerate() {
        if !((0.0..MAX_LABEL).contains(&v) && v.fract() == 0.0) {
            return Err(invalid(
                path,
                use_as,
                format!("label y[{i}] is {v}; labels must be integers from 0 to 16777215"),
            ));
        }
        // Exact: v is a non-negative integer below 2^24.
        out.push(v as u32);
    }
    let classes = out.iter().max().map_or(0, |&m| m as usize + 1);
    Ok(Dataset {
        images,
        labels: out,
        classes,
    })
}

/// An error about a file's content that no format-level kind describes: "cannot {action}:
/// {reason}".
fn invalid(path: &Path, action: &'static str, reason: String) -> FileError {
    FileError::new(
        path,
        FileErrorKind::Io {
            action,
            error: io::Error::new(io::ErrorKind::InvalidData, reason),
        },
    )
}

/// The first existing file among the spellings of an IDX file's name in `dir`.
fn find_idx(dir: &Path, stem: &str, suffix: &str) -> Result<PathBuf, FileError> {
    let canonical = format!("{stem}-{suffix}");
    let candidates = [
        canonical.clone(),
        format!("{canonical}.gz"),
        format!("{stem}.{suffix}"),
        format!("{stem}.{suffix}.gz"),
    ];
    if !dir.is_dir() {
        return Err(FileError::new(
            dir,
            FileErrorKind::Io {
                action: "read the MNIST directory",
                error: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
            },
        ));
    }
    for name in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(FileError::new(
        &dir.join(&canonical),
        FileErrorKind::Io {
            action: "read",
            error: io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no such file (nor {}); the directory must hold MNIST's IDX files",
                    candidates[1..].join(", ")
                ),
            ),
        },
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IdxKind {
    Images,
    Labels,
}

impl IdxKind {
    fn magic(self) -> [u8; 4] {
        match self {
            IdxKind::Images => IMAGE_MAGIC,
            IdxKind::Labels => LABEL_MAGIC,
        }
    }

    fn dims(self) -> usize {
        match self {
            IdxKind::Images => 3,
            IdxKind::Labels => 1,
        }
    }

    fn what(self) -> &'static str {
        match self {
            IdxKind::Images => "MNIST IDX image",
            IdxKind::Labels => "MNIST IDX label",
        }
    }
}

/// An IDX file whose header has been read and checked, positioned at the start of its data.
///
/// Invariant: the product of `dims` fits in usize and the data holds exactly that many bytes as
/// far as can be known without decompressing: an uncompressed file's length is exact; a gzip
/// file's trailer agrees modulo 2^32 and its compressed length can hold that many bytes.
struct IdxFile<'p> {
    path: &'p Path,
    kind: IdxKind,
    reader: Box<dyn Read>,
    dims: Vec<usize>,
    header_len: u64,
}

impl<'p> IdxFile<'p> {
    fn open(path: &'p Path, kind: IdxKind) -> Result<IdxFile<'p>, FileError> {
        let err = |kind| FileError::new(path, kind);
        let io_err = |action, error| err(FileErrorKind::Io { action, error });
        let mut file = File::open(path).map_err(|e| io_err("open", e))?;
        let file_len = file.metadata().map_err(|e| io_err("read", e))?.len();
        let mut start = [0u8; 2];
        let peeked = read_up_to(&mut file, &mut start).map_err(|e| io_err("read", e))?;
        let gzip = peeked == 2 && start == GZIP_MAGIC;
        let mut trailer = None;
        if gzip {
            // ISIZE: the uncompressed length modulo 2^32, in the last 4 bytes (little-endian).
            let mut isize = [0u8; 4];
            if file_len >= 18 {
                file.seek(SeekFrom::End(-4))
                    .and_then(|_| file.read_exact(&mut isize))
                    .map_err(|e| io_err("read", e))?;
                trailer = Some(u32::from_le_bytes(isize));
            }
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| io_err("read", e))?;
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        let mut idx = IdxFile {
            path,
            kind,
            reader,
            dims: Vec::new(),
            header_len: 0,
        };

        let header_len = 4 + 4 * kind.dims();
        let mut header = [0u8; 16];
        let header = &mut header[..header_len];
        let got = read_up_to(&mut idx.reader, header).map_err(|e| idx.read_error(e))?;
        let magic = [header[0], header[1], header[2], header[3]];
        // A file shorter than the magic is truncated if what it holds is the magic's start.
        let magic_ok = if got >= 4 {
            magic == kind.magic()
        } else {
            kind.magic().starts_with(&header[..got])
        };
        if !magic_ok {
            return Err(idx.bad_magic(&header[..got.min(4)]));
        }
        if got < header_len {
            return Err(err(FileErrorKind::Truncated {
                what: "the IDX header",
                len: got as u64,
            }));
        }
        let dims: Vec<u64> = header[4..]
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let bad_header = |reason: String| {
            err(FileErrorKind::BadHeader {
                offset: 4,
                end: header_len as u64,
                reason,
            })
        };
        if kind == IdxKind::Images && (dims[1] == 0 || dims[2] == 0) {
            return Err(bad_header(format!(
                "images of {} × {} pixels; every image needs at least one row and one column",
                dims[1], dims[2]
            )));
        }
        let shape = shape_text(&dims);
        let total = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&t| usize::try_from(t).is_ok())
            .ok_or_else(|| {
                err(FileErrorKind::ShapeOverflow {
                    shape: shape.clone(),
                })
            })?;
        let data_size = |actual: u64| {
            err(FileErrorKind::DataSize {
                shape: shape.clone(),
                values: total as usize,
                dtype: "unsigned byte".to_string(),
                expected: total,
                actual,
                offset: header_len as u64,
            })
        };
        if gzip {
            let declared = total + header_len as u64;
            if declared
                > file_len
                    .saturating_mul(MAX_DEFLATE_RATIO)
                    .saturating_add(64)
            {
                return Err(bad_header(format!(
                    "shape {shape} needs {declared} bytes, more than {file_len} gzip-compressed bytes can hold"
                )));
            }
            match trailer {
                // Only the low 32 bits of the length are recorded.
                Some(isize) if u64::from(isize) == declared & 0xffff_ffff => {}
                Some(isize) => {
                    return Err(bad_header(format!(
                        "shape {shape} needs {declared} bytes, but the gzip trailer records {isize} uncompressed bytes"
                    )));
                }
                None => {
                    return Err(err(FileErrorKind::Truncated {
                        what: "the gzip stream",
                        len: file_len,
                    }));
                }
            }
        } else if file_len.saturating_sub(header_len as u64) != total {
            return Err(data_size(file_len.saturating_sub(header_len as u64)));
        }
        idx.dims = dims.iter().map(|&d| d as usize).collect();
        idx.header_len = header_len as u64;
        Ok(idx)
    }

    /// Reads the next `count` bytes of data (`count` is at most what the header declares, so
    /// what the checks in `open` allowed).
    fn read_items(&mut self, count: usize) -> Result<Vec<u8>, FileError> {
        // Grows only as bytes arrive, up to `count`.
        let mut data = Vec::new();
        (&mut self.reader)
            .take(count as u64)
            .read_to_end(&mut data)
            .map_err(|e| self.read_error(e))?;
        if data.len() < count {
            let shape = shape_text(&self.dims);
            let total: usize = self.dims.iter().product();
            return Err(FileError::new(
                self.path,
                FileErrorKind::DataSize {
                    shape,
                    values: total,
                    dtype: "unsigned byte".to_string(),
                    expected: total as u64,
                    actual: data.len() as u64,
                    offset: self.header_len,
                },
            ));
        }
        Ok(data)
    }

    fn read_error(&self, error: io::Error) -> FileError {
        let action = if error.kind() == io::ErrorKind::InvalidInput
            || error.kind() == io::ErrorKind::InvalidData
        {
            "decompress"
        } else {
            "read"
        };
        FileError::new(self.path, FileErrorKind::Io { action, error })
    }

    /// The error for a file that does not start with the expected magic: a plain "not an IDX
    /// file", or, for an IDX file of another kind, what it is.
    fn bad_magic(&self, magic: &[u8]) -> FileError {
        let other = match self.kind {
            IdxKind::Images => IdxKind::Labels,
            IdxKind::Labels => IdxKind::Images,
        };
        let hex = magic
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let expected = self
            .kind
            .magic()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let reason = if magic == other.magic() {
            format!(
                "it starts with the magic {hex} of an {} file, but an {} file ({expected}) is expected here",
                other.what(),
                self.kind.what()
            )
        } else if magic.len() == 4 && magic[..2] == [0, 0] {
            format!(
                "it starts with the IDX magic {hex} (element type 0x{:02x}, {} dimensions); an {} file starts with {expected} (unsigned bytes, {} dimensions)",
                magic[2],
                magic[3],
                self.kind.what(),
                self.kind.dims()
            )
        } else {
            return FileError::new(
                self.path,
                FileErrorKind::BadMagic {
                    format: self.kind.what(),
                    magic: match self.kind {
                        IdxKind::Images => "00 00 08 03",
                        IdxKind::Labels => "00 00 08 01",
                    },
                },
            );
        };
        FileError::new(
            self.path,
            FileErrorKind::BadHeader {
                offset: 0,
                end: 4,
                reason,
            },
        )
    }
}

/// Fills as much of `buf` as the reader holds; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads array `name` of an `.npz` archive held in memory: the tensor and its stored type.
fn read_npz_array(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    file_len: u64,
) -> Result<(Tensor, npyz::TypeStr), FileErrorKind> {
    let member_name = if archive.index_for_name(&format!("{name}.npy")).is_some() {
        format!("{name}.npy")
    } else {
        name.to_string()
    };
    let zip_err = |reason: String| FileErrorKind::Zip { reason };
    let in_member = |kind| FileErrorKind::InMember {
        name: name.to_string(),
        member: member_name.clone(),
        kind: Box::new(kind),
    };
    let mut member = archive
        .by_name(&member_name)
        .map_err(|e| zip_err(format!("member `{member_name}`: {e}")))?;
    let declared = member.size();
    let compressed = member.compressed_size();
    let limit = if member.compression() == zip::CompressionMethod::Stored {
        compressed
    } else {
        compressed
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(64)
    };
    if compressed > file_len || declared > limit {
        return Err(in_member(zip_err(format!(
            "the member claims {declared} uncompressed bytes ({compressed} compressed), more than the {file_len}-byte archive can hold"
        ))));
    }
    // Grows only as bytes arrive; one byte past `declared` detects a size lie.
    let mut raw = Vec::new();
    (&mut member)
        .take(declared.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(|e| in_member(zip_err(format!("cannot decompress the member: {e}"))))?;
    if raw.len() as u64 != declared {
        return Err(in_member(zip_err(format!(
            "the member holds {} uncompressed bytes, but the archive says {declared}",
            raw.len()
        ))));
    }
    let tensor = parse_npy(&raw).map_err(in_member)?;
    // `parse_npy` has screened and parsed this header, so npyz reads it again without surprises.
    let dtype = NpyFile::new(raw.as_slice())
        .map(|npy| npy.dtype())
        .map_err(|e| {
            in_member(FileErrorKind::BadHeader {
                offset: 0,
                end: 0,
                reason: e.to_string(),
            })
        })?;
    match dtype {
        DType::Plain(t) => Ok((tensor, t)),
        other => Err(in_member(FileErrorKind::UnsupportedNpyDtype {
            dtype: other.descr(),
        })),
    }
}
