//! Configuration loading on arbitrary input: the bytes up to the first NUL are the TOML text,
//! each line after it a `NAME=value` environment variable (`QDRANT_URL`, `QDRANT_API_KEY` and
//! `QDRANT_TOWER__…` are read). `ConfigLoader::load` must answer a valid configuration or a
//! `ConfigError` whose text names what is wrong; it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qdrant_tower::config::{ConfigError, ConfigLoader};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (toml, env) = text.split_once('\0').unwrap_or((&text, ""));
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            // Short names stand for the real prefix, so that most lines are read.
            let k = k
                .strip_prefix('_')
                .map_or_else(|| k.to_owned(), |rest| format!("QDRANT_TOWER__{rest}"));
            (k, v.to_owned())
        })
        .collect();
    match ConfigLoader::new().toml(toml).env_vars(vars).load() {
        Ok(config) => assert!(config.validate().is_ok(), "loaded but invalid: {config:?}"),
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.trim().is_empty(), "empty error text: {error:?}");
            if let ConfigError::Invalid(invalid) = &error {
                assert!(
                    shown.contains(invalid.field()),
                    "{shown} does not name the field"
                );
            }
        }
    }
});
