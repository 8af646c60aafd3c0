//! The shared conformance suites, each test on a fresh database in its own
//! temporary directory.

mod common;

mod event_store_conformance {
    use super::common;
    shared::event_store_conformance!(async { common::event_store() });
    shared::event_store_conformance!(feed async { common::event_store() });
}

mod read_store_conformance {
    use super::common;
    shared::read_store_conformance!(async { common::read_store() });
    shared::read_batches_conformance!(async { common::read_store() });
}

mod execution_store_conformance {
    use super::common;
    shared::execution_store_conformance!(async { common::execution_store() });
}
