//! Collection aliases, as Qdrant's `TableOfContent::update_aliases` and `AliasPersistence`
//! (`lib/storage/src/content_manager/{toc/collection_meta_ops.rs,alias_mapping.rs}`) keep them.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::meta::write_atomically;
use super::{Storage, StorageError, run_blocking};

const ALIASES_FILE: &str = "aliases.json";

/// One action of an `UpdateAliases` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AliasChange {
    Create { collection: String, alias: String },
    Rename { old: String, new: String },
    Delete { alias: String },
}

impl Storage {
    /// Applies `changes` in order, with every lookup blocked until they are all applied, as
    /// Qdrant does. Like Qdrant, a failing action stops the batch but keeps the actions before it:
    /// Qdrant saves each one as it goes.
    ///
    /// - create: the collection must exist (by its name, not through an alias) and the alias must
    ///   not be a collection's name; an existing alias of that name is re-pointed.
    /// - rename: the old alias must exist; the new name may shadow anything, as in Qdrant.
    /// - delete: deleting a missing alias succeeds.
    pub(crate) async fn update_aliases(
        &self,
        changes: Vec<AliasChange>,
    ) -> Result<(), StorageError> {
        let _lifecycle = self.lifecycle.lock().await;
        let (outcome, aliases) = {
            let mut state = self.write();
            let state = &mut *state;
            let mut outcome = Ok(());
            for change in changes {
                let step = match change {
                    AliasChange::Create { collection, alias } => {
                        if !state.collections.contains_key(&collection) {
                            Err(StorageError::collection_not_found(&collection))
                        } else if state.collections.contains_key(&alias) {
                            Err(StorageError::collection_exists(&alias))
                        } else {
                            state.aliases.insert(alias, collection);
                            Ok(())
                        }
                    }
                    AliasChange::Rename { old, new } => match state.aliases.remove(&old) {
                        Some(collection) => {
                            state.aliases.insert(new, collection);
                            Ok(())
                        }
                        None => Err(StorageError::NotFound {
                            description: format!("Alias {old} does not exists!"),
                        }),
                    },
                    AliasChange::Delete { alias } => {
                        state.aliases.remove(&alias);
                        Ok(())
                    }
                };
                if step.is_err() {
                    outcome = step;
                    break;
                }
            }
            (outcome, state.aliases.clone())
        };
        self.save_aliases(aliases).await?;
        outcome
    }

    /// The aliases of collection `name`, sorted; empty when there is none or no such collection
    /// (Qdrant does not check that the collection exists, nor resolve `name` as an alias).
    pub(crate) fn collection_aliases(&self, name: &str) -> Vec<String> {
        self.read()
            .aliases
            .iter()
            .filter(|(_, collection)| *collection == name)
            .map(|(alias, _)| alias.clone())
            .collect()
    }

    /// Every alias with its collection, collection by collection (sorted), as Qdrant lists them.
    pub(crate) fn all_aliases(&self) -> Vec<(String, String)> {
        let state = self.read();
        let mut aliases: Vec<_> = state
            .aliases
            .iter()
            .map(|(alias, collection)| (alias.clone(), collection.clone()))
            .collect();
        aliases.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        aliases
    }

    /// Writes the alias map to disk. Callers hold the lifecycle lock, so saves keep their order.
    pub(super) async fn save_aliases(
        &self,
        aliases: BTreeMap<String, String>,
    ) -> Result<(), StorageError> {
        let path = self.root.path().join(ALIASES_FILE);
        run_blocking(move || {
            save(&path, &aliases).map_err(|err| {
                StorageError::service_error(format!("failed to save {}: {err}", path.display()))
            })
        })
        .await
    }
}

/// Reads the alias map of a data directory; none when the file is missing.
pub(super) fn load(root: &Path) -> io::Result<BTreeMap<String, String>> {
    let path = root.join(ALIASES_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(err),
    };
    let value: Json = serde_json::from_slice(&bytes)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    Ok(value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(alias, collection)| Some((alias.clone(), collection.as_str()?.to_owned())))
        .collect())
}

pub(super) fn save(path: &Path, aliases: &BTreeMap<String, String>) -> io::Result<()> {
    let object: Map<String, Json> = aliases
        .iter()
        .map(|(alias, collection)| (alias.clone(), Json::String(collection.clone())))
        .collect();
    write_atomically(path, Json::Object(object).to_string().as_bytes())
}
