//! The printed tables.

use serde_json::Value;

use crate::load::Figures;

pub(crate) fn print_table(figures: &[Figures], ceilings: &[&Figures]) {
    println!(
        "\n{:<40} {:>10} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "scenario",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "grpc MiB",
        "edge MiB",
        "CPU µs/req"
    );
    for f in figures {
        let mib = |name: &str| {
            f.rss_kib
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| *k as f64 / 1024.0)
                .unwrap_or(0.0)
        };
        println!(
            "{:<40} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10.1} {:>10.1} {:>10}",
            f.scenario,
            f.requests_per_sec,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.errors,
            mib("payments-grpc"),
            mib("edge-gateway"),
            cpu(f)
        );
    }
    for ceiling in ceilings {
        println!(
            "{:<40} {:>10.0} {:>9.2} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10}",
            ceiling.scenario,
            ceiling.requests_per_sec,
            ceiling.p50_ms,
            "-",
            "-",
            ceiling.errors,
            "",
            "",
            cpu(ceiling)
        );
    }
    println!("(pgbench reports the average latency, shown under p50)");
}

/// The machine's CPU per request, as printed.
fn cpu(figures: &Figures) -> String {
    figures
        .cpu_us_per_request
        .map_or_else(|| "-".into(), |us| format!("{us:.0}"))
}

/// Every scenario, then the pgbench ceilings: those show how much the
/// machine itself drifted between the rounds.
pub(crate) fn print_comparison(empty: &Value, preloaded: &Value) {
    println!("\n== preloaded vs empty (requests/s) ==");
    let rows = |round: &Value| -> Vec<Value> {
        let scenarios = round["scenarios"].as_array().into_iter().flatten();
        let ceilings = [
            &round["pgbench"],
            &round["pgbench_reference"],
            &round["pgbench_insert"],
            &round["pgbench_spend"],
        ];
        scenarios
            .chain(ceilings.into_iter().filter(|c| c.is_object()))
            .cloned()
            .collect()
    };
    // Matched by name: a scenario may run on one stack only (watch).
    let preloaded = rows(preloaded);
    for e in rows(empty) {
        let Some(p) = preloaded.iter().find(|p| p["scenario"] == e["scenario"]) else {
            continue;
        };
        let (e_rate, p_rate) = (
            e["requests_per_sec"].as_f64().unwrap_or(0.0),
            p["requests_per_sec"].as_f64().unwrap_or(0.0),
        );
        let change = if e_rate > 0.0 {
            (p_rate / e_rate - 1.0) * 100.0
        } else {
            0.0
        };
        println!(
            "{:<40} {:>10.0} {:>10.0} {:>+8.1} %",
            e["scenario"].as_str().unwrap_or("?"),
            e_rate,
            p_rate,
            change
        );
    }
}
