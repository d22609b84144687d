//! Refunds and disputes, as Stripe's API shows them (`/v1/refunds`,
//! `/v1/disputes/{id}`), their events (`refund.*`, `charge.refunded`,
//! `charge.refund.updated`, `charge.dispute.*`), the dispute test card, and
//! the sandbox controls that fail a refund and win or lose a dispute.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use service_runtime::now_unix;

use crate::state::{Ledger, Shared, emit};
use crate::wire::{form, idempotent, invalid_request, param, stripe_error};

/// The charge behind a succeeded intent, as `charge.*` events carry it.
fn charge(intent: &Value, amount_refunded: i64) -> Value {
    json!({
        "id": intent["latest_charge"],
        "object": "charge",
        "amount": intent["amount_received"],
        "amount_captured": intent["amount_received"],
        "amount_refunded": amount_refunded,
        "balance_transaction": format!("txn_{}", intent["id"].as_str().unwrap_or_default()),
        "billing_details": {"address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null},
                            "email": null, "name": null, "phone": null, "tax_id": null},
        "captured": true,
        "created": intent["created"],
        "currency": intent["currency"],
        "disputed": false,
        "livemode": false,
        "metadata": {},
        "paid": true,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "refunded": amount_refunded == intent["amount_received"].as_i64().unwrap_or(0),
        "status": "succeeded",
    })
}

fn refunded_so_far(ledger: &Ledger, intent_id: &str) -> i64 {
    ledger
        .refunds
        .values()
        .filter(|r| {
            r["payment_intent"] == intent_id && r["status"] != "failed" && r["status"] != "canceled"
        })
        .filter_map(|r| r["amount"].as_i64())
        .sum()
}

/// `POST /v1/refunds`: `payment_intent` (required), `amount` (default: what
/// is left to refund), `reason`. Card refunds succeed at once, as in test mode.
pub(crate) async fn create_refund(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared_ref = shared.clone();
    idempotent(
        &shared,
        &headers,
        "create refund",
        form(&body),
        move |ledger, params| {
            let Some(intent_id) = param(params, "payment_intent") else {
                return invalid_request("Must provide either `payment_intent` or `charge`.", None);
            };
            let Some(intent) = ledger.intents.get(intent_id).map(|i| i.json.clone()) else {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "payment_intent",
                              "message": format!("No such payment_intent: '{intent_id}'")}}),
                );
            };
            if intent["status"] != "succeeded" {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"type": "invalid_request_error", "code": "charge_not_refundable",
                              "message": format!("This PaymentIntent ({intent_id}) does not have a successful charge to refund.")}}),
                );
            }
            let received = intent["amount_received"].as_i64().unwrap_or(0);
            let left = received - refunded_so_far(ledger, intent_id);
            let amount = match param(params, "amount").map(str::parse::<i64>) {
                None => left,
                Some(Ok(amount)) if amount > 0 => amount,
                Some(_) => return invalid_request("Invalid positive integer", Some("amount")),
            };
            if amount > left || left == 0 {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"type": "invalid_request_error", "code": "amount_too_large", "param": "amount",
                              "message": format!("Refund amount (${}.{:02}) is greater than unrefunded amount on charge (${}.{:02})", amount / 100, amount % 100, left / 100, left % 100)}}),
                );
            }
            let id = ledger.next_id("re");
            let refund = json!({
                "id": id,
                "object": "refund",
                "amount": amount,
                "balance_transaction": ledger.next_id("txn"),
                "charge": intent["latest_charge"],
                "created": now_unix(),
                "currency": intent["currency"],
                "destination_details": {"card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": {},
                "payment_intent": intent_id,
                "reason": param(params, "reason"),
                "receipt_number": null,
                "source_transfer_reversal": null,
                "status": "succeeded",
                "transfer_reversal": null,
            });
            ledger.refunds.insert(id, refund.clone());
            let refunded = refunded_so_far(ledger, intent_id);
            emit(&shared_ref, ledger, "refund.created", &refund);
            emit(
                &shared_ref,
                ledger,
                "charge.refunded",
                &charge(&intent, refunded),
            );
            (StatusCode::OK, refund)
        },
    )
}

/// `GET /v1/refunds?payment_intent=&limit=&starting_after=`: newest first,
/// as Stripe lists them.
pub(crate) async fn list_refunds(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let (query, limit) = match list_query(&uri) {
        Ok(read) => read,
        Err(refused) => return refused.into_stripe(),
    };
    let payment_intent = param(&query, "payment_intent");
    let ledger = shared.ledger.lock().unwrap();
    let refunds = ledger
        .refunds
        .iter()
        .rev()
        .filter(|(_, r)| payment_intent.is_none_or(|pi| r["payment_intent"] == pi))
        .map(|(id, r)| (id.as_str(), r));
    list_page(refunds, &query, limit, "/v1/refunds")
}

