//! The pass options shared by the commands that transform a model: `--passes`, `--preset`,
//! `--stop-after`, `--time-passes`, `-v`.

use crate::InputError;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sprig_front::Parsed;
use sprig_ir::{Graph, GraphInfo};
use sprig_passes::{PassRun, Pipeline, run_pipeline_observed};
use std::fmt::Write;

#[derive(Args, Debug, Default)]
pub struct PipelineArgs {
    /// Passes to run, in order, with options: e.g.
    /// "prune(sparsity=0.92, ip3.sparsity=0.74), partition(pes=64), quantize(bits=5)".
    /// LAYER.option overrides an option for one layer (a node or weight name) or a kind (fc, conv).
    #[arg(long, conflicts_with = "preset")]
    pub passes: Option<String>,
    /// A named pipeline: deep-compression (prune by |w| > quality·σ, then 5-bit fc / 8-bit conv
    /// weight sharing with linear initialisation).
    #[arg(long)]
    pub preset: Option<String>,
    /// Stop after this pass (the IR is shown as it is at that point).
    #[arg(long, value_name = "PASS")]
    pub stop_after: Option<String>,
    /// Print each pass's time on standard error.
    #[arg(long)]
    pub time_passes: bool,
    /// Print what each pass did (one row per layer) on standard error.
    #[arg(short, long)]
    pub verbose: bool,
}

impl PipelineArgs {
    /// The pipeline asked for, if any.
    pub fn pipeline(&self) -> anyhow::Result<Option<Pipeline>> {
        let bad =
            |e: sprig_passes::PassError| anyhow::Error::from(InputError(format!("error: {e}")));
        match (&self.passes, &self.preset) {
            (Some(text), _) => Ok(Some(Pipeline::parse(text).map_err(bad)?)),
            (None, Some(name)) => Ok(Some(Pipeline::preset(name).map_err(bad)?)),
            (None, None) => {
                if let Some(stop) = &self.stop_after {
                    return Err(InputError(format!(
                        "error: --stop-after {stop} needs a pipeline: give --passes or --preset"
                    ))
                    .into());
                }
                Ok(None)
            }
        }
    }

    /// Runs the pipeline (if any) over the model and prints timings and reports as asked.
    pub fn apply(&self, parsed: Parsed) -> anyhow::Result<Parsed> {
        self.apply_observed(parsed, &mut |_, _, _| {})
    }

    /// [`PipelineArgs::apply`], calling `observe` after every pass.
    pub fn apply_observed(
        &self,
        parsed: Parsed,
        observe: &mut dyn FnMut(&'static str, &Graph, &GraphInfo),
    ) -> anyhow::Result<Parsed> {
        let Some(pipeline) = self.pipeline()? else {
            return Ok(parsed);
        };
        let Parsed { mut graph, info } = parsed;
        let progress = progress_bar(&pipeline, self.stop_after.as_deref());
        let mut observe_with_progress = |pass: &'static str, graph: &Graph, info: &GraphInfo| {
            observe(pass, graph, info);
            progress.inc(1);
            let next = pipeline
                .steps
                .get(progress.position() as usize)
                .map_or("done", |s| s.pass);
            progress.set_message(next);
        };
        let result = run_pipeline_observed(
            &mut graph,
            info,
            &pipeline,
            self.stop_after.as_deref(),
            &mut observe_with_progress,
        );
        progress.finish_and_clear();
        let (info, runs) = result.map_err(|e| InputError(format!("error: {e}")))?;
        let mut text = String::new();
        if self.verbose {
            text.push_str(&reports(&runs));
        }
        if self.time_passes {
            text.push_str(&timings(&runs));
        }
        #[allow(clippy::print_stderr)]
        {
            eprint!("{text}");
        }
        Ok(Parsed { graph, info })
    }
}

/// A bar on standard error that names the running pass; indicatif draws nothing when standard
/// error is not a terminal, so logs and pipes see no progress output.
fn progress_bar(pipeline: &Pipeline, stop_after: Option<&str>) -> ProgressBar {
    let steps = match stop_after {
        Some(stop) => pipeline
            .steps
            .iter()
            .position(|s| s.pass == stop)
            .map_or(pipeline.steps.len(), |i| i + 1),
        None => pipeline.steps.len(),
    };
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed}] {bar:20} {pos}/{len} passes: {msg}")
    {
        bar.set_style(style);
    }
    bar.set_message(pipeline.steps.first().map_or("", |s| s.pass));
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// A text table with a header row, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", padded.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn reports(runs: &[PassRun]) -> String {
    let mut out = String::new();
    for run in runs {
        let _ = writeln!(out, "{}:", run.pass);
        if run.report.rows.is_empty() {
            let _ = writeln!(out, "  (no layer changed)");
        } else {
            out.push_str(&table(&run.report.headers, &run.report.rows));
        }
        for note in &run.report.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}

fn timings(runs: &[PassRun]) -> String {
    let total: f64 = runs.iter().map(|r| r.time.as_secs_f64()).sum();
    let mut rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let s = r.time.as_secs_f64();
            vec![
                r.pass.to_string(),
                format!("{:.3} ms", s * 1e3),
                format!("{:.1}%", if total > 0.0 { 100.0 * s / total } else { 0.0 }),
            ]
        })
        .collect();
    rows.push(vec![
        "total".to_string(),
        format!("{:.3} ms", total * 1e3),
        "100.0%".to_string(),
    ]);
    format!(
        "pass timings:\n{}",
        table(&["pass", "time", "share"], &rows)
    )
}
