//! Spending credits and giving spends back: never an overdraft, once per
//! key, a reversal once; bad input refused with nothing written.

use futures::future::join_all;

use payments_core::Error;
use payments_core::domain::LedgerKind;
use payments_test_support::{World, count_rows};

/// Spends coalesced, except on Citus, where a batch would span shards.
async fn world() -> World {
    world_coalescing(!payments_test_support::on_citus()).await
}

async fn world_coalescing(on: bool) -> World {
    World::with(|service| service.with_spend_coalescing(on)).await
}

fn insufficient(balance_cents: i64, asked_cents: i64) -> Error {
    Error::InsufficientCredits {
        balance_cents,
        asked_cents,
    }
}

#[tokio::test]
async fn a_spend_takes_credits_and_books_one_entry_with_the_balance_after() {
    let world = world().await;
    world.top_up("ann", 1000).await;

    let spent = world
        .service
        .spend_credits("ann", 300, "render-1", "render job 1")
        .await
        .unwrap();

    assert_eq!(spent.balance_cents.get(), 700);
    assert_eq!(world.balance("ann").await, 700);
    let entries = world.entries("ann").await;
    assert_eq!(entries.len(), 2);
    let spend = &entries[1];
    assert_eq!(spend.id, spent.spend_id);
    assert_eq!(spend.kind, LedgerKind::Spend);
    assert_eq!(spend.amount_cents, -300);
    assert_eq!(spend.balance_after_cents, 700);
    assert_eq!(spend.idempotency_key.as_deref(), Some("render-1"));
    assert_eq!(spend.reason.as_deref(), Some("render job 1"));
    assert_eq!(spend.stripe_intent_id, None);
    assert_eq!(entries[0].balance_after_cents, 1000, "the top-up's");
    world.check_ledger().await;
}

