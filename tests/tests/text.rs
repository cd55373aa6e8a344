//! Golden tests of the text format: round trips of the valid cases and rendered diagnostics of
//! the malformed ones.

use sprig_front::parse_text;
use std::path::Path;

/// Reads a case by its path relative to this crate (the working directory of tests).
fn case(path: &Path) -> (String, String, std::path::PathBuf) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let relative = path
        .strip_prefix(manifest)
        .expect("cases live in this crate")
        .to_path_buf();
    let source = std::fs::read_to_string(path).expect("case is readable");
    let dir = relative
        .parent()
        .expect("case has a directory")
        .to_path_buf();
    (relative.display().to_string(), source, dir)
}

/// parse(print(g)) == g, and printing the result again gives the same text.
pub fn assert_round_trip(name: &str, graph: &sprig_ir::Graph, dir: &Path) {
    let printed = sprig_ir::print(graph, None);
    let reparsed = parse_text(&printed, name, Some(dir))
        .unwrap_or_else(|d| panic!("printed {name} does not parse:\n{d}\n---\n{printed}"));
    assert_eq!(
        &reparsed.graph, graph,
        "round trip changed {name}:\n{printed}"
    );
    assert_eq!(
        sprig_ir::print(&reparsed.graph, None),
        printed,
        "printing {name} is not stable"
    );
}

#[test]
fn valid_descriptions_round_trip() {
    insta::glob!("../cases/text/ok", "*.sprig", |path| {
        let (name, source, dir) = case(path);
        let parsed = parse_text(&source, &name, Some(&dir))
            .unwrap_or_else(|d| panic!("{name} should parse:\n{d}"));
        assert_round_trip(&name, &parsed.graph, &dir);
        // The dump with type comments reads back to the same graph too.
        let dump = sprig_ir::print(&parsed.graph, Some(&parsed.info));
        let from_dump = parse_text(&dump, &name, Some(&dir)).expect("dump parses");
        assert_eq!(from_dump.graph, parsed.graph);
        insta::assert_snapshot!(dump);
    });
}

#[test]
fn malformed_descriptions_report_every_error() {
    insta::glob!("../cases/text/err", "*.sprig", |path| {
        let (name, source, dir) = case(path);
        let diags = match parse_text(&source, &name, Some(&dir)) {
            Ok(_) => panic!("{name} should fail"),
            Err(d) => d,
        };
        assert!(!diags.is_empty());
        insta::assert_snapshot!(diags.render());
    });
}
