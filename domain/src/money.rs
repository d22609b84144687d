use std::fmt;

/// An amount of money in minor units (US cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(i64);

impl Cents {
    pub const fn new(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The most one spend or adjustment may move: a billion dollars. Far
    /// above any real balance, and far enough below `i64::MAX` that no sum
    /// of balances and moves can overflow.
    pub const MAX_MOVE: Cents = Cents(100_000_000_000);

    /// An amount of credits to move: positive, at most [`Cents::MAX_MOVE`].
    pub fn to_move(cents: i64) -> Result<Self, crate::InvalidInput> {
        if cents <= 0 || cents > Self::MAX_MOVE.0 {
            return Err(crate::InvalidInput(format!(
                "amount_cents must be 1 to {}, got {cents}",
                Self::MAX_MOVE.0
            )));
        }
        Ok(Self(cents))
    }

    pub fn from_whole_dollars(dollars: u32) -> Self {
        Self(i64::from(dollars) * 100)
    }

    /// A positive amount of US dollars written as a JSON number (`10`,
    /// `20.00`, `5e1`), read exactly: digit by digit, never through a float,
    /// so `10.005` is a fraction of a cent and not 1001 cents.
    pub fn from_usd_number(text: &str) -> Result<Self, UsdAmountError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], parse_exponent(&unsigned[at + 1..])?),
            None => (unsigned, 0),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((_, "")) => return Err(UsdAmountError::NotANumber),
            Some(parts) => parts,
            None => (mantissa, ""),
        };
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(UsdAmountError::NotANumber);
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() || negative {
            return Err(UsdAmountError::NotPositive);
        }
        // cents = digits × 10^shift
        let shift = exponent + 2 - fraction.len() as i64;
        let cents_digits = if shift < 0 {
            let dropped = usize::try_from(-shift).unwrap_or(usize::MAX);
            let kept = digits.len().saturating_sub(dropped);
            if dropped > digits.len() || digits[kept..].bytes().any(|b| b != b'0') {
                return Err(UsdAmountError::FractionOfACent);
            }
            digits[..kept].to_owned()
        } else {
            let zeros = usize::try_from(shift).unwrap_or(usize::MAX);
            if digits.len().saturating_add(zeros) > MAX_CENTS_DIGITS {
                return Err(UsdAmountError::TooLarge);
            }
            format!("{digits}{}", "0".repeat(zeros))
        };
        if cents_digits.len() > MAX_CENTS_DIGITS {
            return Err(UsdAmountError::TooLarge);
        }
        cents_digits
            .parse()
            .map(Self)
            .map_err(|_| UsdAmountError::TooLarge)
    }
}

/// At most 18 digits of cents: every such number fits an `i64`.
const MAX_CENTS_DIGITS: usize = 18;

/// A JSON exponent, clamped far beyond any amount (`1e999999999` is too large).
fn parse_exponent(text: &str) -> Result<i64, UsdAmountError> {
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsdAmountError::NotANumber);
    }
    let digits = digits.trim_start_matches('0');
    let magnitude = if digits.len() > 6 {
        1_000_000
    } else {
        digits.parse::<i64>().unwrap_or(0)
    };
    Ok(sign * magnitude)
}

/// Why a number of dollars is not an amount of cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsdAmountError {
    #[error("is not a number")]
    NotANumber,
    #[error("must be positive")]
    NotPositive,
    #[error("has a fraction of a cent")]
    FractionOfACent,
    #[error("is too large")]
    TooLarge,
}

/// So that `assert_eq!(balance.balance_cents, 1000)` reads as it says.
impl PartialEq<i64> for Cents {
    fn eq(&self, other: &i64) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// The one currency balances are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "diesel",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub enum Currency {
    Usd,
}

impl Currency {
    /// Stripe's (and the database's) lowercase ISO code.
    pub const fn code(self) -> &'static str {
        match self {
            Currency::Usd => "usd",
        }
    }

    /// The same as [`Currency::code`].
    pub const fn as_str(self) -> &'static str {
        self.code()
    }

    pub fn from_code(code: &str) -> Option<Self> {
        code.eq_ignore_ascii_case("usd").then_some(Currency::Usd)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_display_as_dollars_and_cents() {
        assert_eq!(Cents::new(1050).to_string(), "10.50");
        assert_eq!(Cents::new(5).to_string(), "0.05");
        assert_eq!(Cents::new(-250).to_string(), "-2.50");
        assert_eq!(Cents::new(i64::MIN).to_string(), "-92233720368547758.08");
    }

    #[test]
    fn whole_dollars_become_cents() {
        assert_eq!(Cents::from_whole_dollars(20).get(), 2000);
        assert_eq!(Cents::from_whole_dollars(u32::MAX).get(), 429_496_729_500);
        assert_eq!(Cents::to_move(1).unwrap().get(), 1);
        assert_eq!(
            Cents::to_move(Cents::MAX_MOVE.get()).unwrap(),
            Cents::MAX_MOVE
        );
        for bad in [0, -1, i64::MIN, Cents::MAX_MOVE.get() + 1, i64::MAX] {
            assert!(Cents::to_move(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dollars_are_read_exactly() {
        let cents = |text: &str| Cents::from_usd_number(text).map(Cents::get);
        assert_eq!(cents("10"), Ok(1000));
        assert_eq!(cents("20.0"), Ok(2000));
        assert_eq!(cents("5.00"), Ok(500));
        assert_eq!(cents("5e1"), Ok(5000));
        assert_eq!(cents("5E+1"), Ok(5000));
        assert_eq!(cents("0.05"), Ok(5));
        assert_eq!(cents("1050e-2"), Ok(1050));
        assert_eq!(cents("0.1e1"), Ok(100));
        assert_eq!(cents("10.50000000000000000000000000"), Ok(1050));
        assert_eq!(cents("9999999999999999.99"), Ok(999_999_999_999_999_999));
        // A float would round these into tiers.
        assert_eq!(cents("10.005"), Err(UsdAmountError::FractionOfACent));
        assert_eq!(cents("9.999999999"), Err(UsdAmountError::FractionOfACent));
        assert_eq!(cents("1e-3"), Err(UsdAmountError::FractionOfACent));
        assert_eq!(cents("1e-999999999"), Err(UsdAmountError::FractionOfACent));
        for positive_only in ["0", "-0.0", "-10", "0e999999999", "-1e-9", "0.000"] {
            assert_eq!(
                cents(positive_only),
                Err(UsdAmountError::NotPositive),
                "{positive_only}"
            );
        }
        for too_large in [
            "1e300",
            "92233720368547758",
            "18446744073709551615",
            "10000000000000000",
            "1e999999999",
        ] {
            assert_eq!(
                cents(too_large),
                Err(UsdAmountError::TooLarge),
                "{too_large}"
            );
        }
        for not_a_number in [
            "", "-", ".5", "5.", "1e", "1e+", "ten", "\"10\"", "0x10", "1_000",
        ] {
            assert!(cents(not_a_number).is_err(), "{not_a_number}");
        }
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::from_code("usd"), Some(Currency::Usd));
        assert_eq!(Currency::from_code("USD"), Some(Currency::Usd));
        assert_eq!(Currency::from_code("eur"), None);
        assert_eq!(Currency::Usd.code(), "usd");
    }
}
