//! Reading labelled image data: MNIST IDX files (plain and gzip) and `.npz` data sets, well-formed
//! and malformed, and the real MNIST test split against the bundled first 1000 images.

use sprig_front::files::{MnistSplit, read_mnist, read_npz_dataset, write_npz};
use sprig_ir::Tensor;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An IDX image file: magic 00 00 08 03, count, rows, cols (big-endian), then the pixels.
fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

/// An IDX label file: magic 00 00 08 01, count (big-endian), then the labels.
fn idx_labels(count: u32, labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(labels);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Three 2×3 images with pixels 0, 1, … (mod 256) and their labels 7, 0, 255.
fn small_images() -> Vec<u8> {
    let pixels: Vec<u8> = (0..18u8).map(|i| i * 15).collect();
    idx_images(3, 2, 3, &pixels)
}

fn small_labels() -> Vec<u8> {
    idx_labels(3, &[7, 0, 255])
}

/// A directory holding the given test-split files (`None` leaves a file out).
fn test_dir(images: Option<&[u8]>, labels: Option<&[u8]>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(b) = images {
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), b).unwrap();
    }
    if let Some(b) = labels {
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), b).unwrap();
    }
    dir
}

/// The error message for reading the test split of `dir`.
fn mnist_error(dir: &Path) -> String {
    match read_mnist(dir, MnistSplit::Test, None) {
        Ok(d) => panic!("read {} samples from malformed files", d.len()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
}

#[test]
fn reads_idx_files_and_scales_pixels() {
    let dir = test_dir(Some(&small_images()), Some(&small_labels()));
    let data = read_mnist(dir.path(), MnistSplit::Test, None).unwrap();
    assert_eq!(data.images.dims(), [3, 2, 3]);
    assert_eq!(data.labels, [7, 0, 255]);
    assert_eq!(data.classes, 256);
    assert_eq!(data.len(), 3);
    let expected: Vec<f32> = (0..18u8).map(|i| f32::from(i * 15) / 255.0).collect();
    assert_eq!(data.images.data, expected);
    assert_eq!(data.images.data[17], 1.0, "255 scales to exactly 1.0");
    assert_eq!(data.images.data[0], 0.0);
}

#[test]
fn limit_keeps_the_first_samples() {
    let dir = test_dir(Some(&small_images()), Some(&small_labels()));
    let data = read_mnist(dir.path(), MnistSplit::Test, Some(2)).unwrap();
    assert_eq!(data.images.dims(), [2, 2, 3]);
    assert_eq!(data.labels, [7, 0]);
    assert_eq!(data.classes, 8);
    let all = read_mnist(dir.path(), MnistSplit::Test, Some(1000)).unwrap();
    assert_eq!(all.len(), 3);
    let none = read_mnist(dir.path(), MnistSplit::Test, Some(0)).unwrap();
    assert_eq!(none.images.dims(), [0, 2, 3]);
    assert_eq!(none.classes, 0);
    assert!(none.is_empty());
}

#[test]
fn reads_the_train_split_and_gzip_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte.gz"),
        gzip(&small_images()),
    )
    .unwrap();
    // The dotted spelling some mirrors use, gzip recognised by content.
    std::fs::write(
        dir.path().join("train-labels.idx1-ubyte"),
        gzip(&small_labels()),
    )
    .unwrap();
    let gz = read_mnist(dir.path(), MnistSplit::Train, None).unwrap();
    let plain_dir = test_dir(Some(&small_images()), Some(&small_labels()));
    let plain = read_mnist(plain_dir.path(), MnistSplit::Test, None).unwrap();
    assert_eq!(gz, plain);
    let limited = read_mnist(dir.path(), MnistSplit::Train, Some(1)).unwrap();
    assert_eq!(limited.labels, [7]);
    // The test split is not there.
    let message = mnist_error(dir.path());
    assert_mentions(&message, &["t10k-images-idx3-ubyte", "no such file"]);
}

