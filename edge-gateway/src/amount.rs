//! The SPA's top-up request body: `{"amount_usd": <whole or decimal dollars>}`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::error::Category;

use crate::error::ApiError;

/// A JSON object whose other fields (a `user_id`, say) are ignored; a
/// repeated `amount_usd` is refused rather than silently taking one of them.
struct TopUpBody {
    amount_usd: Option<Value>,
}

impl<'de> Deserialize<'de> for TopUpBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = TopUpBody;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopUpBody, A::Error> {
                let mut amount_usd = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "amount_usd" {
                        map.next_value::<IgnoredAny>()?;
                    } else if amount_usd.is_some() {
                        return Err(de::Error::duplicate_field("amount_usd"));
                    } else {
                        amount_usd = Some(map.next_value::<Value>()?);
                    }
                }
                Ok(TopUpBody { amount_usd })
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The amount in cents of a valid request for one of `tiers_usd`.
pub fn top_up_cents(body: &[u8], tiers_usd: &[u32]) -> Result<i64, ApiError> {
    let allowed = tiers_usd
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let refuse = |what: &str| {
        ApiError::invalid_amount(format!("amount_usd {what}; allowed tiers (USD): {allowed}"))
    };
    let body: TopUpBody = serde_json::from_slice(body).map_err(|err| match err.classify() {
        // Well-formed JSON of the wrong shape: not an object, a duplicate field.
        Category::Data => refuse(&format!("is not usable: {err}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::malformed_json(err.to_string())
        }
    })?;
    let amount = match body.amount_usd {
        None => return Err(refuse("is missing")),
        Some(Value::Number(number)) => number,
        Some(_) => return Err(refuse("is not a number")),
    };
    let cents = if let Some(dollars) = amount.as_i64() {
        dollars
            .checked_mul(100)
            .ok_or_else(|| refuse("is too large"))?
    } else {
        let dollars = amount.as_f64().ok_or_else(|| refuse("is not a number"))?;
        let cents = (dollars * 100.0).round();
        if (dollars * 100.0 - cents).abs() > 1e-6 {
            return Err(refuse("has a fraction of a cent"));
        }
        if !(-9e15..=9e15).contains(&cents) {
            return Err(refuse("is too large"));
        }
        cents as i64
    };
    if cents <= 0 {
        return Err(refuse("must be positive"));
    }
    if !tiers_usd.iter().any(|tier| i64::from(*tier) * 100 == cents) {
        return Err(refuse("is not a top-up tier"));
    }
    Ok(cents)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    const TIERS: [u32; 4] = [5, 10, 20, 50];

    #[test]
    fn tier_amounts_become_cents() {
        assert_eq!(top_up_cents(br#"{"amount_usd": 10}"#, &TIERS), Ok(1000));
        assert_eq!(top_up_cents(br#"{"amount_usd": 20.0}"#, &TIERS), Ok(2000));
        assert_eq!(
            top_up_cents(
                br#"{"amount_usd": 5.00, "user_id": "someone-else"}"#,
                &TIERS
            ),
            Ok(500)
        );
        assert_eq!(top_up_cents(br#"{"amount_usd": 5e1}"#, &TIERS), Ok(5000));
    }

    #[test]
    fn bad_amounts_are_422_naming_the_tiers() {
        for body in [
            r#"{"amount_usd": 7}"#,
            r#"{"amount_usd": -10}"#,
            r#"{"amount_usd": 0}"#,
            r#"{"amount_usd": 10.005}"#,
            r#"{"amount_usd": 10.5}"#,
            r#"{"amount_usd": "10"}"#,
            r#"{"amount_usd": null}"#,
            r#"{"amount_usd": true}"#,
            r#"{"amount_usd": 1e300}"#,
            r#"{"amount_usd": 92233720368547758}"#,
            r#"{"amount": 10}"#,
            r#"[10]"#,
            r#"10"#,
            r#"{"amount_usd": 10, "amount_usd": 50}"#,
            r#"{"amount_usd": "１０"}"#,
            r#"{"amount_usd": [10]}"#,
            r#"{"amount_usd": {"value": 10}}"#,
            r#"{"amount_usd": -0.0}"#,
            r#"{"amount_usd": 18446744073709551615}"#,
        ] {
            let err = top_up_cents(body.as_bytes(), &TIERS).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(
                err.detail.ends_with("allowed tiers (USD): 5, 10, 20, 50"),
                "{body}: {}",
                err.detail
            );
        }
    }

    #[test]
    fn malformed_json_is_400() {
        for body in [
            "",
            "{",
            r#"{"amount_usd": }"#,
            "\u{feff}{}",
            "{'amount_usd': 10}",
        ] {
            let err = top_up_cents(body.as_bytes(), &TIERS).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{body:?}");
        }
    }
}
