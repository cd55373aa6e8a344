//! Pass options as written in a pipeline: `key=value`, and per-layer overrides
//! `LAYER.key=value`, where LAYER is a node name or a weight name (with or without `.weight`).
//!
//! Invariant: an override for a layer wins over the pass-wide value; option names are checked
//! against the pass's documented options before the pass runs.

use std::fmt;

/// A value of an option.
#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    Number(f64),
    Word(String),
}

impl fmt::Display for OptValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptValue::Number(n) => write!(f, "{n}"),
            OptValue::Word(w) => f.write_str(w),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptEntry {
    /// The layer an override applies to; `None` for the pass-wide value.
    pub layer: Option<String>,
    pub key: String,
    pub value: OptValue,
}

/// The options of one pass invocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub entries: Vec<OptEntry>,
}

/// Why an option cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("option `{key}`{}: {reason}", layer.as_ref().map_or(String::new(), |l| format!(" of layer `{l}`")))]
pub struct OptionError {
    pub key: String,
    pub layer: Option<String>,
    pub reason: String,
}

/// The names a layer answers to in overrides.
#[derive(Clone, Copy, Debug)]
pub struct LayerNames<'a> {
    pub node: &'a str,
    pub weight: &'a str,
    /// `fc` or `conv`: overrides by kind apply when no override names the layer itself.
    pub kind: &'a str,
}

impl LayerNames<'_> {
    fn matches(&self, name: &str) -> bool {
        name == self.node
            || name == self.weight
            || self.weight.strip_suffix(".weight") == Some(name)
    }
}

impl Options {
    pub fn with(mut self, key: &str, value: OptValue) -> Options {
        self.entries.push(OptEntry {
            layer: None,
            key: key.to_string(),
            value,
        });
        self
    }

    /// The value for `key` at `layer` (an override if one matches, else the pass-wide value).
    pub fn get(&self, key: &str, layer: Option<LayerNames<'_>>) -> Option<&OptValue> {
        let find = |pred: &dyn Fn(Option<&str>) -> bool| {
            self.entries
                .iter()
                .rev()
                .find(|e| e.key == key && pred(e.layer.as_deref()))
        };
        let by_layer = layer.and_then(|names| find(&|l| l.is_some_and(|l| names.matches(l))));
        let by_kind = layer.and_then(|names| find(&|l| l == Some(names.kind)));
        by_layer
            .or(by_kind)
            .or_else(|| find(&|l| l.is_none()))
            .map(|e| &e.value)
    }

    fn err(key: &str, layer: Option<LayerNames<'_>>, reason: String) -> OptionError {
        OptionError {
            key: key.to_string(),
            layer: layer.map(|l| l.node.to_string()),
            reason,
        }
    }

    pub fn number(
        &self,
        key: &str,
        layer: Option<LayerNames<'_>>,
    ) -> Result<Option<f64>, OptionError> {
        match self.get(key, layer) {
            None => Ok(None),
            Some(OptValue::Number(n)) => Ok(Some(*n)),
            Some(OptValue::Word(w)) => Err(Self::err(
                key,
                layer,
                format!("expected a number, found `{w}`"),
            )),
        }
    }

    /// A number in `[lo, hi]`.
    pub fn number_in(
        &self,
        key: &str,
        layer: Option<LayerNames<'_>>,
        lo: f64,
        hi: f64,
    ) -> Result<Option<f64>, OptionError> {
        match self.number(key, layer)? {
            Some(n) if !(lo..=hi).contains(&n) => Err(Self::err(
                key,
                layer,
                format!("must be between {lo} and {hi}, found {n}"),
            )),
            other => Ok(other),
        }
    }

    /// A whole number in `[lo, hi]`.
    pub fn integer(
        &self,
        key: &str,
        layer: Option<LayerNames<'_>>,
        lo: u64,
        hi: u64,
    ) -> Result<Option<u64>, OptionError> {
        match self.number(key, layer)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n >= lo as f64 && n <= hi as f64 => Ok(Some(n as u64)),
            Some(n) => Err(Self::err(
                key,
                layer,
                format!("must be a whole number from {lo} to {hi}, found {n}"),
            )),
        }
    }

    pub fn word(&self, key: &str, layer: Option<LayerNames<'_>>) -> Option<&str> {
        match self.get(key, layer) {
            Some(OptValue::Word(w)) => Some(w),
            _ => None,
        }
    }

    pub fn flag(
        &self,
        key: &str,
        layer: Option<LayerNames<'_>>,
    ) -> Result<Option<bool>, OptionError> {
        match self.get(key, layer) {
            None => Ok(None),
            Some(OptValue::Word(w)) if w == "true" => Ok(Some(true)),
            Some(OptValue::Word(w)) if w == "false" => Ok(Some(false)),
            Some(v) => Err(Self::err(
                key,
                layer,
                format!("expected true or false, found `{v}`"),
            )),
        }
    }
}
