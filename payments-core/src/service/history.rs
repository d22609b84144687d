//! A user's history: ledger entries and payments, newest first, a page at a
//! time, behind opaque cursors that belong to their user.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::PaymentsService;
use crate::Error;
use crate::db::history;
use crate::db::payments::PaymentRow;
use crate::domain::{Currency, LedgerKind, UserId};
use crate::stripe::{PaymentGateway, is_intent_id};

/// Rows per page when the caller asks for none (0).
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The most rows a page holds.
pub const MAX_PAGE_SIZE: i32 = 500;
/// A cursor longer than this is not one of ours.
const MAX_CURSOR_LEN: usize = 512;

/// One page, and the cursor of the next one (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A ledger entry as a statement shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub entry_id: i64,
    pub kind: LedgerKind,
    /// Signed.
    pub amount_cents: i64,
    pub balance_after_cents: i64,
    pub currency: Currency,
    /// What caused it: the PaymentIntent id of a top-up, the Stripe refund
    /// or dispute id of a clawback or its reversal, the key of a spend
    /// or an adjustment, the key of the spend a reversal gives back.
    pub reference: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// The user's ledger entries, newest first.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn list_ledger_entries(
        &self,
        user_id: &str,
        page_size: i32,
        cursor: &str,
    ) -> Result<Page<LedgerEntry>, Error> {
        let user = UserId::parse(user_id)?;
        let size = page_size_of(page_size)?;
        let before = match cursor {
            "" => None,
            cursor => Some(decode_ledger_cursor(&user, cursor)?),
        };
        let mut conn = self.connection().await?;
        // One row more than the page: whether there is a next page.
        let mut rows = history::ledger_entries(&mut conn, user.as_str(), before, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let reversed: Vec<i64> = rows.iter().filter_map(|r| r.reverses_entry_id).collect();
        let reversed_keys = if reversed.is_empty() {
            Vec::new()
        } else {
            history::keys_of_entries(&mut conn, user.as_str(), &reversed).await?
        };
        let next_cursor = more
            .then(|| rows.last().map(|last| ledger_cursor(&user, last.id)))
            .flatten();
        let items = rows
            .into_iter()
            .map(|row| {
                let reference = row
                    .stripe_object_id
                    .or(row.stripe_intent_id)
                    .or(row.idempotency_key)
                    .or_else(|| {
                        let spend = row.reverses_entry_id?;
                        reversed_keys
                            .iter()
                            .find(|(id, _)| *id == spend)
                            .and_then(|(_, key)| key.clone())
                    })
                    .unwrap_or_default();
                LedgerEntry {
                    entry_id: row.id,
                    kind: row.kind,
                    amount_cents: row.amount_cents,
                    balance_after_cents: row.balance_after_cents,
                    currency: row.currency,
                    reference,
                    reason: row.reason,
                    created_at: row.created_at,
                }
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// The user's payments, newest first.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn list_payments(
        &self,
        user_id: &str,
        page_size: i32,
        cursor: &str,
    ) -> Result<Page<PaymentRow>, Error> {
        let user = UserId::parse(user_id)?;
        let size = page_size_of(page_size)?;
        let before = match cursor {
            "" => None,
            cursor => Some(decode_payment_cursor(&user, cursor)?),
        };
        let mut conn = self.connection().await?;
        let before_ref = before.as_ref().map(|(at, id)| (*at, id.as_str()));
        let mut rows = history::payments(&mut conn, user.as_str(), before_ref, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_cursor = more
            .then(|| {
                rows.last()
                    .map(|last| payment_cursor(&user, last.created_at, &last.stripe_intent_id))
            })
            .flatten();
        Ok(Page {
            items: rows,
            next_cursor,
        })
    }
}

/// 0 asks for the default (proto3 cannot tell it from unset); below 0 or
/// above the most is refused.
pub(super) fn page_size_of(page_size: i32) -> Result<i64, Error> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE.into()),
        1..=MAX_PAGE_SIZE => Ok(page_size.into()),
        _ => Err(Error::InvalidArgument(format!(
            "page_size must be 1 to {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE}), got {page_size}"
        ))),
    }
}

// A cursor is `<kind>.<tag>.<position>`: the tag ties it to its user and its
// list, so a cursor of another user's (or of the other list) is refused, not
// read as ours; the position is where the next page starts. It grants
// nothing: every page is read for the caller's user alone.