/// A list request's query parameters and its `limit`: 10 when absent, 1 to
/// 100, as Stripe checks it.
type ListQuery = (Vec<(String, String)>, usize);

fn list_query(uri: &Uri) -> Result<ListQuery, (StatusCode, Value)> {
    let query = form(uri.query().unwrap_or_default().as_bytes());
    let limit = match param(&query, "limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return Err(invalid_request(
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                Some("limit"),
            ));
        }
    };
    Ok((query, limit))
}

/// A page of `items` (newest first) as Stripe's list object: after
/// `starting_after` (older items), or the `limit` items right before
/// `ending_before` (newer ones, still newest first), as Stripe pages; a
/// cursor that names no item of the list is refused as Stripe refuses it.
fn list_page<'a>(
    items: impl Iterator<Item = (&'a str, &'a Value)>,
    query: &[(String, String)],
    limit: usize,
    url: &str,
) -> Response {
    let items: Vec<(&str, &Value)> = items.collect();
    // A cursor's place in the list, or the (parameter, id) naming none.
    let cursor = |name: &'static str| match param(query, name) {
        None => Ok(None),
        Some(id) => items
            .iter()
            .position(|(item, _)| *item == id)
            .map(Some)
            .ok_or((name, id)),
    };
    let (after, before) = match (cursor("starting_after"), cursor("ending_before")) {
        (Ok(after), Ok(before)) => (after, before),
        (Err((name, id)), _) | (_, Err((name, id))) => {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "code": "resource_missing", "param": name,
                       "message": format!("No such object: '{id}'")}),
            );
        }
    };
    let (page, has_more) = match (after, before) {
        (Some(_), Some(_)) => {
            return invalid_request(
                "Received both starting_after and ending_before parameters. Please pass in only one.",
                None,
            )
            .into_stripe();
        }
        (None, Some(before)) => {
            let from = before.saturating_sub(limit);
            (&items[from..before], from > 0)
        }
        (after, None) => {
            let from = after.map_or(0, |at| at + 1);
            let to = (from + limit).min(items.len());
            (&items[from..to], to < items.len())
        }
    };
    let page: Vec<&Value> = page.iter().map(|(_, item)| *item).collect();
    Json(json!({"object": "list", "data": page, "has_more": has_more, "url": url})).into_response()
}

/// `GET /v1/disputes?payment_intent=&limit=&starting_after=`.
pub(crate) async fn list_disputes(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let (query, limit) = match list_query(&uri) {
        Ok(read) => read,
        Err(refused) => return refused.into_stripe(),
    };
    let payment_intent = param(&query, "payment_intent");
    let ledger = shared.ledger.lock().unwrap();
    let disputes = ledger
        .disputes
        .iter()
        .rev()
        .filter(|(_, d)| payment_intent.is_none_or(|pi| d["payment_intent"] == pi))
        .map(|(id, d)| (id.as_str(), d));
    list_page(disputes, &query, limit, "/v1/disputes")
}

/// `GET /v1/events`: newest first; `type` or `types[]` (not both, at most
/// 20), `created` exact or `created[gt|gte|lt|lte]`, `limit`,
/// `starting_after` or `ending_before`.
pub(crate) async fn list_api_events(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let (query, limit) = match list_query(&uri) {
        Ok(read) => read,
        Err(refused) => return refused.into_stripe(),
    };
    let types: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "types[]" || k.starts_with("types["))
        .map(|(_, v)| v.as_str())
        .collect();
    let single = param(&query, "type");
    if single.is_some() && !types.is_empty() {
        return invalid_request(
            "You may pass either `type` or `types`, but not both.",
            Some("types"),
        )
        .into_stripe();
    }
    if types.len() > 20 {
        return invalid_request("You may pass at most 20 `types`.", Some("types")).into_stripe();
    }
    let mut bounds = Vec::new();
    for (name, op) in [
        ("created", "eq"),
        ("created[gt]", "gt"),
        ("created[gte]", "gte"),
        ("created[lt]", "lt"),
        ("created[lte]", "lte"),
    ] {
        if let Some(value) = param(&query, name) {
            let Ok(value) = value.parse::<i64>() else {
                return invalid_request("Invalid integer", Some("created")).into_stripe();
            };
            bounds.push((op, value));
        }
    }
    let matches_type = |event_type: &str| match single {
        // `type` may end in `*`: a group of events.
        Some(pattern) => pattern
            .strip_suffix('*')
            .map_or(event_type == pattern, |prefix| {
                event_type.starts_with(prefix)
            }),
        None => types.is_empty() || types.contains(&event_type),
    };
    let in_bounds = |created: i64| {
        bounds.iter().all(|(op, value)| match *op {
            "eq" => created == *value,
            "gt" => created > *value,
            "gte" => created >= *value,
            "lt" => created < *value,
            _ => created <= *value,
        })
    };
    let ledger = shared.ledger.lock().unwrap();
    let events = ledger
        .events
        .iter()
        .rev()
        .filter(|e| matches_type(e["type"].as_str().unwrap_or_default()))
        .filter(|e| in_bounds(e["created"].as_i64().unwrap_or_default()))
        .map(|e| (e["id"].as_str().unwrap_or_default(), e));
    list_page(events, &query, limit, "/v1/events")
}

