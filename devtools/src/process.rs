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
    spawn_command(binary, &[], log, env)
}

/// Starts `program` with `args` and `env`, its output going to `log`.
pub fn spawn_command(
    program: &Path,
    args: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let binary = program;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(binary)
        .args(args)
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

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The most memory the process has held, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// The memory the process holds now, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// CPU time the process has used (user + system), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports in USER_HZ, 100 per second on every architecture we run on.
    ticks as f64 / 100.0
}

/// Open file descriptors of the process.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}
