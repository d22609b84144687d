//! What a test does to a running stack: calls to the edge as the SPA makes
//! them, to payments-grpc as a backend service and an operator make them,
//! and to the sandbox as Stripe.js would.

use serde_json::Value;

use super::*;

impl Stack {
    /// A valid Firebase-shaped ID token for `user_id`, signed by the test key.
    pub fn token(&self, user_id: &str) -> String {
        edge_gateway::testing::id_token(PROJECT_ID, user_id, now_unix())
    }

    /// `POST /payments/create-payment-intent` as the SPA sends it.
    pub async fn create_intent(&self, token: &str, amount_usd: u32) -> (u16, Value) {
        let body = format!(r#"{{"amount_usd": {amount_usd}}}"#);
        self.http
            .send(
                "POST",
                &format!("{}/payments/create-payment-intent", self.edge_url()),
                Some(token),
                &[],
                body.into_bytes(),
            )
            .await
    }

    /// `GET /balance`: the balance in cents.
    pub async fn balance(&self, token: &str) -> (u16, Value) {
        self.http
            .send(
                "GET",
                &format!("{}/balance", self.edge_url()),
                Some(token),
                &[],
                Vec::new(),
            )
            .await
    }

    /// `POST /payments/{intent_id}/sync`, as the SPA sends it after confirming.
    pub async fn sync(&self, token: &str, intent_id: &str) -> (u16, Value) {
        self.http
            .send(
                "POST",
                &format!("{}/payments/{intent_id}/sync", self.edge_url()),
                Some(token),
                &[],
                Vec::new(),
            )
            .await
    }

    /// What the edge's `GET /metrics` answers now.
    pub async fn edge_metrics(&self) -> String {
        let edge = self.edge.as_ref().expect("the edge runs");
        payments_grpc::testing::scrape_metrics_at(edge.metrics_addr).await
    }

    /// What payments-grpc's `GET /metrics` answers now (in-process only).
    pub async fn grpc_metrics(&self) -> String {
        match &self.grpc {
            Some(GrpcServer::InProcess(running)) => running.scrape_metrics().await,
            _ => panic!("payments-grpc runs in this test's process"),
        }
    }

    /// A backend service's spend, over gRPC with the internal token.
    pub async fn spend(
        &self,
        user_id: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<payments_proto::SpendCreditsResponse, tonic::Status> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("a URL")
            .connect()
            .await
            .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        let mut client =
            payments_proto::payments_service_client::PaymentsServiceClient::new(channel);
        let mut request = tonic::Request::new(payments_proto::SpendCreditsRequest {
            user_id: user_id.into(),
            amount_cents,
            idempotency_key: idempotency_key.into(),
            reason: String::new(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {INTERNAL_TOKEN}").parse().expect("ASCII"),
        );
        Ok(client.spend_credits(request).await?.into_inner())
    }

    /// One reconciliation pass now, as an operator runs it (grpcurl).
    pub async fn reconcile(&self) -> payments_proto::RunReconciliationResponse {
        run_reconciliation(self.grpc_addr).await.expect("a pass")
    }

    /// Confirms with a test payment method, as Stripe.js does from the browser.
    pub async fn confirm(&self, intent_id: &str, payment_method: &str) -> (u16, Value) {
        let body = format!("payment_method={payment_method}");
        self.http
            .send(
                "POST",
                &format!(
                    "{}/v1/payment_intents/{intent_id}/confirm",
                    self.sandbox.url()
                ),
                Some(STRIPE_SECRET_KEY),
                &[("content-type", "application/x-www-form-urlencoded")],
                body.into_bytes(),
            )
            .await
    }

    /// Passes or fails the 3-D Secure challenge of a `requires_action` intent.
    pub async fn authenticate(&self, intent_id: &str, pass: bool) -> (u16, Value) {
        let body = format!("outcome={}", if pass { "pass" } else { "fail" });
        self.http
            .send(
                "POST",
                &format!(
                    "{}/sandbox/payment_intents/{intent_id}/authenticate",
                    self.sandbox.url()
                ),
                None,
                &[("content-type", "application/x-www-form-urlencoded")],
                body.into_bytes(),
            )
            .await
    }
}
