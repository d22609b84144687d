//! The write of the webhook's money transaction: one call of the SQL
//! function `apply_stripe_event` (`migrations/functions/apply_stripe_event.sql`),
//! which writes the event row, then the payment's new state if the payment
//! is still as it was read (that update takes the row lock), then the top-up
//! credit and the balance.
//! One statement is one transaction (autocommit): no BEGIN, no COMMIT, no
//! lock held between round trips. It touches one user's rows only, and on
//! Citus the coordinator hands the whole call to the worker holding that user
//! (the function is distributed by its first argument), so the commit is a
//! plain one.
//!
//! The call's text ([`APPLY_CALL`]) is shared with the benchmark, so its
//! pgbench runs the very statement the service runs.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::{QueryResult, Queryable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::domain::{Currency, PaymentStatus};

/// The function's guards (see its migration): a compare-and-set on the
/// payment's status and amount received as read (`$3`, `$4`); the event row
/// once per (user, event id), everything else gated on it; one top-up credit
/// per intent; the balance moved only with a credit written by this call.
///
/// The call up to its arguments, which are, in order:
/// user id, intent id, status read, amount received read, event id, event
/// type, stored payload, received at, processed at (also the payment's
/// `updated_at` and the credit's `created_at`), new status, new amount
/// received, failure code, failure message, cents to credit (0: none),
/// currency.
pub const APPLY_CALL: &str = "SELECT recorded, updated, new_balance_cents FROM apply_stripe_event(";

/// How many arguments [`APPLY_CALL`] takes.
const APPLY_ARGS: usize = 15;

/// What the event does to one user's payment.
#[derive(Debug)]
pub struct EventEffect<'a> {
    pub user_id: &'a str,
    pub intent_id: &'a str,
    /// The payment as read: its status and amount received.
    pub read_status: PaymentStatus,
    pub read_amount_received_cents: i64,
    /// `None`: no event (a sync or a reconciliation), so no event row; the
    /// compare-and-set and the one top-up per intent still hold.
    pub event_id: Option<&'a str>,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    pub status: PaymentStatus,
    pub amount_received_cents: i64,
    pub failure_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
    /// 0: no credit.
    pub credit_cents: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Queryable)]
pub struct Applied {
    /// False: nothing was written. The payment changed since it was read,
    /// or the event was applied already (a concurrent delivery): read again.
    pub recorded: bool,
    /// Whether the payment row was there to update.
    pub updated: bool,
    /// The balance after the credit, when this statement wrote one.
    pub balance_cents: Option<i64>,
}

pub async fn apply(
    conn: &mut AsyncPgConnection,
    effect: &EventEffect<'_>,
) -> Result<Applied, DbError> {
    Ok(ApplyEvent(effect).get_result(conn).await?)
}

struct ApplyEvent<'e, 'a>(&'e EventEffect<'a>);

impl QueryFragment<Pg> for ApplyEvent<'_, '_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let e = self.0;
        super::push_call!(out, APPLY_CALL,
            Text => &e.user_id,
            Text => &e.intent_id,
            Text => &e.read_status,
            BigInt => &e.read_amount_received_cents,
            Nullable<Text> => &e.event_id,
            Text => &e.event_type,
            Text => &e.payload,
            Timestamptz => &e.received_at,
            Timestamptz => &e.processed_at,
            Text => &e.status,
            BigInt => &e.amount_received_cents,
            Nullable<Text> => &e.failure_code,
            Nullable<Text> => &e.failure_message,
            BigInt => &e.credit_cents,
            Text => &e.currency,
        );
        Ok(())
    }
}

impl Query for ApplyEvent<'_, '_> {
    type SqlType = (Bool, Bool, Nullable<BigInt>);
}

/// Static, so diesel caches the prepared statement.
impl QueryId for ApplyEvent<'_, '_> {
    type QueryId = ApplyEvent<'static, 'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// SQL text standing for each value of one webhook, for
/// [`webhook_statements`]: pgbench expressions such as `'pi_' || :i`.
#[derive(Debug, Clone, Copy)]
pub struct WebhookValues<'a> {
    pub user_id: &'a str,
    pub intent_id: &'a str,
    /// The payment's status and amount received as read (the benchmark
    /// passes what the first statement returned: pgbench's `\gset`).
    pub read_status: &'a str,
    pub read_amount_received_cents: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub now: &'a str,
    pub status: &'a str,
    pub amount_received_cents: &'a str,
    pub credit_cents: &'a str,
    pub currency: &'a str,
}

