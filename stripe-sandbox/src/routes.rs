//! Every route of the sandbox: Stripe's API behind its key check (and the
//! tests' recording and faults), the sandbox's controls, and Stripe.js.

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::after_payment;
use crate::api::{
    authenticate, cancel_intent, confirm_intent, create_intent, hold_webhooks, list_events,
    require_api_key, retrieve_intent, update_intent, webhook_state,
};
use crate::browser;
use crate::state::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1/payment_intents", post(create_intent))
        .route(
            "/v1/payment_intents/{id}",
            get(retrieve_intent).post(update_intent),
        )
        .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route(
            "/v1/refunds",
            post(after_payment::create_refund).get(after_payment::list_refunds),
        )
        .route("/v1/disputes", get(after_payment::list_disputes))
        .route("/v1/disputes/{id}", get(after_payment::retrieve_dispute))
        .route("/v1/events", get(after_payment::list_api_events))
        .layer(middleware::from_fn(require_api_key))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::controls::record_and_inject,
        ));
    Router::new()
        .merge(api)
        // What Stripe.js does in the browser: pass or fail the 3-D Secure challenge.
        .route(
            "/sandbox/payment_intents/{id}/authenticate",
            post(authenticate),
        )
        .route("/sandbox/events", get(list_events))
        .route("/sandbox/webhooks", get(webhook_state).post(hold_webhooks))
        .route(
            "/sandbox/refunds/{id}/fail",
            post(after_payment::fail_refund),
        )
        .route(
            "/sandbox/disputes/{id}/close",
            post(after_payment::close_dispute),
        )
        .route("/sandbox/health", get(|| async { "ok" }))
        // The Stripe.js stand-in, where a page would load Stripe.js from.
        .route("/v3", get(browser::stripe_js))
        .route("/v3/", get(browser::stripe_js))
        .route("/endive/stripe.js", get(browser::stripe_js))
        .layer(middleware::from_fn(browser::cors))
        .with_state(shared)
}
