//! Weight histograms as SVG files: the pictures of a layer's weights before pruning, after
//! pruning and after weight sharing.
//!
//! Contract:
//! - [`histogram_svg`] turns a list of values into a self-contained SVG document: a title, a line
//!   of counts (values shown, zeros excluded, non-finite values excluded), a bar chart with tick
//!   labels on both axes. The same input and options give byte-identical text. Text is drawn as
//!   SVG `<text>` elements naming the generic `sans-serif` family: no font file is read while
//!   drawing, and any viewer substitutes its own sans-serif font. Each bar is one
//!   `<rect class="bar">`.
//! - The SVG elements are written here rather than by a plotting library: the one available
//!   (plotters 0.3) overflows in its integer tick computation on ordinary count axes, and a
//!   histogram needs only rectangles, lines and text.
//! - NaN and ±infinity are counted and left out; with [`HistogramOptions::exclude_zeros`] so are
//!   zeros (both signs), which is how the histograms after pruning are drawn.
//! - When the values left hold at most [`HistogramOptions::max_distinct_bars`] distinct values,
//!   there is one bar per distinct value (spikes, as after weight sharing), one bin wide, centred
//!   on it. Otherwise the range [min, max] is cut into [`HistogramOptions::bins`] bins of equal
//!   width (the last one closed) and there is one bar per non-empty bin.
//! - No values left gives a valid SVG that says "no values".
//! - [`write_layer_plots`] writes one SVG per stage of a layer, named `{layer}-{stage}.svg` after
//!   replacing every character other than ASCII letters, digits, `-`, `_` and `.` by `_`; each
//!   file is written atomically.
//!
//! Invariant: nothing here panics on any values (NaN, infinities, empty input, huge ranges) or
//! options (zero bins or sizes are raised to the smallest usable ones).

// The compile report is this module's caller; until a build of the binary calls every entry point,
// unused ones are not an error.

use std::io;
use std::path::{Path, PathBuf};

/// The fill of the bars (each bar is a `<rect class="bar">`).
const BAR_COLOR: &str = "#2B6CB0";
const FONT: &str = "sans-serif";
/// Height of the title and the counts line above the chart, in pixels.
const HEADER_HEIGHT: u32 = 52;

/// How [`histogram_svg`] draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramOptions {
    /// Bins between the smallest and the largest value (when there are many distinct values).
    pub bins: usize,
    /// Leave out zeros (both signs) and say how many.
    pub exclude_zeros: bool,
    /// One bar per distinct value when there are at most this many.
    pub max_distinct_bars: usize,
    /// Size of the picture in pixels.
    pub width: u32,
    pub height: u32,
}

impl Default for HistogramOptions {
    fn default() -> Self {
        HistogramOptions {
            bins: 200,
            exclude_zeros: false,
            max_distinct_bars: 256,
            width: 800,
            height: 480,
        }
    }
}

/// The bars of a histogram: `(left, right, count)` in value units, with counts ≥ 1, in
/// ascending order of `left`.
#[derive(Debug, PartialEq)]
struct Bars {
    bars: Vec<(f64, f64, u64)>,
    /// The x range to show, containing every bar.
    x_range: (f64, f64),
    /// How the bars were made, for the counts line.
    mode: Mode,
}

#[derive(Debug, PartialEq)]
enum Mode {
    Distinct(usize),
    Bins(usize),
}

/// Counts of what was left out.
#[derive(Debug, Default, PartialEq)]
struct Excluded {
    zeros: u64,
    non_finite: u64,
}

