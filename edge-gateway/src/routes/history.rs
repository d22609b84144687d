//! `GET /ledger` and `GET /payments`: the caller's history, newest first, a
//! page at a time (`?limit=&cursor=`), as payments-grpc's lists answer it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use payments_proto::{ListLedgerEntriesRequest, ListPaymentsRequest};
use serde::{Deserialize, Serialize};

use crate::caller::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Rows per page when `limit` is not given.
const DEFAULT_LIMIT: i32 = 50;
/// The most rows a page may hold.
const MAX_LIMIT: i32 = 500;

/// `?limit=&cursor=`, read strictly: a limit of 1 to 500 (default 50), a
/// cursor as the previous page gave it. Other parameters are ignored.
#[derive(Debug, PartialEq, Eq)]
struct PageQuery {
    limit: i32,
    cursor: String,
}

impl PageQuery {
    fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let mut page = PageQuery {
            limit: DEFAULT_LIMIT,
            cursor: String::new(),
        };
        let (mut limit_seen, mut cursor_seen) = (false, false);
        for pair in uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "limit" => {
                    if std::mem::replace(&mut limit_seen, true) {
                        return Err(ApiError::invalid_query("limit is given twice"));
                    }
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::invalid_query(format!("limit must be 1 to {MAX_LIMIT}"))
                        })?;
                }
                "cursor" => {
                    if std::mem::replace(&mut cursor_seen, true) {
                        return Err(ApiError::invalid_query("cursor is given twice"));
                    }
                    // Ours are plain ASCII; anything else is not one of them.
                    if value.len() > 512
                        || !value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    {
                        return Err(ApiError::invalid_query("cursor is not one this list gave"));
                    }
                    page.cursor = value.to_owned();
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

/// `?limit=&cursor=` as documented ([`PageQuery::parse`] reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct PageParams {
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i32>,
    /// `next_cursor` of the previous page; absent for the first page.
    #[param(max_length = 512, pattern = "^[A-Za-z0-9.]*$")]
    cursor: Option<String>,
}

/// A refused cursor (INVALID_ARGUMENT from payments-grpc) is the query's fault.
fn list_error(status: &tonic::Status) -> ApiError {
    use payments_proto::error_reason;
    // On these routes the query is all the caller gives: an invalid
    // argument is its `limit` or `cursor`. Every other reason as everywhere.
    match error_reason::of(status) {
        Some((reason, _)) if reason == error_reason::INVALID_ARGUMENT => {
            ApiError::invalid_query(status.message())
        }
        _ => ApiError::from_grpc(status),
    }
}

