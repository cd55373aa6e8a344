//! The pass manager: one table of passes, pipelines parsed from text, presets, and the runner.
//!
//! Pipeline syntax: `PASS[(OPTION=VALUE, LAYER.OPTION=VALUE, ...)], PASS...`, for example
//! `prune(sparsity=0.92, ip3.sparsity=0.74), quantize(bits=5), partition(pes=64)`.
//!
//! Invariants:
//! - Every pass listed in [`PASSES`]; names are kebab-case and unique.
//! - The runner verifies the graph after every pass and fails (naming the pass) if it does not
//!   verify; it checks every option name against the pass's documentation before running it.
//! - Timings are measured, never used to decide anything: results do not depend on them.

use crate::options::{OptEntry, OptValue, OptionError, Options};
use sprig_ir::{Graph, GraphInfo, VerifyError};
use std::time::{Duration, Instant};

/// One documented option of a pass.
#[derive(Clone, Copy, Debug)]
pub struct OptionDoc {
    pub name: &'static str,
    pub meaning: &'static str,
}

/// What a pass reports: a table (one row per layer it touched) and notes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

/// A graph rewrite.
pub trait Pass: Sync {
    /// The name used in pipelines and `--stop-after`.
    fn name(&self) -> &'static str;
    /// One line for `--help` listings.
    fn summary(&self) -> &'static str;
    fn options(&self) -> &'static [OptionDoc];
    /// Rewrites a verified graph. `info` describes `graph` as it is on entry.
    fn run(
        &self,
        graph: &mut Graph,
        info: &GraphInfo,
        options: &Options,
    ) -> Result<PassReport, PassError>;
}

/// Every pass, in the order a full pipeline runs them.
pub const PASSES: &[&dyn Pass] = &[
    &crate::simplify::Simplify,
    &crate::prune::Prune,
    &crate::partition::PartitionPass,
    &crate::quantize::Quantize,
    &crate::huffman::HuffmanPass,
];

pub fn find_pass(name: &str) -> Option<&'static dyn Pass> {
    PASSES.iter().copied().find(|p| p.name() == name)
}

/// Why a pipeline could not be parsed or run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PassError {
    #[error("pipeline `{text}`, at character {at}: {reason}")]
    Syntax {
        text: String,
        at: usize,
        reason: String,
    },
    #[error("unknown pass `{name}` (sprig's passes: {known})")]
    UnknownPass { name: String, known: String },
    #[error("unknown preset `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("{pass}: unknown option `{option}` (its options: {known})")]
    UnknownOption {
        pass: String,
        option: String,
        known: String,
    },
    #[error("{pass}: no layer is named `{layer}`")]
    UnknownLayer { pass: String, layer: String },
    #[error("{pass}: {source}")]
    Option { pass: String, source: OptionError },
    #[error("{pass}: {reason}")]
    Failed { pass: String, reason: String },
    #[error("`--stop-after {name}`: the pipeline has no pass of that name (it runs: {pipeline})")]
    NoSuchStop { name: String, pipeline: String },
    #[error("the graph does not verify after `{pass}`: {}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid {
        pass: String,
        errors: Vec<VerifyError>,
    },
}

impl PassError {
    pub fn option(pass: &str, source: OptionError) -> PassError {
        PassError::Option {
            pass: pass.to_string(),
            source,
        }
    }

    pub fn failed(pass: &str, reason: impl Into<String>) -> PassError {
        PassError::Failed {
            pass: pass.to_string(),
            reason: reason.into(),
        }
    }
}

/// One step of a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub pass: &'static str,
    pub options: Options,
}

/// An ordered list of passes with their options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pipeline {
    pub steps: Vec<Step>,
}