/// Renders a histogram of `values` as an SVG document (see the module contract).
pub fn histogram_svg(title: &str, values: &[f32], options: &HistogramOptions) -> String {
    let excluded = count_excluded(values, options.exclude_zeros);
    let kept = values.len() as u64 - excluded.zeros - excluded.non_finite;
    let bars = make_bars(values, options);
    let width = options.width.max(200);
    let height = options.height.max(HEADER_HEIGHT + 150);
    let mut counts = format!("{} values", group_digits(kept));
    if let Some(bars) = &bars {
        match bars.mode {
            Mode::Distinct(n) => counts.push_str(&format!(", {n} distinct")),
            Mode::Bins(n) => counts.push_str(&format!(", {n} bins")),
        }
    }
    if options.exclude_zeros {
        counts.push_str(&format!(
            "; {} zeros excluded",
            group_digits(excluded.zeros)
        ));
    }
    if excluded.non_finite > 0 {
        counts.push_str(&format!(
            "; {} NaN/infinite excluded",
            group_digits(excluded.non_finite)
        ));
    }
    draw((width, height), title, &counts, bars.as_ref())
}

/// Writes one histogram per stage to `dir` (created when missing) as `{layer}-{stage}.svg`, with
/// zeros excluded (the pictures after pruning show the surviving weights; the counts line says
/// how many zeros were left out). Returns the paths written, in stage order.
pub fn write_layer_plots(
    dir: &Path,
    layer: &str,
    stages: &[(&str, &[f32])],
) -> Result<Vec<PathBuf>, io::Error> {
    let options = HistogramOptions {
        exclude_zeros: true,
        ..HistogramOptions::default()
    };
    write_layer_plots_with(dir, layer, stages, &options)
}

/// [`write_layer_plots`] with the given options. Two stages whose sanitised names coincide get
/// `-2`, `-3`, … appended to the later ones, so no file of this call overwrites another.
pub fn write_layer_plots_with(
    dir: &Path,
    layer: &str,
    stages: &[(&str, &[f32])],
    options: &HistogramOptions,
) -> Result<Vec<PathBuf>, io::Error> {
    std::fs::create_dir_all(dir)?;
    let mut written: Vec<PathBuf> = Vec::with_capacity(stages.len());
    for (stage, values) in stages {
        let base = format!("{}-{}", sanitize(layer), sanitize(stage));
        let mut path = dir.join(format!("{base}.svg"));
        let mut n = 2;
        while written.contains(&path) {
            path = dir.join(format!("{base}-{n}.svg"));
            n += 1;
        }
        let svg = histogram_svg(&format!("{layer}: {stage}"), values, options);
        sprig_front::files::write_atomic(&path, |file| io::Write::write_all(file, svg.as_bytes()))
            .map_err(|e| {
                let kind = match &e.kind {
                    sprig_front::files::FileErrorKind::Io { error, .. } => error.kind(),
                    _ => io::ErrorKind::Other,
                };
                io::Error::new(kind, e)
            })?;
        written.push(path);
    }
    Ok(written)
}

/// A file-name-safe version of `name`: ASCII letters, digits, `-`, `_` and `.` kept, everything
/// else `_`; never empty, never starting with `.` (no hidden files, no `..`), at most 100 bytes.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// The values a histogram shows: the finite ones, without zeros when asked; a negative zero
/// becomes `+0.0`, so each value shown has one bit pattern.
fn kept(values: &[f32], exclude_zeros: bool) -> impl Iterator<Item = f32> + '_ {
    values
        .iter()
        .filter(move |v| v.is_finite() && !(exclude_zeros && **v == 0.0))
        .map(|&v| if v == 0.0 { 0.0 } else { v })
}

/// The counts of what [`kept`] leaves out.
fn count_excluded(values: &[f32], exclude_zeros: bool) -> Excluded {
    let mut excluded = Excluded::default();
    for v in values {
        if !v.is_finite() {
            excluded.non_finite += 1;
        } else if exclude_zeros && *v == 0.0 {
            excluded.zeros += 1;
        }
    }
    excluded
}

