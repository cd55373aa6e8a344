//! Artifacts of real and random models: round trips (the graph, its encodings and the bytes),
//! honest sizes, determinism, the interpreter on unpacked graphs, and malformed artifacts.

use proptest::prelude::*;
use sprig_ir::{Graph, GraphInfo, Tensor, interpret};
use sprig_pack::{
    CHECKSUM_BYTES, HEADER_BYTES, MAGIC, PackError, Packed, SECTION_FRAME_BYTES, pack, unpack,
};
use sprig_passes::{Pipeline, run_pipeline};
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Loads `path` and runs `pipeline` over it (no pipeline when empty).
fn compress(path: &Path, pipeline: &str) -> (Graph, GraphInfo) {
    let parsed = sprig_front::load_model(path).unwrap_or_else(|e| panic!("{e}"));
    let (mut graph, info) = (parsed.graph, parsed.info);
    if pipeline.is_empty() {
        return (graph, info);
    }
    let pipeline = Pipeline::preset(pipeline)
        .or_else(|_| Pipeline::parse(pipeline))
        .unwrap_or_else(|e| panic!("{e}"));
    let (info, _) =
        run_pipeline(&mut graph, info, &pipeline, None).unwrap_or_else(|e| panic!("{e}"));
    (graph, info)
}

/// Sizes add up, the graph reads back equal and packs to the same bytes.
fn check_round_trip(graph: &Graph, info: &GraphInfo) -> Packed {
    let packed = pack(graph, info).unwrap_or_else(|e| panic!("{e}"));
    let report = &packed.report;
    assert_eq!(report.total.packed_bytes, packed.bytes.len() as u64);
    let layer_bytes: u64 = report.layers.iter().map(|l| l.bytes).sum();
    assert_eq!(layer_bytes + report.other_bytes, report.total.packed_bytes);
    assert_eq!(report.layers.len(), graph.weights.len());
    assert_eq!(
        report.total.dense_bytes,
        4 * graph.weights.parameter_count()
    );
    let (restored, restored_info) =
        unpack(&packed.bytes, "model.sprigpack").unwrap_or_else(|e| panic!("{e}"));
    assert!(restored == *graph, "the unpacked graph differs");
    let again = pack(&restored, &restored_info).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.bytes, packed.bytes,
        "packing the unpacked graph changes bytes"
    );
    assert_eq!(again.report, packed.report);
    packed
}

/// The first eight MNIST test digits, each shaped like the model's input.
fn digits(graph: &Graph, info: &GraphInfo) -> Vec<Tensor> {
    let all = sprig_front::files::read_npy(&repo("examples/inputs/mnist_digits_8.npy")).unwrap();
    let shape = info.ty(graph.inputs()[0]).shape.clone();
    all.data
        .chunks(784)
        .map(|d| Tensor::new(shape.clone(), d.to_vec()))
        .collect()
}

fn same_outputs(a: (&Graph, &GraphInfo), b: (&Graph, &GraphInfo), inputs: &[Tensor]) {
    for input in inputs {
        let x = interpret(a.0, a.1, std::slice::from_ref(input)).unwrap();
        let y = interpret(b.0, b.1, std::slice::from_ref(input)).unwrap();
        assert_eq!(x.len(), y.len());
        for (x, y) in x.iter().zip(&y) {
            assert_eq!(x.shape, y.shape);
            assert!(
                x.data
                    .iter()
                    .zip(&y.data)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "outputs differ"
            );
        }
    }
}

