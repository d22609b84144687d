use std::fmt;

use super::{Cents, InvalidInput};

/// A top-up amount the product sells, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tier(Cents);

impl Tier {
    pub fn cents(self) -> Cents {
        self.0
    }
}

/// An amount that is not one of the tiers sold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount_cents {amount_cents} is not a top-up tier; allowed: {allowed}")]
pub struct NotATier {
    pub amount_cents: i64,
    pub allowed: Tiers,
}

/// The configured tiers, sorted, without duplicates, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers(Vec<Tier>);

impl Tiers {
    /// Parses a comma-separated list of whole US dollars, e.g. `5,10,20,50`.
    pub fn parse_usd(list: &str) -> Result<Self, InvalidInput> {
        let mut tiers = list
            .split(',')
            .map(|item| {
                let item = item.trim();
                match item.parse::<u32>() {
                    Ok(dollars) if dollars > 0 && dollars <= 1_000_000 => {
                        Ok(Tier(Cents::from_whole_dollars(dollars)))
                    }
                    _ => Err(InvalidInput(format!(
                        "top-up tier {item:?} is not a whole number of dollars between 1 and 1000000"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        tiers.sort();
        tiers.dedup();
        Ok(Self(tiers))
    }

    /// The tier of exactly this many cents, or an error naming the allowed tiers.
    pub fn tier_for(&self, cents: i64) -> Result<Tier, NotATier> {
        self.0
            .iter()
            .copied()
            .find(|tier| tier.cents().get() == cents)
            .ok_or_else(|| NotATier {
                amount_cents: cents,
                allowed: self.clone(),
            })
    }

    /// The tiers in whole dollars, as people read them: `5, 10, 20, 50`.
    pub fn usd(&self) -> String {
        self.0
            .iter()
            .map(|tier| (tier.cents().get() / 100).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The smallest tier (there is always one).
    pub fn smallest(&self) -> Tier {
        self.0[0]
    }

    /// The largest tier.
    pub fn largest(&self) -> Tier {
        self.0[self.0.len() - 1]
    }

    pub fn iter(&self) -> impl Iterator<Item = Tier> + '_ {
        self.0.iter().copied()
    }
}

impl Default for Tiers {
    fn default() -> Self {
        Self::parse_usd("5,10,20,50").expect("the default tiers are valid")
    }
}

/// `500, 1000, 2000, 5000` (cents).
impl fmt::Display for Tiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tier) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", tier.cents().get())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tiers_are_five_ten_twenty_fifty_dollars() {
        let tiers = Tiers::default();
        let cents: Vec<i64> = tiers.iter().map(|t| t.cents().get()).collect();
        assert_eq!(cents, vec![500, 1000, 2000, 5000]);
        assert_eq!(tiers.to_string(), "500, 1000, 2000, 5000");
    }

    #[test]
    fn tiers_are_sorted_and_deduplicated() {
        let tiers = Tiers::parse_usd(" 20, 5,20 ,10").unwrap();
        assert_eq!(tiers.to_string(), "500, 1000, 2000");
        assert_eq!(tiers.smallest().cents(), Cents::new(500));
        assert_eq!(tiers.largest().cents(), Cents::new(2000));
    }

    #[test]
    fn bad_tier_lists_are_refused() {
        for bad in ["", "5,,10", "0", "-5", "5.5", "ten", "1000001", "5;10"] {
            assert!(Tiers::parse_usd(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn only_exact_tier_amounts_are_accepted() {
        let tiers = Tiers::default();
        assert_eq!(tiers.tier_for(1000).unwrap().cents(), Cents::new(1000));
        for bad in [0, -500, 999, 1001, 10, i64::MAX, i64::MIN] {
            let err = tiers.tier_for(bad).unwrap_err();
            assert!(
                err.to_string().contains("allowed: 500, 1000, 2000, 5000"),
                "{err}"
            );
            assert_eq!(err.allowed.usd(), "5, 10, 20, 50");
        }
    }
}