/// The bars for the values [`kept`] leaves (see the module contract), or `None` when there are
/// none. Memory: O(bins + max_distinct_bars), whatever the number of values.
fn make_bars(values: &[f32], options: &HistogramOptions) -> Option<Bars> {
    let mut shown = kept(values, options.exclude_zeros);
    let first = shown.next()?;
    let (min, max) = shown.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let shown = || kept(values, options.exclude_zeros);
    // f64 keeps every f32 exactly and max - min finite.
    let (min, max) = (f64::from(min), f64::from(max));
    let bins = options.bins.max(1);
    // A limit of at least 1 keeps a single repeated value out of the bins (they need max > min).
    if let Some(distinct) = distinct_counts(shown(), options.max_distinct_bars.max(1)) {
        // One bin wide, so spikes look like the bars of a binned histogram of the same range;
        // a single value gets a range around it.
        let span = if max > min {
            max - min
        } else {
            max.abs().max(1.0)
        };
        let half = span / bins as f64 / 2.0;
        let n = distinct.len();
        let bars = distinct
            .into_iter()
            .map(|(v, c)| {
                let v = f64::from(v);
                (v - half, v + half, c)
            })
            .collect();
        let pad = if max > min { 2.0 * half } else { span / 2.0 };
        return Some(Bars {
            bars,
            x_range: (min - pad, max + pad),
            mode: Mode::Distinct(n),
        });
    }
    // More than max_distinct_bars distinct values, so max > min.
    let width = (max - min) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in shown() {
        // In [0, bins] for v in [min, max]; the maximum goes into the last bin.
        let i = (((f64::from(v) - min) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let bars = counts
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(i, &c)| {
            let left = min + i as f64 * width;
            let right = if i + 1 == bins {
                max
            } else {
                min + (i + 1) as f64 * width
            };
            (left, right, c)
        })
        .collect();
    Some(Bars {
        bars,
        x_range: (min, max),
        mode: Mode::Bins(bins),
    })
}

/// The distinct values with their counts, ascending, or `None` as soon as there are more than
/// `limit`. Zeros are `+0.0` here (see [`kept`]), so each distinct value has one bit pattern.
fn distinct_counts(values: impl Iterator<Item = f32>, limit: usize) -> Option<Vec<(f32, u64)>> {
    let mut seen: Vec<(f32, u64)> = Vec::new();
    let mut last = 0usize;
    for v in values {
        // Quantized weights repeat: try the previous hit before searching.
        if seen.get(last).is_some_and(|&(s, _)| s == v) {
            seen[last].1 += 1;
            continue;
        }
        match seen.binary_search_by(|(s, _)| s.total_cmp(&v)) {
            Ok(i) => {
                seen[i].1 += 1;
                last = i;
            }
            Err(i) => {
                if seen.len() == limit {
                    return None;
                }
                seen.insert(i, (v, 1));
                last = i;
            }
        }
    }
    Some(seen)
}

/// Pixel geometry of the chart: the plot area inside the axes.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// Draws the document (see the module contract). Every number is written with a fixed number of
/// decimals, so the text depends only on the input.
fn draw(size: (u32, u32), title: &str, counts: &str, bars: Option<&Bars>) -> String {
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    let centre = w / 2.0;
    let mut svg = String::new();
    let mut line = |text: String| {
        svg.push_str(&text);
        svg.push('\n');
    };
    line(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"{FONT}\">",
        size.0, size.1, size.0, size.1
    ));
    line(format!(
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#FFFFFF\"/>",
        size.0, size.1
    ));
    line(format!(
        "<text class=\"title\" x=\"{centre:.1}\" y=\"26\" text-anchor=\"middle\" font-size=\"20\" fill=\"#000000\">{}</text>",
        xml_escape(title)
    ));
    line(format!(
        "<text class=\"counts\" x=\"{centre:.1}\" y=\"46\" text-anchor=\"middle\" font-size=\"14\" fill=\"#505050\">{}</text>",
        xml_escape(counts)
    ));
    let Some(bars) = bars else {
        line(format!(
            "<text class=\"empty\" x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"18\" fill=\"#000000\">no values</text>",
            (f64::from(HEADER_HEIGHT) + h) / 2.0
        ));
        line("</svg>".to_string());
        return svg;
    };

    let frame = Frame {
        left: 84.0,
        right: w - 24.0,
        top: f64::from(HEADER_HEIGHT) + 12.0,
        bottom: h - 52.0,
    };
    let (x0, x1) = bars.x_range;
    let span = x1 - x0;
    let px = |x: f64| frame.left + (x - x0) / span * (frame.right - frame.left);
    let top_count = bars.bars.iter().map(|b| b.2).max().unwrap_or(1);
    let y_ticks = nice_ticks(0.0, top_count as f64, 6, true);
    // The axis ends at the last tick at or above the tallest bar, so bars never leave the frame.
    let y_max = y_ticks
        .last()
        .copied()
        .filter(|&t| t >= top_count as f64)
        .unwrap_or(top_count as f64)
        .max(1.0);
    let py = |c: f64| frame.bottom - c / y_max * (frame.bottom - frame.top);

    // Grid lines and y tick labels.
    for &t in &y_ticks {
        let y = py(t);
        line(format!(
            "<line x1=\"{:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#E0E0E0\" stroke-width=\"1\"/>",
            frame.left, frame.right
        ));
        line(format!(
            "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\" font-size=\"12\" fill=\"#000000\">{}</text>",
            frame.left - 8.0,
            y + 4.0,
            group_digits(t as u64)
        ));
    }
    // Bars, at least one pixel wide so that every spike shows.
    line(format!("<g class=\"bars\" fill=\"{BAR_COLOR}\">"));
    for &(l, r, c) in &bars.bars {
        let (left, right) = (px(l), px(r));
        let width = (right - left).max(1.0);
        let x = (left + right - width) / 2.0;
        let y = py(c as f64);
        line(format!(
            "<rect class=\"bar\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{width:.2}\" height=\"{:.2}\"/>",
            frame.bottom - y
        ));
    }
    line("</g>".to_string());
    // Axes, x ticks and the axis titles.
    line(format!(
        "<path d=\"M{l:.2},{t:.2} V{b:.2} H{r:.2}\" fill=\"none\" stroke=\"#000000\" stroke-width=\"1\"/>",
        l = frame.left,
        t = frame.top,
        b = frame.bottom,
        r = frame.right
    ));
    let x_ticks = nice_ticks(x0, x1, 8, false);
    let step = match x_ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => span,
    };
    for &t in &x_ticks {
        let x = px(t);
        line(format!(
            "<line x1=\"{x:.2}\" y1=\"{b:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#000000\" stroke-width=\"1\"/>",
            frame.bottom + 5.0,
            b = frame.bottom
        ));
        line(format!(
            "<text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#000000\">{}</text>",
            frame.bottom + 19.0,
            tick_text(t, step)
        ));
    }
    line(format!(
        "<text class=\"axis\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#000000\">value</text>",
        (frame.left + frame.right) / 2.0,
        h - 10.0
    ));
    let mid = (frame.top + frame.bottom) / 2.0;
    line(format!(
        "<text class=\"axis\" x=\"18\" y=\"{mid:.2}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#000000\" transform=\"rotate(-90 18 {mid:.2})\">count</text>"
    ));
    line("</svg>".to_string());
    svg
}