#[allow(clippy::print_stderr)]
fn lenet(name: &str, min_ratio: f64) {
    let path = repo(&format!("examples/{name}.sprig"));
    let (graph, info) = compress(&path, "deep-compression");
    let packed = check_round_trip(&graph, &info);
    let total = &packed.report.total;
    eprintln!(
        "{name}: {} -> {} bytes, {:.1}x",
        total.dense_bytes, total.packed_bytes, total.ratio
    );
    assert!(total.ratio >= min_ratio, "{name}: ratio {:.2}", total.ratio);
    assert!((total.ratio - total.dense_bytes as f64 / total.packed_bytes as f64).abs() < 1e-12);

    let (restored, restored_info) = unpack(&packed.bytes, "x").unwrap();
    same_outputs(
        (&graph, &info),
        (&restored, &restored_info),
        &digits(&graph, &info),
    );

    // A fresh compile of the same model gives the same bytes.
    let (graph2, info2) = compress(&path, "deep-compression");
    assert_eq!(pack(&graph2, &info2).unwrap().bytes, packed.bytes);
}

#[test]
fn lenet_300_100_compresses_at_least_30x() {
    lenet("lenet_300_100", 30.0);
}

#[test]
fn lenet5_round_trips() {
    lenet("lenet5", 20.0);
}

#[test]
fn lenet_300_100_report_rows() {
    let (graph, info) = compress(&repo("examples/lenet_300_100.sprig"), "deep-compression");
    let packed = pack(&graph, &info).unwrap();
    let ip1 = &packed.report.layers[0];
    assert_eq!(ip1.name, "ip1.weight");
    assert_eq!(ip1.shape, vec![300, 784]);
    assert_eq!(ip1.params, 235_200);
    assert_eq!(ip1.weight_bits, 5);
    assert_eq!(ip1.index_bits, 5.0);
    let hw = ip1.huffman_weight_bits.unwrap();
    let hi = ip1.huffman_index_bits.unwrap();
    assert!(hw > 1.0 && hw < 5.0, "{hw}");
    assert!(hi > 1.0 && hi < 5.0, "{hi}");
    let encoding = graph.weights[graph.weights.find("ip1.weight").unwrap()]
        .encoding
        .clone();
    let huffman = encoding.huffman.unwrap();
    assert_eq!(hw, huffman.weight_bits);
    assert_eq!(hi, huffman.index_bits);
    assert_eq!(ip1.density, encoding.pruned.unwrap().density());
    let bias = &packed.report.layers[1];
    assert_eq!(bias.name, "ip1.bias");
    assert_eq!(bias.weight_bits, 32);
    assert_eq!(bias.density, 1.0);
    assert_eq!(bias.huffman_weight_bits, None);
    // A dense bias: its values, its key and the section framing.
    assert_eq!(
        bias.bytes as usize,
        SECTION_FRAME_BYTES + 1 + 4 + "ip1.bias".len() + 1 + 300 * 4
    );
}

#[test]
fn every_stage_of_every_pass_case_round_trips() {
    let cases = std::fs::read_dir(repo("tests/cases/passes")).unwrap();
    let mut paths: Vec<PathBuf> = cases.map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let source = std::fs::read_to_string(&path).unwrap();
        let pipeline = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# pipeline:"))
            .unwrap()
            .trim();
        let steps = Pipeline::parse(pipeline).unwrap();
        check_round_trip(&compress(&path, "").0, &compress(&path, "").1);
        for step in &steps.steps {
            let parsed = sprig_front::load_model(&path).unwrap();
            let (mut graph, info) = (parsed.graph, parsed.info);
            let (info, _) = run_pipeline(&mut graph, info, &steps, Some(step.pass)).unwrap();
            check_round_trip(&graph, &info);
        }
    }
}

