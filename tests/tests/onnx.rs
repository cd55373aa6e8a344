//! Golden dumps of the ONNX fixtures (tests/fixtures/onnx, made by tools/make_onnx_fixtures.py):
//! what the importer makes of each model, and that the dump reads back to the same graph with
//! the `.onnx` file as its weights file.

#[test]
fn onnx_fixtures_dump_and_read_back() {
    insta::glob!("../fixtures/onnx", "*.onnx", |path| {
        let loaded = sprig_front::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.format, sprig_front::ModelFormat::Onnx);
        let graph = &loaded.parsed.graph;
        let dump = sprig_ir::print(graph, Some(&loaded.parsed.info));
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let name = path.file_name().expect("name").to_string_lossy();
        let back = sprig_front::parse_text(&dump, &name, Some(dir))
            .unwrap_or_else(|d| panic!("the dump of {name} does not parse:\n{d}\n{dump}"));
        assert_eq!(
            &back.graph, graph,
            "the dump of {name} reads back differently"
        );
        let notes: Vec<String> = loaded.notes.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(format!("# notes: {notes:?}\n{dump}"));
    });
}
