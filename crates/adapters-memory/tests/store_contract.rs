//! The store contract, one test per property, against the memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_memory::MemoryFactorStore;

application::store_contract_tests!(Some(((), Arc::new(MemoryFactorStore::new()))));
