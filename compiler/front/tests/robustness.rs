//! The text front end never panics: arbitrary text and mutations of valid descriptions give a
//! graph or diagnostics, and diagnostics always render.

use proptest::prelude::*;
use sprig_front::parse_text;
use std::path::Path;

fn cases_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases/text/ok")
}

fn valid_sources() -> Vec<String> {
    let mut paths: Vec<_> = std::fs::read_dir(cases_dir())
        .expect("cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sprig"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect()
}

fn check(source: &str) {
    match parse_text(source, "fuzz.sprig", Some(&cases_dir())) {
        Ok(parsed) => {
            // Whatever parsed prints and reads back.
            let printed = sprig_ir::print(&parsed.graph, None);
            let again = parse_text(&printed, "fuzz.sprig", Some(&cases_dir()))
                .expect("printed text parses");
            assert_eq!(again.graph, parsed.graph);
        }
        Err(d) => {
            assert!(!d.is_empty());
            let _ = d.render();
        }
    }
}

/// Source-like noise: the format's own tokens and some that are not.
const PIECES: &[&str] = &[
    "network",
    "weights",
    "weight",
    "input",
    "output",
    "let",
    "@",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    ":",
    "f32",
    "i64",
    "x",
    "y",
    "w",
    "dense",
    "relu",
    "conv2d",
    "lstm",
    "random",
    "normal",
    "seed",
    "density",
    "1",
    "-1",
    "0.5",
    "1e400",
    "\"",
    "\"a\\",
    "#",
    "\n",
    " ",
    "$",
    "é",
    "\0",
    "9999999999999999999999",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        check(&s);
    }

    #[test]
    fn token_soup_never_panics(pieces in proptest::collection::vec(0..PIECES.len(), 0..60)) {
        let s: Vec<&str> = pieces.iter().map(|&i| PIECES[i]).collect();
        check(&s.join(" "));
    }

    #[test]
    fn mutated_descriptions_never_panic(
        case in 0usize..64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..PIECES.len(), 0u8..3), 1..6),
    ) {
        let sources = valid_sources();
        let mut s = sources[case % sources.len()].clone();
        for (at, piece, kind) in edits {
            let mut pos = at.index(s.len() + 1);
            while !s.is_char_boundary(pos) {
                pos -= 1;
            }
            match kind {
                0 => s.insert_str(pos, PIECES[piece]),
                1 => {
                    let mut end = (pos + PIECES[piece].len()).min(s.len());
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.replace_range(pos..end, "");
                }
                _ => {
                    let mut end = (pos + 1).min(s.len());
                    while !s.is_char_boundary(end) {
                        end += 1;
                    }
                    s.replace_range(pos..end, PIECES[piece]);
                }
            }
        }
        check(&s);
    }
}
