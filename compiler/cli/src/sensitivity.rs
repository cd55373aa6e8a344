//! `sprig sensitivity`: prune each fc/conv layer alone at a sweep of sparsities and measure
//! top-1 accuracy on a held-out split; print a table (one row per sparsity, one column per
//! layer), write an SVG plot with one curve per layer, and, with `--budget`, the per-layer
//! sparsity that loses at most that much accuracy.
//!
//! Held-out split: with `mnist:DIR`, the last `--holdout` images of the training split (never
//! the test set, which measures the final model); with `npz:FILE`, the file's samples.
//!
//! Invariant: the plot and JSON are written atomically and depend only on the model, the data
//! and the sweep.

use crate::InputError;
use crate::evaluate::{Split, model_inputs, read_split};
use crate::pipeline::table;
use clap::Args;
use serde_json::json;
use sprig_train::sensitivity::{Sensitivity, analyse, choose_sparsities, default_sweep};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SensitivityArgs {
    /// The model: a .sprig text description, an ONNX model or a packed artifact.
    pub model: PathBuf,
    /// Labelled data: mnist:DIR (held-out training images) or npz:FILE.
    #[arg(long, value_name = "DATA")]
    pub data: String,
    /// Held-out samples: the last N of MNIST's training split.
    #[arg(long, default_value_t = 5000)]
    pub holdout: usize,
    /// Sparsities to try, comma-separated (default 0, 0.05, ..., 0.95, 0.97, 0.99).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub sweep: Option<Vec<f64>>,
    /// Write the curves as an SVG plot.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Print each layer's largest sparsity that loses at most this fraction of accuracy
    /// (e.g. 0.01 for one point).
    #[arg(long, value_name = "LOSS")]
    pub budget: Option<f64>,
    /// Print one JSON object: {baseline, samples, layers[] {name, elements, points[]
    /// {sparsity, accuracy}, chosen_sparsity}}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SensitivityArgs) -> anyhow::Result<()> {
    let parsed = crate::load(&args.model)?;
    let sweep = args.sweep.clone().unwrap_or_else(default_sweep);
    if sweep.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return Err(InputError("error: --sweep: sparsities must be in [0, 1]".to_string()).into());
    }
    if let Some(b) = args.budget
        && !(0.0..=1.0).contains(&b)
    {
        return Err(InputError("error: --budget must be in [0, 1]".to_string()).into());
    }
    let data = read_split(&args.data, Split::Train, None)?;
    let input_len = parsed
        .graph
        .inputs()
        .first()
        .map_or(0, |&i| parsed.info.ty(i).shape.len());
    let samples = model_inputs(&data, input_len, &args.data)?;
    let held = if args.data.starts_with("mnist:") {
        let n = samples.len();
        samples.slice(n.saturating_sub(args.holdout)..n)
    } else {
        samples
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    let analysis = analyse(
        &parsed.graph,
        &parsed.info,
        held,
        &sweep,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .map_err(|e| InputError(format!("error: {}: {e}", args.model.display())))?;
    bar.finish_and_clear();
    let chosen = args.budget.map(|b| choose_sparsities(&analysis, b));
    if let Some(path) = &args.plot {
        let svg = plot(&analysis);
        sprig_front::files::write_atomic(path, |f| f.write_all(svg.as_bytes()))
            .map_err(|e| InputError(format!("error: {e}")))?;
    }
    #[allow(clippy::print_stdout)]
    if args.json {
        let layers: Vec<_> = analysis
            .curves
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "name": c.weight,
                    "elements": c.elements,
                    "points": c.points.iter().map(|&(s, a)| json!({"sparsity": s, "accuracy": a})).collect::<Vec<_>>(),
                    "chosen_sparsity": chosen.as_ref().map(|ch| ch[i].1),
                })
            })
            .collect();
        let value = json!({
            "baseline": analysis.baseline,
            "samples": analysis.samples,
            "layers": layers,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", text_table(&analysis));
        if let (Some(chosen), Some(budget)) = (&chosen, args.budget) {
            println!(
                "largest sparsity within {:.2} points of {:.2}%:",
                100.0 * budget,
                100.0 * analysis.baseline
            );
            for (w, s) in chosen {
                println!("  {w}: {:.0}%", 100.0 * s);
            }
        }
    }
    Ok(())
}

fn text_table(a: &Sensitivity) -> String {
    let mut headers = vec!["sparsity".to_string()];
    headers.extend(a.curves.iter().map(|c| c.weight.clone()));
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let points = a.curves.first().map_or(0, |c| c.points.len());
    let rows: Vec<Vec<String>> = (0..points)
        .map(|i| {
            let mut row = vec![format!("{:.0}%", 100.0 * a.curves[0].points[i].0)];
            row.extend(
                a.curves
                    .iter()
                    .map(|c| format!("{:.2}%", 100.0 * c.points[i].1)),
            );
            row
        })
        .collect();
    let mut out = format!(
        "top-1 accuracy with one layer pruned ({} held-out samples; unpruned {:.2}%):\n",
        a.samples,
        100.0 * a.baseline
    );
    out.push_str(&table(&header_refs, &rows));
    out
}

/// Colours of the curves, in layer order (repeating).
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// An SVG line plot: x = sparsity (0–100%), y = top-1 accuracy, one polyline per layer, with
/// axes, grid, labels and a legend.
pub fn plot(a: &Sensitivity) -> String {
    let (w, h) = (640.0f64, 400.0f64);
    let (left, right, top, bottom) = (60.0, 160.0, 30.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let lowest = a
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(a.baseline, f64::min);
    let y_min = (lowest * 10.0).floor() / 10.0;
    let y_max = 1.0f64;
    let x = |s: f64| left + s * pw;
    let y = |acc: f64| top + (y_max - acc) / (y_max - y_min).max(1e-9) * ph;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle">Sensitivity to pruning ({} samples)</text>"#,
        left + pw / 2.0,
        a.samples
    );
    for i in 0..=10 {
        let s = f64::from(i) / 10.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#ddd"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}%</text>"##,
            x(s),
            top,
            top + ph,
            top + ph + 16.0,
            i * 10
        );
    }
    let steps = (((y_max - y_min) * 100.0).round() as i64).clamp(1, 100);
    let every = (steps / 10).max(1);
    for i in (0..=steps).step_by(every as usize) {
        let acc = y_min + i as f64 / 100.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{3:.1}" y="{4:.1}" text-anchor="end">{5:.0}%</text>"##,
            left,
            y(acc),
            left + pw,
            left - 6.0,
            y(acc) + 4.0,
            acc * 100.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">parameters pruned away</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">top-1 accuracy</text>"#,
        top + ph / 2.0
    );
    for (i, c) in a.curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = c
            .points
            .iter()
            .map(|&(s, acc)| format!("{:.1},{:.1}", x(s), y(acc)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="{colour}" stroke-width="2"/><text x="{3:.1}" y="{4:.1}">{5}</text>"#,
            left + pw + 10.0,
            ly,
            left + pw + 30.0,
            left + pw + 36.0,
            ly + 4.0,
            escape(&c.weight)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
