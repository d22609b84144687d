// @generated automatically by Diesel CLI.

diesel::table! {
    balances (user_id) {
        user_id -> Text,
        balance_cents -> Int8,
        currency -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deployment (singleton) {
        singleton -> Bool,
        id -> Text,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> Int8,
        user_id -> Text,
        amount_cents -> Int8,
        currency -> Text,
        kind -> Text,
        payment_id -> Nullable<Int8>,
        stripe_intent_id -> Nullable<Text>,
        stripe_event_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Int8,
        stripe_intent_id -> Text,
        user_id -> Text,
        amount_cents -> Int8,
        amount_received_cents -> Int8,
        currency -> Text,
        status -> Text,
        failure_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stripe_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        object_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        outcome -> Text,
        payload -> Text,
        received_at -> Timestamptz,
        processed_at -> Timestamptz,
    }
}

diesel::joinable!(ledger_entries -> payments (payment_id));
diesel::joinable!(ledger_entries -> stripe_events (stripe_event_id));

diesel::allow_tables_to_appear_in_same_query!(balances, ledger_entries, payments, stripe_events,);
