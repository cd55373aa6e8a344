//! Weight and tensor files: round trips, files written by NumPy and the safetensors library
//! (tests/fixtures, made by make_fixtures.py), and malformed files, which must give errors that
//! name the file and the reason, never panics.

use sprig_front::files::{
    FileError, SourceDType, read_npy, read_npz, read_safetensors, write_npy, write_npz,
    write_safetensors,
};
use sprig_ir::{Shape, Tensor};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensor(dims: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(Shape::new(dims.to_vec()), data.to_vec())
}

/// Asserts `result` is an error whose message names the file and contains every `reasons` text.
#[track_caller]
fn expect_err<T: Debug>(result: Result<T, FileError>, path: &Path, reasons: &[&str]) -> String {
    let message = match result {
        Ok(v) => panic!("expected an error for {}, got {v:?}", path.display()),
        Err(e) => e.to_string(),
    };
    let file_name = path.file_name().unwrap().to_string_lossy();
    assert!(
        message.contains(&*file_name),
        "message does not name the file: {message}"
    );
    for reason in reasons {
        assert!(
            message.contains(reason),
            "message lacks `{reason}`: {message}"
        );
    }
    message
}

/// A file named `name` in `dir` holding `bytes`.
fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A version 1.0 `.npy` file with header dictionary `dict` and `data` after it.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut text = dict.as_bytes().to_vec();
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(data);
    out
}

/// A safetensors file with JSON header `json` and `data` after it.
fn st_bytes(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The names of the files in `dir`, sorted.
fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn npy_round_trip_keeps_shape_and_every_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        tensor(&[2, 3], &[1.0, -2.5, 3.25, 0.0, -0.0, 1e-30]),
        tensor(&[], &[42.0]),
        tensor(&[0, 3], &[]),
        tensor(
            &[4],
            &[
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
            ],
        ),
        tensor(&[2, 1, 2, 1], &[1.0, 2.0, 3.0, 4.0]),
    ];
    for (i, t) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{i}.npy"));
        write_npy(&path, t).unwrap();
        let back = read_npy(&path).unwrap();
        assert_eq!(back.shape, t.shape);
        assert_eq!(bits(&back.data), bits(&t.data));
        // NumPy aligns the data to 64 bytes; so do we.
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!((len - 4 * t.data.len() as u64) % 64, 0);
    }
    assert_eq!(
        dir_listing(dir.path()).len(),
        cases.len(),
        "no temporary files left"
    );
}

#[test]
fn npy_written_header_is_numpys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_npy(&path, &tensor(&[3], &[1.0, 2.0, 3.0])).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    // 10 bytes of magic, version and length, then the text padded so the data starts at 128.
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 118);
    let text = std::str::from_utf8(&bytes[10..128]).unwrap();
    assert!(
        text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"),
        "{text}"
    );
    assert!(text.ends_with('\n'));
    assert_eq!(
        &bytes[128..],
        [1.0f32, 2.0, 3.0].map(f32::to_le_bytes).as_flattened()
    );
}

#[test]
fn npz_round_trip_keeps_names_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.npz");
    let arrays = vec![
        ("zeta".to_string(), tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])),
        ("alpha".to_string(), tensor(&[], &[-7.5])),
        ("layer/w".to_string(), tensor(&[0], &[])),
    ];
    write_npz(&path, &arrays).unwrap();
    assert_eq!(read_npz(&path).unwrap(), arrays);
    write_npz(&path, &[]).unwrap();
    assert_eq!(read_npz(&path).unwrap(), vec![]);
}

#[test]
fn safetensors_round_trip_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let w2 = [1.0, -2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [0.5];
    let tensors = vec![
        ("ip2.weight".to_string(), Shape::new(vec![3, 2]), &w2[..]),
        ("ip1.bias".to_string(), Shape::new(vec![1]), &b[..]),
        ("empty".to_string(), Shape::new(vec![0, 4]), &[][..]),
    ];
    let metadata = BTreeMap::from([("format".to_string(), "sprig".to_string())]);
    write_safetensors(&path, &tensors, Some(&metadata)).unwrap();
    let file = read_safetensors(&path).unwrap();
    // All F32, so the file (and our order) is by name.
    assert_eq!(
        file.names().collect::<Vec<_>>(),
        ["empty", "ip1.bias", "ip2.weight"]
    );
    let w = file.get("ip2.weight").unwrap();
    assert_eq!(w.shape, [3, 2]);
    assert_eq!(w.dtype, SourceDType::F32);
    assert_eq!(&*w.values, &w2);
    assert_eq!(w.to_tensor(), tensor(&[3, 2], &w2));
    assert_eq!(&*file.get("ip1.bias").unwrap().values, &b);
    assert!(file.get("empty").unwrap().values.is_empty());
    assert_eq!(file.metadata(), &metadata);
    assert!(file.get("missing").is_none());

    write_safetensors(&path, &[], None).unwrap();
    let file = read_safetensors(&path).unwrap();
    assert!(file.is_empty() && file.metadata().is_empty());
}