/// Round tick positions covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten, about
/// `target` of them, all within [lo, hi] except that with `cover_top` the list goes on to the
/// first tick at or above `hi`. Integer steps only when `cover_top` (counts). Empty for an empty
/// or non-finite range; never more than `4 * target + 2` ticks.
fn nice_ticks(lo: f64, hi: f64, target: usize, cover_top: bool) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return if lo.is_finite() { vec![lo] } else { Vec::new() };
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    if cover_top {
        step = step.ceil().max(1.0);
    }
    let first = (lo / step).ceil();
    let mut ticks = Vec::new();
    for k in 0..(4 * target + 2) {
        let t = (first + k as f64) * step;
        if t > hi {
            if cover_top && ticks.last().is_none_or(|&last| last < hi) {
                ticks.push(t);
            }
            break;
        }
        ticks.push(t);
    }
    ticks
}

/// A tick label for `x` on an axis whose ticks are `step` apart: enough decimals to tell
/// neighbouring ticks apart, scientific notation for very small or very large magnitudes.
fn tick_text(x: f64, step: f64) -> String {
    let step = step.abs();
    let magnitude = x.abs().max(step);
    // Digits after the point needed for the step (2.5 × 10^k needs one more than 10^k).
    let places = |v: f64| -> usize {
        if !(v > 0.0 && v.is_finite()) {
            return 0;
        }
        let p = (-v.log10().floor()).max(0.0) as usize;
        if (v / 10f64.powi(-(p as i32)) - 2.5).abs() < 1e-9 {
            p + 1
        } else {
            p
        }
    };
    let text = if magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude) {
        // The step relative to the leading power of ten of the label's magnitude.
        let exponent = magnitude.log10().floor();
        let digits = places(step / 10f64.powf(exponent)).min(6);
        format!("{x:.digits$e}")
    } else {
        let decimals = places(step).min(12);
        format!("{x:.decimals$}")
    };
    // No "-0.00".
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// `1234567` → `"1,234,567"`.
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Line colours of [`line_plot_svg`]'s series, in order (then repeated).
const SERIES_COLORS: [&str; 8] = [
    "#2B6CB0", "#C05621", "#2F855A", "#9B2C2C", "#6B46C1", "#B7791F", "#2C7A7B", "#4A5568",
];