/// A protobuf timestamp (seconds, nanos) as RFC 3339 with milliseconds, as
/// every route answers it.
pub(crate) fn rfc3339(timestamp: Option<(i64, i32)>) -> Option<String> {
    let (seconds, nanos) = timestamp?;
    let at = chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// One change of a balance.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct LedgerEntryBody {
    pub entry_id: String,
    #[schema(schema_with = ledger_kind_schema)]
    pub kind: String,
    /// Signed: credits are positive, debits negative.
    pub amount_cents: i64,
    /// The balance right after this entry.
    pub balance_after_cents: i64,
    #[schema(example = "usd")]
    pub currency: String,
    /// What it is about: the intent, refund, dispute or spend key.
    pub reference: String,
    /// The reason given for a spend or an adjustment.
    pub reason: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

fn ledger_kind_schema() -> utoipa::openapi::schema::Object {
    crate::openapi::string_enum(
        payments_domain::LedgerKind::ALL
            .iter()
            .map(|kind| kind.as_str()),
    )
}

impl From<payments_proto::LedgerEntry> for LedgerEntryBody {
    fn from(entry: payments_proto::LedgerEntry) -> Self {
        Self {
            entry_id: entry.entry_id,
            kind: entry.kind,
            amount_cents: entry.amount_cents,
            balance_after_cents: entry.balance_after_cents,
            currency: entry.currency,
            reference: entry.reference,
            reason: non_empty(entry.reason),
            created_at: rfc3339(entry.created_at.map(|t| (t.seconds, t.nanos))),
        }
    }
}

/// A page of the caller's ledger, newest first.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntryBody>,
    /// Null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /ledger`: the caller's ledger entries, newest first.
#[utoipa::path(
    get,
    path = "/ledger",
    tag = "balance",
    operation_id = "listLedgerEntries",
    security(("firebase_id_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of entries", body = LedgerPage),
        (status = 400, response = crate::openapi::InvalidQuery),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn ledger(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    uri: Uri,
) -> Result<Json<LedgerPage>, ApiError> {
    let page = PageQuery::parse(&uri)?;
    let request = ListLedgerEntriesRequest {
        user_id: user.user_id,
        page_size: page.limit,
        page_token: page.cursor,
    };
    let answer = state
        .upstream
        .client()
        .list_ledger_entries(request)
        .await
        .map_err(|status| list_error(&status))?
        .into_inner();
    Ok(Json(LedgerPage {
        entries: answer
            .entries
            .into_iter()
            .map(LedgerEntryBody::from)
            .collect(),
        next_cursor: non_empty(answer.next_page_token),
    }))
}

/// A top-up payment, as Stripe last told us of it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaymentBody {
    pub intent_id: String,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub amount_refunded_cents: i64,
    pub amount_disputed_cents: i64,
    #[schema(example = "usd")]
    pub currency: String,
    #[schema(schema_with = crate::openapi::payment_status_schema)]
    pub status: String,
    /// Stripe's code for the last failed attempt (e.g. `card_declined`).
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl From<payments_proto::Payment> for PaymentBody {
    fn from(payment: payments_proto::Payment) -> Self {
        Self {
            intent_id: payment.intent_id,
            amount_cents: payment.amount_cents,
            amount_received_cents: payment.amount_received_cents,
            amount_refunded_cents: payment.amount_refunded_cents,
            amount_disputed_cents: payment.amount_disputed_cents,
            currency: payment.currency,
            status: payment.status,
            failure_code: non_empty(payment.failure_code),
            failure_message: non_empty(payment.failure_message),
            created_at: rfc3339(payment.created_at.map(|t| (t.seconds, t.nanos))),
            updated_at: rfc3339(payment.updated_at.map(|t| (t.seconds, t.nanos))),
        }
    }
}

/// A page of the caller's payments, newest first.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaymentsPage {
    pub payments: Vec<PaymentBody>,
    /// Null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /payments`: the caller's top-up payments, newest first.
#[utoipa::path(
    get,
    path = "/payments",
    tag = "balance",
    operation_id = "listPayments",
    security(("firebase_id_token" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of payments", body = PaymentsPage),
        (status = 400, response = crate::openapi::InvalidQuery),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn payments(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    uri: Uri,
) -> Result<Json<PaymentsPage>, ApiError> {
    let page = PageQuery::parse(&uri)?;
    let request = ListPaymentsRequest {
        user_id: user.user_id,
        page_size: page.limit,
        page_token: page.cursor,
    };
    let answer = state
        .upstream
        .client()
        .list_payments(request)
        .await
        .map_err(|status| list_error(&status))?
        .into_inner();
    Ok(Json(PaymentsPage {
        payments: answer.payments.into_iter().map(PaymentBody::from).collect(),
        next_cursor: non_empty(answer.next_page_token),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<PageQuery, u16> {
        let uri: Uri = format!("/ledger{query}").parse().unwrap();
        PageQuery::parse(&uri).map_err(|err| err.status.as_u16())
    }

    #[test]
    fn limits_and_cursors_are_read_strictly() {
        assert_eq!(
            parse(""),
            Ok(PageQuery {
                limit: 50,
                cursor: String::new()
            })
        );
        assert_eq!(
            parse("?limit=500&cursor=L1.ab12.7&other=x"),
            Ok(PageQuery {
                limit: 500,
                cursor: "L1.ab12.7".into()
            })
        );
        for bad in [
            "?limit=0",
            "?limit=-1",
            "?limit=501",
            "?limit=9999999999999",
            "?limit=ten",
            "?limit=",
            "?limit=5&limit=6",
            "?cursor=L1.ab%20c",
            "?cursor=a&cursor=b",
        ] {
            assert_eq!(parse(bad), Err(400), "{bad}");
        }
    }
}
