//! Why a balance changed.

use std::fmt;

/// The kind of a ledger entry (the `ledger_entries.kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "diesel",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
pub enum LedgerKind {
    /// A paid PaymentIntent's `amount_received`, credited once per intent.
    TopUp,
    /// A Stripe refund of a top-up, clawed back once per refund id (may
    /// take the balance below zero).
    Refund,
    /// A clawed-back refund that failed or was canceled, given back once.
    RefundReversal,
    /// A dispute (chargeback) of a top-up, clawed back once per dispute id.
    Dispute,
    /// A dispute's clawback given back once: funds reinstated, dispute won.
    DisputeReversal,
    /// Credits taken by a backend service; once per (user, idempotency key).
    Spend,
    /// A whole spend given back, once per spend.
    SpendReversal,
    /// An operator's signed correction; once per (user, idempotency key).
    Adjustment,
}

impl LedgerKind {
    pub const ALL: [LedgerKind; 8] = [
        LedgerKind::TopUp,
        LedgerKind::Refund,
        LedgerKind::RefundReversal,
        LedgerKind::Dispute,
        LedgerKind::DisputeReversal,
        LedgerKind::Spend,
        LedgerKind::SpendReversal,
        LedgerKind::Adjustment,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "top_up",
            LedgerKind::Refund => "refund",
            LedgerKind::RefundReversal => "refund_reversal",
            LedgerKind::Dispute => "dispute",
            LedgerKind::DisputeReversal => "dispute_reversal",
            LedgerKind::Spend => "spend",
            LedgerKind::SpendReversal => "spend_reversal",
            LedgerKind::Adjustment => "adjustment",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == code)
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for LedgerKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in LedgerKind::ALL {
            assert_eq!(LedgerKind::from_code(kind.as_str()), Some(kind));
        }
        assert_eq!(LedgerKind::from_code("gift"), None);
    }
}