#[test]
fn small_examples_round_trip_with_the_preset_and_without() {
    for name in ["lenet_300_100", "lenet5"] {
        let (graph, info) = compress(&repo(&format!("examples/{name}.sprig")), "");
        let packed = check_round_trip(&graph, &info);
        // Dense f32 storage costs a little more than the dense size: the graph and framing.
        assert!(packed.report.total.ratio < 1.0);
        let (graph, info) = compress(
            &repo(&format!("examples/{name}.sprig")),
            "prune(sparsity=0.9), quantize(bits=4)",
        );
        check_round_trip(&graph, &info);
    }
    // Seeded weights that no pass changed are stored as their generator.
    let (graph, info) = compress(&repo("examples/eie/alex8.sprig"), "");
    let packed = check_round_trip(&graph, &info);
    assert_eq!(packed.report.layers[0].weight_bits, 0);
    assert!(packed.report.total.packed_bytes < 1000);
    // ... also when a pass recorded a partition but left the values alone.
    let (graph, info) = compress(&repo("examples/eie/alex8.sprig"), "partition(pes=4)");
    assert!(
        graph
            .weights
            .iter()
            .any(|(_, w)| w.encoding.partition.is_some())
    );
    let packed = check_round_trip(&graph, &info);
    assert!(packed.report.total.packed_bytes < 1000);
}

/// A dense chain `x → dense → relu → dense ...` with literal weights.
fn chain_text(dims: &[usize], values: &[f32]) -> String {
    let mut text = format!("network chain\n\ninput x : f32[{}]\n", dims[0]);
    let mut next = values.iter().cycle();
    for (i, pair) in dims.windows(2).enumerate() {
        let (inputs, outputs) = (pair[0], pair[1]);
        let w: Vec<String> = (0..inputs * outputs)
            .map(|_| next.next().unwrap().to_string())
            .collect();
        let b: Vec<String> = (0..outputs)
            .map(|_| next.next().unwrap().to_string())
            .collect();
        text.push_str(&format!(
            "weight @w{i} : f32[{outputs}, {inputs}] = [{}]\nweight @b{i} : f32[{outputs}] = [{}]\n",
            w.join(", "),
            b.join(", ")
        ));
    }
    let mut prev = "x".to_string();
    for i in 0..dims.len() - 1 {
        text.push_str(&format!("let h{i} = dense({prev}, @w{i}, @b{i})\n"));
        prev = format!("h{i}");
    }
    text.push_str(&format!("output y = relu({prev})\n"));
    text
}

