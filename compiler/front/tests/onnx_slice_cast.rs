//! ONNX Split, Slice and Cast of computed values import as `slice` and `cast` nodes with the
//! ONNX semantics (the interpreter's outputs equal values computed here by hand), and fold when
//! their operand is a constant.

use prost::Message;
use sprig_front::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use sprig_ir::{Op, Tensor, interpret};

const FLOAT: i32 = 1;
const INT64: i32 = 7;

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: vec![values.len() as i64],
        data_type: Some(INT64),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .iter()
            .map(|&v| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
                ..Default::default()
            })
            .collect(),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.to_string()),
        name: Some(format!("{op}_{}", outputs[0])),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
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

/// x [1, 3] → Gemm (W [6, 3], transB) → y [1, 6]; Split(y, [2, 4], axis 1) → a, b;
/// Slice(b, 1..-1 on axis 1) → c; Cast(a, float) → d; a constant Split folds into `k`, which
/// `Add` adds to `c`: outputs d and e = c + k.
fn model() -> ModelProto {
    let w: Vec<f32> = (0..18).map(|v| v as f32 * 0.25 - 2.0).collect();
    let nodes = vec![
        node("Gemm", &["x", "W"], &["y"], vec![int_attr("transB", 1)]),
        node(
            "Split",
            &["y", "sizes"],
            &["a", "b"],
            vec![int_attr("axis", 1)],
        ),
        node(
            "Slice",
            &["b", "starts", "ends", "axes"],
            &["c"],
            Vec::new(),
        ),
        node(
            "Cast",
            &["a"],
            &["d"],
            vec![int_attr("to", i64::from(FLOAT))],
        ),
        node(
            "Split",
            &["K", "halves"],
            &["k0", "k"],
            vec![int_attr("axis", 1)],
        ),
        node("Add", &["c", "k"], &["e"], Vec::new()),
    ];
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("slices".to_string()),
            node: nodes,
            initializer: vec![
                f32_tensor("W", &[6, 3], &w),
                i64_tensor("sizes", &[2, 4]),
                i64_tensor("starts", &[1]),
                i64_tensor("ends", &[-1]),
                i64_tensor("axes", &[1]),
                f32_tensor("K", &[1, 4], &[10.0, 20.0, 30.0, 40.0]),
                i64_tensor("halves", &[2, 2]),
            ],
            input: vec![value_info("x", &[1, 3])],
            output: vec![value_info("d", &[1, 2]), value_info("e", &[1, 2])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn split_slice_and_cast_import_with_onnx_semantics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("slices.onnx");
    std::fs::write(&path, model().encode_to_vec()).expect("write model");
    let imported = sprig_front::load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let graph = &imported.graph;
    let ops: Vec<String> = imported
        .info
        .order
        .iter()
        .map(|&id| {
            sprig_ir::print::Name(&graph.node(id).name).to_string() + "=" + graph.node(id).op.name()
        })
        .collect();
    let slices = graph
        .node_ids()
        .filter(|&id| matches!(graph.node(id).op, Op::Slice(_)))
        .count();
    // Split's two read outputs and Slice's one axis; the constant Split folded.
    assert_eq!(slices, 3, "{ops:?}");
    assert!(
        graph
            .node_ids()
            .any(|id| matches!(graph.node(id).op, Op::Cast(_))),
        "{ops:?}"
    );

    let x = [0.5f32, -1.0, 2.0];
    let w: Vec<f32> = (0..18).map(|v| v as f32 * 0.25 - 2.0).collect();
    let y: Vec<f32> = (0..6)
        .map(|r| (0..3).map(|c| w[r * 3 + c] * x[c]).sum())
        .collect();
    let out = interpret(
        graph,
        &imported.info,
        &[Tensor::new(vec![1, 3], x.to_vec())],
    )
    .expect("runs");
    assert_eq!(out[0].dims(), [1, 2]);
    assert_eq!(out[0].data, y[..2].to_vec());
    assert_eq!(out[1].dims(), [1, 2]);
    assert_eq!(out[1].data, vec![y[3] + 30.0, y[4] + 40.0]);

    // The text dump reads back as the same graph.
    let printed = sprig_ir::print(graph, None);
    let back = sprig_front::parse_text(&printed, "slices.sprig", Some(dir.path()))
        .unwrap_or_else(|d| panic!("{d}\n{printed}"));
    assert_eq!(sprig_ir::print(&back.graph, None), printed);
}
