//! SpendCredits, ReverseSpend and AdminService.AdjustBalance over gRPC: the
//! answers, the status codes and their ErrorInfo reasons, the admin token's
//! rules, and spends through two replicas of payments-grpc on one database
//! never overdrawing a balance.

use futures::future::join_all;
use payments_grpc::config::Config;
use payments_grpc::proto::admin_service_client::AdminServiceClient;
use payments_grpc::proto::error_reason;
use payments_grpc::proto::payments_service_client::PaymentsServiceClient;
use payments_grpc::proto::{
    AdjustBalanceRequest, AdjustBalanceResponse, ApplyStripeEventRequest,
    CreatePaymentIntentRequest, GetBalanceRequest, ListLedgerEntriesRequest, ListPaymentsRequest,
    ReverseSpendRequest, RunReconciliationRequest, SpendCreditsRequest, SpendCreditsResponse,
    SyncPaymentIntentRequest,
};
use payments_grpc::testing::RunningGrpc;
use payments_test_support::{TestDatabase, assert_balances_match_ledger, count_rows, event_json};
use stripe_sandbox::Sandbox;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "test-internal-token";
const ADMIN_TOKEN: &str = "test-admin-token";

/// Replicas of payments-grpc over one database and one Stripe sandbox.
struct Replicas {
    db: TestDatabase,
    stripe: Sandbox,
    clients: Vec<(PaymentsServiceClient<Channel>, AdminServiceClient<Channel>)>,
    servers: Vec<RunningGrpc>,
}

impl Replicas {
    async fn start(count: usize) -> Self {
        Self::start_with(count, |_| {}).await
    }

    /// Replicas with their configuration changed by `configure`.
    async fn start_with(count: usize, configure: impl Fn(&mut Config)) -> Self {
        let stripe = Sandbox::start_local().await;
        let db = TestDatabase::create().await;
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..count {
            let mut config = payments_grpc::testing::config(&db.url, &stripe.url(), TOKEN);
            configure(&mut config);
            let server = RunningGrpc::start(config).await;
            let channel = Channel::from_shared(server.url())
                .unwrap()
                .connect()
                .await
                .unwrap();
            clients.push((
                PaymentsServiceClient::new(channel.clone()),
                AdminServiceClient::new(channel),
            ));
            servers.push(server);
        }
        Self {
            db,
            stripe,
            clients,
            servers,
        }
    }

    fn client(&self, replica: usize) -> PaymentsServiceClient<Channel> {
        self.clients[replica % self.clients.len()].0.clone()
    }