fn tag(user: &UserId, kind: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(user.as_str().as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

fn ledger_cursor(user: &UserId, before_id: i64) -> String {
    format!("L1.{}.{before_id}", tag(user, "L1"))
}

fn payment_cursor(user: &UserId, created_at: DateTime<Utc>, intent_id: &str) -> String {
    format!(
        "P1.{}.{}.{}",
        tag(user, "P1"),
        created_at.timestamp_micros(),
        hex::encode(intent_id)
    )
}

fn bad_cursor() -> Error {
    Error::InvalidArgument("page_token is not a cursor this list gave to this user".into())
}

/// The latest time a cursor may hold, 9999-12-31T23:59:59.999999Z: beyond
/// it (or before 1970) it was not ours, and Postgres may not hold it.
const LATEST_MICROS: i64 = 253_402_300_799_999_999;

/// The parts after `<kind>.<tag>.` of a cursor of this user and kind.
fn cursor_position<'c>(user: &UserId, kind: &str, cursor: &'c str) -> Result<&'c str, Error> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(bad_cursor());
    }
    let mut parts = cursor.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(t), Some(position)) if k == kind && t == tag(user, kind) => Ok(position),
        _ => Err(bad_cursor()),
    }
}

// Each decoder checks every value it reads, and that the cursor is exactly
// the one the service would write for them (no `+5`, no upper-case hex): a
// cursor is read only if the service could have issued it.

fn decode_ledger_cursor(user: &UserId, cursor: &str) -> Result<i64, Error> {
    let before_id = cursor_position(user, "L1", cursor)?
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(bad_cursor)?;
    (ledger_cursor(user, before_id) == cursor)
        .then_some(before_id)
        .ok_or_else(bad_cursor)
}

fn decode_payment_cursor(user: &UserId, cursor: &str) -> Result<(DateTime<Utc>, String), Error> {
    let (micros, intent) = cursor_position(user, "P1", cursor)?
        .split_once('.')
        .ok_or_else(bad_cursor)?;
    let created_at = micros
        .parse()
        .ok()
        .filter(|micros| (0..=LATEST_MICROS).contains(micros))
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad_cursor)?;
    let intent = hex::decode(intent)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        // A NUL, a control, 300 characters: not an id of ours.
        .filter(|intent| is_intent_id(intent))
        .ok_or_else(bad_cursor)?;
    if payment_cursor(user, created_at, &intent) != cursor {
        return Err(bad_cursor());
    }
    Ok((created_at, intent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_for_their_user_and_list_only() {
        let ann = UserId::parse("ann").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let cursor = ledger_cursor(&ann, 42);
        assert_eq!(decode_ledger_cursor(&ann, &cursor), Ok(42));
        assert_eq!(decode_ledger_cursor(&bob, &cursor), Err(bad_cursor()));
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let cursor = payment_cursor(&ann, at, "pi_3Qx");
        assert_eq!(
            decode_payment_cursor(&ann, &cursor),
            Ok((at, "pi_3Qx".to_owned()))
        );
        assert_eq!(decode_payment_cursor(&bob, &cursor), Err(bad_cursor()));
        assert_eq!(decode_ledger_cursor(&ann, &cursor), Err(bad_cursor()));
        for forged in [
            "",
            "L1",
            "L1..5",
            "L1.0000000000000000.5",
            "garbage",
            &format!("L1.{}.+5", tag(&ann, "L1")),
            &format!("L1.{}.05", tag(&ann, "L1")),
            &format!("L1.{}.0", tag(&ann, "L1")),
            &format!("L1.{}.-7", tag(&ann, "L1")),
            &"L".repeat(600),
        ] {
            assert_eq!(
                decode_ledger_cursor(&ann, forged),
                Err(bad_cursor()),
                "{forged}"
            );
        }
        let tagged = format!("P1.{}.", tag(&ann, "P1"));
        let intent = |id: &str| hex::encode(id);
        for forged in [
            "x.zz".to_owned(),
            "99999999999999999999.00".to_owned(),
            "1.zz".to_owned(),
            "1".to_owned(),
            // A NUL, a bidi control, a dot, 300 characters, nothing.
            format!("1764000000123456.{}", intent("pi_\0")),
            format!("1764000000123456.{}", intent("pi_\u{202e}")),
            format!("1764000000123456.{}", intent("pi_3Q.x")),
            format!("1764000000123456.{}", intent(&"p".repeat(300))),
            "1764000000123456.".to_owned(),
            // Times Postgres cannot hold, or that no row of ours has.
            format!("{}.{}", i64::MAX, intent("pi_1")),
            format!("{}.{}", LATEST_MICROS + 1, intent("pi_1")),
            format!("-1.{}", intent("pi_1")),
            // Not as the service writes it.
            format!("+1764000000123456.{}", intent("pi_1")),
            format!("1764000000123456.{}", intent("pi_1").to_uppercase()),
        ] {
            assert_eq!(
                decode_payment_cursor(&ann, &format!("{tagged}{forged}")),
                Err(bad_cursor()),
                "{forged}"
            );
        }
    }

    #[test]
    fn page_sizes_default_at_zero_and_stop_at_the_most() {
        assert_eq!(page_size_of(0), Ok(50));
        assert_eq!(page_size_of(1), Ok(1));
        assert_eq!(page_size_of(500), Ok(500));
        for bad in [-1, 501, i32::MIN, i32::MAX] {
            assert!(page_size_of(bad).is_err(), "{bad}");
        }
    }
}
