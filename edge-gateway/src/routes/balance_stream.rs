//! `GET /balance/stream`: the caller's balance as Server-Sent Events, pushed
//! by payments-grpc's `WatchBalance`, within the places of
//! [`crate::stream_places`].

use std::sync::Arc;

use axum::extract::State;

use crate::caller::{AuthenticatedUser, ClientIp};
use crate::error::ApiError;
use crate::state::AppState;
use crate::stream_places::StreamPlace;

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
    ClientIp(client_ip): ClientIp,
    version: axum::http::Version,
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

    // A token inside the clock leeway still calls; a stream for it would
    // end at once, and a reconnecting client would loop on it.
    let lifetime = u64::try_from(user.expires_at - service_runtime::now_unix())
        .ok()
        .filter(|secs| *secs > 0)
        .ok_or_else(|| ApiError::unauthorized("the token has expired"))?;
    // Held until the stream ends, in `Watching`. A refused HTTP/1.1 stream
    // gives its connection back: kept alive, it would hold a place that the
    // stream budget exists to keep for other calls.
    let place = state
        .balance_streams
        .take(&user.user_id, client_ip)
        .map_err(|refused| match version {
            axum::http::Version::HTTP_2 => refused,
            _ => refused.closing_the_connection(),
        })?;
    let (mut client, connection_place) = state.upstream.watch_client();
    let request = payments_proto::WatchBalanceRequest {
        user_id: user.user_id,
    };
    let balances = client
        .watch_balance(request)
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
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
        let body = super::balance::BalanceBody::from(balance);
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
        schemas.push(("BalanceBody".into(), super::balance::BalanceBody::schema()));
    }
}