fn no_such(kind: &str, id: &str) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        json!({"type": "invalid_request_error", "code": "resource_missing", "param": "id",
               "message": format!("No such {kind}: '{id}'")}),
    )
}

/// `GET /v1/disputes/{id}`.
pub(crate) async fn retrieve_dispute(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    match shared.ledger.lock().unwrap().disputes.get(&id) {
        Some(dispute) => Json(dispute.clone()).into_response(),
        None => no_such("dispute", &id),
    }
}

/// The dispute test card's charge is disputed as soon as it succeeds:
/// `charge.dispute.created`, then `charge.dispute.funds_withdrawn`.
pub(crate) fn open_dispute(shared: &Shared, ledger: &mut Ledger, intent: &Value) {
    let id = ledger.next_id("du");
    let dispute = json!({
        "id": id,
        "object": "dispute",
        "amount": intent["amount_received"],
        "balance_transactions": [],
        "charge": intent["latest_charge"],
        "created": now_unix(),
        "currency": intent["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {"enhanced_evidence": {}},
        "evidence_details": {"due_by": now_unix() + 7 * 86_400, "enhanced_eligibility": {}, "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": false,
        "livemode": false,
        "metadata": {},
        "network_reason_code": "10.4",
        "payment_intent": intent["id"],
        "payment_method_details": {"card": {"brand": "visa", "case_type": "chargeback", "network": "visa", "network_reason_code": "10.4"}, "type": "card"},
        "reason": "fraudulent",
        "status": "needs_response",
    });
    ledger.disputes.insert(id, dispute.clone());
    emit(shared, ledger, "charge.dispute.created", &dispute);
    emit(shared, ledger, "charge.dispute.funds_withdrawn", &dispute);
}

/// Sandbox control `POST /sandbox/disputes/{id}/close` with `outcome=won`
/// or `lost`: `charge.dispute.closed` (and `charge.dispute.funds_reinstated`
/// when won).
pub(crate) async fn close_dispute(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let status = match param(&params, "outcome") {
        Some(outcome @ ("won" | "lost")) => outcome.to_owned(),
        _ => return invalid_request("outcome must be won or lost", Some("outcome")).into_stripe(),
    };
    let mut ledger = shared.ledger.lock().unwrap();
    let Some(dispute) = ledger.disputes.get_mut(&id) else {
        return no_such("dispute", &id);
    };
    if dispute["status"] == "won" || dispute["status"] == "lost" {
        return invalid_request("This dispute is already closed.", None).into_stripe();
    }
    dispute["status"] = json!(status);
    let dispute = dispute.clone();
    emit(&shared, &mut ledger, "charge.dispute.closed", &dispute);
    if status == "won" {
        emit(
            &shared,
            &mut ledger,
            "charge.dispute.funds_reinstated",
            &dispute,
        );
    }
    Json(dispute).into_response()
}

/// Sandbox control `POST /sandbox/refunds/{id}/fail`: the refund fails
/// (`refund.failed`, `refund.updated`, `charge.refund.updated`), as a refund
/// to an expired card does some days later.
pub(crate) async fn fail_refund(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let mut ledger = shared.ledger.lock().unwrap();
    let Some(refund) = ledger.refunds.get_mut(&id) else {
        return no_such("refund", &id);
    };
    if refund["status"] == "failed" || refund["status"] == "canceled" {
        return invalid_request("This refund has already failed.", None).into_stripe();
    }
    refund["status"] = json!("failed");
    refund["failure_reason"] = json!("expired_or_canceled_card");
    let refund = refund.clone();
    let failure = ledger.next_id("txn");
    if let Some(stored) = ledger.refunds.get_mut(&id) {
        stored["failure_balance_transaction"] = json!(failure);
    }
    emit(&shared, &mut ledger, "refund.failed", &refund);
    emit(&shared, &mut ledger, "refund.updated", &refund);
    emit(&shared, &mut ledger, "charge.refund.updated", &refund);
    Json(refund).into_response()
}

trait IntoStripe {
    fn into_stripe(self) -> Response;
}

impl IntoStripe for (StatusCode, Value) {
    fn into_stripe(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}
