//! The log line of a credit names the payment's owner, and a metadata edit
//! at Stripe is logged as an error. Alone in its test binary: tracing's
//! per-thread subscriber misses events when other tests run in parallel.

use payments_test_support::event_json;
use payments_test_support::{TestDatabase, service};
use stripe_sandbox::Sandbox;

/// Collects what a test logs.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_credit_log_names_the_payments_owner_and_the_metadata_edit_is_an_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);

    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let intent = service
        .create_payment_intent("alice", 1000, "")
        .await
        .unwrap()
        .intent_id;
    let mut edited = stripe.intent(&intent).unwrap();
    edited.metadata.insert("user_id".into(), "mallory".into());
    stripe.put_intent(edited);
    stripe.succeed(&intent);
    service
        .apply_stripe_event(&event_json(
            "evt_logged",
            "payment_intent.succeeded",
            &intent,
        ))
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let credited = logs
        .lines()
        .find(|line| line.contains("top-up credited"))
        .expect("a credit line");
    assert!(credited.contains("user_id=\"alice\""), "{credited}");
    assert!(!credited.contains("mallory"), "{credited}");
    let mismatch = logs
        .lines()
        .find(|line| line.contains("metadata names another user"))
        .expect("the edit is logged");
    assert!(
        mismatch.contains("ERROR") && mismatch.contains("mallory"),
        "{mismatch}"
    );
    assert_eq!(
        service.get_balance("alice").await.unwrap().balance_cents,
        1000
    );
}
