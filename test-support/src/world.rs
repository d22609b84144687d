//! The core service over a fresh database and a Stripe sandbox of its own,
//! with the reads most money tests make.

use payments_core::db::{ledger, payments};
use payments_core::domain::LedgerKind;
use payments_core::stripe::StripeGateway;
use payments_core::{Error, EventOutcome, PaymentsService, Spent};
use stripe_sandbox::Sandbox;

use crate::{TestDatabase, assert_balances_match_ledger, count_rows, event_json, service};

pub struct World {
    pub db: TestDatabase,
    pub stripe: Sandbox,
    pub service: PaymentsService<StripeGateway>,
}

impl World {
    pub async fn new() -> Self {
        Self::with(|service| service).await
    }

    /// A world whose service is changed by `configure` (its settings).
    pub async fn with(
        configure: impl FnOnce(PaymentsService<StripeGateway>) -> PaymentsService<StripeGateway>,
    ) -> Self {
        let db = TestDatabase::create().await;
        let stripe = Sandbox::start_local().await;
        let service = configure(service(&db, &stripe).await);
        Self {
            db,
            stripe,
            service,
        }
    }

    /// An intent this service created for `user`, for `cents`, unpaid.
    pub async fn intent_for(&self, user: &str, cents: i64) -> String {
        self.service
            .create_payment_intent(user, cents, "")
            .await
            .expect("an intent")
            .intent_id
    }

    /// Applies the Stripe event `event_id` of `event_type` for the intent,
    /// as a webhook would.
    pub async fn apply(
        &self,
        event_id: &str,
        event_type: &str,
        intent_id: &str,
    ) -> Result<EventOutcome, Error> {
        self.service
            .apply_stripe_event(&event_json(event_id, event_type, intent_id))
            .await
    }

    /// Credits `user` through a real top-up of one tier (`cents`): intent,
    /// paid at the sandbox, webhook applied.
    pub async fn top_up(&self, user: &str, cents: i64) {
        let intent = self.intent_for(user, cents).await;
        self.stripe.succeed(&intent);
        let event_id = format!("evt_{intent}");
        let applied = self
            .apply(&event_id, "payment_intent.succeeded", &intent)
            .await;
        assert_eq!(applied, Ok(EventOutcome::Applied));
    }

    /// A spend of `cents` with `key` and no reason.
    pub async fn spend(&self, user: &str, cents: i64, key: &str) -> Result<Spent, Error> {
        self.service.spend_credits(user, cents, key, "").await
    }

    /// How many ledger entries there are, over every user.
    pub async fn entry_count(&self) -> i64 {
        count_rows(&mut self.db.connection().await, "ledger_entries").await
    }

    /// The user's balance in cents (0 for a user who never paid).
    pub async fn balance(&self, user: &str) -> i64 {
        self.service
            .get_balance(user)
            .await
            .expect("a balance")
            .balance_cents
            .get()
    }

    /// Our payment row for the intent.
    pub async fn payment(&self, intent_id: &str) -> payments::PaymentRow {
        let mut conn = self.db.connection().await;
        payments::find_by_intent(&mut conn, intent_id)
            .await
            .expect("a read")
            .expect("a payment row")
    }

    /// The user's ledger entries, oldest first.
    pub async fn entries(&self, user: &str) -> Vec<ledger::LedgerEntryRow> {
        let mut conn = self.db.connection().await;
        ledger::for_user(&mut conn, user).await.expect("a read")
    }

    /// The kinds of the user's ledger entries, oldest first.
    pub async fn kinds(&self, user: &str) -> Vec<LedgerKind> {
        self.entries(user)
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// The invariants every money test ends with.
    pub async fn check_ledger(&self) {
        assert_balances_match_ledger(&mut self.db.connection().await).await;
    }
}
