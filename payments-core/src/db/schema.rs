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
    ignored_stripe_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        object_id -> Nullable<Text>,
        reason -> Text,
        payload -> Text,
        received_at -> Timestamptz,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    intent_owners (stripe_intent_id) {
        stripe_intent_id -> Text,
        user_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_entries (user_id, id) {
        user_id -> Text,
        id -> Int8,
        amount_cents -> Int8,
        currency -> Text,
        kind -> Text,
        stripe_intent_id -> Nullable<Text>,
        stripe_event_id -> Nullable<Text>,
        created_at -> Timestamptz,
        balance_after_cents -> Int8,
        idempotency_key -> Nullable<Text>,
        reason -> Nullable<Text>,
        actor -> Nullable<Text>,
        reverses_entry_id -> Nullable<Int8>,
        stripe_object_id -> Nullable<Text>,
    }
}

diesel::table! {
    parked_stripe_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        object_id -> Nullable<Text>,
        payload -> Text,
        attempts -> Int4,
        last_error -> Text,
        first_failed_at -> Timestamptz,
        last_failed_at -> Timestamptz,
        next_attempt_at -> Timestamptz,
    }
}

diesel::table! {
    payments (user_id, stripe_intent_id) {
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
        amount_refunded_cents -> Int8,
        amount_disputed_cents -> Int8,
    }
}

diesel::table! {
    reconciliation_cursor (singleton) {
        singleton -> Bool,
        events_created_at -> Int8,
        updated_at -> Timestamptz,
        events_last_id -> Nullable<Text>,
        events_seek_id -> Nullable<Text>,
    }
}

diesel::table! {
    stripe_events (user_id, event_id) {
        event_id -> Text,
        event_type -> Text,
        stripe_intent_id -> Text,
        user_id -> Text,
        payload -> Text,
        received_at -> Timestamptz,
        processed_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    balances,
    ignored_stripe_events,
    intent_owners,
    ledger_entries,
    parked_stripe_events,
    payments,
    reconciliation_cursor,
    stripe_events,
);
