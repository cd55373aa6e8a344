//! ONNX tensors (initializers, `Constant` values) decoded into sprig's numbers.
//!
//! Contract: [`decode`] reads a `TensorProto` whose data lies in `raw_data` (little-endian),
//! in the typed field its element type uses (`float_data`, `int32_data`, `int64_data`,
//! `double_data`, `uint64_data`), or in an external-data file next to the model. Floating-point
//! types (float32, float16, bfloat16, float64) become f32; integer and bool types become i64
//! (these carry shape arithmetic). Strings, complex numbers, 8-bit and smaller floats, and
//! segmented tensors are errors naming the type.
//!
//! Invariants: dims are checked first (no negative dims; the element count and the byte count
//! are computed with checked arithmetic), and the data present is checked against that count
//! before anything is allocated, so a hostile file cannot make the reader allocate more than the
//! bytes it holds. External data must stay inside the model's directory: absolute locations,
//! `..` components and symbolic links that lead outside it are refused, and only the declared
//! byte range is read, after checking it against the file's length.

use super::proto::TensorProto;
use crate::files::SourceDType;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};
use std::sync::Arc;

/// Decoded values: floats as f32, integers and bools as i64.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    F32(Arc<[f32]>),
    I64(Arc<[i64]>),
}

impl Data {
    pub(crate) fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The values as f32 (integers round to nearest, as `as f32` does).
    pub(crate) fn to_f32(&self) -> Arc<[f32]> {
        match self {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// A decoded tensor: its dims, the element type stored in the file and its values.
#[derive(Clone, Debug)]
pub(crate) struct Decoded {
    pub dims: Vec<usize>,
    pub dtype: SourceDType,
    pub data: Data,
}

/// ONNX `TensorProto.DataType` names, for messages.
pub(crate) fn type_name(code: i32) -> &'static str {
    match code {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        17..=20 => "FLOAT8",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        _ => "unknown",
    }
}

/// The element type of ONNX data type `code`, if sprig reads it.
pub(crate) fn source_dtype(code: i32) -> Option<SourceDType> {
    Some(match code {
        1 => SourceDType::F32,
        2 => SourceDType::U8,
        3 => SourceDType::I8,
        4 => SourceDType::U16,
        5 => SourceDType::I16,
        6 => SourceDType::I32,
        7 => SourceDType::I64,
        9 => SourceDType::Bool,
        10 => SourceDType::F16,
        11 => SourceDType::F64,
        12 => SourceDType::U32,
        13 => SourceDType::U64,
        16 => SourceDType::BF16,
        _ => return None,
    })
}

fn is_float(d: SourceDType) -> bool {
    matches!(
        d,
        SourceDType::F32 | SourceDType::F16 | SourceDType::BF16 | SourceDType::F64
    )
}

/// Checked dims: each one non-negative, their product and byte size addressable.
pub(crate) fn checked_dims(dims: &[i64], elem_size: usize) -> Result<(Vec<usize>, usize), String> {
    let mut out = Vec::with_capacity(dims.len().min(64));
    let mut count: usize = 1;
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("dims {dims:?} hold a negative size"))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("dims {dims:?} hold more elements than memory can address"))?;
        out.push(d);
    }
    count
        .checked_mul(elem_size)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| format!("dims {dims:?} need more bytes than memory can address"))?;
    Ok((out, count))
}

/// Decodes little-endian `bytes` (exactly `count` elements of `dtype`).
fn from_le(bytes: &[u8], dtype: SourceDType) -> Data {
    fn conv<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Arc<[T]> {
        let (chunks, _) = bytes.as_chunks::<N>();
        chunks.iter().map(|&c| f(c)).collect()
    }
    match dtype {
        SourceDType::F32 => Data::F32(conv::<4, f32>(bytes, f32::from_le_bytes)),
        SourceDType::F64 => Data::F32(conv::<8, f32>(bytes, |c| f64::from_le_bytes(c) as f32)),
        SourceDType::F16 => Data::F32(conv::<2, f32>(bytes, |c| {
            half::f16::from_le_bytes(c).to_f32()
        })),
        SourceDType::BF16 => Data::F32(conv::<2, f32>(bytes, |c| {
            half::bf16::from_le_bytes(c).to_f32()
        })),
        SourceDType::I64 => Data::I64(conv::<8, i64>(bytes, i64::from_le_bytes)),
        SourceDType::U64 => Data::I64(conv::<8, i64>(bytes, |c| u64::from_le_bytes(c) as i64)),
        SourceDType::I32 => Data::I64(conv::<4, i64>(bytes, |c| i32::from_le_bytes(c).into())),
        SourceDType::U32 => Data::I64(conv::<4, i64>(bytes, |c| u32::from_le_bytes(c).into())),
        SourceDType::I16 => Data::I64(conv::<2, i64>(bytes, |c| i16::from_le_bytes(c).into())),
        SourceDType::U16 => Data::I64(conv::<2, i64>(bytes, |c| u16::from_le_bytes(c).into())),
        SourceDType::I8 => Data::I64(bytes.iter().map(|&b| (b as i8).into()).collect()),
        SourceDType::U8 => Data::I64(bytes.iter().map(|&b| b.into()).collect()),
        SourceDType::Bool => Data::I64(bytes.iter().map(|&b| i64::from(b != 0)).collect()),
    }
}

