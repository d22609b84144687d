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
use crate::routes::AppState;

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
    crate::routes::string_enum(
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
        .list_ledger_entries(state.upstream.request(request, user.request_id.as_deref()))
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
    #[schema(schema_with = crate::routes::payment_status_schema)]
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
        .list_payments(state.upstream.request(request, user.request_id.as_deref()))
        .await
        .map_err(|status| list_error(&status))?
        .into_inner();
    Ok(Json(PaymentsPage {
        payments: answer.payments.into_iter().map(PaymentBody::from).collect(),
        next_cursor: non_empty(answer.next_page_token),
    }))
}

/// How often an idle balance stream sends a comment line, so proxies and
/// the browser keep it open.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /balance/stream`: Server-Sent Events. An event `balance` with the
/// balance (as `GET /balance`) at once, then one per change, pushed by
/// payments-grpc's `WatchBalance`; a comment line every 15 s; the stream
/// ends when the ID token expires (the client reconnects with a fresh one)
/// or when payments-grpc stops.
#[utoipa::path(
    get,
    path = "/balance/stream",
    tag = "balance",
    operation_id = "streamBalance",
    security(("firebase_id_token" = [])),
    responses(
        (
            status = 200,
            description = "Server-Sent Events: `event: balance` with a `data:` line holding the \
                           balance (as `GET /balance` answers it) at once and on every change; a \
                           `:heartbeat` comment every 15 s; the stream ends when the ID token expires",
            content_type = "text/event-stream",
            body = BalanceEvent,
        ),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn balance_stream(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
) -> Result<
    axum::response::sse::Sse<
        impl tonic::codegen::tokio_stream::Stream<
            Item = Result<axum::response::sse::Event, std::convert::Infallible>,
        >,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};

    // Held until the stream ends, in `Watching`.
    let place = state.balance_streams.take(&user.user_id)?;
    let (channel, connection_place) = state.upstream.watch_client();
    let request = payments_proto::WatchBalanceRequest {
        user_id: user.user_id,
    };
    let balances = crate::upstream::watch_balance(
        channel,
        state.upstream.request(request, user.request_id.as_deref()),
    )
    .await
    .map_err(|status| ApiError::from_grpc(&status))?;
    let lifetime = u64::try_from(user.expires_at - service_runtime::now_unix()).unwrap_or(0);
    let watching = Watching {
        balances,
        expired: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(lifetime))),
        closing: state.balance_streams.closing(),
        _held_until_the_stream_ends: (place, connection_place),
    };
    // Pulled by the response body as it is written: no task or channel of
    // its own (2.5 KiB a stream). When the client goes away, hyper drops
    // the body and with it the upstream watch and the places.
    let events = futures_util::stream::unfold(watching, |mut watching| async move {
        let balance = tokio::select! {
            balance = watching.balances.message() => balance,
            () = &mut watching.expired => return None,
            // The edge is stopping: the client reconnects elsewhere.
            _ = watching.closing.wait_for(|closing| *closing) => return None,
        };
        // payments-grpc stopped or failed: the client reconnects.
        let Ok(Some(balance)) = balance else {
            return None;
        };
        let body = crate::routes::BalanceBody::from(balance);
        let event = Event::default().event("balance").json_data(&body).ok()?;
        Some((Ok(event), watching))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}

/// What one balance stream holds while it is open.
struct Watching {
    balances: tonic::codec::Streaming<payments_proto::GetBalanceResponse>,
    /// The ID token's expiry: the stream ends then.
    expired: std::pin::Pin<Box<tokio::time::Sleep>>,
    closing: tokio::sync::watch::Receiver<bool>,
    _held_until_the_stream_ends: (StreamPlace, crate::upstream::WatchPlace),
}

/// One event of `GET /balance/stream`, as Server-Sent Events fields:
/// `event: balance`, and `data:` the balance's JSON. (OpenAPI 3.1 has no
/// word for a stream's items; this is the shape OpenAPI 3.2's `itemSchema`
/// gives SSE, and the one Schemathesis checks each event against.)
pub struct BalanceEvent;

impl utoipa::PartialSchema for BalanceEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
        let data = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .content_schema(Some(Ref::from_schema_name("BalanceBody")))
            .description(Some("The balance, as `GET /balance` answers it"));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One event; between events a `:heartbeat` comment line every 15 s",
            ))
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["balance"])),
            )
            .required("event")
            .property("data", data)
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for BalanceEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("BalanceBody".into(), crate::routes::BalanceBody::schema()));
    }
}

/// Places for balance streams: at most `max` open on this edge (503
/// `overloaded` past it) and `per_user` for one user (429
/// `too-many-streams`), so that open streams bound the edge's memory and
/// one user's tabs cannot take everyone's places.
pub struct StreamPlaces {
    all: Arc<tokio::sync::Semaphore>,
    per_user: usize,
    by_user: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Set when the edge stops: every stream ends at once, so its client
    /// reconnects (to another replica) instead of the drain waiting on it.
    closing: tokio::sync::watch::Sender<bool>,
}

/// A stream's places, given back when it is dropped.
pub struct StreamPlace {
    _all: tokio::sync::OwnedSemaphorePermit,
    user: String,
    by_user: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl StreamPlaces {
    pub fn new(max: usize, per_user: usize) -> Self {
        Self {
            all: Arc::new(tokio::sync::Semaphore::new(max)),
            per_user,
            by_user: Arc::default(),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Ends every stream, open or opened from now on (the edge is stopping).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn take(&self, user: &str) -> Result<StreamPlace, ApiError> {
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = by_user.get(user).copied().unwrap_or(0);
        if held >= self.per_user {
            return Err(ApiError::too_many_streams(self.per_user));
        }
        let Ok(all) = self.all.clone().try_acquire_owned() else {
            tracing::warn!("balance stream refused: every place on this edge is taken");
            return Err(ApiError::overloaded());
        };
        by_user.insert(user.to_owned(), held + 1);
        Ok(StreamPlace {
            _all: all,
            user: user.to_owned(),
            by_user: self.by_user.clone(),
        })
    }

    /// Streams open now (for tests).
    pub fn open(&self) -> usize {
        self.by_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = by_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<PageQuery, u16> {
        let uri: Uri = format!("/ledger{query}").parse().unwrap();
        PageQuery::parse(&uri).map_err(|err| err.status.as_u16())
    }

    #[test]
    fn stream_places_are_bounded_per_user_and_in_all_and_given_back() {
        let places = StreamPlaces::new(3, 2);
        let a1 = places.take("a").unwrap();
        let _a2 = places.take("a").unwrap();
        assert_eq!(
            places.take("a").err().map(|e| e.kind),
            Some("too-many-streams")
        );
        let _b1 = places.take("b").unwrap();
        assert_eq!(places.take("c").err().map(|e| e.kind), Some("overloaded"));
        assert_eq!(places.open(), 3);
        // A stream that ends gives both its places back.
        drop(a1);
        let _c1 = places.take("c").unwrap();
        assert_eq!(places.take("a").err().map(|e| e.kind), Some("overloaded"));
        assert_eq!(places.open(), 3);
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