#[tokio::test]
async fn a_replayed_spend_answers_the_first_answer_and_writes_nothing() {
    let world = world().await;
    world.top_up("bob", 2000).await;
    let first = world.spend("bob", 500, "job-7").await.unwrap();
    // The balance moves on between the two calls.
    world.spend("bob", 100, "job-8").await.unwrap();
    let entries = world.entry_count().await;

    let again = world.spend("bob", 500, "job-7").await.unwrap();

    assert_eq!(again, first, "same spend id, same balance right after it");
    assert_eq!(first.balance_cents.get(), 1500);
    assert_eq!(world.entry_count().await, entries);
    assert_eq!(world.balance("bob").await, 1400);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_replay_is_answered_even_when_the_balance_no_longer_covers_it() {
    let world = world().await;
    world.top_up("cid", 500).await;
    let first = world.spend("cid", 500, "all-of-it").await.unwrap();
    assert_eq!(first.balance_cents.get(), 0);

    assert_eq!(world.spend("cid", 500, "all-of-it").await, Ok(first));
    assert_eq!(world.balance("cid").await, 0);
    world.check_ledger().await;
}

#[tokio::test]
async fn the_same_key_with_another_amount_is_refused_and_writes_nothing() {
    let world = world().await;
    world.top_up("dee", 2000).await;
    world.spend("dee", 500, "job-1").await.unwrap();
    let entries = world.entry_count().await;

    let refused = world.spend("dee", 600, "job-1").await;

    assert!(
        matches!(&refused, Err(Error::IdempotencyConflict(message)) if message.contains("500")),
        "{refused:?}"
    );
    assert_eq!(world.entry_count().await, entries);
    assert_eq!(world.balance("dee").await, 1500);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_short_balance_refuses_the_spend_whole() {
    let world = world().await;
    world.top_up("eve", 500).await;

    assert_eq!(
        world.spend("eve", 501, "big").await,
        Err(insufficient(500, 501))
    );
    // A user who never paid has nothing to spend.
    assert_eq!(world.spend("nobody", 1, "k").await, Err(insufficient(0, 1)));

    assert_eq!(world.balance("eve").await, 500);
    assert_eq!(world.entry_count().await, 1, "the top-up only");
    // The refused key is still free: a later spend that fits may use it.
    let spent = world.spend("eve", 500, "big").await.unwrap();
    assert_eq!(spent.balance_cents.get(), 0);
    world.check_ledger().await;
}

/// DESIGN.md: any number of concurrent spends on one user never overdraw it.
// Coalesced (the default): the single-threaded test runtime queues all 200
// before a lane runs, so they go in batches of up to 128.
#[tokio::test]
async fn two_hundred_concurrent_spends_on_a_balance_covering_120_let_exactly_120_through() {
    exactly_120_of_200_concurrent_spends(world().await).await;
}

// Each spend its own transaction (Citus): the 200 wait on the row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coalescing_200_concurrent_spends_also_let_exactly_120_through() {
    exactly_120_of_200_concurrent_spends(world_coalescing(false).await).await;
}

async fn exactly_120_of_200_concurrent_spends(world: World) {
    world.top_up("fay", 2000).await;
    world.top_up("fay", 1000).await;
    assert_eq!(world.balance("fay").await, 3000);

    let keys: Vec<String> = (0..200).map(|n| format!("spend-{n}")).collect();
    let outcomes = join_all(keys.iter().map(|key| world.spend("fay", 25, key))).await;

    let spent = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::InsufficientCredits { .. })))
        .count();
    assert_eq!((spent, refused), (120, 80), "{outcomes:?}");
    assert_eq!(world.balance("fay").await, 0);
    let entries = world.entries("fay").await;
    assert_eq!(entries.len(), 2 + 120);
    // The balance after every commit, in commit order: never below zero.
    assert!(
        entries.iter().all(|e| e.balance_after_cents >= 0),
        "{entries:?}"
    );
    let mut balances_after: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|s| s.balance_cents.get())
        .collect();
    balances_after.sort_unstable();
    assert_eq!(
        balances_after,
        (0..120).map(|n| n * 25).collect::<Vec<_>>(),
        "each spend answered its own balance after"
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn the_same_spend_sent_20_times_at_once_is_booked_once() {
    let world = world().await;
    world.top_up("gus", 1000).await;

    let outcomes = join_all((0..20).map(|_| world.spend("gus", 300, "once"))).await;

    let first = outcomes[0].clone().unwrap();
    assert!(outcomes.iter().all(|o| *o == Ok(first)), "{outcomes:?}");
    assert_eq!(first.balance_cents.get(), 700);
    assert_eq!(world.balance("gus").await, 700);
    assert_eq!(world.entries("gus").await.len(), 2);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_spend_is_reversed_once() {
    let world = world().await;
    world.top_up("hal", 1000).await;
    let spent = world.spend("hal", 400, "job").await.unwrap();
    world.spend("hal", 100, "other").await.unwrap();

    let balance = world
        .service
        .reverse_spend("hal", "job", "the job failed")
        .await
        .unwrap();
    assert_eq!(balance.get(), 900);
    // A second call answers the balance as it is and writes nothing.
    let entries = world.entry_count().await;
    world.spend("hal", 50, "third").await.unwrap();
    assert_eq!(
        world
            .service
            .reverse_spend("hal", "job", "")
            .await
            .unwrap()
            .get(),
        850
    );
    assert_eq!(
        world.entry_count().await,
        entries + 1,
        "the third spend only"
    );

    let reversal = world
        .entries("hal")
        .await
        .into_iter()
        .find(|e| e.kind == LedgerKind::SpendReversal)
        .unwrap();
    assert_eq!(reversal.amount_cents, 400);
    assert_eq!(reversal.reverses_entry_id, Some(spent.spend_id));
    assert_eq!(reversal.reason.as_deref(), Some("the job failed"));
    assert_eq!(reversal.balance_after_cents, 900);
    // The reversed spend's key still replays the spend as first answered.
    assert_eq!(world.spend("hal", 400, "job").await, Ok(spent));
    world.check_ledger().await;
}

#[tokio::test]
async fn twenty_concurrent_reversals_of_one_spend_give_it_back_once() {
    let world = world().await;
    world.top_up("ida", 1000).await;
    world.spend("ida", 600, "job").await.unwrap();

    let outcomes = join_all((0..20).map(|_| world.service.reverse_spend("ida", "job", ""))).await;

    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().map(|c| c.get()) == Ok(1000)),
        "{outcomes:?}"
    );
    let reversals = world
        .entries("ida")
        .await
        .iter()
        .filter(|e| e.kind == LedgerKind::SpendReversal)
        .count();
    assert_eq!(reversals, 1);
    assert_eq!(world.balance("ida").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_unknown_or_another_users_spend_key_is_not_found_and_nothing_is_written() {
    let world = world().await;
    world.top_up("jan", 1000).await;
    world.top_up("kim", 1000).await;
    world.spend("jan", 300, "jans-job").await.unwrap();
    let entries = world.entry_count().await;

    for (user, key) in [
        ("kim", "jans-job"),
        ("jan", "no-such-job"),
        ("nobody", "jans-job"),
    ] {
        let outcome = world.service.reverse_spend(user, key, "").await;
        assert!(
            matches!(outcome, Err(Error::NotFound(_))),
            "{user} {key}: {outcome:?}"
        );
    }

    assert_eq!(world.entry_count().await, entries);
    assert_eq!(world.balance("jan").await, 700);
    assert_eq!(world.balance("kim").await, 1000);
    world.check_ledger().await;
}

/// Another user's key is theirs alone: the same key spends once per user.
#[tokio::test]
async fn keys_are_per_user() {
    let world = world().await;
    world.top_up("lee", 1000).await;
    world.top_up("max", 1000).await;

    let lee = world.spend("lee", 100, "shared-key").await.unwrap();
    let max = world.spend("max", 200, "shared-key").await.unwrap();

    assert_ne!(lee.spend_id, max.spend_id);
    assert_eq!(world.balance("lee").await, 900);
    assert_eq!(world.balance("max").await, 800);
    world.check_ledger().await;
}

#[tokio::test]
async fn bad_spends_and_reversals_are_invalid_arguments_and_write_nothing() {
    let world = world().await;
    world.top_up("ned", 1000).await;
    world.spend("ned", 100, "ok").await.unwrap();
    let entries = world.entry_count().await;
    let long_key = "k".repeat(256);
    let long_reason = "r".repeat(201);

    let spends: [(&str, i64, &str, &str); 11] = [
        ("ned", 0, "k", ""),
        ("ned", -100, "k", ""),
        ("ned", i64::MIN, "k", ""),
        ("ned", 100_000_000_001, "k", ""),
        ("ned", i64::MAX, "k", ""),
        ("ned", 100, "", ""),
        ("ned", 100, &long_key, ""),
        ("ned", 100, "clé", ""),
        ("ned", 100, "has space", ""),
        ("ned", 100, "k", &long_reason),
        ("", 100, "k", ""),
    ];
    for (user, cents, key, reason) in spends {
        let outcome = world.service.spend_credits(user, cents, key, reason).await;
        assert!(
            matches!(outcome, Err(Error::InvalidArgument(_))),
            "{user:?} {cents} {key:?} {reason:?}: {outcome:?}"
        );
    }
    for (user, key, reason) in [
        ("ned", "", ""),
        ("ned", long_key.as_str(), ""),
        ("ned", "ok", long_reason.as_str()),
        ("ned", "ok", "control\u{7}char"),
        ("", "ok", ""),
    ] {
        let outcome = world.service.reverse_spend(user, key, reason).await;
        assert!(
            matches!(outcome, Err(Error::InvalidArgument(_))),
            "{user:?} {key:?} {reason:?}: {outcome:?}"
        );
    }

    assert_eq!(world.entry_count().await, entries);
    assert_eq!(world.balance("ned").await, 900);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_adjustment_is_signed_explained_and_booked_once_per_key() {
    let world = world().await;
    let svc = &world.service;
    // A credit to a user who never paid makes their balance.
    let credit = svc
        .adjust_balance(
            "olu",
            700,
            "goodwill for the outage",
            "adj-1",
            "ops@example.com",
        )
        .await
        .unwrap();
    assert_eq!(credit.balance_cents.get(), 700);
    let debit = svc
        .adjust_balance(
            "olu",
            -200,
            "double credit by hand",
            "adj-2",
            "ops@example.com",
        )
        .await
        .unwrap();
    assert_eq!(debit.balance_cents.get(), 500);

    // A replay answers the first answer; another amount under the key is refused.
    let entries = world.entry_count().await;
    assert_eq!(
        svc.adjust_balance(
            "olu",
            700,
            "goodwill for the outage",
            "adj-1",
            "someone else"
        )
        .await,
        Ok(credit)
    );
    assert!(matches!(
        svc.adjust_balance("olu", 701, "goodwill", "adj-1", "ops")
            .await,
        Err(Error::IdempotencyConflict(_))
    ));
    // A debit never overdraws, also for a user with no balance at all.
    assert_eq!(
        svc.adjust_balance("olu", -501, "too much", "adj-3", "ops")
            .await,
        Err(insufficient(500, 501))
    );
    assert_eq!(
        svc.adjust_balance("nobody", -1, "none", "adj-1", "ops")
            .await,
        Err(insufficient(0, 1))
    );
    assert_eq!(world.entry_count().await, entries);
    assert_eq!(world.balance("nobody").await, 0);
    assert_eq!(
        count_rows(&mut world.db.connection().await, "balances").await,
        1,
        "a refused debit makes no balance row"
    );

    let entries = world.entries("olu").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].kind, LedgerKind::Adjustment);
    assert_eq!(
        entries[0].reason.as_deref(),
        Some("goodwill for the outage")
    );
    assert_eq!(entries[0].actor.as_deref(), Some("ops@example.com"));
    assert_eq!(entries[1].amount_cents, -200);
    assert_eq!(entries[1].balance_after_cents, 500);
    world.check_ledger().await;
}

#[tokio::test]
async fn bad_adjustments_are_invalid_arguments_and_write_nothing() {
    let world = world().await;
    let long_reason = "r".repeat(201);
    let long_actor = "a".repeat(129);
    let bad: [(&str, i64, &str, &str, &str); 10] = [
        ("pam", 0, "why", "k", "ops"),
        ("pam", 100_000_000_001, "why", "k", "ops"),
        ("pam", -100_000_000_001, "why", "k", "ops"),
        ("pam", i64::MIN, "why", "k", "ops"),
        ("pam", 100, "", "k", "ops"),
        ("pam", 100, &long_reason, "k", "ops"),
        ("pam", 100, "why", "", "ops"),
        ("pam", 100, "why", "k", ""),
        ("pam", 100, "why", "k", &long_actor),
        ("", 100, "why", "k", "ops"),
    ];
    for (user, cents, reason, key, actor) in bad {
        let outcome = world
            .service
            .adjust_balance(user, cents, reason, key, actor)
            .await;
        assert!(
            matches!(outcome, Err(Error::InvalidArgument(_))),
            "{user:?} {cents} {reason:?} {key:?} {actor:?}: {outcome:?}"
        );
    }
    assert_eq!(world.entry_count().await, 0);
    assert_eq!(
        count_rows(&mut world.db.connection().await, "balances").await,
        0
    );
}