/// Decodes `t`; `model_dir` resolves external data. Errors are reasons (the caller names the
/// tensor).
pub(crate) fn decode(t: &TensorProto, model_dir: &Path) -> Result<Decoded, String> {
    let code = t.data_type.unwrap_or(0);
    let dtype = source_dtype(code).ok_or_else(|| {
        format!(
            "data type {code} ({}) is not one sprig reads (it reads FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT8..INT64, UINT8..UINT64 and BOOL)",
            type_name(code)
        )
    })?;
    if t.segment.is_some() {
        return Err("segmented tensors are not supported".to_string());
    }
    let (dims, count) = checked_dims(&t.dims, dtype.size())?;
    let bytes_needed = count * dtype.size();
    let external = t.data_location == Some(1);
    if external {
        if t.raw_data.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err("has both raw_data and external data".to_string());
        }
        let bytes = read_external(t, model_dir, bytes_needed)?;
        return Ok(Decoded {
            dims,
            dtype,
            data: from_le(&bytes, dtype),
        });
    }
    if let Some(raw) = &t.raw_data {
        if raw.len() != bytes_needed {
            return Err(format!(
                "dims {:?} of {} need {bytes_needed} bytes but raw_data holds {}",
                t.dims,
                type_name(code),
                raw.len()
            ));
        }
        return Ok(Decoded {
            dims,
            dtype,
            data: from_le(raw, dtype),
        });
    }
    // Typed fields: prost has already read them (their size is bounded by the file); only the
    // count is checked here.
    let (found, data) = match dtype {
        SourceDType::F32 => (
            t.float_data.len(),
            Data::F32(t.float_data.as_slice().into()),
        ),
        SourceDType::F64 => (
            t.double_data.len(),
            Data::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        ),
        SourceDType::I64 => (
            t.int64_data.len(),
            Data::I64(t.int64_data.as_slice().into()),
        ),
        SourceDType::U32 | SourceDType::U64 => (
            t.uint64_data.len(),
            Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        ),
        SourceDType::F16 | SourceDType::BF16 => {
            let bits = |v: i32| (v as u32 & 0xffff) as u16;
            let values: Arc<[f32]> = if dtype == SourceDType::F16 {
                t.int32_data
                    .iter()
                    .map(|&v| half::f16::from_bits(bits(v)).to_f32())
                    .collect()
            } else {
                t.int32_data
                    .iter()
                    .map(|&v| half::bf16::from_bits(bits(v)).to_f32())
                    .collect()
            };
            (t.int32_data.len(), Data::F32(values))
        }
        SourceDType::Bool => (
            t.int32_data.len(),
            Data::I64(t.int32_data.iter().map(|&v| i64::from(v != 0)).collect()),
        ),
        SourceDType::I32
        | SourceDType::I16
        | SourceDType::I8
        | SourceDType::U16
        | SourceDType::U8 => (
            t.int32_data.len(),
            Data::I64(t.int32_data.iter().map(|&v| v.into()).collect()),
        ),
    };
    if found != count {
        return Err(format!(
            "dims {:?} need {count} values but the tensor holds {found}",
            t.dims
        ));
    }
    debug_assert_eq!(data.len(), count);
    Ok(Decoded { dims, dtype, data })
}

/// Whether values of ONNX type `code` decode to f32 (rather than i64).
pub(crate) fn is_float_type(code: i32) -> bool {
    source_dtype(code).is_some_and(is_float)
}

/// Reads the `bytes_needed` bytes of `t`'s external data.
fn read_external(
    t: &TensorProto,
    model_dir: &Path,
    bytes_needed: usize,
) -> Result<Vec<u8>, String> {
    let mut location = None;
    let mut offset: u64 = 0;
    let mut length: Option<u64> = None;
    for entry in &t.external_data {
        let key = entry.key.as_deref().unwrap_or("");
        let value = entry.value.as_deref().unwrap_or("");
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("external data {key} `{value}` is not a byte count"))
        };
        match key {
            "location" => location = Some(value),
            "offset" => offset = number()?,
            "length" => length = Some(number()?),
            _ => {}
        }
    }
    let location = location.ok_or("external data names no location")?;
    let relative = Path::new(location);
    let escapes = relative.is_absolute()
        || location.is_empty()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!(
            "external data location `{location}` is not a path inside the model's directory"
        ));
    }
    let path = model_dir.join(relative);
    let shown = path.display();
    // Symbolic links may not lead outside the model's directory either.
    let dir = std::fs::canonicalize(if model_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        model_dir
    })
    .map_err(|e| format!("cannot resolve the model's directory: {e}"))?;
    let real = std::fs::canonicalize(&path)
        .map_err(|e| format!("cannot open external data file `{shown}`: {e}"))?;
    if !real.starts_with(&dir) {
        return Err(format!(
            "external data file `{shown}` resolves outside the model's directory"
        ));
    }
    if let Some(length) = length
        && length != bytes_needed as u64
    {
        return Err(format!(
            "dims {:?} need {bytes_needed} bytes but the external data length is {length}",
            t.dims
        ));
    }
    let mut file = std::fs::File::open(&real)
        .map_err(|e| format!("cannot open external data file `{shown}`: {e}"))?;
    let file_len = file
        .metadata()
        .map_err(|e| format!("cannot read external data file `{shown}`: {e}"))?
        .len();
    let end = offset.checked_add(bytes_needed as u64);
    if end.is_none_or(|end| end > file_len) {
        return Err(format!(
            "external data file `{shown}` holds {file_len} bytes, but the tensor needs {bytes_needed} bytes at offset {offset}"
        ));
    }
    let mut bytes = vec![0u8; bytes_needed];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read external data file `{shown}`: {e}"))?;
    Ok(bytes)
}
