//! Corrupt and hostile ONNX files: each gives an error that names the file, the place and the
//! reason; none panics, and none makes the importer allocate much more than the file's size
//! (checked by a counting allocator: this file holds one test, so nothing else allocates).

use prost::Message;
use sprig_front::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout, as the caller guarantees for `alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

fn f32_raw(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        raw_data: Some(f32_raw(values).into()),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: i32, dims: Option<&[i64]>) -> ValueInfoProto {
    let shape = dims.map(|d| TensorShapeProto {
        dim: d
            .iter()
            .map(|&v| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        name: Some(name.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_string()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

/// x : [N, 4] → Gemm(W [3, 4], b [3], transB = 1) → y → Relu → z.
fn base() -> ModelProto {
    let mut gemm = node("Gemm", "fc", &["x", "W", "b"], &["y"]);
    gemm.attribute.push(int_attr("transB", 1));
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("hostile".to_string()),
            node: vec![gemm, node("Relu", "act", &["y"], &["z"])],
            initializer: vec![
                tensor("W", &[3, 4], &[0.5; 12]),
                tensor("b", &[3], &[0.1, 0.2, 0.3]),
            ],
            input: vec![value_info("x", FLOAT, Some(&[1, 4]))],
            output: vec![value_info("z", FLOAT, Some(&[1, 3]))],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().expect("base has a graph")
}

fn with(f: impl FnOnce(&mut ModelProto)) -> Vec<u8> {
    let mut m = base();
    f(&mut m);
    m.encode_to_vec()
}

/// Imports `bytes` written to `dir/name`, returning the error message; checks that it names the
/// file and that no allocation exceeded what the file's size justifies.
fn import_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write case");
    LARGEST.store(0, Ordering::Relaxed);
    let result = sprig_front::onnx::import(&path);
    let largest = LARGEST.load(Ordering::Relaxed);
    let limit = (bytes.len() * 4).max(1 << 20);
    assert!(
        largest <= limit,
        "{name}: an allocation of {largest} bytes for a file of {} bytes",
        bytes.len()
    );
    match result {
        Ok(_) => panic!("{name} imported, but it should fail"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(&path.display().to_string()),
                "{name}: the message does not name the file: {message}"
            );
            message.replace(&dir.display().to_string(), "DIR")
        }
    }
}

#[test]
fn hostile_files_give_located_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    assert!(
        sprig_front::onnx::import(&{
            let p = d.join("ok.onnx");
            std::fs::write(&p, base().encode_to_vec()).expect("write");
            p
        })
        .is_ok()
    );

    let valid = base().encode_to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            valid[..valid.len() / 2].to_vec(),
            "truncated or corrupt protobuf",
        ),
        (
            "garbage",
            {
                let mut g = vec![0x08, 0x08];
                g.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
                g
            },
            "truncated or corrupt protobuf",
        ),
        (
            "no_graph",
            with(|m| m.graph = None),
            "the model has no graph",
        ),
        (
            "no_opset",
            with(|m| m.opset_import.clear()),
            "imports no version of the default opset",
        ),
        (
            "old_opset",
            with(|m| m.opset_import[0].version = Some(7)),
            "opset 7 is older",
        ),
        (
            "wrong_dims_vs_data",
            with(|m| graph(m).initializer[0].dims = vec![3, 5]),
            "tensor `W`: dims [3, 5] of FLOAT need 60 bytes but raw_data holds 48",
        ),
        (
            "negative_dim",
            with(|m| graph(m).initializer[0].dims = vec![-3, 4]),
            "tensor `W`: dims [-3, 4] hold a negative size",
        ),
        (
            "overflowing_dims",
            with(|m| graph(m).initializer[0].dims = vec![1 << 40, 1 << 40]),
            "more elements than memory can address",
        ),
        (
            "huge_dims_tiny_data",
            with(|m| graph(m).initializer[0].dims = vec![100_000, 100_000]),
            "need 40000000000 bytes but raw_data holds 48",
        ),
        (
            "typed_count_mismatch",
            with(|m| {
                let t = &mut graph(m).initializer[1];
                t.raw_data = None;
                t.float_data = vec![1.0];
            }),
            "tensor `b`: dims [3] need 3 values but the tensor holds 1",
        ),
        (
            "unknown_data_type",
            with(|m| graph(m).initializer[0].data_type = Some(99)),
            "tensor `W`: data type 99 (unknown)",
        ),
        (
            "string_tensor",
            with(|m| graph(m).initializer[0].data_type = Some(8)),
            "data type 8 (STRING)",
        ),
        (
            "missing_initializer",
            with(|m| {
                graph(m).initializer.remove(0);
            }),
            "node `fc` (Gemm): reads `W`, which no node, graph input or initializer defines",
        ),
        (
            "cycle",
            with(|m| {
                let g = graph(m);
                g.node[0].input[0] = "z".to_string();
                g.input.clear();
            }),
            "the graph has a cycle through nodes `fc`, `act`",
        ),
        (
            "defined_twice",
            with(|m| graph(m).node.push(node("Relu", "again", &["y"], &["z"]))),
            "value `z` is defined twice",
        ),
        (
            "output_not_computed",
            with(|m| graph(m).output[0].name = Some("nowhere".into())),
            "graph output `nowhere` is not computed",
        ),
        (
            "input_without_shape",
            with(|m| graph(m).input[0] = value_info("x", FLOAT, None)),
            "graph input `x`: has no shape",
        ),
        (
            "input_negative_dim",
            with(|m| graph(m).input[0] = value_info("x", FLOAT, Some(&[1, -4]))),
            "graph input `x`: has a negative dim -4",
        ),
        (
            "input_double",
            with(|m| graph(m).input[0] = value_info("x", 11, Some(&[1, 4]))),
            "graph input `x`: has element type DOUBLE",
        ),
        (
            "input_wrong_width",
            with(|m| graph(m).input[0] = value_info("x", FLOAT, Some(&[1, 5]))),
            "node `fc` (Gemm): dense: input has 5 features",
        ),
        (
            "unsupported_ops",
            with(|m| {
                let g = graph(m);
                g.node[1].op_type = Some("Elu".into());
                g.node.push(node("Elu", "e2", &["z"], &["z2"]));
                g.node.push(node("Elu", "e3", &["z2"], &["z3"]));
                g.node
                    .push(node("NonMaxSuppression", "nms", &["z3"], &["z4"]));
                g.output[0].name = Some("z4".into());
            }),
            "unsupported ops: 3 × Elu (nodes act, e2, e3), 1 × NonMaxSuppression (node nms)",
        ),
        (
            "computed_gemm_weight",
            with(|m| {
                let g = graph(m);
                g.node.insert(0, node("Relu", "wr", &["W0"], &["W"]));
                g.initializer[0].name = Some("W0".into());
            }),
            "unsupported ops: 1 × Gemm (computed B) (node fc)",
        ),
        (
            "bad_attribute_type",
            with(|m| {
                graph(m).node[0].attribute[0] = AttributeProto {
                    name: Some("transB".into()),
                    f: Some(1.0),
                    ..Default::default()
                };
            }),
            "node `fc` (Gemm): attribute `transB` is not an integer",
        ),
        (
            "bad_reshape",
            with(|m| {
                let g = graph(m);
                g.node.push(node("Reshape", "rs", &["z", "shape"], &["r"]));
                g.initializer.push(TensorProto {
                    name: Some("shape".into()),
                    dims: vec![1],
                    data_type: Some(INT64),
                    int64_data: vec![7],
                    ..Default::default()
                });
                g.output[0].name = Some("r".into());
            }),
            "node `rs` (Reshape): cannot reshape [1, 3] (3 elements) into [7]",
        ),
        (
            "external_escapes",
            with(|m| external(m, "../outside.bin", 0)),
            "external data location `../outside.bin` is not a path inside the model's directory",
        ),
        (
            "external_absolute",
            with(|m| external(m, "/etc/passwd", 0)),
            "is not a path inside the model's directory",
        ),
        (
            "external_missing",
            with(|m| external(m, "missing.bin", 0)),
            "cannot open external data file",
        ),
        (
            "external_short",
            with(|m| external(m, "short.bin", 0)),
            "holds 8 bytes, but the tensor needs 48 bytes at offset 0",
        ),
        (
            "external_offset_overflow",
            with(|m| external(m, "short.bin", u64::MAX - 4)),
            "needs 48 bytes at offset 18446744073709551611",
        ),
    ];
    std::fs::write(d.join("short.bin"), [0u8; 8]).expect("write");
    assert!(cases.len() >= 20);
    let mut report = String::new();
    for (name, bytes, expected) in &cases {
        let message = import_error(d, &format!("{name}.onnx"), bytes);
        assert!(
            message.contains(expected),
            "{name}: expected `{expected}` in: {message}"
        );
        report.push_str(&message);
        report.push('\n');
    }

    // A link inside the directory that leads out of it is refused too.
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("w.bin"), f32_raw(&[0.5; 12])).expect("write");
        std::os::unix::fs::symlink(outside.path().join("w.bin"), d.join("link.bin")).expect("link");
        let bytes = with(|m| external(m, "link.bin", 0));
        let message = import_error(d, "symlink.onnx", &bytes);
        assert!(
            message.contains("resolves outside the model's directory"),
            "{message}"
        );
    }

    // Every prefix of a valid file is an error or a model, never a panic.
    for cut in (0..valid.len()).step_by(3) {
        let _ = sprig_front::onnx::import_bytes(Path::new("cut.onnx"), valid[..cut].to_vec());
    }
    insta::assert_snapshot!(report);

    // Corrupted bytes in the exporters' fixtures: an error or a model, never a panic.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in [
        "mlp_gemm",
        "cnn",
        "lstm",
        "sklearn_mlp",
        "embed",
        "gemm_variants",
    ] {
        let path = fixtures.join(format!("{name}.onnx"));
        let bytes = std::fs::read(&path).expect("fixture");
        for _ in 0..150 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            let _ = sprig_front::onnx::import_bytes(&path, b);
        }
    }
}

/// Moves `W`'s data to the external file `location` at `offset`.
fn external(m: &mut ModelProto, location: &str, offset: u64) {
    let t = &mut graph(m).initializer[0];
    t.raw_data = None;
    t.data_location = Some(1);
    let entry = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.to_string()),
        value: Some(v),
    };
    t.external_data = vec![
        entry("location", location.to_string()),
        entry("offset", offset.to_string()),
    ];
}