#[test]
fn writes_replace_atomically_and_leave_nothing_behind_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_npy(&path, &tensor(&[2], &[1.0, 2.0])).unwrap();
    write_npy(&path, &tensor(&[3], &[4.0, 5.0, 6.0])).unwrap();
    assert_eq!(read_npy(&path).unwrap(), tensor(&[3], &[4.0, 5.0, 6.0]));

    // Bad input: the old file stays, and no temporary file is left.
    let broken = Tensor {
        shape: Shape::new(vec![2, 2]),
        data: vec![1.0],
    };
    expect_err(
        write_npy(&path, &broken),
        &path,
        &["shape [2, 2] needs 4 values but 1 were given"],
    );
    let npz = dir.path().join("y.npz");
    expect_err(
        write_npz(
            &npz,
            &[
                ("a".into(), tensor(&[1], &[1.0])),
                ("a".into(), tensor(&[1], &[2.0])),
            ],
        ),
        &npz,
        &["array `a`", "twice"],
    );
    let st = dir.path().join("z.safetensors");
    expect_err(
        write_safetensors(
            &st,
            &[("w".into(), Shape::new(vec![3]), &[1.0, 2.0][..])],
            None,
        ),
        &st,
        &["tensor `w`", "needs 3 values but 2"],
    );
    expect_err(
        write_safetensors(
            &st,
            &[("__metadata__".into(), Shape::new(vec![]), &[1.0][..])],
            None,
        ),
        &st,
        &["reserved"],
    );
    assert_eq!(read_npy(&path).unwrap(), tensor(&[3], &[4.0, 5.0, 6.0]));
    assert_eq!(dir_listing(dir.path()), ["x.npy"]);

    // The target cannot be created: an error naming it, and no temporary file.
    let sub = dir.path().join("no-such-dir").join("x.npy");
    expect_err(
        write_npy(&sub, &tensor(&[1], &[1.0])),
        &sub,
        &["cannot create a temporary file"],
    );
    // The target is a directory: the rename fails, and the temporary file is removed.
    let target_dir = dir.path().join("d.npy");
    std::fs::create_dir(&target_dir).unwrap();
    expect_err(
        write_npy(&target_dir, &tensor(&[1], &[1.0])),
        &target_dir,
        &["cannot move the temporary file"],
    );
    assert_eq!(dir_listing(dir.path()), ["d.npy", "x.npy"]);
}

// ---------------------------------------------------------------------------------------------
// Files written by NumPy and the safetensors library

#[test]
fn reads_every_numpy_element_type() {
    let cases: &[(&str, &[usize], &[f32])] = &[
        ("f4.npy", &[2, 3], &[1.5, -2.0, 3.25, 0.0, 4.5, -0.125]),
        ("f8.npy", &[3], &[0.1, -3.75, 0.001]),
        ("f2.npy", &[3], &[0.5, -1.0, 65504.0]),
        ("i8.npy", &[2, 2], &[-3.0, 0.0, 7.0, 16777216.0]),
        ("i4.npy", &[3], &[-2147483648.0, 2147483647.0, 5.0]),
        ("i2.npy", &[2], &[-300.0, 300.0]),
        ("i1.npy", &[2], &[-128.0, 127.0]),
        ("u1.npy", &[3], &[0.0, 1.0, 255.0]),
        ("u2.npy", &[2], &[65535.0, 2.0]),
        ("u4.npy", &[2], &[4000000000.0, 7.0]),
        ("bool.npy", &[3], &[1.0, 0.0, 1.0]),
        ("be_f4.npy", &[3], &[1.0, -2.5, 3.0]),
        ("be_i4.npy", &[3], &[1.0, -2.0, 70000.0]),
        ("be_f8.npy", &[2, 1], &[0.25, -8.0]),
        ("scalar.npy", &[], &[2.5]),
        ("empty.npy", &[0, 3], &[]),
    ];
    for &(name, dims, values) in cases {
        let t = read_npy(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t, tensor(dims, values), "{name}");
    }
}

