//! An intent has one owner forever, however the create writes: coalesced
//! with the payment row in one statement (one Postgres), or on Citus with
//! the owner claimed first on the intent's worker and the row written on
//! the user's only when the owner is that user.

use payments_core::Error;
use payments_core::db::{intent_owners, payments};
use payments_test_support::World;
use stripe_sandbox::Fault;

#[tokio::test]
async fn a_create_stores_its_owner_and_row_and_refuses_an_intent_another_user_owns() {
    for citus in [false, true] {
        let world = World::with(|service| service.on_citus(citus)).await;
        let intent = world.intent_for("amy", 1000).await;
        let mut conn = world.db.connection().await;
        assert_eq!(
            intent_owners::find(&mut conn, &intent).await.unwrap(),
            Some("amy".to_owned()),
            "citus: {citus}"
        );
        assert!(
            payments::find(&mut conn, "amy", &intent)
                .await
                .unwrap()
                .is_some()
        );

        // Stripe answers bob's create with amy's intent (it never should).
        let amys = world.stripe.intent_json(&intent).unwrap();
        world
            .stripe
            .fail_next("POST", 1, Fault::json(200, &amys))
            .await;
        let refused = world
            .service
            .create_payment_intent("bob", 1000, "bobs-key")
            .await;
        assert!(
            matches!(&refused, Err(Error::Internal(_))),
            "citus: {citus}: {refused:?}"
        );
        assert!(
            payments::find(&mut conn, "bob", &intent)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            intent_owners::find(&mut conn, &intent).await.unwrap(),
            Some("amy".to_owned())
        );
        world.check_ledger().await;
    }
}
