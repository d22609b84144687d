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

    pub fn from_whole_dollars(dollars: u32) -> Self {
        Self(i64::from(dollars) * 100)
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
    }

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::from_code("usd"), Some(Currency::Usd));
        assert_eq!(Currency::from_code("USD"), Some(Currency::Usd));
        assert_eq!(Currency::from_code("eur"), None);
        assert_eq!(Currency::Usd.code(), "usd");
    }
}