#[test]
fn fortran_order_is_transposed_to_row_major() {
    let t = read_npy(&fixture("fortran.npy")).unwrap();
    assert_eq!(t, tensor(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    let t = read_npy(&fixture("fortran3d.npy")).unwrap();
    let expected: Vec<f32> = (0..24).map(|i| i as f32).collect();
    assert_eq!(t, tensor(&[2, 3, 4], &expected));
}

#[test]
fn reads_npz_stored_and_compressed() {
    let arrays = read_npz(&fixture("arrays.npz")).unwrap();
    assert_eq!(
        arrays,
        vec![
            ("weight".to_string(), tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])),
            ("bias".to_string(), tensor(&[2], &[-1.0, 1.0])),
        ]
    );
    let arrays = read_npz(&fixture("arrays_compressed.npz")).unwrap();
    let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
    assert_eq!(
        arrays,
        vec![
            ("x".to_string(), tensor(&[3, 4], &x)),
            ("mask".to_string(), tensor(&[4], &[1.0, 0.0, 0.0, 1.0])),
        ]
    );
}

#[test]
fn reads_safetensors_of_every_element_type_in_file_order() {
    let file = read_safetensors(&fixture("mixed.safetensors")).unwrap();
    // The library writes by descending alignment, then name; we keep the file's order.
    assert_eq!(
        file.names().collect::<Vec<_>>(),
        ["idx", "d", "f", "i", "h", "s", "u"]
    );
    let expect: &[(&str, SourceDType, &[usize], &[f32])] = &[
        ("idx", SourceDType::I64, &[2], &[3.0, -4.0]),
        ("d", SourceDType::F64, &[1, 2], &[0.125, -1.0e10]),
        ("f", SourceDType::F32, &[2, 1], &[1.0, 2.0]),
        ("i", SourceDType::I32, &[1], &[-7.0]),
        ("h", SourceDType::F16, &[3], &[0.5, -2.0, 1024.0]),
        ("s", SourceDType::I8, &[1], &[-100.0]),
        ("u", SourceDType::U8, &[2], &[200.0, 0.0]),
    ];
    for (t, &(name, dtype, shape, values)) in file.tensors().iter().zip(expect) {
        assert_eq!(t.name, name);
        assert_eq!(t.dtype, dtype, "{name}");
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(&*t.values, values, "{name}");
    }
    assert_eq!(
        file.metadata().get("format").map(String::as_str),
        Some("np")
    );
    assert_eq!(
        file.metadata().get("source").map(String::as_str),
        Some("make_fixtures.py")
    );

    let file = read_safetensors(&fixture("bf16.safetensors")).unwrap();
    let b = file.get("b").unwrap();
    assert_eq!(
        (b.dtype, b.shape.as_slice()),
        (SourceDType::BF16, &[2, 2][..])
    );
    assert_eq!(&*b.values, &[1.0, -0.5, 3.0, 256.0]);
}

// ---------------------------------------------------------------------------------------------
// Malformed files: errors that name the file and the reason

#[test]
fn missing_file() {
    let path = fixture("no-such-file.npy");
    expect_err(read_npy(&path), &path, &["cannot read"]);
    expect_err(read_npz(&path), &path, &["cannot read"]);
    expect_err(read_safetensors(&path), &path, &["cannot read"]);
}

#[test]
fn npy_truncated_data() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("f4.npy")).unwrap();
    let path = write_file(&dir, "cut.npy", &bytes[..bytes.len() - 12]);
    expect_err(
        read_npy(&path),
        &path,
        &[
            "header says shape [2, 3] (6 values) but the file holds 12 bytes of data",
            "take 24 bytes",
        ],
    );
    // Bytes left over after the data are as wrong as missing ones.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 4]);
    let path = write_file(&dir, "long.npy", &long);
    expect_err(read_npy(&path), &path, &["holds 28 bytes of data"]);
}

#[test]
fn npy_truncated_header_magic_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("f4.npy")).unwrap();
    let path = write_file(&dir, "head.npy", &bytes[..50]);
    expect_err(
        read_npy(&path),
        &path,
        &["says it is 118 bytes long, but the file ends after 50 bytes"],
    );
    let path = write_file(&dir, "magic.npy", &bytes[..4]);
    expect_err(read_npy(&path), &path, &["truncated", "magic"]);
    let path = write_file(&dir, "len.npy", &bytes[..9]);
    expect_err(read_npy(&path), &path, &["truncated", "header length"]);
    let path = write_file(&dir, "empty.npy", b"");
    expect_err(read_npy(&path), &path, &["truncated"]);
}

