//! Golden tests of the passes: each case under `cases/passes/` names its pipeline on its first
//! line (`# pipeline: ...`); the snapshot holds every pass's report and the IR after each pass.

use sprig_front::parse_text;
use sprig_passes::{Pipeline, run_pipeline};
use std::fmt::Write;

#[test]
fn passes_golden() {
    insta::glob!("../cases/passes", "*.sprig", |path| {
        let source = std::fs::read_to_string(path).expect("readable");
        let pipeline_text = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# pipeline:"))
            .expect("first line names the pipeline")
            .trim();
        let pipeline = Pipeline::parse(pipeline_text).expect("pipeline parses");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let dir = std::path::Path::new("cases/passes");
        let mut out = String::new();
        for (i, step) in pipeline.steps.iter().enumerate() {
            let mut parsed =
                parse_text(&source, &name, Some(dir)).unwrap_or_else(|d| panic!("{d}"));
            let (info, runs) =
                run_pipeline(&mut parsed.graph, parsed.info, &pipeline, Some(step.pass))
                    .expect("pipeline runs");
            let run = runs.last().expect("a pass ran");
            assert_eq!(runs.len(), i + 1);
            let _ = writeln!(out, "== after {} ==", run.pass);
            let _ = writeln!(out, "{}", run.report.headers.join(" | "));
            for row in &run.report.rows {
                let _ = writeln!(out, "{}", row.join(" | "));
            }
            for note in &run.report.notes {
                let _ = writeln!(out, "note: {note}");
            }
            out.push('\n');
            out.push_str(&sprig_ir::print(&parsed.graph, Some(&info)));
            out.push('\n');
        }
        insta::assert_snapshot!(out);
    });
}
