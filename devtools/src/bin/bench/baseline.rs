//! The last figures kept in the repository (`tests/bench-baseline.json`),
//! and each new figure's ratio to them: a scenario whose rate fell, or
//! whose CPU per request rose, by 10 % or more is flagged (never failed: a
//! shared two-core machine drifts), so a regression is seen when it lands.
//! `bench --save-baseline` writes the figures of a run there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Past this change for the worse a figure is flagged.
const FLAG_AT: f64 = 0.10;

/// The file, in the repository.
pub(crate) fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-baseline.json")
}

/// What is kept of one scenario of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Kept {
    pub(crate) requests_per_sec: f64,
    pub(crate) p99_ms: f64,
    pub(crate) cpu_us_per_request: Option<f64>,
}

/// `"<round>/<scenario>"` → its figures, from a report's rounds.
pub(crate) fn of_report(report: &Value) -> BTreeMap<String, Kept> {
    let mut kept = BTreeMap::new();
    let Some(rounds) = report["rounds"].as_object() else {
        return kept;
    };
    for (round, figures) in rounds {
        for scenario in figures["scenarios"].as_array().into_iter().flatten() {
            let (Some(name), Some(rate), Some(p99)) = (
                scenario["scenario"].as_str(),
                scenario["requests_per_sec"].as_f64(),
                scenario["p99_ms"].as_f64(),
            ) else {
                continue;
            };
            kept.insert(
                format!("{round}/{name}"),
                Kept {
                    requests_per_sec: rate,
                    p99_ms: p99,
                    cpu_us_per_request: scenario["cpu_us_per_request"].as_f64(),
                },
            );
        }
    }
    kept
}

/// One line per figure of `now` with its ratio to `before`, flagged when
/// 10 % or more worse.
pub(crate) fn compare(
    before: &BTreeMap<String, Kept>,
    now: &BTreeMap<String, Kept>,
) -> Vec<String> {
    now.iter()
        .map(|(key, now)| match before.get(key) {
            None => format!("{key}: no baseline"),
            Some(before) => {
                let rate = ratio(now.requests_per_sec, before.requests_per_sec);
                let cpu = match (now.cpu_us_per_request, before.cpu_us_per_request) {
                    (Some(now), Some(before)) => ratio(now, before),
                    _ => None,
                };
                let worse = rate.is_some_and(|r| r <= 1.0 - FLAG_AT)
                    || cpu.is_some_and(|c| c >= 1.0 + FLAG_AT);
                format!(
                    "{key}: {:.0}/s ({} of the baseline's {:.0}/s), CPU/req {}{}",
                    now.requests_per_sec,
                    percent(rate),
                    before.requests_per_sec,
                    percent(cpu),
                    if worse {
                        "  <-- 10 % or more worse"
                    } else {
                        ""
                    }
                )
            }
        })
        .collect()
}

fn ratio(now: f64, before: f64) -> Option<f64> {
    (before > 0.0).then(|| now / before)
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("n/a".into(), |r| format!("{:.0} %", r * 100.0))
}

/// The kept figures, if the file is there and readable.
pub(crate) fn read(path: &Path) -> Option<BTreeMap<String, Kept>> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(rate: f64, cpu: f64) -> Kept {
        Kept {
            requests_per_sec: rate,
            p99_ms: 1.0,
            cpu_us_per_request: Some(cpu),
        }
    }

    #[test]
    fn a_figure_ten_percent_worse_is_flagged_and_one_within_the_noise_is_not() {
        let before = BTreeMap::from([
            ("empty/rest".to_owned(), kept(1000.0, 100.0)),
            ("empty/grpc".to_owned(), kept(1000.0, 100.0)),
            ("empty/create".to_owned(), kept(1000.0, 100.0)),
        ]);
        let now = BTreeMap::from([
            ("empty/rest".to_owned(), kept(950.0, 104.0)),
            ("empty/grpc".to_owned(), kept(890.0, 100.0)),
            ("empty/create".to_owned(), kept(1000.0, 111.0)),
            ("empty/spend".to_owned(), kept(1.0, 1.0)),
        ]);
        let lines = compare(&before, &now);
        let line = |key: &str| lines.iter().find(|l| l.starts_with(key)).unwrap().clone();
        assert!(!line("empty/rest").contains("worse"), "{lines:#?}");
        assert!(line("empty/grpc").contains("89 %") && line("empty/grpc").contains("worse"));
        assert!(line("empty/create").contains("worse"), "{lines:#?}");
        assert_eq!(line("empty/spend"), "empty/spend: no baseline");
    }

    #[test]
    fn a_report_keeps_each_rounds_scenarios() {
        let report = serde_json::json!({"rounds": {"empty": {"scenarios": [
            {"scenario": "GET /balance", "requests_per_sec": 10.0, "p99_ms": 2.0, "cpu_us_per_request": 70.0},
            {"scenario": "broken"}
        ]}}});
        let kept = of_report(&report);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept["empty/GET /balance"],
            Kept {
                requests_per_sec: 10.0,
                p99_ms: 2.0,
                cpu_us_per_request: Some(70.0)
            }
        );
    }
}