#[test]
fn npy_bad_magic_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "text.npy", b"hello, this is not an array\n");
    expect_err(read_npy(&path), &path, &["not a .npy file"]);
    let mut bytes = std::fs::read(fixture("f4.npy")).unwrap();
    bytes[6] = 9;
    let path = write_file(&dir, "v9.npy", &bytes);
    expect_err(read_npy(&path), &path, &["version 9.0"]);
}

#[test]
fn npy_header_shape_too_big_for_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![0u8; 3136];
    let bytes = npy_bytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 784), }",
        &data,
    );
    let path = write_file(&dir, "x.npy", &bytes);
    expect_err(
        read_npy(&path),
        &path,
        &[
            "x.npy: header says shape [1000, 784] (784000 values) but the file holds 3136 bytes of data",
        ],
    );
}

#[test]
fn npy_absurd_shapes_overflow_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for (i, shape) in [
        "(4294967296, 4294967296, 4294967296)",
        "(0, 1099511627776, 1099511627776)",
        "(99999999999999999999999999,)",
        "(18446744073709551615, 2)",
    ]
    .iter()
    .enumerate()
    {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let path = write_file(&dir, &format!("huge{i}.npy"), &npy_bytes(&dict, &[0; 16]));
        expect_err(
            read_npy(&path),
            &path,
            &["more elements than this machine can address"],
        );
    }
    // Fits in usize, but not once multiplied by the element size.
    let dict = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        usize::MAX / 4
    );
    let path = write_file(&dir, "bytes.npy", &npy_bytes(&dict, &[0; 16]));
    expect_err(read_npy(&path), &path, &["more elements than"]);
}

#[test]
fn npy_garbage_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) ",
            "malformed header",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3",
            "not closed",
        ),
        ("hello", "malformed header"),
        (
            "{'descr': '<f4', 'fortran_order': False}",
            "`shape` key exactly once",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (1,)}",
            "exactly once",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
            "non-negative decimal integers",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,), }",
            "non-negative decimal",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': 'x', }",
            "not a tuple",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 'no', 'shape': (1,), }",
            "fortran_order",
        ),
        (
            "{'descr': '<zz', 'fortran_order': False, 'shape': (1,), }",
            "malformed header",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'sh\\x61pe': (1,), 'shape': (1,)}",
            "escape",
        ),
        (
            "{'descr': [[[[[[[[[['<f4']]]]]]]]]], 'fortran_order': False, 'shape': (1,)}",
            "nests brackets",
        ),
    ];
    for (i, &(dict, reason)) in cases.iter().enumerate() {
        let path = write_file(&dir, &format!("g{i}.npy"), &npy_bytes(dict, &[0; 4]));
        expect_err(read_npy(&path), &path, &[reason]);
    }
    // Not UTF-8.
    let mut bytes = npy_bytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
        &[0; 4],
    );
    bytes[12] = 0xff;
    let path = write_file(&dir, "latin.npy", &bytes);
    expect_err(read_npy(&path), &path, &["not UTF-8"]);
}

#[test]
fn npy_unsupported_dtypes() {
    let path = fixture("complex.npy");
    expect_err(
        read_npy(&path),
        &path,
        &["dtype '<c8', which sprig cannot read"],
    );
    let dir = tempfile::tempdir().unwrap();
    let dict = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }";
    let path = write_file(&dir, "record.npy", &npy_bytes(dict, &[0; 8]));
    expect_err(read_npy(&path), &path, &["which sprig cannot read"]);
    let dict = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }";
    let path = write_file(&dir, "object.npy", &npy_bytes(dict, &[0; 8]));
    expect_err(read_npy(&path), &path, &["cannot read"]);
}

#[test]
fn npz_that_is_not_a_zip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "x.npz", b"this is plain text, not an archive");
    expect_err(
        read_npz(&path),
        &path,
        &["not a readable .npz (zip) archive"],
    );
    // An .npy file is not an archive either.
    let path = write_file(&dir, "y.npz", &std::fs::read(fixture("f4.npy")).unwrap());
    expect_err(read_npz(&path), &path, &["not a readable .npz"]);
}

