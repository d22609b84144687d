//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, made from
//! the `#[utoipa::path]` attribute each handler carries. Routes are only
//! registered through [`utoipa_axum::routes!`], which reads the same
//! attribute, so a route cannot be served without being documented (and a
//! test checks nothing bypasses it).

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
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

/// This edge's document: every route of [`crate::routes::documented_routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    crate::routes::documented_routes(None).into_openapi()
}

static DOCUMENT_JSON: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(
        document()
            .to_json()
            .expect("the OpenAPI document serializes"),
    )
});

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((
        status = 200,
        description = "This document",
        content_type = "application/json",
        body = Object,
    ))
)]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route registered with axum's own `route`, `route_service` or
    /// `nest` would be served without a document: none may be.
    #[test]
    fn every_route_is_registered_through_its_document() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = 0;
        for file in std::fs::read_dir(&src).unwrap() {
            let path = file.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            for method in [".route", ".route_service", ".nest", ".nest_service"] {
                // Spelt apart so that this file does not match itself.
                let bypass = format!("{method}(");
                assert!(
                    !source.contains(&bypass),
                    "{} registers a route with `{bypass}`: use `.routes(routes!(handler))` \
                     with a #[utoipa::path] on the handler",
                    path.display()
                );
            }
            files += 1;
        }
        assert!(files > 10);
    }

    #[test]
    fn the_document_names_every_problem_answer_and_the_bearer_scheme() {
        let document = serde_json::to_value(document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut operations = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('2') {
                        continue;
                    }
                    // Every error is problem+json, through a shared response.
                    let name = response["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/responses/"))
                        .unwrap_or_else(|| panic!("{method} {path} {status} is not shared"));
                    let shared = &document["components"]["responses"][name];
                    assert_eq!(
                        shared["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{name}"
                    );
                }
                let secured = operation["security"].is_array();
                assert_eq!(
                    secured,
                    operation["responses"]["401"].is_object(),
                    "{method} {path}: a bearer route answers 401, others never"
                );
            }
        }
        assert_eq!(operations, 10);
    }
}