/// The statements one applied webhook sends, in order, each bind replaced by
/// its SQL text from `values`: rendered from the very queries the service
/// runs, so the benchmark's pgbench cannot drift from them. The common
/// path: the event names its owner (metadata), so the owner lookup is not
/// needed; the read, then the write.
pub fn webhook_statements(values: &WebhookValues<'_>) -> Vec<String> {
    use diesel::prelude::*;
    let v = values;
    let in_order: [&str; APPLY_ARGS] = [
        v.user_id,
        v.intent_id,
        v.read_status,
        v.read_amount_received_cents,
        v.event_id,
        v.event_type,
        v.payload,
        v.now,
        v.now,
        v.status,
        v.amount_received_cents,
        "NULL",
        "NULL",
        v.credit_cents,
        v.currency,
    ];
    let apply = format!("{APPLY_CALL}{})", in_order.join(", "));
    vec![
        render(
            &super::payments::find_with_event_query!(v.user_id, v.intent_id, v.event_id).limit(1),
        ),
        apply,
    ]
}

/// A diesel query's SQL with each `$n` replaced by its bind: the binds are
/// SQL text (`&str`, rendered quoted by `Debug`) or numbers.
fn render<Q>(query: &Q) -> String
where
    Q: QueryFragment<Pg>,
{
    let debug = diesel::debug_query::<Pg, _>(query).to_string();
    let (sql, binds) = debug
        .split_once(" -- binds: [")
        .unwrap_or((debug.as_str(), "]"));
    let binds = binds.strip_suffix(']').unwrap_or(binds);
    let mut values = Vec::new();
    let mut rest = binds;
    while !rest.is_empty() {
        let (value, after) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], quoted[end..].trim_start_matches('"'))
            }
            None => rest.split_once(", ").map_or((rest, ""), |(v, a)| (v, a)),
        };
        values.push(value.to_owned());
        rest = after.trim_start_matches(", ");
    }
    let mut sql = sql.to_owned();
    for (n, value) in values.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", n + 1), value);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_statements_carry_every_value_and_no_placeholder() {
        let statements = webhook_statements(&WebhookValues {
            user_id: "'u'",
            intent_id: "'pi'",
            read_status: ":p_status",
            read_amount_received_cents: ":p_amount_received_cents",
            event_id: "'evt'",
            event_type: "'t'",
            payload: "'{}'",
            now: "now()",
            status: "'succeeded'",
            amount_received_cents: "500",
            credit_cents: "500",
            currency: "'usd'",
        });
        assert_eq!(statements.len(), 2);
        for statement in &statements {
            assert!(!statement.contains('$'), "{statement}");
        }
        assert!(
            statements[0].contains("\"event_id\" = 'evt'"),
            "{}",
            statements[0]
        );
        assert!(statements[0].ends_with("LIMIT 1"), "{}", statements[0]);
        // Keyed by the user, so on Citus it reads that user's shard alone.
        assert!(
            statements[0].contains(r#""payments"."user_id" = 'u'"#),
            "{}",
            statements[0]
        );
        assert!(
            statements[1].ends_with(
                "apply_stripe_event('u', 'pi', :p_status, :p_amount_received_cents, 'evt', 't', '{}', \
                 now(), now(), 'succeeded', 500, NULL, NULL, 500, 'usd')"
            ),
            "{}",
            statements[1]
        );
    }

    #[test]
    fn the_statement_renders_with_diesels_own_numbering() {
        let effect = EventEffect {
            user_id: "u",
            intent_id: "pi",
            read_status: PaymentStatus::Processing,
            read_amount_received_cents: 0,
            event_id: Some("evt"),
            event_type: "t",
            payload: "{}",
            received_at: Utc::now(),
            processed_at: Utc::now(),
            status: PaymentStatus::Succeeded,
            amount_received_cents: 1,
            failure_code: None,
            failure_message: None,
            credit_cents: 1,
            currency: Currency::Usd,
        };
        let rendered = diesel::debug_query::<Pg, _>(&ApplyEvent(&effect)).to_string();
        let sql = rendered.split(" -- binds").next().unwrap();
        let placeholders: Vec<String> = (1..=APPLY_ARGS).map(|n| format!("${n}")).collect();
        assert_eq!(sql, format!("{APPLY_CALL}{})", placeholders.join(", ")));
    }
}
