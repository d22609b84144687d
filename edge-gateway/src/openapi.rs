//! The parts of the OpenAPI 3.1 document no one route owns: its title, the
//! bearer scheme, the shared problem answers and schema helpers. The
//! document itself is made from the `#[utoipa::path]` attribute each
//! handler carries ([`crate::router::document`]).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::error::Problem;

/// The security scheme every user route names.
pub const BEARER: &str = "firebase_id_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "credits-topup edge",
        description = "The single-page app's REST API for buying and reading prepaid credits, \
                       and Stripe's webhook. Money is integer cents (or whole-cent dollars in \
                       `amount_usd`). Every error is `application/problem+json`; branch on its `type`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    components(schemas(Problem), responses(
        MalformedJson,
        InvalidQuery,
        InvalidWebhook,
        Unauthorized,
        NotFound,
        IdempotencyConflict,
        TooLarge,
        Unprocessable,
        TooManyRequests,
        Unavailable,
    )),
    tags(
        (name = "top-up", description = "Buying credits with a card"),
        (name = "balance", description = "The caller's balance and its history"),
        (name = "stripe", description = "Stripe's webhook (signed, not for browsers)"),
        (name = "operations", description = "Probes and this document"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Firebase ID token (RS256, `aud` the project id); its `sub` is the user",
                    ))
                    .build(),
            ),
        );
    }
}

/// 400 `malformed-json`.
#[derive(ToResponse)]
#[response(
    description = "The body is not JSON (`malformed-json`)",
    content_type = "application/problem+json"
)]
pub struct MalformedJson(#[allow(dead_code)] Problem<'static>);

/// 400 `invalid-query`.
#[derive(ToResponse)]
#[response(
    description = "`limit` or `cursor` is not valid (`invalid-query`)",
    content_type = "application/problem+json"
)]
pub struct InvalidQuery(#[allow(dead_code)] Problem<'static>);

/// 400 `invalid-webhook`.
#[derive(ToResponse)]
#[response(
    description = "A missing or wrong signature, a timestamp outside 300 s, or a body that is \
                   not a Stripe event (`invalid-webhook`); Stripe does not retry a 400",
    content_type = "application/problem+json"
)]
pub struct InvalidWebhook(#[allow(dead_code)] Problem<'static>);

/// 401 `unauthorized`.
#[derive(ToResponse)]
#[response(
    description = "The ID token is missing, invalid or expired (`unauthorized`)",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"`"))
)]
pub struct Unauthorized(#[allow(dead_code)] Problem<'static>);

/// 404 `not-found`.
#[derive(ToResponse)]
#[response(
    description = "Not this user's, or no such thing (`not-found`)",
    content_type = "application/problem+json"
)]
pub struct NotFound(#[allow(dead_code)] Problem<'static>);

/// 409 `idempotency-conflict`.
#[derive(ToResponse)]
#[response(
    description = "The `Idempotency-Key` was used for another amount (`idempotency-conflict`)",
    content_type = "application/problem+json"
)]
pub struct IdempotencyConflict(#[allow(dead_code)] Problem<'static>);

/// 413 `too-large`.
#[derive(ToResponse)]
#[response(
    description = "The body is over the limit (`too-large`)",
    content_type = "application/problem+json"
)]
pub struct TooLarge(#[allow(dead_code)] Problem<'static>);

/// 422 `invalid-amount`, `invalid-request`.
#[derive(ToResponse)]
#[response(
    description = "The amount is not a top-up tier, not a number, not positive or not in whole \
                   cents (`invalid-amount`, naming the tiers), or another field is not valid \
                   (`invalid-request`); Stripe is never called",
    content_type = "application/problem+json"
)]
pub struct Unprocessable(#[allow(dead_code)] Problem<'static>);

/// 429 `rate-limited`, `too-many-open-intents`, `too-many-streams`.
#[derive(ToResponse)]
#[response(
    description = "Over this user's or this client's rate limit (`rate-limited`, with \
                   `Retry-After`), too many unpaid top-ups open (`too-many-open-intents`), or \
                   too many balance streams open (`too-many-streams`)",
    content_type = "application/problem+json",
    headers(("Retry-After" = u32, description = "Seconds to wait (with `rate-limited`)"))
)]
pub struct TooManyRequests(#[allow(dead_code)] Problem<'static>);

/// 503 `unavailable`, `overloaded`.
#[derive(ToResponse)]
#[response(
    description = "payments-grpc or its database is unavailable (`unavailable`), or too much of \
                   this kind of work is in flight (`overloaded`, with `Retry-After`); try again",
    content_type = "application/problem+json",
    headers(("Retry-After" = u32, description = "Seconds to wait (with `overloaded`)"))
)]
pub struct Unavailable(#[allow(dead_code)] Problem<'static>);

/// A string holding one of Stripe's PaymentIntent statuses.
pub(crate) fn payment_status_schema() -> utoipa::openapi::schema::Object {
    string_enum(
        payments_domain::PaymentStatus::ALL
            .iter()
            .map(|status| status.as_str()),
    )
}

pub(crate) fn string_enum<'a>(
    values: impl Iterator<Item = &'a str>,
) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}
