//! Golden tests of the packed artifact: each case under `cases/pack/` names its pipeline on its
//! first line (`# pipeline: ...`); the snapshot holds the size report, the artifact byte by byte
//! (section by section, the graph text as text) and the graph read back from it. A change to the
//! format shows up here first.

use sprig_front::parse_text;
use sprig_pack::{CHECKSUM_BYTES, HEADER_BYTES, SECTION_FRAME_BYTES, pack, unpack};
use sprig_passes::{Pipeline, run_pipeline};
use std::fmt::Write;

fn hex(out: &mut String, bytes: &[u8], start: usize) {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let cells: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "  {:06x}  {}", start + 16 * i, cells.join(" "));
    }
}

fn frame(bytes: &[u8], at: usize) -> (u8, usize) {
    let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap());
    (bytes[at], SECTION_FRAME_BYTES + len as usize)
}

#[test]
fn pack_golden() {
    insta::glob!("../cases/pack", "*.sprig", |path| {
        let source = std::fs::read_to_string(path).expect("readable");
        let pipeline = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# pipeline:"))
            .expect("first line names the pipeline")
            .trim();
        let pipeline = Pipeline::parse(pipeline).expect("pipeline parses");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut parsed = parse_text(&source, &name, None).unwrap_or_else(|d| panic!("{d}"));
        let (info, _) =
            run_pipeline(&mut parsed.graph, parsed.info, &pipeline, None).expect("pipeline runs");
        let packed = pack(&parsed.graph, &info).unwrap_or_else(|e| panic!("{e}"));
        let bytes = &packed.bytes;
        let (graph, graph_info) = unpack(bytes, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(graph == parsed.graph);
        assert_eq!(pack(&graph, &graph_info).unwrap().bytes, *bytes);

        let mut out = String::new();
        let _ = writeln!(out, "== report ==");
        for l in &packed.report.layers {
            let _ = writeln!(
                out,
                "@{} {:?}: {} params, density {}, {} b/w, {} b/idx, huffman {:?} b/w {:?} b/idx, {} bytes",
                l.name,
                l.shape,
                l.params,
                l.density,
                l.weight_bits,
                l.index_bits,
                l.huffman_weight_bits,
                l.huffman_index_bits,
                l.bytes
            );
        }
        let t = &packed.report.total;
        let _ = writeln!(
            out,
            "other {} bytes; dense {} bytes, packed {} bytes, ratio {:.4}",
            packed.report.other_bytes, t.dense_bytes, t.packed_bytes, t.ratio
        );

        let _ = writeln!(out, "\n== artifact ==\nheader");
        hex(&mut out, &bytes[..HEADER_BYTES], 0);
        let mut at = HEADER_BYTES;
        let (kind, len) = frame(bytes, at);
        assert_eq!(kind, 1);
        let _ = writeln!(out, "graph section (frame, weights-file flag):");
        hex(&mut out, &bytes[at..at + SECTION_FRAME_BYTES + 1], at);
        let text = std::str::from_utf8(&bytes[at + SECTION_FRAME_BYTES + 1..at + len]).unwrap();
        let _ = writeln!(out, "graph text:\n{text}");
        at += len;
        for (_, w) in graph.weights.iter() {
            let (kind, len) = frame(bytes, at);
            assert_eq!(kind, 2);
            let _ = writeln!(out, "section of @{}", w.name);
            hex(&mut out, &bytes[at..at + len], at);
            at += len;
        }
        assert_eq!(at + CHECKSUM_BYTES, bytes.len());
        let _ = writeln!(out, "checksum");
        hex(&mut out, &bytes[at..], at);

        let _ = writeln!(out, "\n== unpacked ==");
        out.push_str(&sprig_ir::print(&graph, Some(&graph_info)));
        insta::assert_snapshot!(out);
    });
}
