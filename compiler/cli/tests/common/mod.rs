//! Running the `sprig` binary from the tests: the repository root, invocations, and output.

#![allow(dead_code)] // Each test file uses the helpers it needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where examples and fixtures are named from.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `sprig ARGS` in `dir`.
pub fn sprig_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sprig"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sprig runs")
}

/// Runs `sprig ARGS` at the repository root.
pub fn sprig(args: &[&str]) -> Output {
    sprig_in(&root(), args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The path as the UTF-8 argument the CLI takes.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// Asserts that the run succeeded, showing its stderr otherwise.
pub fn assert_succeeds(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// Asserts a clean failure: exit status 1 and an error message containing `needle`.
pub fn assert_fails_with(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}
