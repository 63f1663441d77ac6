//! Named breakers, for sharing them across a program and steering them from an admin API.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::config::BreakerConfig;
use super::error::ConfigError;
use super::handle::Breaker;
use super::snapshot::BreakerSnapshot;

/// A set of named breakers, each with a service type or tag (`"qdrant"`, `"search"`…).
///
/// Breakers are created on first use from the default configuration of their tag (or the
/// registry's default), and live until [`remove`](Self::remove)d. Cloning the registry
/// shares it. Looking a breaker up takes a read lock: do it when building services, not per
/// call (the services keep their [`Breaker`]).
///
/// ```
/// use std::time::Duration;
/// use qdrant_tower_layers::breaker::{BreakerConfig, BreakerRegistry};
///
/// let registry = BreakerRegistry::new();
/// registry.set_tag_default("search", BreakerConfig::default().with_consecutive_failures(3))?;
/// let breaker = registry.get_or_create("search/products", "search");
/// assert_eq!(breaker.config().consecutive_failures(), Some(3));
/// assert!(registry.get_or_create("search/products", "search").ptr_eq(&breaker));
///
/// breaker.force_open();
/// assert_eq!(registry.health_score(), 0.0);
/// assert_eq!(registry.reset_tag("search"), 1);
/// assert_eq!(registry.health_score(), 1.0);
/// # Ok::<(), qdrant_tower_layers::breaker::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct BreakerRegistry {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    breakers: BTreeMap<Arc<str>, Breaker>,
    tag_defaults: HashMap<Arc<str>, BreakerConfig>,
    default: BreakerConfig,
}

impl BreakerRegistry {
    /// An empty registry whose default configuration is [`BreakerConfig::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry with its own default configuration.
    pub fn with_default_config(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let registry = Self::new();
        registry.write().default = config;
        Ok(registry)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the configuration new breakers with `tag` get. Existing breakers keep theirs (see
    /// [`reconfigure_tag`](Self::reconfigure_tag)).
    pub fn set_tag_default(
        &self,
        tag: impl Into<Arc<str>>,
        config: BreakerConfig,
    ) -> Result<(), ConfigError> {
        config.validate()?;
        self.write().tag_defaults.insert(tag.into(), config);
        Ok(())
    }

    /// The configuration a new breaker with `tag` would get.
    pub fn default_config_for(&self, tag: &str) -> BreakerConfig {
        let inner = self.read();
        inner
            .tag_defaults
            .get(tag)
            .unwrap_or(&inner.default)
            .clone()
    }

    /// The breaker called `name`, created with `tag`'s default configuration if there is
    /// none. An existing breaker is returned as is, whatever its tag.
    pub fn get_or_create(&self, name: &str, tag: &str) -> Breaker {
        if let Some(breaker) = self.get(name) {
            return breaker;
        }
        let config = self.default_config_for(tag);
        self.get_or_create_with(name, tag, config)
            .expect("registry defaults are validated when set")
    }

    /// The breaker called `name`, created with `config` if there is none (an existing
    /// breaker keeps its configuration).
    pub fn get_or_create_with(
        &self,
        name: &str,
        tag: &str,
        config: BreakerConfig,
    ) -> Result<Breaker, ConfigError> {
        if let Some(breaker) = self.get(name) {
            return Ok(breaker);
        }
        let mut inner = self.write();
        if let Some(breaker) = inner.breakers.get(name) {
            return Ok(breaker.clone());
        }
        let name: Arc<str> = name.into();
        let breaker = Breaker::with_tag(name.clone(), Some(tag.into()), config)?;
        inner.breakers.insert(name, breaker.clone());
        Ok(breaker)
    }

    /// The breaker called `name`, if any.
    pub fn get(&self, name: &str) -> Option<Breaker> {
        self.read().breakers.get(name).cloned()
    }

    /// Removes the breaker called `name` from the registry (services using it keep it).
    pub fn remove(&self, name: &str) -> Option<Breaker> {
        self.write().breakers.remove(name)
    }

    /// Every breaker, by name.
    pub fn list(&self) -> Vec<Breaker> {
        self.read().breakers.values().cloned().collect()
    }

    /// Every breaker with `tag`, by name.
    pub fn list_tag(&self, tag: &str) -> Vec<Breaker> {
        self.read()
            .breakers
            .values()
            .filter(|b| b.tag() == Some(tag))
            .cloned()
            .collect()
    }

    /// A snapshot of every breaker, by name.
    pub fn snapshots(&self) -> Vec<BreakerSnapshot> {
        self.list().iter().map(Breaker::snapshot).collect()
    }

    /// How many breakers there are.
    pub fn len(&self) -> usize {
        self.read().breakers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [Resets](Breaker::reset) the breaker called `name`; returns whether it exists.
    pub fn reset(&self, name: &str) -> bool {
        self.get(name).map(|b| b.reset()).is_some()
    }

    /// Resets every breaker; returns how many.
    pub fn reset_all(&self) -> usize {
        let all = self.list();
        all.iter().for_each(Breaker::reset);
        all.len()
    }

    /// Resets every breaker with `tag`; returns how many.
    pub fn reset_tag(&self, tag: &str) -> usize {
        let tagged = self.list_tag(tag);
        tagged.iter().for_each(Breaker::reset);
        tagged.len()
    }

    /// [Reconfigures](Breaker::reconfigure) the breaker called `name`; returns whether it
    /// exists.
    pub fn reconfigure(&self, name: &str, config: BreakerConfig) -> Result<bool, ConfigError> {
        config.validate()?;
        match self.get(name) {
            Some(breaker) => breaker.reconfigure(config).map(|()| true),
            None => Ok(false),
        }
    }

    /// Reconfigures every breaker with `tag`, and makes `config` that tag's default for new
    /// breakers; returns how many were reconfigured.
    pub fn reconfigure_tag(&self, tag: &str, config: BreakerConfig) -> Result<usize, ConfigError> {
        self.set_tag_default(tag, config.clone())?;
        let tagged = self.list_tag(tag);
        for breaker in &tagged {
            breaker.reconfigure(config.clone())?;
        }
        Ok(tagged.len())
    }

    /// The share of breakers letting all calls through (closed, or disabled, or
    /// metrics-only): 1 when everything is healthy, 0 when every breaker is open or
    /// half-open. 1 for an empty registry.
    pub fn health_score(&self) -> f64 {
        let inner = self.read();
        if inner.breakers.is_empty() {
            return 1.0;
        }
        let closed = inner
            .breakers
            .values()
            .filter(|b| b.state().lets_all_through())
            .count();
        closed as f64 / inner.breakers.len() as f64
    }
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("BreakerRegistry")
            .field("breakers", &inner.breakers.keys().collect::<Vec<_>>())
            .field("tags", &inner.tag_defaults.keys().collect::<Vec<_>>())
            .finish()
    }
}