/// A line plot as a self-contained SVG document: `series` are (name, points) drawn as
/// polylines with a marker per point and a legend; the x axis is logarithmic (base 2) when
/// `log2_x` and every x is positive, with a tick at each distinct x; the y axis starts at 0 (or
/// at the smallest y when negative). Deterministic text; empty or non-finite data draws a
/// document that says "no values".
pub fn line_plot_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log2_x: bool,
) -> String {
    let (w, h) = (720.0f64, 440.0f64);
    let mut svg = String::new();
    let mut line = |text: String| {
        svg.push_str(&text);
        svg.push('\n');
    };
    line(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"{FONT}\">"
    ));
    line(format!(
        "<rect x=\"0\" y=\"0\" width=\"{w:.0}\" height=\"{h:.0}\" fill=\"#FFFFFF\"/>"
    ));
    line(format!(
        "<text class=\"title\" x=\"{:.1}\" y=\"26\" text-anchor=\"middle\" font-size=\"20\" fill=\"#000000\">{}</text>",
        w / 2.0,
        xml_escape(title)
    ));
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        line(format!(
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"18\" fill=\"#000000\">no values</text>",
            w / 2.0,
            h / 2.0
        ));
        line("</svg>".to_string());
        return svg;
    }
    let log = log2_x && points.iter().all(|&(x, _)| x > 0.0);
    let tx = |x: f64| if log { x.log2() } else { x };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (0.0f64, f64::NEG_INFINITY);
    for &(x, y) in &points {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y_ticks = nice_ticks(y0, if y1 > y0 { y1 } else { y0 + 1.0 }, 6, false);
    let step = match y_ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => 1.0,
    };
    let y_top = y_ticks.last().copied().unwrap_or(y1).max(y1);
    let y_top = if y_top > y0 { y_top } else { y0 + 1.0 };
    let frame = Frame {
        left: 84.0,
        right: w - 170.0,
        top: 48.0,
        bottom: h - 52.0,
    };
    let px = |x: f64| frame.left + (tx(x) - x0) / (x1 - x0) * (frame.right - frame.left);
    let py = |y: f64| frame.bottom - (y - y0) / (y_top - y0) * (frame.bottom - frame.top);
    for &t in &y_ticks {
        let y = py(t);
        line(format!(
            "<line x1=\"{:.2}\" y1=\"{y:.2}\" x2=\"{:.2}\" y2=\"{y:.2}\" stroke=\"#E0E0E0\" stroke-width=\"1\"/>",
            frame.left, frame.right
        ));
        line(format!(
            "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\" font-size=\"12\" fill=\"#000000\">{}</text>",
            frame.left - 8.0,
            y + 4.0,
            tick_text(t, step)
        ));
    }
    line(format!(
        "<path d=\"M{l:.2},{t:.2} V{b:.2} H{r:.2}\" fill=\"none\" stroke=\"#000000\" stroke-width=\"1\"/>",
        l = frame.left,
        t = frame.top,
        b = frame.bottom,
        r = frame.right
    ));
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let x_ticks = if log {
        xs
    } else {
        nice_ticks(x0, x1, 8, false)
    };
    let x_step = match x_ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => 1.0,
    };
    for &t in &x_ticks {
        let x = px(t);
        line(format!(
            "<line x1=\"{x:.2}\" y1=\"{b:.2}\" x2=\"{x:.2}\" y2=\"{:.2}\" stroke=\"#000000\" stroke-width=\"1\"/>",
            frame.bottom + 5.0,
            b = frame.bottom
        ));
        let label = if log {
            format!("{t}")
        } else {
            tick_text(t, x_step)
        };
        line(format!(
            "<text class=\"tick\" x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#000000\">{}</text>",
            frame.bottom + 19.0,
            xml_escape(&label)
        ));
    }
    for (k, (name, pts)) in series.iter().enumerate() {
        let color = SERIES_COLORS[k % SERIES_COLORS.len()];
        let coords: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log || *x > 0.0))
            .map(|&(x, y)| format!("{:.2},{:.2}", px(x), py(y)))
            .collect();
        line(format!(
            "<polyline class=\"series\" points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
            coords.join(" ")
        ));
        for c in &coords {
            let (x, y) = c.split_once(',').unwrap_or(("0", "0"));
            line(format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>"
            ));
        }
        let ly = frame.top + 16.0 + 20.0 * k as f64;
        line(format!(
            "<line x1=\"{:.2}\" y1=\"{ly:.2}\" x2=\"{:.2}\" y2=\"{ly:.2}\" stroke=\"{color}\" stroke-width=\"2\"/>",
            frame.right + 14.0,
            frame.right + 34.0
        ));
        line(format!(
            "<text class=\"legend\" x=\"{:.2}\" y=\"{:.2}\" font-size=\"12\" fill=\"#000000\">{}</text>",
            frame.right + 40.0,
            ly + 4.0,
            xml_escape(name)
        ));
    }
    line(format!(
        "<text class=\"axis\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#000000\">{}</text>",
        (frame.left + frame.right) / 2.0,
        h - 10.0,
        xml_escape(x_label)
    ));
    let mid = (frame.top + frame.bottom) / 2.0;
    line(format!(
        "<text class=\"axis\" x=\"18\" y=\"{mid:.2}\" text-anchor=\"middle\" font-size=\"14\" fill=\"#000000\" transform=\"rotate(-90 18 {mid:.2})\">{}</text>",
        xml_escape(y_label)
    ));
    line("</svg>".to_string());
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `svg` (which must be well-formed XML with an `<svg>` root) and returns the number
    /// of bars and all text content.
    fn inspect(svg: &str) -> (usize, String) {
        let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let bars = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("bar"))
            .count();
        let text: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        (bars, text.join("\n"))
    }

    /// A seeded pseudo-normal sample (sum of uniforms), without a dependency.
    fn normal_like(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        (0..n)
            .map(|_| ((0..6).map(|_| uniform()).sum::<f32>() - 3.0) * 0.05)
            .collect()
    }

    #[test]
    fn output_is_deterministic() {
        let values = normal_like(20_000, 1);
        let options = HistogramOptions::default();
        let a = histogram_svg("ip1.weight: dense", &values, &options);
        let b = histogram_svg("ip1.weight: dense", &values, &options);
        assert_eq!(a, b);
        let (bars, text) = inspect(&a);
        assert!(bars > 100, "{bars} bars for a smooth distribution");
        assert!(text.contains("ip1.weight: dense"), "{text}");
        assert!(text.contains("20,000 values"), "{text}");
        assert!(text.contains("200 bins"), "{text}");
        assert!(text.contains("count") && text.contains("value"), "{text}");
    }

    #[test]
    fn bars_equal_non_empty_bins() {
        // Integers 0..=1023 on 16 bins of width 1023/16: computed independently below.
        let mut values: Vec<f32> = (0..40).map(|i| i as f32).collect();
        values.extend((500..800).map(|i| i as f32));
        values.push(1023.0);
        values.extend(std::iter::repeat_n(1000.0, 5));
        let options = HistogramOptions {
            bins: 16,
            max_distinct_bars: 8,
            ..HistogramOptions::default()
        };
        let width = 1023.0f64 / 16.0;
        let mut non_empty = std::collections::BTreeSet::new();
        for &v in &values {
            non_empty.insert(((f64::from(v) / width) as usize).min(15));
        }
        let (bars, text) = inspect(&histogram_svg("bins", &values, &options));
        assert_eq!(bars, non_empty.len());
        assert!(text.contains("16 bins"), "{text}");
        let made = make_bars(&values, &options).unwrap();
        assert_eq!(made.bars.len(), non_empty.len());
        assert_eq!(
            made.bars.iter().map(|b| b.2).sum::<u64>(),
            values.len() as u64
        );
    }

    #[test]
    fn zeros_are_excluded_when_asked() {
        let mut values = normal_like(1000, 2);
        values.extend(std::iter::repeat_n(0.0, 9000));
        values.push(-0.0);
        let with = HistogramOptions {
            exclude_zeros: false,
            ..HistogramOptions::default()
        };
        let without = HistogramOptions {
            exclude_zeros: true,
            ..HistogramOptions::default()
        };
        let kept = make_bars(&values, &without).unwrap();
        assert_eq!(kept.bars.iter().map(|b| b.2).sum::<u64>(), 1000);
        let all = make_bars(&values, &with).unwrap();
        assert_eq!(all.bars.iter().map(|b| b.2).sum::<u64>(), 10_001);
        // The bin around zero holds the zeros and the smallest weights.
        assert!(all.bars.iter().map(|b| b.2).max() >= Some(9001));
        let (_, text) = inspect(&histogram_svg("pruned", &values, &without));
        assert!(text.contains("1,000 values"), "{text}");
        assert!(text.contains("9,001 zeros excluded"), "{text}");
        let (_, text) = inspect(&histogram_svg("pruned", &values, &with));
        assert!(text.contains("10,001 values"), "{text}");
        assert!(!text.contains("zeros excluded"), "{text}");
    }

    #[test]
    fn shared_values_make_one_spike_each() {
        let levels: Vec<f32> = (0..16).map(|k| -0.2 + 0.025 * k as f32).collect();
        let values: Vec<f32> = (0..50_000usize)
            .map(|i| levels[(i * 7 + i / 3) % 16])
            .collect();
        let (bars, text) = inspect(&histogram_svg(
            "shared",
            &values,
            &HistogramOptions::default(),
        ));
        assert_eq!(bars, 16);
        assert!(text.contains("16 distinct"), "{text}");
        // The spikes are separate: every bar is narrower than the gap between levels.
        let made = make_bars(&values, &HistogramOptions::default()).unwrap();
        for pair in made.bars.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn many_distinct_values_fall_back_to_bins() {
        let values: Vec<f32> = (0..257).map(|i| i as f32).collect();
        let made = make_bars(&values, &HistogramOptions::default()).unwrap();
        assert_eq!(made.mode, Mode::Bins(200));
        let values: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let made = make_bars(&values, &HistogramOptions::default()).unwrap();
        assert_eq!(made.mode, Mode::Distinct(256));
    }

    #[test]
    fn empty_input_says_no_values() {
        for (values, exclude_zeros) in [(&[][..], false), (&[0.0, -0.0][..], true)] {
            let options = HistogramOptions {
                exclude_zeros,
                ..HistogramOptions::default()
            };
            let svg = histogram_svg("empty", values, &options);
            let (bars, text) = inspect(&svg);
            assert_eq!(bars, 0);
            assert!(text.contains("no values"), "{text}");
            assert!(text.contains("0 values"), "{text}");
        }
    }

    #[test]
    fn non_finite_values_are_counted_and_excluded() {
        let values = [
            1.0,
            f32::NAN,
            2.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            2.0,
            -f32::NAN,
        ];
        let (bars, text) = inspect(&histogram_svg("nan", &values, &HistogramOptions::default()));
        assert_eq!(bars, 2);
        assert!(text.contains("3 values"), "{text}");
        assert!(text.contains("4 NaN/infinite excluded"), "{text}");
        let (bars, text) = inspect(&histogram_svg(
            "only nan",
            &[f32::NAN; 3],
            &HistogramOptions::default(),
        ));
        assert_eq!(bars, 0);
        assert!(text.contains("no values"), "{text}");
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let options = HistogramOptions {
            bins: 0,
            width: 0,
            height: 0,
            max_distinct_bars: 0,
            ..HistogramOptions::default()
        };
        for values in [
            vec![f32::MAX, f32::MIN],
            vec![f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45],
            vec![3.5; 10],
            vec![0.0],
            (0..1000).map(|i| i as f32 * 1e30).collect(),
        ] {
            let svg = histogram_svg("<extreme & \"odd\">", &values, &options);
            let (bars, text) = inspect(&svg);
            assert!(bars >= 1, "{values:?}");
            assert!(text.contains("<extreme & \"odd\">"), "{text}");
            let svg = histogram_svg("x", &values, &HistogramOptions::default());
            assert!(inspect(&svg).0 >= 1);
        }
    }

    #[test]
    fn layer_plots_are_written_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let dense = normal_like(5000, 3);
        let pruned: Vec<f32> = dense
            .iter()
            .map(|&v| if v.abs() < 0.03 { 0.0 } else { v })
            .collect();
        let stages: [(&str, &[f32]); 3] =
            [("dense", &dense), ("pruned", &pruned), ("pruned", &pruned)];
        let paths = write_layer_plots(&out, "/model/fc 1:weight", &stages).unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "_model_fc_1_weight-dense.svg",
                "_model_fc_1_weight-pruned.svg",
                "_model_fc_1_weight-pruned-2.svg"
            ]
        );
        for path in &paths {
            let svg = std::fs::read_to_string(path).unwrap();
            let (_, text) = inspect(&svg);
            assert!(text.contains("/model/fc 1:weight"), "{text}");
            assert!(text.contains("zeros excluded"), "{text}");
        }
        // Only the three files: no temporary file is left behind.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
        assert_eq!(sanitize(".."), "_..");
        assert_eq!(sanitize(""), "_");
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let stages: [(&str, &[f32]); 1] = [("dense", &[1.0, 2.0])];
        assert!(write_layer_plots(&file, "l", &stages).is_err());
    }

    #[test]
    fn tick_texts_are_readable() {
        assert_eq!(tick_text(0.05, 0.05), "0.05");
        assert_eq!(tick_text(-0.0, 0.05), "0.00");
        assert_eq!(tick_text(0.075, 0.025), "0.075");
        assert_eq!(tick_text(100.0, 100.0), "100");
        assert_eq!(tick_text(2e-5, 1e-5), "2e-5");
        assert_eq!(tick_text(1.5e30, 5e29), "1.5e30");
        assert_eq!(
            nice_ticks(0.0, 9001.0, 6, true),
            [0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
        );
        assert_eq!(nice_ticks(0.0, 3.0, 6, true), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(nice_ticks(-0.2, 0.2, 8, false).len(), 9);
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(123456789), "123,456,789");
    }
}
