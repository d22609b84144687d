//! The domain's enums as Postgres text columns (feature `diesel`): written
//! by their name, and a stored name that is not one of them is an error,
//! never a silent default.

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

use crate::{Currency, LedgerKind, PaymentStatus};

macro_rules! text_column {
    ($type:ty, $parse:expr) => {
        impl ToSql<Text, Pg> for $type {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $type {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                let parse: fn(&str) -> Option<$type> = $parse;
                parse(text).ok_or_else(|| format!("{text:?} is not a {}", stringify!($type)).into())
            }
        }
    };
}

text_column!(PaymentStatus, |text| text.parse().ok());
text_column!(LedgerKind, LedgerKind::from_code);
text_column!(Currency, Currency::from_code);