#[test]
fn npz_member_that_is_not_npy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("good.npy", options).unwrap();
    zip.write_all(&std::fs::read(fixture("f4.npy")).unwrap())
        .unwrap();
    zip.start_file("notes.npy", options).unwrap();
    zip.write_all(b"just some text").unwrap();
    zip.finish().unwrap();
    expect_err(
        read_npz(&path),
        &path,
        &["array `notes` (member `notes.npy`)", "not a .npy file"],
    );
}

#[test]
fn npz_truncated_or_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("arrays.npz")).unwrap();
    let path = write_file(&dir, "cut.npz", &bytes[..bytes.len() / 2]);
    expect_err(read_npz(&path), &path, &["not a readable .npz"]);

    // A flipped bit in deflated data: the decompressor or the checksum notices.
    let mut bytes = std::fs::read(fixture("arrays_compressed.npz")).unwrap();
    bytes[70] ^= 0x55;
    let path = write_file(&dir, "flip.npz", &bytes);
    expect_err(read_npz(&path), &path, &["array `x`"]);

    // A stored member whose central directory entry claims 2 GB uncompressed.
    let mut bytes = std::fs::read(fixture("arrays.npz")).unwrap();
    let cd = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    bytes[cd + 24..cd + 28].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let path = write_file(&dir, "bomb.npz", &bytes);
    expect_err(read_npz(&path), &path, &["weight"]);
}

#[test]
fn npz_member_with_bad_data_names_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("w.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    let npy = npy_bytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (10,), }",
        &[0; 8],
    );
    zip.write_all(&npy).unwrap();
    zip.finish().unwrap();
    expect_err(
        read_npz(&path),
        &path,
        &[
            "array `w`",
            "header says shape [10] (10 values) but the file holds 8 bytes of data",
        ],
    );
}

#[test]
fn safetensors_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("mixed.safetensors")).unwrap();
    let path = write_file(&dir, "cut.safetensors", &bytes[..bytes.len() - 3]);
    expect_err(
        read_safetensors(&path),
        &path,
        &["do not end at the end of the file"],
    );
    let path = write_file(&dir, "tiny.safetensors", &bytes[..5]);
    expect_err(
        read_safetensors(&path),
        &path,
        &["truncated", "8-byte header length"],
    );
}

#[test]
fn safetensors_header_length_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("bf16.safetensors")).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let path = write_file(&dir, "long.safetensors", &bytes);
    expect_err(
        read_safetensors(&path),
        &path,
        &["header at byte 8 says it is 18446744073709551615 bytes long"],
    );
}

#[test]
fn safetensors_wrong_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "gap",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            &[
                "tensor `a`",
                "do not start where the previous tensor's data ends",
            ],
        ),
        (
            "size",
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
            &["different number of bytes than its shape and dtype need"],
        ),
        (
            "past",
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
            &["do not end at the end of the file"],
        ),
        (
            "overflow",
            r#"{"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}}"#,
            8,
            &["more elements than this machine can address"],
        ),
        (
            "json",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]"#,
            8,
            &["not a safetensors JSON header"],
        ),
        (
            "garbage",
            "\u{1}\u{2}\u{3}\u{4}",
            0,
            &["not a safetensors JSON header"],
        ),
    ];
    for &(name, json, data_len, reasons) in cases {
        let path = write_file(
            &dir,
            &format!("{name}.safetensors"),
            &st_bytes(json, &vec![0; data_len]),
        );
        expect_err(read_safetensors(&path), &path, reasons);
    }
    let mut bytes = st_bytes(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    bytes[10] = 0xff;
    let path = write_file(&dir, "utf8.safetensors", &bytes);
    expect_err(read_safetensors(&path), &path, &["not UTF-8"]);
}

#[test]
fn safetensors_unsupported_dtype_names_the_tensor() {
    let path = fixture("f8e4m3.safetensors");
    expect_err(
        read_safetensors(&path),
        &path,
        &["tensor `q` has dtype F8_E4M3, which sprig cannot read"],
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Every prefix of every fixture, read as each format: errors or values, never a panic.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            let path = write_file(&dir, "p", &bytes[..cut]);
            let _ = read_npy(&path);
            let _ = read_npz(&path);
            let _ = read_safetensors(&path);
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Every fixture with bytes overwritten at many places, read as each format.
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let original = std::fs::read(entry.unwrap().path()).unwrap();
        if original.is_empty() {
            continue;
        }
        for _ in 0..60 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let path = write_file(&dir, "m", &bytes);
            let _ = read_npy(&path);
            let _ = read_npz(&path);
            let _ = read_safetensors(&path);
        }
    }
}