    /// AdjustBalance on the first replica, with `authorization` as given.
    async fn adjust(
        &self,
        authorization: Option<&str>,
        user: &str,
        cents: i64,
        key: &str,
    ) -> Result<AdjustBalanceResponse, Status> {
        let mut request = Request::new(AdjustBalanceRequest {
            user_id: user.into(),
            amount_cents: cents,
            reason: "support ticket 17".into(),
            idempotency_key: key.into(),
            actor: "ops@example.com".into(),
        });
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        self.clients[0]
            .1
            .clone()
            .adjust_balance(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A real top-up of one tier: intent, paid at the sandbox, webhook applied.
    async fn top_up(&self, user: &str, cents: i64) {
        let intent = create_intent(self, user, cents).await;
        self.stripe.succeed(&intent);
        self.client(0)
            .apply_stripe_event(authed(ApplyStripeEventRequest {
                event_json: event_json(
                    &format!("evt_{intent}"),
                    "payment_intent.succeeded",
                    &intent,
                ),
            }))
            .await
            .unwrap();
    }

    async fn spend(
        &self,
        replica: usize,
        user: &str,
        cents: i64,
        key: &str,
    ) -> Result<SpendCreditsResponse, Status> {
        self.client(replica)
            .spend_credits(authed(SpendCreditsRequest {
                user_id: user.into(),
                amount_cents: cents,
                idempotency_key: key.into(),
                reason: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn reverse(&self, user: &str, key: &str) -> Result<i64, Status> {
        self.client(0)
            .reverse_spend(authed(ReverseSpendRequest {
                user_id: user.into(),
                spend_idempotency_key: key.into(),
                reason: String::new(),
            }))
            .await
            .map(|response| response.into_inner().balance_cents)
    }

    async fn balance(&self, user: &str) -> i64 {
        self.client(0)
            .get_balance(authed(GetBalanceRequest {
                user_id: user.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .balance_cents
    }

    async fn entries(&self) -> i64 {
        count_rows(&mut self.db.connection().await, "ledger_entries").await
    }
}

fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

/// The status's code and ErrorInfo reason.
fn code_and_reason(status: &Status) -> (Code, String) {
    let (reason, _) = error_reason::of(status).expect("an ErrorInfo");
    (status.code(), reason)
}

#[tokio::test]
async fn a_spend_answers_its_entry_and_the_balance_after_and_a_replay_the_same() {
    let replicas = Replicas::start(1).await;
    replicas.top_up("ann", 1000).await;

    let first = replicas.spend(0, "ann", 250, "job-1").await.unwrap();
    assert_eq!(first.balance_cents, 750);
    assert!(first.spend_id.parse::<i64>().is_ok(), "{first:?}");
    replicas.spend(0, "ann", 50, "job-2").await.unwrap();

    assert_eq!(replicas.spend(0, "ann", 250, "job-1").await.unwrap(), first);
    assert_eq!(replicas.balance("ann").await, 700);
    assert_balances_match_ledger(&mut replicas.db.connection().await).await;
}

#[tokio::test]
async fn refusals_carry_their_code_and_reason_and_write_nothing() {
    let replicas = Replicas::start(1).await;
    replicas.top_up("bob", 500).await;
    replicas.spend(0, "bob", 100, "job-1").await.unwrap();
    let entries = replicas.entries().await;

    let short = replicas.spend(0, "bob", 401, "job-2").await.unwrap_err();
    assert_eq!(
        code_and_reason(&short),
        (
            Code::FailedPrecondition,
            error_reason::INSUFFICIENT_CREDITS.into()
        )
    );
    let (_, metadata) = error_reason::of(&short).unwrap();
    assert_eq!(
        metadata
            .get(error_reason::BALANCE_CENTS)
            .map(String::as_str),
        Some("400")
    );

    let reused = replicas.spend(0, "bob", 200, "job-1").await.unwrap_err();
    assert_eq!(
        code_and_reason(&reused),
        (
            Code::FailedPrecondition,
            error_reason::IDEMPOTENCY_KEY_REUSED.into()
        )
    );

    let unknown = replicas.reverse("bob", "no-such-job").await.unwrap_err();
    assert_eq!(
        code_and_reason(&unknown),
        (Code::NotFound, error_reason::NOT_FOUND.into())
    );
    let not_theirs = replicas.reverse("someone-else", "job-1").await.unwrap_err();
    assert_eq!(not_theirs.code(), Code::NotFound);

    for (cents, key) in [(0, "k"), (-5, "k"), (i64::MAX, "k"), (10, ""), (10, "clé")] {
        let bad = replicas.spend(0, "bob", cents, key).await.unwrap_err();
        assert_eq!(
            code_and_reason(&bad),
            (Code::InvalidArgument, error_reason::INVALID_ARGUMENT.into()),
            "{cents} {key:?}"
        );
    }

    assert_eq!(replicas.entries().await, entries);
    assert_eq!(replicas.balance("bob").await, 400);
}

#[tokio::test]
async fn a_reversal_gives_the_spend_back_once() {
    let replicas = Replicas::start(1).await;
    replicas.top_up("cid", 1000).await;
    replicas.spend(0, "cid", 300, "job").await.unwrap();

    assert_eq!(replicas.reverse("cid", "job").await.unwrap(), 1000);
    let entries = replicas.entries().await;
    assert_eq!(replicas.reverse("cid", "job").await.unwrap(), 1000);
    assert_eq!(replicas.entries().await, entries);
    assert_balances_match_ledger(&mut replicas.db.connection().await).await;
}

/// The test: 200 concurrent spends on one user whose balance covers
/// 120 of them, sent through two replicas of payments-grpc at once.
#[tokio::test]
async fn two_hundred_spends_through_two_replicas_let_exactly_120_through() {
    let replicas = Replicas::start(2).await;
    replicas.top_up("dee", 2000).await;
    replicas.top_up("dee", 1000).await;

    let keys: Vec<String> = (0..200).map(|n| format!("spend-{n}")).collect();
    let outcomes = join_all(
        keys.iter()
            .enumerate()
            .map(|(n, key)| replicas.spend(n, "dee", 25, key)),
    )
    .await;

    let spent = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| {
            o.as_ref().is_err_and(|status| {
                code_and_reason(status).1 == error_reason::INSUFFICIENT_CREDITS
            })
        })
        .count();
    assert_eq!((spent, refused), (120, 80));
    for replica in 0..2 {
        assert!(
            outcomes.iter().skip(replica).step_by(2).any(Result::is_ok),
            "replica {replica} spent nothing: the test would not cover two replicas"
        );
    }
    assert_eq!(replicas.balance("dee").await, 0);
    assert_eq!(replicas.entries().await, 2 + 120);
    assert_balances_match_ledger(&mut replicas.db.connection().await).await;
}

#[tokio::test]
async fn the_history_lists_entries_and_payments_newest_first_over_grpc() {
    let replicas = Replicas::start(1).await;
    replicas.top_up("gus", 1000).await;
    replicas.spend(0, "gus", 300, "job-1").await.unwrap();

    let ledger = replicas
        .client(0)
        .list_ledger_entries(authed(ListLedgerEntriesRequest {
            user_id: "gus".into(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.entries.len(), 1);
    let spend = &ledger.entries[0];
    assert_eq!(
        (
            spend.kind.as_str(),
            spend.amount_cents,
            spend.balance_after_cents,
            spend.reference.as_str()
        ),
        ("spend", -300, 700, "job-1")
    );
    let rest = replicas
        .client(0)
        .list_ledger_entries(authed(ListLedgerEntriesRequest {
            user_id: "gus".into(),
            page_size: 1,
            page_token: ledger.next_page_token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries[0].kind, "top_up");
    assert!(rest.entries[0].reference.starts_with("pi_"));
    assert_eq!(rest.next_page_token, "");

    let payments = replicas
        .client(0)
        .list_payments(authed(ListPaymentsRequest {
            user_id: "gus".into(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payments.payments.len(), 1);
    assert_eq!(payments.payments[0].status, "succeeded");
    assert_eq!(payments.payments[0].amount_received_cents, 1000);

    let refused = replicas
        .client(0)
        .list_payments(authed(ListPaymentsRequest {
            user_id: "someone-else".into(),
            page_size: 1,
            page_token: ledger.next_page_token,
        }))
        .await
        .unwrap_err();
    assert_eq!(
        code_and_reason(&refused),
        (Code::InvalidArgument, error_reason::INVALID_ARGUMENT.into())
    );
    let too_big = replicas
        .client(0)
        .list_ledger_entries(authed(ListLedgerEntriesRequest {
            user_id: "gus".into(),
            page_size: 501,
            page_token: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
}

/// A created, unpaid intent of `user` for `cents`.
async fn create_intent(replicas: &Replicas, user: &str, cents: i64) -> String {
    replicas
        .client(0)
        .create_payment_intent(authed(CreatePaymentIntentRequest {
            user_id: user.into(),
            amount_cents: cents,
            idempotency_key: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .intent_id
}

#[tokio::test]
async fn sync_payment_intent_credits_at_once_and_is_not_found_for_another_user() {
    let replicas = Replicas::start(1).await;
    let intent = create_intent(&replicas, "gus", 1000).await;
    replicas.stripe.succeed(&intent);
    let sync = |user: &str| {
        let mut client = replicas.client(0);
        let request = authed(SyncPaymentIntentRequest {
            user_id: user.into(),
            intent_id: intent.clone(),
        });
        async move { client.sync_payment_intent(request).await }
    };
    let synced = sync("gus").await.unwrap().into_inner();
    assert_eq!(synced.balance_cents, 1000);
    let payment = synced.payment.unwrap();
    assert_eq!(
        (
            payment.intent_id.as_str(),
            payment.status.as_str(),
            payment.amount_received_cents
        ),
        (intent.as_str(), "succeeded", 1000)
    );
    let refused = sync("hal").await.unwrap_err();
    assert_eq!(
        code_and_reason(&refused),
        (Code::NotFound, error_reason::NOT_FOUND.into())
    );
    assert_eq!(replicas.balance("hal").await, 0);
    assert_eq!(replicas.entries().await, 1);
}

mod admin;
