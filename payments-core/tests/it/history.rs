//! A user's history, newest first, a page at a time: keyset cursors that
//! neither skip nor repeat a row while rows arrive, that belong to their
//! user, and page sizes within bounds.

use payments_core::{Error, OpenIntentLimit};
use payments_test_support::World;

/// A world whose users may hold any number of unpaid intents, for the
/// payments' pages.
async fn world() -> World {
    World::with(|service| {
        service.with_open_intent_limit(OpenIntentLimit {
            max: 0,
            ..OpenIntentLimit::default()
        })
    })
    .await
}

/// What these tests add to the shared `World`.
trait Histories {
    async fn adjustments(&self, user: &str, prefix: &str, count: i64);
    async fn intents(&self, user: &str, count: usize) -> Vec<String>;
    async fn ledger_ids(&self, user: &str, page_size: i32, between: impl AsyncFnOnce())
    -> Vec<i64>;
}

impl Histories for World {
    /// `count` adjustments of +1..=count cents, keys `<prefix>-<n>`.
    async fn adjustments(&self, user: &str, prefix: &str, count: i64) {
        for n in 1..=count {
            self.service
                .adjust_balance(user, n, "test", &format!("{prefix}-{n}"), "tests")
                .await
                .unwrap();
        }
    }

    /// `count` unpaid intents of $5.
    async fn intents(&self, user: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let intent = self.service.create_payment_intent(user, 500, "").await;
            ids.push(intent.unwrap().intent_id);
        }
        ids
    }

    /// Every ledger entry id of the user, page by page, calling `between`
    /// after the first page.
    async fn ledger_ids(
        &self,
        user: &str,
        page_size: i32,
        between: impl AsyncFnOnce(),
    ) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        let mut between = Some(between);
        loop {
            let page = self
                .service
                .list_ledger_entries(user, page_size, &cursor)
                .await
                .unwrap();
            assert!(page.items.len() <= page_size as usize);
            ids.extend(page.items.iter().map(|e| e.entry_id));
            if let Some(between) = between.take() {
                between().await;
            }
            match page.next_cursor {
                Some(next) => cursor = next,
                None => return ids,
            }
        }
    }
}

#[tokio::test]
async fn ledger_pages_neither_skip_nor_repeat_while_100_entries_arrive() {
    let world = world().await;
    world.adjustments("ann", "before", 120).await;
    let all_before = world.ledger_ids("ann", 500, async || {}).await;
    assert_eq!(all_before.len(), 120);
    assert!(all_before.windows(2).all(|w| w[0] > w[1]), "newest first");

    let paged = world
        .ledger_ids("ann", 50, async || {
            world.adjustments("ann", "during", 100).await
        })
        .await;

    assert_eq!(paged, all_before, "every entry once, in order");
    let first = world
        .service
        .list_ledger_entries("ann", 0, "")
        .await
        .unwrap();
    assert_eq!(first.items.len(), 50, "0 asks for the default page");
    assert!(
        first.items[0].entry_id > all_before[0],
        "the new ones come first"
    );
    assert_eq!(first.items[0].reference, "during-100");
    assert_eq!(
        first.items[0].balance_after_cents,
        (1..=120).sum::<i64>() + (1..=100).sum::<i64>()
    );
}

#[tokio::test]
async fn a_statement_names_each_entrys_cause() {
    let world = world().await;
    world.adjustments("bob", "gift", 1).await;
    world
        .service
        .spend_credits("bob", 1, "job-1", "render")
        .await
        .unwrap();
    world
        .service
        .reverse_spend("bob", "job-1", "")
        .await
        .unwrap();

    let page = world
        .service
        .list_ledger_entries("bob", 10, "")
        .await
        .unwrap();

    let seen: Vec<(&str, i64, i64, &str)> = page
        .items
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.amount_cents,
                e.balance_after_cents,
                e.reference.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("spend_reversal", 1, 1, "job-1"),
            ("spend", -1, 0, "job-1"),
            ("adjustment", 1, 1, "gift-1"),
        ]
    );
    assert_eq!(page.items[1].reason.as_deref(), Some("render"));
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn payment_pages_neither_skip_nor_repeat_while_100_payments_arrive() {
    let world = world().await;
    let mut before = world.intents("cid", 60).await;
    before.reverse();

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut first = true;
    loop {
        let page = world
            .service
            .list_payments("cid", 25, &cursor)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|p| p.stripe_intent_id.clone()));
        if first {
            first = false;
            world.intents("cid", 100).await;
        }
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }

    assert_eq!(seen, before, "every payment once, newest first");
    let newest = world.service.list_payments("cid", 500, "").await.unwrap();
    assert_eq!(newest.items.len(), 160);
    assert_eq!(newest.next_cursor, None);
}

