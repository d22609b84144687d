//! A closed-loop load generator: N workers, each sending its next request as
//! soon as the previous one is answered, for a fixed time after a warm-up.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub scenario: String,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub rss_kib: Vec<(String, u64)>,
    /// The whole machine's busy CPU time (every core: the load generator,
    /// the servers and Postgres together) per request answered, in µs:
    /// what a request costs, steadier than the rate on a machine whose
    /// speed drifts.
    pub cpu_us_per_request: Option<f64>,
}

/// What one request reported: `Ok` for a success, `Err` for an error, and
/// `None` when there is nothing left to send.
pub type Outcome = Option<Result<(), String>>;

/// Runs `workers` loops of `request(worker, n)` for `warmup + duration`;
/// only requests started after the warm-up are counted.
pub async fn run<F, Fut>(
    scenario: &str,
    workers: usize,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + warmup;
    let busy_from = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        machine_busy_seconds()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let request = request.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut n = 0u64;
            let mut first_error = None;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = request(worker, n).await;
                n += 1;
                let Some(result) = outcome else { break };
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => latencies.push(sent.elapsed().as_micros() as u32),
                    Err(reason) => {
                        errors += 1;
                        first_error.get_or_insert(reason);
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    // Until the time is up, or every worker ran out of requests.
    let deadline = tokio::time::Instant::from_std(started + warmup + duration);
    let mut ended_at = None;
    let mut busy_until = None;
    let mut latencies = Vec::new();
    let mut errors = 0;
    loop {
        tokio::select! {
            next = tasks.join_next() => {
                let Some(result) = next else { break };
                let (mut l, e, first_error) = result.expect("worker");
                if let Some(reason) = first_error {
                    eprintln!("    {scenario}: first error: {reason}");
                }
                latencies.append(&mut l);
                errors += e;
            }
            () = tokio::time::sleep_until(deadline), if ended_at.is_none() => {
                stop.store(true, Ordering::Relaxed);
                ended_at = Some(Instant::now());
                busy_until = Some(machine_busy_seconds());
            }
        }
    }
    let ended_at = ended_at.unwrap_or_else(Instant::now);
    let seconds = ended_at
        .saturating_duration_since(started + warmup)
        .as_secs_f64()
        .max(1e-9);
    let busy_until = busy_until.unwrap_or_else(machine_busy_seconds);
    let mut figures = summarize(scenario, latencies, errors, seconds);
    if let Ok(busy_from) = busy_from.await {
        figures.cpu_us_per_request = per_request(busy_until - busy_from, figures.requests);
    }
    figures
}

/// `busy_seconds` of machine CPU over `requests`, in µs each.
pub fn per_request(busy_seconds: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| busy_seconds * 1e6 / requests as f64)
}

pub fn summarize(scenario: &str, mut latencies: Vec<u32>, errors: u64, seconds: f64) -> Figures {
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        f64::from(latencies[rank.clamp(1, latencies.len()) - 1]) / 1000.0
    };
    Figures {
        scenario: scenario.to_owned(),
        requests: latencies.len() as u64,
        errors,
        seconds,
        requests_per_sec: latencies.len() as f64 / seconds,
        p50_ms: percentile(50.0),
        p90_ms: percentile(90.0),
        p99_ms: percentile(99.0),
        rss_kib: Vec::new(),
        cpu_us_per_request: None,
    }
}

/// CPU time (user and system, every thread's) a process has used, in
/// seconds: `/proc/<pid>/stat`'s utime and stime, in the kernel's fixed
/// 100 ticks per second (USER_HZ).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .map_or(0.0, |ticks| ticks as f64)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time the whole machine has spent busy since boot, every core summed,
/// in seconds: `/proc/stat`'s user, nice, system, irq and softirq ticks
/// (not idle, I/O wait or time stolen by the host).
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .map_or(Vec::new(), |rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        });
    // user nice system idle iowait irq softirq steal ...
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<u64>() as f64
        / 100.0
}

/// Resident set size (and its peak) of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let figures = summarize("x", (1..=100).map(|ms| ms * 1000).collect(), 0, 1.0);
        assert_eq!(
            (figures.p50_ms, figures.p90_ms, figures.p99_ms),
            (50.0, 90.0, 99.0)
        );
        assert_eq!(figures.requests_per_sec, 100.0);
        assert_eq!(per_request(0.5, 1000), Some(500.0));
        assert_eq!(per_request(0.5, 0), None);
    }

    #[test]
    fn the_machine_is_busy_while_this_process_computes() {
        let before = machine_busy_seconds();
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while machine_busy_seconds() < before + 0.05 && started.elapsed().as_secs() < 10 {
            spin = std::hint::black_box(spin + 1);
        }
        assert!(machine_busy_seconds() >= before + 0.05, "{spin} spins");
    }

    #[test]
    fn cpu_seconds_grows_while_this_process_computes() {
        let pid = std::process::id();
        let before = cpu_seconds(pid);
        let started = std::time::Instant::now();
        let mut spin = 0_u64;
        while cpu_seconds(pid) < before + 0.05 && started.elapsed().as_secs() < 10 {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = cpu_seconds(pid) - before;
        assert!(
            (0.05..1.0).contains(&used),
            "{used} s of CPU after {spin} spins"
        );
        assert_eq!(cpu_seconds(u32::MAX), 0.0, "no such process");
    }
}
