use std::fmt;
use std::str::FromStr;

/// A PaymentIntent's status, in Stripe's words (and the `payments.status` column's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "diesel",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub enum PaymentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

/// A status change that would move a payment backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payment status cannot move from {from} to {to}")]
pub struct BackwardsMove {
    pub from: PaymentStatus,
    pub to: PaymentStatus,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::RequiresPaymentMethod,
        PaymentStatus::RequiresConfirmation,
        PaymentStatus::RequiresAction,
        PaymentStatus::Processing,
        PaymentStatus::RequiresCapture,
        PaymentStatus::Canceled,
        PaymentStatus::Succeeded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::RequiresPaymentMethod => "requires_payment_method",
            PaymentStatus::RequiresConfirmation => "requires_confirmation",
            PaymentStatus::RequiresAction => "requires_action",
            PaymentStatus::Processing => "processing",
            PaymentStatus::RequiresCapture => "requires_capture",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Succeeded => "succeeded",
        }
    }

    /// Succeeded and canceled are final: nothing moves a payment out of them.
    pub const fn is_final(self) -> bool {
        matches!(self, PaymentStatus::Succeeded | PaymentStatus::Canceled)
    }

    /// How far along Stripe's lifecycle a status is.
    const fn stage(self) -> u8 {
        match self {
            PaymentStatus::RequiresPaymentMethod => 0,
            PaymentStatus::RequiresConfirmation => 1,
            PaymentStatus::RequiresAction => 2,
            PaymentStatus::Processing => 3,
            PaymentStatus::RequiresCapture => 4,
            PaymentStatus::Canceled | PaymentStatus::Succeeded => 5,
        }
    }

    /// The status after observing `next`: forward moves are taken, a final
    /// status never changes, and going back to `requires_payment_method` is
    /// allowed from an unfinished attempt because that is how Stripe reports a
    /// failed attempt the customer may retry.
    pub fn transition(self, next: PaymentStatus) -> Result<PaymentStatus, BackwardsMove> {
        let allowed = self == next
            || (!self.is_final()
                && (next.stage() > self.stage() || next == PaymentStatus::RequiresPaymentMethod));
        if allowed {
            Ok(next)
        } else {
            Err(BackwardsMove {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So that `assert_eq!(row.status, "succeeded")` reads as it says.
impl PartialEq<&str> for PaymentStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for PaymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown PaymentIntent status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>(), Ok(status));
        }
        assert!("paid".parse::<PaymentStatus>().is_err());
    }

    #[test]
    fn forward_moves_are_taken() {
        assert_eq!(
            RequiresPaymentMethod.transition(RequiresAction),
            Ok(RequiresAction)
        );
        assert_eq!(RequiresAction.transition(Processing), Ok(Processing));
        assert_eq!(Processing.transition(Succeeded), Ok(Succeeded));
        assert_eq!(RequiresAction.transition(Canceled), Ok(Canceled));
        assert_eq!(Succeeded.transition(Succeeded), Ok(Succeeded));
    }

    #[test]
    fn final_statuses_never_change() {
        for from in [Succeeded, Canceled] {
            for to in PaymentStatus::ALL.into_iter().filter(|to| *to != from) {
                assert_eq!(from.transition(to), Err(BackwardsMove { from, to }));
            }
        }
    }

    #[test]
    fn a_failed_attempt_returns_to_requires_payment_method() {
        assert_eq!(
            RequiresAction.transition(RequiresPaymentMethod),
            Ok(RequiresPaymentMethod)
        );
        assert_eq!(
            Processing.transition(RequiresPaymentMethod),
            Ok(RequiresPaymentMethod)
        );
    }

    #[test]
    fn late_intermediate_statuses_do_not_move_backwards() {
        assert!(Processing.transition(RequiresAction).is_err());
        assert!(RequiresCapture.transition(Processing).is_err());
        assert!(RequiresAction.transition(RequiresConfirmation).is_err());
    }
}
