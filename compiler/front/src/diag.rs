//! Diagnostics: errors tied to places in a source file, rendered as `file:line:col` with the
//! offending text underlined.
//!
//! Invariant: a [`Diagnostics`] value owns its file name and source text, so it renders the same
//! way wherever it travels; rendering is plain text (no colour codes) and deterministic.

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;
use std::fmt;
use std::ops::Range;

/// One error with its primary place, optional secondary places and notes.
#[derive(Clone, Debug)]
pub struct Diag(Diagnostic<()>);

impl Diag {
    pub fn error(message: impl Into<String>, span: Range<usize>, label: impl Into<String>) -> Diag {
        Diag(
            Diagnostic::error()
                .with_message(message.into())
                .with_labels(vec![Label::primary((), span).with_message(label.into())]),
        )
    }

    pub fn with_secondary(mut self, span: Range<usize>, label: impl Into<String>) -> Diag {
        self.0
            .labels
            .push(Label::secondary((), span).with_message(label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diag {
        self.0.notes.push(note.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Byte offset where the primary label starts, for ordering.
    fn start(&self) -> usize {
        self.0.labels.first().map_or(0, |l| l.range.start)
    }
}

/// Every error found in one file.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    file: SimpleFile<String, String>,
    items: Vec<Diag>,
}

impl Diagnostics {
    /// Errors of `source` (named `file_name`), sorted by position (stable for equal positions).
    pub fn new(
        file_name: impl Into<String>,
        source: impl Into<String>,
        mut items: Vec<Diag>,
    ) -> Diagnostics {
        items.sort_by_key(Diag::start);
        Diagnostics {
            file: SimpleFile::new(file_name.into(), source.into()),
            items,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diag> {
        self.items.iter()
    }

    /// All diagnostics as text, followed by a count line.
    pub fn render(&self) -> String {
        let config = term::Config::default();
        let mut out = String::new();
        for d in &self.items {
            // Rendering fails only for labels outside the file, which would be a front-end bug;
            // fall back to the bare message rather than lose the error.
            match term::emit_into_string(&config, &self.file, &d.0) {
                Ok(text) => out.push_str(&text),
                Err(_) => out.push_str(&format!("error: {}\n", d.0.message)),
            }
        }
        let n = self.items.len();
        out.push_str(&format!(
            "{n} error{} in {}\n",
            if n == 1 { "" } else { "s" },
            self.file.name()
        ));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render().trim_end())
    }
}

impl std::error::Error for Diagnostics {}
