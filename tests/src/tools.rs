//! Outside tools the tests run, found where `scripts/ensure-promtool`
//! puts them.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `target/tools/promtool` of this workspace (made by
/// `scripts/ensure-promtool`, which `.ci/run` runs).
pub fn promtool_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/promtool");
    assert!(
        path.exists(),
        "{} is missing: run scripts/ensure-promtool",
        path.display()
    );
    path
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
