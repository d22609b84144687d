//! The small pieces both binaries share around their services: bounded and
//! timed-out connections, logging, shutdown on a signal, required settings.

pub mod connections;
pub mod logging;
pub mod metrics;

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A required setting given neither as a variable nor as a flag (or only
/// blanks): the message names both, on one line.
pub fn required(value: &Option<String>, variable: &str, flag: &str) -> anyhow::Result<String> {
    match value.as_deref().map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => {
            anyhow::bail!("{variable} is required (set the environment variable or pass --{flag})")
        }
    }
}

/// A numeric setting outside `min..=max`: one line naming it.
pub fn check_range(variable: &str, value: u64, min: u64, max: u64) -> anyhow::Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        anyhow::bail!("{variable} must be between {min} and {max} (got {value})")
    }
}

/// The bytes of a file a setting names (a certificate, a key): one line
/// naming the setting when it cannot be read.
pub fn read_setting_file(variable: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| anyhow::anyhow!("{variable}: cannot read {}: {err}", path.display()))
}

/// Request ids longer than this are replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// Whether a caller's request id may be logged and passed on as it is:
/// 1 to 64 characters of `[A-Za-z0-9._-]`, so it can neither flood the logs
/// nor forge a log field.
pub fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_settings_are_named_on_one_line() {
        let err = required(&None, "FIREBASE_PROJECT_ID", "firebase-project-id")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "FIREBASE_PROJECT_ID is required (set the environment variable or pass --firebase-project-id)"
        );
        assert!(required(&Some("  ".into()), "X", "x").is_err());
        assert!(required(&Some(String::new()), "X", "x").is_err());
        assert_eq!(required(&Some(" v ".into()), "X", "x").unwrap(), "v");
    }

    #[test]
    fn only_short_plain_request_ids_are_safe() {
        for safe in [
            "a",
            "req-1.2_3",
            "0f3c9a2e-1b7d-4c55-9a0e-6f1d2b3c4d5e",
            &"x".repeat(64),
        ] {
            assert!(is_safe_request_id(safe.as_bytes()), "{safe:?}");
        }
        for unsafe_id in [
            "",
            &"x".repeat(65),
            "a b",
            "a\nlevel=ERROR",
            "id\"quoted",
            "é",
            "a=b",
        ] {
            assert!(!is_safe_request_id(unsafe_id.as_bytes()), "{unsafe_id:?}");
        }
    }
}