fn pipeline_strategy() -> impl Strategy<Value = String> {
    (
        prop::option::of(0.0f64..0.99),
        prop::option::of(2u8..6),
        prop::option::of(1u8..6),
        prop::option::of(1usize..5),
    )
        .prop_map(|(sparsity, bits, index_bits, pes)| {
            let mut steps = Vec::new();
            if let Some(s) = sparsity {
                steps.push(format!("prune(sparsity={s:.3})"));
            }
            if let Some(p) = pes {
                steps.push(format!("partition(pes={p})"));
            }
            if let Some(b) = bits {
                steps.push(format!("quantize(bits={b})"));
                if let Some(w) = index_bits {
                    steps.push(format!("huffman(index_bits={w})"));
                }
            }
            steps.join(", ")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_round_trip(
        dims in prop::collection::vec(1usize..24, 2..4),
        values in prop::collection::vec(prop_oneof![1 => Just(0.0f32), 4 => -1.0f32..1.0], 1..64),
        pipeline in pipeline_strategy(),
    ) {
        let text = chain_text(&dims, &values);
        let parsed = sprig_front::parse_text(&text, "chain.sprig", None).unwrap_or_else(|d| panic!("{d}"));
        let (mut graph, mut info) = (parsed.graph, parsed.info);
        if !pipeline.is_empty() {
            let pipeline = Pipeline::parse(&pipeline).unwrap();
            info = run_pipeline(&mut graph, info, &pipeline, None).unwrap().0;
        }
        check_round_trip(&graph, &info);
    }
}

// ---- malformed artifacts ----

fn lenet_artifact() -> Vec<u8> {
    let (graph, info) = compress(&repo("examples/lenet_300_100.sprig"), "deep-compression");
    pack(&graph, &info).unwrap().bytes
}

fn refresh_checksum(bytes: &mut [u8]) {
    let n = bytes.len() - CHECKSUM_BYTES;
    let crc = crc32fast::hash(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

fn expect_error(bytes: &[u8], needle: &str) -> String {
    match unpack(bytes, "bad.sprigpack") {
        Ok(_) => panic!("accepted a malformed artifact (expected: {needle})"),
        Err(e) => {
            let text = e.to_string();
            assert!(matches!(e, PackError::Malformed { .. }), "{text}");
            assert!(text.starts_with("bad.sprigpack: byte "), "{text}");
            assert!(text.contains(needle), "expected `{needle}` in: {text}");
            text
        }
    }
}

/// Offsets in the LeNet-300-100 artifact: the first weight section (ip1.weight) and its fields.
struct Layout {
    graph_len_at: usize,
    weight_at: usize,
    codebook_len_at: usize,
    table_at: usize,
    entries_at: usize,
    stream_bits_at: usize,
}

fn layout(bytes: &[u8]) -> Layout {
    let graph_len_at = HEADER_BYTES + 1;
    let graph_len = u64::from_le_bytes(bytes[graph_len_at..graph_len_at + 8].try_into().unwrap());
    let weight_at = HEADER_BYTES + SECTION_FRAME_BYTES + graph_len as usize;
    let body = weight_at + SECTION_FRAME_BYTES;
    // provenance (computed), flags, bits, init, zero code, then the codebook length.
    assert_eq!(bytes[body], 0);
    assert_eq!(bytes[body + 1], 0b111);
    let codebook_len_at = body + 5;
    let k = u32::from_le_bytes(
        bytes[codebook_len_at..codebook_len_at + 4]
            .try_into()
            .unwrap(),
    );
    // codebook, index width, then the table length.
    let table_len_at = codebook_len_at + 4 + 4 * k as usize + 1;
    let table_len =
        u32::from_le_bytes(bytes[table_len_at..table_len_at + 4].try_into().unwrap()) as usize;
    let table_at = table_len_at + 4;
    let entries_at = table_at + table_len;
    Layout {
        graph_len_at,
        weight_at,
        codebook_len_at,
        table_at,
        entries_at,
        stream_bits_at: entries_at + 8,
    }
}

#[test]
fn malformed_artifacts_give_located_errors() {
    let good = lenet_artifact();
    let at = layout(&good);
    assert!(unpack(&good, "good").is_ok());
    let mut checked = 0;
    let mut case = |mutate: &dyn Fn(&mut Vec<u8>), fix_checksum: bool, needle: &str| {
        let mut bytes = good.clone();
        mutate(&mut bytes);
        if fix_checksum {
            refresh_checksum(&mut bytes);
        }
        expect_error(&bytes, needle);
        checked += 1;
    };
    let put_u64 =
        |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let put_u32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());

    case(&|b| b.clear(), false, "truncated");
    case(
        &|b| b.truncate(3),
        false,
        "truncated: the file ends inside the magic",
    );
    case(&|b| b[0] = b'X', false, "not a sprig artifact");
    case(
        &|b| *b = b"PK\x03\x04 not an artifact".to_vec(),
        false,
        "not a sprig artifact",
    );
    case(&|b| b.truncate(HEADER_BYTES), false, "truncated: 16 bytes");
    case(
        &|b| b[8] = 2,
        false,
        "format version 2; this sprig reads version 1",
    );
    case(&|b| b.truncate(b.len() / 2), false, "checksum mismatch");
    case(&|b| b.truncate(b.len() - 1), false, "checksum mismatch");
    case(
        &|b| {
            let n = b.len();
            b[n / 3] ^= 0x10
        },
        false,
        "checksum mismatch",
    );
    case(
        &|b| {
            let n = b.len();
            b[n - 1] ^= 1
        },
        false,
        "checksum mismatch",
    );
    case(&|b| b[10] = 1, true, "reserved field");
    case(
        &|b| b[12] += 1,
        true,
        "announces 7 weights but the graph declares 6",
    );
    case(
        &|b| put_u64(b, at.graph_len_at, u64::MAX),
        true,
        "graph section claims",
    );
    case(&|b| b[HEADER_BYTES] = 2, true, "expected the graph section");
    case(
        &|b| {
            let n = b.len() - CHECKSUM_BYTES;
            b.insert(n, 0)
        },
        true,
        "unexpected bytes at the end of the artifact",
    );
    case(
        &|b| {
            let text = at.graph_len_at + 8 + 1;
            let pos = text + b[text..].windows(5).position(|w| w == b"dense").unwrap();
            b[pos + 1] = b'x';
        },
        true,
        "the graph text does not read back",
    );
    case(
        &|b| put_u64(b, at.weight_at + 1, 1 << 40),
        true,
        "section of weight `@ip1.weight` claims",
    );
    case(
        &|b| b[at.weight_at] = 1,
        true,
        "expected the section of weight `@ip1.weight`",
    );
    case(
        &|b| b[at.weight_at + SECTION_FRAME_BYTES] = 9,
        true,
        "unknown provenance 9",
    );
    case(
        &|b| b[at.weight_at + SECTION_FRAME_BYTES] = 3,
        true,
        "differ from those of the weight's generator",
    );
    case(
        &|b| b[at.weight_at + SECTION_FRAME_BYTES + 1] = 0x17,
        true,
        "unknown encoding flags",
    );
    case(
        &|b| b[at.weight_at + SECTION_FRAME_BYTES + 1] = 0b100,
        true,
        "Huffman coding without weight sharing",
    );
    case(
        &|b| b[at.weight_at + SECTION_FRAME_BYTES + 2] = 17,
        true,
        "code width 17",
    );
    case(
        &|b| put_u32(b, at.codebook_len_at, u32::MAX),
        true,
        "codebook of 4294967295 values",
    );
    case(
        &|b| put_u32(b, at.codebook_len_at + 4, 1.5f32.to_bits()),
        true,
        "codebook entry 0 to be 0.0",
    );
    case(&|b| b[at.table_at] = 7, true, "weight-code Huffman table");
    case(
        &|b| put_u64(b, at.entries_at, u64::MAX),
        true,
        "symbols cannot fit",
    );
    case(
        &|b| {
            let e = u64::from_le_bytes(b[at.entries_at..at.entries_at + 8].try_into().unwrap());
            put_u64(b, at.entries_at, e + 1)
        },
        true,
        "weight-code stream: bit stream ended",
    );
    case(
        &|b| put_u64(b, at.stream_bits_at, u64::MAX),
        true,
        "truncated: weight-code stream needs",
    );
    case(
        &|b| {
            let bits = u64::from_le_bytes(
                b[at.stream_bits_at..at.stream_bits_at + 8]
                    .try_into()
                    .unwrap(),
            );
            put_u64(b, at.stream_bits_at, bits - 9)
        },
        true,
        "weight-code stream",
    );
    assert!(checked >= 20, "{checked} cases");
}

#[test]
fn truncations_and_flips_never_panic() {
    let good = lenet_artifact();
    // Truncated at every 97th byte: the checksum (or the frame) catches each one.
    for len in (0..good.len()).step_by(97) {
        let text = expect_error(&good[..len], "");
        assert!(
            text.contains("truncated") || text.contains("checksum"),
            "{text}"
        );
    }
    // Flipped bytes with a repaired checksum exercise the structural checks: any outcome but
    // a panic is acceptable (a flip inside a codebook value still reads).
    let mut errors = 0;
    for i in (0..good.len() - CHECKSUM_BYTES).step_by(61) {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bytes = good.clone();
            bytes[i] ^= flip;
            if bytes[..8] != MAGIC || i == 8 {
                continue;
            }
            refresh_checksum(&mut bytes);
            if unpack(&bytes, "flipped").is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 100, "{errors}");
}
