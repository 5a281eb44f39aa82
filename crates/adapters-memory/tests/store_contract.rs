//! The FactorStore contract, against the memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

use std::sync::Arc;

use adapters_memory::MemoryFactorStore;
use application::testing::store_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_meets_the_factor_store_contract() {
    store_contract::run_all(Arc::new(MemoryFactorStore::new())).await;
}

#[tokio::test]
async fn memory_store_meets_the_secret_store_contract() {
    store_contract::secrets_page_and_reseal(Arc::new(MemoryFactorStore::new())).await;
}