#[test]
fn missing_directory_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nowhere");
    assert_mentions(&mnist_error(&absent), &["nowhere", "no such directory"]);
    assert_mentions(
        &mnist_error(dir.path()),
        &[
            "t10k-images-idx3-ubyte",
            "t10k-images-idx3-ubyte.gz",
            "no such file",
        ],
    );
    let dir = test_dir(Some(&small_images()), None);
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-labels-idx1-ubyte", "no such file"],
    );
}

#[test]
fn bad_magic() {
    let mut images = small_images();
    images[..4].copy_from_slice(b"PK\x03\x04");
    let dir = test_dir(Some(&images), Some(&small_labels()));
    assert_mentions(
        &mnist_error(dir.path()),
        &[
            "t10k-images-idx3-ubyte",
            "not a MNIST IDX image file",
            "00 00 08 03",
        ],
    );
}

#[test]
fn images_and_labels_swapped() {
    let dir = test_dir(Some(&small_labels()), Some(&small_images()));
    assert_mentions(
        &mnist_error(dir.path()),
        &[
            "t10k-images-idx3-ubyte",
            "00 00 08 01",
            "MNIST IDX label file",
        ],
    );
}

#[test]
fn element_type_other_than_bytes() {
    let mut images = small_images();
    images[2] = 0x0d;
    let dir = test_dir(Some(&images), Some(&small_labels()));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-images-idx3-ubyte", "element type 0x0d", "00 00 08 03"],
    );
}

#[test]
fn truncated_header() {
    for len in [0, 2, 10] {
        let images = small_images();
        let dir = test_dir(Some(&images[..len]), Some(&small_labels()));
        assert_mentions(
            &mnist_error(dir.path()),
            &["t10k-images-idx3-ubyte", "truncated", "IDX header"],
        );
    }
    let labels = small_labels();
    let dir = test_dir(Some(&small_images()), Some(&labels[..6]));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-labels-idx1-ubyte", "truncated"],
    );
}

#[test]
fn truncated_data() {
    let images = small_images();
    let dir = test_dir(Some(&images[..images.len() - 1]), Some(&small_labels()));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-images-idx3-ubyte", "[3, 2, 3]", "17 bytes of data"],
    );
    // Even when the limit would not reach the missing bytes, the file is wrong.
    let err = read_mnist(dir.path(), MnistSplit::Test, Some(1)).unwrap_err();
    assert_mentions(&err.to_string(), &["17 bytes of data"]);
}

#[test]
fn trailing_data() {
    let mut labels = small_labels();
    labels.push(3);
    let dir = test_dir(Some(&small_images()), Some(&labels));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-labels-idx1-ubyte", "[3]", "4 bytes of data"],
    );
}

#[test]
fn counts_disagree() {
    let dir = test_dir(Some(&small_images()), Some(&idx_labels(2, &[1, 2])));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-labels-idx1-ubyte", "2 labels", "3 images"],
    );
}

#[test]
fn empty_images_are_rejected() {
    let dir = test_dir(Some(&idx_images(3, 0, 28, &[])), Some(&small_labels()));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-images-idx3-ubyte", "0 × 28 pixels"],
    );
}

#[test]
fn huge_declared_sizes_allocate_nothing() {
    // 2^32-1 images of 2^32-1 × 2^32-1 pixels in a 16-byte file.
    let images = idx_images(u32::MAX, u32::MAX, u32::MAX, &[]);
    let dir = test_dir(Some(&images), Some(&idx_labels(u32::MAX, &[])));
    let message = mnist_error(dir.path());
    assert_mentions(&message, &["t10k-images-idx3-ubyte"]);
    assert!(
        message.contains("more elements than this machine can address")
            || message.contains("bytes of data"),
        "{message}"
    );
    // Large but addressable: refused by the file length, not by an allocation failure.
    let images = idx_images(60_000, 1000, 1000, &[1, 2, 3]);
    let dir = test_dir(Some(&images), Some(&idx_labels(60_000, &[])));
    assert_mentions(&mnist_error(dir.path()), &["3 bytes of data"]);
    // The same in a gzip file: the compressed length cannot hold it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), gzip(&images)).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), small_labels()).unwrap();
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-images-idx3-ubyte", "gzip-compressed bytes can hold"],
    );
}

