//! The wrappers this pgfed build offers, by the name DDL uses (`FOREIGN DATA WRAPPER postgres`).

use std::collections::BTreeMap;
use std::sync::Arc;

use pgfed_connector_sdk::Wrapper;

/// The known wrappers. `CREATE SERVER` naming one of them is pgfed's; any other wrapper name is
/// left to Postgres (a real postgres_fdw, say).
#[derive(Clone, Default)]
pub struct Registry {
    wrappers: BTreeMap<&'static str, Arc<dyn Wrapper>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.wrappers.keys()).finish()
    }
}

impl Registry {
    pub fn new(wrappers: impl IntoIterator<Item = Arc<dyn Wrapper>>) -> Self {
        Self { wrappers: wrappers.into_iter().map(|w| (w.name(), w)).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Wrapper>> {
        self.wrappers.get(name)
    }

    /// The wrapper names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.wrappers.keys().copied().collect()
    }
}
