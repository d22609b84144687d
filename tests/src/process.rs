//! The release binaries as child processes (the demo and the benchmark).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::process::{Child, Command};

/// Where payments-grpc and edge-gateway were built: beside the running binary.
pub fn sibling_binary_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf())
}

/// Starts `binary` with `env`, its output going to `log`.
pub fn spawn_server(binary: &Path, log: &Path, env: &[(&str, &str)]) -> anyhow::Result<Child> {
    ensure!(
        binary.exists(),
        "{} not found; build it with `cargo build --release --bins`",
        binary.display()
    );
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(binary)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// SIGTERM, so the server drains like in production; SIGKILL after 10 s.
pub async fn stop_gracefully(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