#[test]
fn malformed_gzip() {
    // A gzip trailer that disagrees with the header.
    let mut gz = gzip(&small_images());
    let n = gz.len();
    gz[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
    let dir = test_dir(Some(&gz), Some(&small_labels()));
    assert_mentions(
        &mnist_error(dir.path()),
        &["t10k-images-idx3-ubyte", "gzip trailer records 1000"],
    );
    // A corrupt deflate stream: a stored block whose length check fails.
    let mut gz = gzip(&small_images());
    for b in &mut gz[10..n - 8] {
        *b ^= 0x5a;
    }
    let dir = test_dir(Some(&gz), Some(&small_labels()));
    assert_mentions(&mnist_error(dir.path()), &["t10k-images-idx3-ubyte"]);
    // Cut short: no trailer at all.
    let gz = gzip(&small_images());
    let dir = test_dir(Some(&gz[..12]), Some(&small_labels()));
    assert_mentions(&mnist_error(dir.path()), &["t10k-images-idx3-ubyte"]);
}

/// A fresh file name in `dir` for each archive a test writes.
fn fresh(dir: &Path, stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    dir.join(format!("{stem}{}.npz", N.fetch_add(1, Ordering::Relaxed)))
}

fn npz(dir: &Path, arrays: &[(&str, Tensor)]) -> PathBuf {
    let path = fresh(dir, "data");
    let arrays: Vec<(String, Tensor)> = arrays
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    write_npz(&path, &arrays).unwrap();
    path
}

/// An `.npz` archive with members written as raw `.npy` bytes (for dtypes sprig does not write).
fn raw_npz(dir: &Path, members: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = fresh(dir, "raw");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in members {
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A `.npy` file (format 1.0) of `descr` with `shape` holding `data`.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn npz_float_images_are_taken_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(
        dir.path(),
        &[
            ("X", Tensor::new(vec![2, 2], vec![0.5, 2.0, -1.0, 0.0])),
            ("y", Tensor::new(vec![2], vec![3.0, 1.0])),
        ],
    );
    let data = read_npz_dataset(&path).unwrap();
    assert_eq!(data.images.dims(), [2, 2]);
    assert_eq!(data.images.data, [0.5, 2.0, -1.0, 0.0]);
    assert_eq!(data.labels, [3, 1]);
    assert_eq!(data.classes, 4);
}

#[test]
fn npz_uint8_images_are_scaled() {
    let dir = tempfile::tempdir().unwrap();
    let path = raw_npz(
        dir.path(),
        &[
            ("x", npy_bytes("|u1", &[1, 1, 3], &[0, 51, 255])),
            ("y", npy_bytes("<i8", &[1], &9i64.to_le_bytes())),
        ],
    );
    let data = read_npz_dataset(&path).unwrap();
    assert_eq!(data.images.dims(), [1, 1, 3]);
    assert_eq!(data.images.data, [0.0, 0.2, 1.0]);
    assert_eq!(data.labels, [9]);
    assert_eq!(data.classes, 10);
}

#[test]
fn npz_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let x = || Tensor::new(vec![2, 1], vec![0.0, 1.0]);
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            npz(dir.path(), &[("y", Tensor::new(vec![2], vec![0.0, 1.0]))]),
            vec!["no image array `X` or `x`", "it holds y"],
        ),
        (
            npz(dir.path(), &[("X", x())]),
            vec!["no label array `y`", "it holds X"],
        ),
        (
            npz(
                dir.path(),
                &[
                    ("X", x()),
                    ("x", x()),
                    ("y", Tensor::new(vec![2], vec![0.0; 2])),
                ],
            ),
            vec!["both `X` and `x`"],
        ),
        (
            npz(
                dir.path(),
                &[("X", x()), ("y", Tensor::new(vec![3], vec![0.0; 3]))],
            ),
            vec!["`y` has shape [3]", "2 labels"],
        ),
        (
            npz(
                dir.path(),
                &[("X", x()), ("y", Tensor::new(vec![2, 1], vec![0.0; 2]))],
            ),
            vec!["`y` has shape [2, 1]"],
        ),
        (
            npz(
                dir.path(),
                &[("X", x()), ("y", Tensor::new(vec![2], vec![0.0, 1.5]))],
            ),
            vec!["y[1] is 1.5", "integers"],
        ),
        (
            npz(
                dir.path(),
                &[("X", x()), ("y", Tensor::new(vec![2], vec![-1.0, 1.0]))],
            ),
            vec!["y[0] is -1"],
        ),
        (
            npz(
                dir.path(),
                &[("X", x()), ("y", Tensor::new(vec![2], vec![f32::NAN, 1.0]))],
            ),
            vec!["y[0] is NaN"],
        ),
        (
            npz(
                dir.path(),
                &[
                    ("X", Tensor::new(vec![], vec![1.0])),
                    ("y", Tensor::new(vec![1], vec![0.0])),
                ],
            ),
            vec!["`X` is a scalar"],
        ),
        (
            raw_npz(
                dir.path(),
                &[
                    ("X", npy_bytes("<i2", &[1, 2], &[0, 0, 255, 0])),
                    ("y", npy_bytes("|u1", &[1], &[0])),
                ],
            ),
            vec!["dtype '<i2'", "uint8"],
        ),
        (
            raw_npz(
                dir.path(),
                &[
                    ("X", npy_bytes("|u1", &[1, 4], &[0, 0])),
                    ("y", npy_bytes("|u1", &[1], &[0])),
                ],
            ),
            vec!["array `X`", "2 bytes of data"],
        ),
    ];
    for (path, parts) in cases {
        let message = read_npz_dataset(&path).unwrap_err().to_string();
        let mut parts = parts;
        parts.push(path.file_name().unwrap().to_str().unwrap());
        assert_mentions(&message, &parts);
    }
    let not_zip = dir.path().join("not.npz");
    std::fs::write(&not_zip, b"hello").unwrap();
    assert_mentions(
        &read_npz_dataset(&not_zip).unwrap_err().to_string(),
        &["not.npz", "zip"],
    );
}

/// The real MNIST test split (fetched by `fetch-mnist.sh` into `~/.cache/sprig/mnist`) against
/// the bundled first 1000 test images and labels.
#[test]
fn real_mnist_matches_the_bundled_sample() {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let dir = Path::new(&home).join(".cache/sprig/mnist");
    if !dir.is_dir() {
        // Machines without the download check the reader on the small files above only.
        return;
    }
    let data = read_mnist(&dir, MnistSplit::Test, Some(1000)).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/mnist_test_1000.npz");
    let bundled = read_npz_dataset(&sample).unwrap();
    assert_eq!(data.images.dims(), [1000, 28, 28]);
    assert_eq!(bundled.images.dims(), [1000, 28, 28]);
    // Both scale the same bytes by 1/255: the values agree exactly.
    assert!(data.images.data == bundled.images.data);
    assert_eq!(data.labels, bundled.labels);
    assert_eq!(data.classes, 10);
    let mut seen = [0usize; 10];
    for &l in &data.labels {
        seen[l as usize] += 1;
    }
    assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    let full = read_mnist(&dir, MnistSplit::Test, None).unwrap();
    assert_eq!(full.len(), 10_000);
    assert_eq!(full.images.data[..784 * 1000], data.images.data[..]);
}