#[tokio::test]
async fn a_user_sees_only_their_rows_and_another_users_cursor_is_refused() {
    let world = world().await;
    world.adjustments("dee", "d", 3).await;
    world.adjustments("eve", "e", 3).await;
    world.intents("dee", 3).await;

    let dees = world
        .service
        .list_ledger_entries("dee", 2, "")
        .await
        .unwrap();
    assert!(dees.items.iter().all(|e| e.reference.starts_with("d-")));
    let cursor = dees.next_cursor.unwrap();
    let eve_with_dees_cursor = world.service.list_ledger_entries("eve", 2, &cursor).await;
    assert!(
        matches!(eve_with_dees_cursor, Err(Error::InvalidArgument(_))),
        "{eve_with_dees_cursor:?}"
    );
    assert_eq!(
        world
            .service
            .list_payments("eve", 10, "")
            .await
            .unwrap()
            .items,
        []
    );
    let payments = world.service.list_payments("dee", 2, "").await.unwrap();
    let payments_cursor = payments.next_cursor.unwrap();
    for (user, cursor) in [
        ("eve", payments_cursor.as_str()),
        // A cursor of the other list.
        ("dee", cursor.as_str()),
        ("dee", "P1.forged.1.00"),
    ] {
        let refused = world.service.list_payments(user, 2, cursor).await;
        assert!(
            matches!(refused, Err(Error::InvalidArgument(_))),
            "{user} {cursor}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn page_sizes_below_zero_or_above_500_are_refused() {
    let world = world().await;
    for size in [-1, 501, i32::MAX, i32::MIN] {
        let ledger = world.service.list_ledger_entries("fay", size, "").await;
        assert!(
            matches!(ledger, Err(Error::InvalidArgument(_))),
            "{size}: {ledger:?}"
        );
        let payments = world.service.list_payments("fay", size, "").await;
        assert!(
            matches!(payments, Err(Error::InvalidArgument(_))),
            "{size}: {payments:?}"
        );
    }
    let empty = world
        .service
        .list_ledger_entries("fay", 500, "")
        .await
        .unwrap();
    assert_eq!((empty.items.len(), empty.next_cursor), (0, None));
    let no_user = world.service.list_payments("", 10, "").await;
    assert!(matches!(no_user, Err(Error::InvalidArgument(_))));
}

/// What a forger does to a cursor: its position replaced by a time and an
/// id of their choosing (any i64, any bytes: NUL, controls, 300 of them),
/// or by any text, or one character put in anywhere.
#[derive(Debug, Clone)]
enum Forgery {
    Position(i64, String),
    Text(String),
    Insert(usize, char),
}

fn forgery() -> impl proptest::strategy::Strategy<Value = Forgery> {
    use proptest::prelude::*;
    // Ids mostly like Stripe's, with what a forger slips in among them.
    let id_char = prop_oneof![
        8 => prop::sample::select(('a'..='z').chain('0'..='9').chain(['_']).collect::<Vec<_>>()),
        1 => prop::sample::select(vec!['\0', '\n', '\u{202e}', '.', '%', 'é', '\u{10ffff}']),
    ];
    let id = prop_oneof![
        prop::collection::vec(id_char, 0..300).prop_map(|c| c.into_iter().collect::<String>()),
        any::<String>(),
    ];
    // Times anywhere, within ours, and past what Postgres holds.
    let micros = prop_oneof![
        any::<i64>(),
        0..=253_402_300_799_999_999i64,
        9_000_000_000_000_000_000..=i64::MAX,
        i64::MIN..=-62_000_000_000_000_000,
    ];
    prop_oneof![
        (micros, id).prop_map(|(micros, id)| Forgery::Position(micros, id)),
        any::<String>().prop_map(Forgery::Text),
        (0..80usize, any::<char>()).prop_map(|(at, c)| Forgery::Insert(at, c)),
    ]
}

fn forge(cursor: &str, forgery: &Forgery) -> String {
    // `<kind>.<tag>.`: what the forger keeps.
    let kept = cursor.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    match forgery {
        Forgery::Position(micros, id) => match cursor.starts_with("L1") {
            true => format!("{kept}.{micros}"),
            false => format!("{kept}.{micros}.{}", hex::encode(id)),
        },
        Forgery::Text(text) => format!("{kept}.{text}"),
        Forgery::Insert(at, c) => {
            let mut forged = cursor.to_owned();
            let at = (0..=*at.min(&forged.len()))
                .rev()
                .find(|i| forged.is_char_boundary(*i))
                .unwrap_or(0);
            forged.insert(at, *c);
            forged
        }
    }
}

/// Cursors forged from real ones, for both lists and against the real
/// database: each is read as a page of the caller's own list or refused
/// `InvalidArgument`, never a database error (a NUL in the intent id, a time
/// Postgres cannot hold once answered 500).
#[test]
fn forged_cursors_are_refused_or_read_never_a_failure() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let world = runtime.block_on(world());
    let cursors = runtime.block_on(async {
        world.adjustments("fay", "f", 3).await;
        world.intents("fay", 3).await;
        let ledger = world.service.list_ledger_entries("fay", 1, "").await;
        let payments = world.service.list_payments("fay", 1, "").await;
        [ledger.unwrap().next_cursor, payments.unwrap().next_cursor].map(Option::unwrap)
    });
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    let outcome = runner.run(&(0..2usize, forgery()), |(list, forgery)| {
        let forged = forge(&cursors[list], &forgery);
        let answer = runtime.block_on(async {
            match list {
                0 => (world.service.list_ledger_entries("fay", 2, &forged).await).map(|_| ()),
                _ => (world.service.list_payments("fay", 2, &forged).await).map(|_| ()),
            }
        });
        proptest::prop_assert!(
            matches!(answer, Ok(()) | Err(Error::InvalidArgument(_))),
            "{forged:?}: {answer:?}"
        );
        Ok(())
    });
    outcome.unwrap();
}
