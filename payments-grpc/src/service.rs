use std::sync::Arc;

use payments_core::PaymentsService;
use payments_core::stripe::PaymentGateway;
use tonic::{Request, Response, Status};

use crate::convert::{self, to_status};
use crate::proto::{
    self, admin_service_server::AdminService as AdminServiceRpc,
    payments_service_server::PaymentsService as PaymentsServiceRpc,
};

/// The gRPC face of the core use cases.
pub struct GrpcPaymentsService<G> {
    core: Arc<PaymentsService<G>>,
}

impl<G> GrpcPaymentsService<G> {
    pub fn new(core: Arc<PaymentsService<G>>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl<G: PaymentGateway> PaymentsServiceRpc for GrpcPaymentsService<G> {
    async fn create_payment_intent(
        &self,
        request: Request<proto::CreatePaymentIntentRequest>,
    ) -> Result<Response<proto::CreatePaymentIntentResponse>, Status> {
        let request = request.into_inner();
        let intent = self
            .core
            .create_payment_intent(
                &request.user_id,
                request.amount_cents,
                &request.idempotency_key,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::created_intent(intent)))
    }

    async fn get_top_up_options(
        &self,
        _request: Request<proto::GetTopUpOptionsRequest>,
    ) -> Result<Response<proto::GetTopUpOptionsResponse>, Status> {
        Ok(Response::new(convert::top_up_options(
            self.core.top_up_options(),
        )))
    }

    async fn get_balance(
        &self,
        request: Request<proto::GetBalanceRequest>,
    ) -> Result<Response<proto::GetBalanceResponse>, Status> {
        let balance = self
            .core
            .get_balance(&request.into_inner().user_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::balance(balance)))
    }

    async fn apply_stripe_event(
        &self,
        request: Request<proto::ApplyStripeEventRequest>,
    ) -> Result<Response<proto::ApplyStripeEventResponse>, Status> {
        let outcome = self
            .core
            .apply_stripe_event(&request.into_inner().event_json)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::event_outcome(outcome)))
    }

    async fn spend_credits(
        &self,
        request: Request<proto::SpendCreditsRequest>,
    ) -> Result<Response<proto::SpendCreditsResponse>, Status> {
        let request = request.into_inner();
        let spent = self
            .core
            .spend_credits(
                &request.user_id,
                request.amount_cents,
                &request.idempotency_key,
                &request.reason,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::spent(spent)))
    }

    async fn reverse_spend(
        &self,
        request: Request<proto::ReverseSpendRequest>,
    ) -> Result<Response<proto::ReverseSpendResponse>, Status> {
        let request = request.into_inner();
        let balance = self
            .core
            .reverse_spend(
                &request.user_id,
                &request.spend_idempotency_key,
                &request.reason,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::ReverseSpendResponse {
            balance_cents: balance.get(),
        }))
    }

    async fn list_ledger_entries(
        &self,
        request: Request<proto::ListLedgerEntriesRequest>,
    ) -> Result<Response<proto::ListLedgerEntriesResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .core
            .list_ledger_entries(&request.user_id, request.page_size, &request.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::ledger_page(page)))
    }

    async fn list_payments(
        &self,
        request: Request<proto::ListPaymentsRequest>,
    ) -> Result<Response<proto::ListPaymentsResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .core
            .list_payments(&request.user_id, request.page_size, &request.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::payments_page(page)))
    }

    async fn sync_payment_intent(
        &self,
        request: Request<proto::SyncPaymentIntentRequest>,
    ) -> Result<Response<proto::SyncPaymentIntentResponse>, Status> {
        let request = request.into_inner();
        let synced = self
            .core
            .sync_payment_intent(&request.user_id, &request.intent_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::synced(synced)))
    }

    type WatchBalanceStream = std::pin::Pin<
        Box<
            dyn tonic::codegen::tokio_stream::Stream<
                    Item = Result<proto::GetBalanceResponse, Status>,
                > + Send,
        >,
    >;

    async fn watch_balance(
        &self,
        request: Request<proto::WatchBalanceRequest>,
    ) -> Result<Response<Self::WatchBalanceStream>, Status> {
        let mut watch = self
            .core
            .watch_balance(&request.into_inner().user_id)
            .map_err(to_status)?;
        // A small buffer: a watcher that stops reading holds back its own
        // stream only.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let core = self.core.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = core.next_balance(&mut watch) => next,
                    // The caller went away.
                    () = sender.closed() => return,
                };
                let Some(next) = next else { return };
                // An error ends the stream: the caller watches again.
                let failed = next.is_err();
                let message = next.map(convert::balance).map_err(to_status);
                if sender.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// The gRPC face of the operators' use cases (its own token: `auth`).
pub struct GrpcAdminService<G> {
    core: Arc<PaymentsService<G>>,
}

impl<G> GrpcAdminService<G> {
    pub fn new(core: Arc<PaymentsService<G>>) -> Self {
        Self { core }
    }
}

#[tonic::async_trait]
impl<G: PaymentGateway> AdminServiceRpc for GrpcAdminService<G> {
    async fn adjust_balance(
        &self,
        request: Request<proto::AdjustBalanceRequest>,
    ) -> Result<Response<proto::AdjustBalanceResponse>, Status> {
        let request = request.into_inner();
        let adjusted = self
            .core
            .adjust_balance(
                &request.user_id,
                request.amount_cents,
                &request.reason,
                &request.idempotency_key,
                &request.actor,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(proto::AdjustBalanceResponse {
            entry_id: adjusted.entry_id.to_string(),
            balance_cents: adjusted.balance_cents.get(),
        }))
    }

    async fn run_reconciliation(
        &self,
        _request: Request<proto::RunReconciliationRequest>,
    ) -> Result<Response<proto::RunReconciliationResponse>, Status> {
        let done = self.core.run_reconciliation().await.map_err(to_status)?;
        Ok(Response::new(convert::reconciled(done)))
    }

    async fn list_parked_events(
        &self,
        request: Request<proto::ListParkedEventsRequest>,
    ) -> Result<Response<proto::ListParkedEventsResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .core
            .list_parked_events(request.page_size, &request.page_token)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::parked_page(page)))
    }

    async fn retry_parked_event(
        &self,
        request: Request<proto::RetryParkedEventRequest>,
    ) -> Result<Response<proto::ApplyStripeEventResponse>, Status> {
        let outcome = self
            .core
            .retry_parked_event(&request.into_inner().event_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::event_outcome(outcome)))
    }
}