/// Named pipelines.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "deep-compression",
        // Simplify first: its weight-changing rewrites apply only to weights not yet encoded.
        // The quality factors put a trained layer near the paper's densities: |w| > 1.7σ keeps about
        // 9% of a fully connected layer's weights, |w| > 0.6σ about 55% of a convolution's.
        "simplify, prune(fc.quality=1.7, conv.quality=0.6), quantize(fc.bits=5, conv.bits=8, init=linear), huffman(fc.index_bits=5, conv.index_bits=8)",
    ),
    (
        "eie",
        // EIE's storage: pruning balanced over the 64 interleaved PEs (ESE), 4-bit codes with code 0
        // for zero, 4-bit relative indices with padding entries.
        "simplify(target=eie), prune(fc.quality=1.7, balance_pes=64), partition(pes=64), quantize(fc.bits=4, fc.zero_code=true, init=linear), huffman(fc.index_bits=4)",
    ),
];

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.text[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A run of characters allowed in names and values.
    fn word(&mut self) -> &str {
        self.skip_space();
        let start = self.pos;
        while let Some(c) = self.text[self.pos..].chars().next() {
            if c.is_alphanumeric() || "_-.+:/".contains(c) {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        &self.text[start..self.pos]
    }

    fn error(&self, reason: impl Into<String>) -> PassError {
        PassError::Syntax {
            text: self.text.to_string(),
            at: self.text[..self.pos].chars().count() + 1,
            reason: reason.into(),
        }
    }
}

impl Pipeline {
    /// Parses pipeline text, checking pass names and option names.
    pub fn parse(text: &str) -> Result<Pipeline, PassError> {
        let mut c = Cursor { text, pos: 0 };
        let mut steps = Vec::new();
        loop {
            let name = c.word().to_string();
            if name.is_empty() {
                return Err(c.error("expected a pass name"));
            }
            let pass = find_pass(&name).ok_or_else(|| PassError::UnknownPass {
                name: name.clone(),
                known: PASSES
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let mut options = Options::default();
            if c.eat('(') && !c.eat(')') {
                loop {
                    let key = c.word().to_string();
                    if key.is_empty() {
                        return Err(c.error("expected an option name"));
                    }
                    if !c.eat('=') {
                        return Err(c.error(format!("expected `=` after `{key}`")));
                    }
                    let value = c.word().to_string();
                    if value.is_empty() {
                        return Err(c.error(format!("expected a value for `{key}`")));
                    }
                    let (layer, key) = match key.rsplit_once('.') {
                        Some((layer, key)) => (Some(layer.to_string()), key.to_string()),
                        None => (None, key),
                    };
                    if !pass.options().iter().any(|o| o.name == key) {
                        return Err(PassError::UnknownOption {
                            pass: name.clone(),
                            option: key,
                            known: pass
                                .options()
                                .iter()
                                .map(|o| o.name)
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                    let value = match value.parse::<f64>() {
                        Ok(n) if n.is_finite() => OptValue::Number(n),
                        _ => OptValue::Word(value),
                    };
                    options.entries.push(OptEntry { layer, key, value });
                    if c.eat(')') {
                        break;
                    }
                    if !c.eat(',') {
                        return Err(c.error("expected `,` or `)`"));
                    }
                }
            }
            steps.push(Step {
                pass: pass.name(),
                options,
            });
            c.skip_space();
            if c.pos == text.len() {
                break;
            }
            if !c.eat(',') {
                return Err(c.error("expected `,` between passes"));
            }
        }
        Ok(Pipeline { steps })
    }

    pub fn preset(name: &str) -> Result<Pipeline, PassError> {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| PassError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Pipeline::parse(text)
    }

    pub fn names(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.pass)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct PassRun {
    pub pass: &'static str,
    pub time: Duration,
    pub report: PassReport,
}

/// Runs `pipeline` over a verified graph, verifying after every pass; stops after the first pass
/// named `stop_after` when given. Returns the final graph's info and what each pass did.
pub fn run_pipeline(
    graph: &mut Graph,
    info: GraphInfo,
    pipeline: &Pipeline,
    stop_after: Option<&str>,
) -> Result<(GraphInfo, Vec<PassRun>), PassError> {
    run_pipeline_observed(graph, info, pipeline, stop_after, &mut |_, _, _| {})
}

/// [`run_pipeline`], calling `observe(pass, graph, info)` after each pass has run and verified
/// (for plots of intermediate weights; weight values are shared, so looking is cheap).
pub fn run_pipeline_observed(
    graph: &mut Graph,
    info: GraphInfo,
    pipeline: &Pipeline,
    stop_after: Option<&str>,
    observe: &mut dyn FnMut(&'static str, &Graph, &GraphInfo),
) -> Result<(GraphInfo, Vec<PassRun>), PassError> {
    if let Some(stop) = stop_after
        && !pipeline.steps.iter().any(|s| s.pass == stop)
    {
        return Err(PassError::NoSuchStop {
            name: stop.to_string(),
            pipeline: pipeline.names(),
        });
    }
    let mut info = info;
    let mut runs = Vec::new();
    for step in &pipeline.steps {
        let pass = find_pass(step.pass).expect("pipelines hold only known passes");
        check_layers(graph, &info, step)?;
        let start = Instant::now();
        let report = pass.run(graph, &info, &step.options)?;
        let time = start.elapsed();
        info = sprig_ir::verify(graph).map_err(|errors| PassError::Invalid {
            pass: step.pass.to_string(),
            errors,
        })?;
        observe(step.pass, graph, &info);
        runs.push(PassRun {
            pass: step.pass,
            time,
            report,
        });
        if stop_after == Some(step.pass) {
            break;
        }
    }
    Ok((info, runs))
}

/// Layer overrides must name a layer (or a layer kind, `fc` or `conv`).
fn check_layers(graph: &Graph, info: &GraphInfo, step: &Step) -> Result<(), PassError> {
    let layers = crate::layers::layers(graph, info);
    for e in &step.options.entries {
        let Some(name) = &e.layer else { continue };
        let known = name == "fc"
            || name == "conv"
            || layers.iter().any(|l| {
                l.node_name == *name
                    || l.weight_name == *name
                    || l.weight_name.strip_suffix(".weight") == Some(name)
            });
        if !known {
            return Err(PassError::UnknownLayer {
                pass: step.pass.to_string(),
                layer: name.clone(),
            });
        }
    }
    Ok(())
}
