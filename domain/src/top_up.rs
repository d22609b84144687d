//! The top-up a person asks for: `{"amount_usd": <dollars>}`, read exactly.
//!
//! Whether the amount is one of the tiers sold is the tiers' rule
//! ([`crate::Tiers::tier_for`]), applied where the tiers are configured.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::{Cents, UsdAmountError};

/// Why a body asks for no usable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopUpRefusal {
    /// The body is not JSON.
    #[error("{0}")]
    Malformed(String),
    /// JSON, but with no usable `amount_usd`; the text completes
    /// "amount_usd …".
    #[error("amount_usd {0}")]
    Unusable(String),
}

/// The amount in cents a top-up body asks for: a JSON object whose
/// `amount_usd` is a positive number of dollars in whole cents. Other fields
/// (a `user_id`, say) are ignored; a repeated `amount_usd` is refused
/// rather than silently taking one of them.
pub fn amount_from_json(body: &[u8]) -> Result<Cents, TopUpRefusal> {
    use serde_json::error::Category;
    let body: TopUpBody<'_> = serde_json::from_slice(body).map_err(|err| match err.classify() {
        // Well-formed JSON of the wrong shape: not an object, a duplicate field.
        Category::Data => TopUpRefusal::Unusable(format!("is not usable: {err}")),
        Category::Syntax | Category::Eof | Category::Io => TopUpRefusal::Malformed(err.to_string()),
    })?;
    let amount = body
        .amount_usd
        .ok_or_else(|| TopUpRefusal::Unusable("is missing".into()))?;
    let text = amount.get();
    // serde_json checked the grammar: a JSON number starts with '-' or a digit.
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(TopUpRefusal::Unusable(
            UsdAmountError::NotANumber.to_string(),
        ));
    }
    Cents::from_usd_number(text).map_err(|err| TopUpRefusal::Unusable(err.to_string()))
}

struct TopUpBody<'a> {
    amount_usd: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for TopUpBody<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = TopUpBody<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopUpBody<'a>, A::Error> {
                let mut amount_usd = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key != "amount_usd" {
                        map.next_value::<IgnoredAny>()?;
                    } else if amount_usd.is_some() {
                        return Err(de::Error::duplicate_field("amount_usd"));
                    } else {
                        amount_usd = Some(map.next_value::<&'a RawValue>()?);
                    }
                }
                Ok(TopUpBody { amount_usd })
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(body: &str) -> Result<i64, TopUpRefusal> {
        amount_from_json(body.as_bytes()).map(Cents::get)
    }

    #[test]
    fn amounts_become_cents() {
        assert_eq!(cents(r#"{"amount_usd": 10}"#), Ok(1000));
        assert_eq!(cents(r#"{"amount_usd": 20.0}"#), Ok(2000));
        assert_eq!(
            cents(r#"{"amount_usd": 5.00, "user_id": "someone-else"}"#),
            Ok(500)
        );
        assert_eq!(cents(r#"{"amount_usd": 5e1}"#), Ok(5000));
        assert_eq!(cents(r#"{"amount_usd": 7}"#), Ok(700));
        assert_eq!(cents(r#"{"am\u006funt_usd": 10}"#), Ok(1000));
    }

    #[test]
    fn unusable_amounts_say_why() {
        for (body, why) in [
            (r#"{"amount_usd": -10}"#, "must be positive"),
            (r#"{"amount_usd": 0}"#, "must be positive"),
            (r#"{"amount_usd": -0.0}"#, "must be positive"),
            (r#"{"amount_usd": 10.005}"#, "has a fraction of a cent"),
            (r#"{"amount_usd": "10"}"#, "is not a number"),
            (r#"{"amount_usd": "１０"}"#, "is not a number"),
            (r#"{"amount_usd": null}"#, "is not a number"),
            (r#"{"amount_usd": true}"#, "is not a number"),
            (r#"{"amount_usd": [10]}"#, "is not a number"),
            (r#"{"amount_usd": {"value": 10}}"#, "is not a number"),
            (r#"{"amount_usd": 1e300}"#, "is too large"),
            (r#"{"amount_usd": 92233720368547758}"#, "is too large"),
            (r#"{"amount_usd": 18446744073709551615}"#, "is too large"),
            (r#"{"amount": 10}"#, "is missing"),
            (r#"[10]"#, "is not usable"),
            (r#"10"#, "is not usable"),
            (r#"{"amount_usd": 10, "amount_usd": 50}"#, "is not usable"),
        ] {
            match cents(body) {
                Err(TopUpRefusal::Unusable(said)) => {
                    assert!(said.starts_with(why), "{body}: {said}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_json_is_told_apart() {
        for body in [
            "",
            "{",
            r#"{"amount_usd": }"#,
            "\u{feff}{}",
            "{'amount_usd': 10}",
        ] {
            assert!(
                matches!(cents(body), Err(TopUpRefusal::Malformed(_))),
                "{body:?}"
            );
        }
    }
}
