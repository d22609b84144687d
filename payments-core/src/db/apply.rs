//! The write of the webhook's money transaction: one call of the SQL
//! function `apply_stripe_event` (migration
//! `2026-12-03-000001_apply_event_function`), which locks the payment as it
//! was read, then writes the event row, the payment's new state, the top-up
//! credit and the balance. One statement is one transaction (autocommit): no
//! BEGIN, no COMMIT, no lock held between round trips. It touches one user's
//! rows only, and on Citus the coordinator hands the whole call to the
//! worker holding that user (the function is distributed by its first
//! argument), so the commit is a plain one.
//!
//! Kept as SQL text ([`APPLY_EVENT_SQL`]) so that the benchmark's pgbench
//! runs the very statement the service runs.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::{QueryResult, Queryable};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;

/// The function's guards (see its migration): a compare-and-set on the
/// payment's status and amount received as read (`$3`, `$4`); the event row
/// once per (user, event id), everything else gated on it; one top-up credit
/// per intent; the balance moved only with a credit written by this call.
///
/// Placeholders, each used once and in order:
/// `$1` user id, `$2` intent id, `$3` status read, `$4` amount received
/// read, `$5` event id, `$6` event type, `$7` stored payload, `$8` received
/// at, `$9` processed at (also the payment's `updated_at` and the credit's
/// `created_at`), `$10` new status, `$11` new amount received, `$12` failure
/// code, `$13` failure message, `$14` cents to credit (0: none), `$15`
/// currency.
pub const APPLY_EVENT_SQL: &str = "\
SELECT recorded, updated, new_balance_cents
  FROM apply_stripe_event($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// What the event does to one user's payment.
#[derive(Debug)]
pub struct EventEffect<'a> {
    pub user_id: &'a str,
    pub intent_id: &'a str,
    /// The payment as read: its status and amount received.
    pub read_status: &'a str,
    pub read_amount_received_cents: i64,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    pub status: &'a str,
    pub amount_received_cents: i64,
    pub failure_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
    /// 0: no credit.
    pub credit_cents: i64,
    pub currency: &'a str,
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
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let e = self.0;
        let mut sql = Placeholders::new(APPLY_EVENT_SQL);
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.user_id)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.intent_id)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.read_status)?;
        sql.next(&mut out)?;
        out.push_bind_param::<BigInt, _>(&e.read_amount_received_cents)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.event_id)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.event_type)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.payload)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Timestamptz, _>(&e.received_at)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Timestamptz, _>(&e.processed_at)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.status)?;
        sql.next(&mut out)?;
        out.push_bind_param::<BigInt, _>(&e.amount_received_cents)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Nullable<Text>, _>(&e.failure_code)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Nullable<Text>, _>(&e.failure_message)?;
        sql.next(&mut out)?;
        out.push_bind_param::<BigInt, _>(&e.credit_cents)?;
        sql.next(&mut out)?;
        out.push_bind_param::<Text, _>(&e.currency)?;
        sql.finish(&mut out)
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

/// Walks SQL text whose placeholders are `$1`, `$2`, … each once, in order:
/// the text between them is pushed as SQL, and each placeholder is left for
/// the bind that diesel numbers itself (the same `$n`).
struct Placeholders {
    rest: &'static str,
    next: usize,
}

impl Placeholders {
    fn new(sql: &'static str) -> Self {
        Self { rest: sql, next: 1 }
    }

    /// Pushes the text up to the next placeholder and steps over it.
    fn next(&mut self, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        let marker = format!("${}", self.next);
        let at = find_placeholder(self.rest, &marker).ok_or_else(|| {
            diesel::result::Error::QueryBuilderError(
                format!("placeholder {marker} missing or out of order").into(),
            )
        })?;
        out.push_sql(&self.rest[..at]);
        self.rest = &self.rest[at + marker.len()..];
        self.next += 1;
        Ok(())
    }

    /// Pushes the text after the last placeholder; refuses any left over.
    fn finish(self, out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        if self.rest.contains('$') {
            return Err(diesel::result::Error::QueryBuilderError(
                "more placeholders in the SQL than binds".into(),
            ));
        }
        out.push_sql(self.rest);
        Ok(())
    }
}

/// Where `marker` (`$n`) starts in `sql`, when it is the first placeholder
/// there and not the prefix of a longer one (`$1` of `$12`).
fn find_placeholder(sql: &str, marker: &str) -> Option<usize> {
    let at = sql.find('$')?;
    let after = &sql[at..];
    let followed_by_digit =
        after[marker.len().min(after.len())..].starts_with(|c: char| c.is_ascii_digit());
    (after.starts_with(marker) && !followed_by_digit).then_some(at)
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
    let mut apply = String::new();
    let mut rest = APPLY_EVENT_SQL;
    let in_order = [
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
    for (n, value) in in_order.iter().enumerate().rev() {
        rest = rest
            .rsplit_once(&format!("${}", n + 1))
            .map_or(rest, |(before, after)| {
                apply.insert_str(0, after);
                apply.insert_str(0, value);
                before
            });
    }
    apply.insert_str(0, rest);
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

/// The placeholders of `sql`, in order of appearance: the benchmark maps each
/// to a pgbench variable.
pub fn placeholders(sql: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        found.extend(digits.parse::<usize>());
        rest = &rest[at + 1 + digits.len()..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_uses_each_placeholder_once_in_order() {
        assert_eq!(placeholders(APPLY_EVENT_SQL), (1..=15).collect::<Vec<_>>());
    }

    #[test]
    fn a_placeholder_is_not_the_prefix_of_a_longer_one() {
        assert_eq!(find_placeholder("a $12 b", "$1"), None);
        assert_eq!(find_placeholder("a $1 b", "$1"), Some(2));
        assert_eq!(find_placeholder("a $2 $1", "$1"), None);
    }

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
            read_status: "processing",
            read_amount_received_cents: 0,
            event_id: "evt",
            event_type: "t",
            payload: "{}",
            received_at: Utc::now(),
            processed_at: Utc::now(),
            status: "succeeded",
            amount_received_cents: 1,
            failure_code: None,
            failure_message: None,
            credit_cents: 1,
            currency: "usd",
        };
        let rendered = diesel::debug_query::<Pg, _>(&ApplyEvent(&effect)).to_string();
        let sql = rendered.split(" -- binds").next().unwrap();
        assert_eq!(sql, APPLY_EVENT_SQL);
    }
}
