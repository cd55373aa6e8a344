//! Import speed of a large ONNX model: a Gemm with a `[out, 25088]` float32 weight in raw_data
//! (VGG-16's fc6 input width), written to a temporary file and imported, best of five runs.
//!
//! `cargo bench -p sprig-front --bench onnx_import` measures a 100 MB model (out = 1024) and the
//! full 411 MB fc6 (out = 4096); under `cargo test` it only checks that a small one imports.

use prost::Message;
use sprig_front::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use std::time::{Duration, Instant};

const IN: usize = 25088;

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(out: usize) -> Vec<u8> {
    let raw: Vec<u8> = (0..out * IN)
        .flat_map(|i| ((i % 1000) as f32 * 1e-3).to_le_bytes())
        .collect();
    let tensor = |name: &str, dims: Vec<i64>, raw: Vec<u8>| TensorProto {
        name: Some(name.to_string()),
        dims,
        data_type: Some(1),
        raw_data: Some(raw.into()),
        ..Default::default()
    };
    let bias: Vec<u8> = (0..out).flat_map(|_| 0.5f32.to_le_bytes()).collect();
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("fc6".to_string()),
            node: vec![NodeProto {
                op_type: Some("Gemm".to_string()),
                name: Some("fc6".to_string()),
                input: vec!["x".into(), "fc6.weight".into(), "fc6.bias".into()],
                output: vec!["y".into()],
                attribute: vec![AttributeProto {
                    name: Some("transB".to_string()),
                    i: Some(1),
                    r#type: Some(2),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            initializer: vec![
                tensor("fc6.weight", vec![out as i64, IN as i64], raw),
                tensor("fc6.bias", vec![out as i64], bias),
            ],
            input: vec![value_info("x", &[1, IN as i64])],
            output: vec![value_info("y", &[1, out as i64])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn measure(out: usize, runs: usize) -> (u64, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fc6.onnx");
    std::fs::write(&path, model(out)).expect("write model");
    let size = std::fs::metadata(&path).expect("metadata").len();
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let imported = sprig_front::load(&path).expect("imports");
        let took = start.elapsed();
        assert_eq!(
            imported.parsed.graph.weights.parameter_count(),
            (out * IN + out) as u64
        );
        drop(imported);
        best = best.min(took);
    }
    (size, best)
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if benchmarking { &[1024, 4096] } else { &[4] };
    for &out in sizes {
        let (size, best) = measure(out, if benchmarking { 5 } else { 1 });
        #[allow(clippy::print_stdout)]
        {
            println!(
                "onnx import: Gemm [{out}, {IN}], {:.1} MB file: {:.0} ms (best of {})",
                size as f64 / 1e6,
                best.as_secs_f64() * 1e3,
                if benchmarking { 5 } else { 1 }
            );
        }
    }
}
