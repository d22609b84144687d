//! Outside tools the tests run, found where `scripts/ensure-promtool` and
//! `scripts/ensure-schemathesis` put them.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `target/tools/<relative>` of this workspace, made by `script` (which
/// `.ci/run` runs).
fn tool(relative: &str, script: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/{script}",
        path.display()
    );
    path
}

pub fn promtool_path() -> PathBuf {
    tool("promtool", "ensure-promtool")
}

/// A program of the Schemathesis venv (`schemathesis`, `python`).
pub fn schemathesis_venv_bin(program: &str) -> PathBuf {
    tool(
        &format!("schemathesis-venv/bin/{program}"),
        "ensure-schemathesis",
    )
}

/// Runs promtool with `args`, `stdin` written to it.
pub fn promtool(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(promtool_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("a pipe")
        .write_all(stdin)
        .expect("promtool reads its input");
    child.wait_with_output().expect("promtool ends")
}
