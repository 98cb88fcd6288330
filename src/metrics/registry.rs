//! Every distribution's stats, by id.

use super::DistStats;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Every distribution's stats, shared by the data plane (which asks for the
/// `Arc` when it builds routes) and the admin API.
#[derive(Debug, Default)]
pub struct Registry {
    stats: RwLock<BTreeMap<String, Arc<DistStats>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The stats for an id, created on first use; the same `Arc` for the same
    /// id, so stats survive configuration changes.
    pub fn get_or_create(&self, id: &str) -> Arc<DistStats> {
        if let Some(s) = self.get(id) {
            return s;
        }
        let mut map = self.stats.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_owned()).or_insert_with(|| Arc::new(DistStats::new(id))).clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<DistStats>> {
        self.stats.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// All stats, sorted by id.
    pub fn all(&self) -> Vec<Arc<DistStats>> {
        self.stats.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn remove(&self, id: &str) {
        self.stats.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_shares_and_sorts() {
        let r = Registry::new();
        let a = r.get_or_create("b");
        let b = r.get_or_create("b");
        assert!(Arc::ptr_eq(&a, &b));
        r.get_or_create("a");
        assert_eq!(r.all().iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(r.get("c").is_none());
        r.remove("b");
        assert!(r.get("b").is_none());
        assert_eq!(r.all().len(), 1);
    }
}
