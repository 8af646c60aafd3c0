//! The shared conformance suites (event store, read store, saga executions), each
//! test on its own fresh tables.
//!
//! The `shared::*_conformance!` macros generate plain `#[tokio::test]`s, and these
//! tests must be `#[ignore]`d when no DynamoDB endpoint is configured; so the
//! same shared test functions are called from `#[ignore]`d tests generated here.
//! The lists below must name every test of the shared macros (keep them in step).

mod common;

macro_rules! conformance {
    ($suite:ident, $make:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            #[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
            async fn $test() {
                let fresh = $make().await;
                shared::conformance::$suite::$test(&fresh.store).await;
            }
        )*
    };
}

mod event_store_conformance {
    use super::common;

    conformance!(event_store, common::event_store;
        an_unknown_stream_is_empty, appended_events_load_back_intact_in_version_order, the_first_event_is_version_one_alone, the_newest_snapshot_is_kept,
        a_stale_expected_version_is_a_conflict_and_writes_nothing, a_commit_over_several_streams_is_all_or_nothing,
        the_idempotency_record_is_stored_with_the_events_and_only_once, idempotency_keys_are_scoped_to_the_caller,
        a_version_conflict_does_not_store_the_idempotency_record, a_large_commit_is_atomic, a_stream_without_events_is_a_version_check,
        a_malformed_commit_is_refused_whole);

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs DynamoDB: set HEALTHPAY_DYNAMODB_ENDPOINT (./test.sh does)"]
    async fn of_concurrent_appends_at_one_version_exactly_one_wins() {
        let common::Fresh { store, tables, .. } = common::event_store().await;
        shared::conformance::event_store::of_concurrent_appends_at_one_version_exactly_one_wins(std::sync::Arc::new(store)).await;
        drop(tables);
    }
}

mod read_store_conformance {
    use super::common;

    conformance!(read_store, common::read_store;
        wallet_views_are_written_only_over_the_version_they_follow, an_owners_wallets_are_listed_oldest_first, wallets_are_read_in_one_batch_and_absent_ones_left_out,
        transactions_page_newest_first_and_record_once, transfer_views_are_version_guarded, checkpoints_start_at_zero_and_persist,
        documents_are_version_guarded_per_kind, listed_documents_page_greatest_key_first_with_their_latest_body);
}

mod read_batches_conformance {
    use super::common;

    conformance!(read_batches, common::read_store;
        a_batch_applies_each_write_as_its_one_row_method_would, views_are_read_together_and_absent_ones_left_out);
}

mod execution_store_conformance {
    use super::common;

    conformance!(execution_store, common::read_store;
        an_execution_name_starts_once, progress_is_persisted_and_running_ones_are_listed);
}
