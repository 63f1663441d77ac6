//! Property tests of configuration loading (the short CI version of the `config` fuzz target,
//! `fuzz/fuzz_targets/config.rs`): whatever the TOML text and the environment hold,
//! `ConfigLoader::load` answers a config or a `ConfigError` whose text names the key (or says
//! what is wrong), never panics, and never shows a secret; and valid settings load to exactly
//! the values written, the same from a file as from the environment.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use qdrant_tower::Profile;
use qdrant_tower::config::{ConfigError, ConfigLoader, StackConfig};

/// Every section and key the configuration knows, with a few near misses and strangers.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "profile",
            "name",
            "endpoints",
            "api_key",
            "deadline",
            "attempt_timeout",
            "idempotent_create",
            "balance",
            "dedline",
            "zzz",
        ],
    ),
    ("connections", &["min", "max", "grow_at", "idle", "maxx"]),
    ("retry", &["time_scale", "timescale"]),
    ("retry.connect", &["attempts", "base_delay", "max_delay"]),
    (
        "retry.unavailable",
        &["attempts", "base_delay", "max_delay"],
    ),
    ("retry.bogus", &["attempts"]),
    (
        "breaker",
        &[
            "failure_threshold",
            "failure_rate",
            "minimum_calls",
            "open_wait",
            "half_open_trials",
            "half_open_successes",
            "keyed",
            "failure_treshold",
        ],
    ),
    (
        "health",
        &[
            "interval",
            "probe_timeout",
            "unhealthy_after",
            "healthy_after",
        ],
    ),
    ("metrics", &["collection_labels"]),
    (
        "admin",
        &[
            "token",
            "protect_reads",
            "open_alert_after",
            "error_rate_alert",
        ],
    ),
    (
        "cache",
        &[
            "collections",
            "ttl",
            "max_entries",
            "max_bytes",
            "stale_for",
        ],
    ),
    ("fallback", &["stale", "on"]),
    (
        "queue",
        &[
            "dir",
            "collections",
            "max_records",
            "max_bytes",
            "replay_interval",
        ],
    ),
    (
        "hedge",
        &[
            "operations",
            "delay",
            "percentile",
            "min_samples",
            "floor",
            "budget_percent",
            "budget_per_second",
        ],
    ),
    (
        "outlier",
        &[
            "consecutive_failures",
            "base_ejection",
            "max_ejection",
            "max_ejected_share",
            "interval",
            "minimum_hosts",
            "request_volume",
            "stdev_factor",
        ],
    ),
    (
        "discovery",
        &[
            "interval",
            "timeout",
            "rest_port_offset",
            "grpc_port_offset",
            "max_endpoints",
        ],
    ),
    ("nonsense", &["key"]),
];

/// `n` cases, or `PROPTEST_CASES` when set (for a longer run by hand).
fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        // No `*.proptest-regressions` files next to the tests: findings are kept as named
        // cases below instead.
        failure_persistence: None,
        ..ProptestConfig::with_cases(n)
    }
}

/// A TOML value of any type, including the ones no key takes.
#[derive(Clone, Debug)]
enum TomlValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<TomlValue>),
    Table(Vec<(String, TomlValue)>),
}

impl TomlValue {
    fn render(&self) -> String {
        match self {
            TomlValue::Int(n) => n.to_string(),
            TomlValue::Float(x) if x.is_nan() => "nan".into(),
            TomlValue::Float(x) if x.is_infinite() => if *x > 0.0 { "inf" } else { "-inf" }.into(),
            TomlValue::Float(x) => format!("{x:?}"),
            TomlValue::Bool(b) => b.to_string(),
            TomlValue::Str(s) => quote(s),
            TomlValue::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Self::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TomlValue::Table(entries) => format!(
                "{{ {} }}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{} = {}", quote(k), v.render()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// A TOML basic string (JSON's escapes are all valid TOML escapes).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Strings a key might be given: durations (good, huge, negative, malformed), URLs, enum
/// names, numbers as text, and anything at all.
fn plausible_string() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u64..100_000,
            prop::sample::select(vec!["ms", "s", "m", "h", "d", "y", "ns", "us", ""])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        Just("99999999999999999999999y".to_owned()),
        Just("18446744073709551615s".to_owned()),
        Just("-1s".to_owned()),
        Just("1m 30s".to_owned()),
        Just("".to_owned()),
        Just(" ".to_owned()),
        "(http|https|ftp)://[a-z0-9.:-]{0,12}",
        prop::sample::select(vec![
            "production",
            "staging",
            "development",
            "testing",
            "round_robin",
            "p2c",
            "collection",
            "collection_and_class",
            "none",
            "search",
            "upsert",
            "unavailable",
            "nope",
        ])
        .prop_map(str::to_owned),
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?",
        ".{0,16}",
    ]
}

fn toml_value() -> impl Strategy<Value = TomlValue> {
    let leaf = prop_oneof![
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(TomlValue::Int),
        prop_oneof![
            Just(0.0f64),
            Just(0.5),
            Just(1.0),
            Just(-0.5),
            Just(1e300),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>(),
        ]
        .prop_map(TomlValue::Float),
        any::<bool>().prop_map(TomlValue::Bool),
        plausible_string().prop_map(TomlValue::Str),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(TomlValue::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(TomlValue::Table),
        ]
    })
}

/// A key of a section: a known one, or any name.
fn section_with_keys() -> impl Strategy<Value = (String, Vec<(String, TomlValue)>)> {
    (0..SECTIONS.len()).prop_flat_map(|i| {
        let (section, keys) = SECTIONS[i];
        let key = prop_oneof![
            4 => prop::sample::select(keys.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_]{1,10}",
        ];
        (
            Just(section.to_owned()),
            prop::collection::vec((key, toml_value()), 0..5),
        )
    })
}

/// A TOML document of known and unknown sections and keys with values of random types.
fn structured_toml() -> impl Strategy<Value = String> {
    prop::collection::vec(section_with_keys(), 0..5).prop_map(|sections| {
        let mut text = String::new();
        let mut seen = std::collections::HashSet::new();
        // Top-level keys first: after a `[section]` header they would belong to it.
        let mut ordered = sections;
        ordered.sort_by_key(|(section, _)| !section.is_empty());
        for (section, keys) in ordered {
            if !section.is_empty() {
                if !seen.insert(section.clone()) {
                    // A repeated header is a TOML error of its own; keep it rare but present.
                    if section.len() % 2 == 0 {
                        continue;
                    }
                }
                text.push_str(&format!("[{section}]\n"));
            }
            for (key, value) in keys {
                text.push_str(&format!("{key} = {}\n", value.render()));
            }
        }
        text
    })
}

/// Environment variables with the real names and prefix, and any value.
fn env_var() -> impl Strategy<Value = (String, String)> {
    let known_path = (0..SECTIONS.len()).prop_flat_map(|i| {
        let (section, keys) = SECTIONS[i];
        prop::sample::select(keys.to_vec()).prop_map(move |key| {
            let mut path: Vec<String> = section
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            path.push(key.to_owned());
            path.join("__").to_ascii_uppercase()
        })
    });
    let name = prop_oneof![
        1 => Just("QDRANT_URL".to_owned()),
        1 => Just("QDRANT_API_KEY".to_owned()),
        6 => known_path.prop_map(|path| format!("QDRANT_TOWER__{path}")),
        2 => "[A-Za-z_]{0,12}(__[A-Za-z_]{0,6}){0,3}".prop_map(|path| format!("QDRANT_TOWER__{path}")),
        1 => "[A-Z_]{0,16}",
    ];
    let value = prop_oneof![
        plausible_string(),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| x.to_string()),
        Just("true".to_owned()),
        "[a-z:/0-9, ]{0,30}",
    ];
    (name, value)
}

/// The error's text is there, and names the key it is about (or says what is wrong).
fn check_error(error: &ConfigError, secrets: &[&str]) -> Result<(), TestCaseError> {
    let text = error.to_string();
    prop_assert!(!text.trim().is_empty(), "empty error text: {error:?}");
    match error {
        ConfigError::Unknown { given, key, .. } => {
            prop_assert!(
                text.contains(given.as_str()),
                "{text} does not name {given}"
            );
            prop_assert!(text.contains(key.as_str()), "{text} does not name {key}");
        }
        ConfigError::Parse { key, reason, .. } => {
            prop_assert!(!reason.trim().is_empty(), "no reason: {error:?}");
            prop_assert!(text.contains(key.as_str()), "{text} does not name {key}");
        }
        ConfigError::Invalid(invalid) => {
            prop_assert!(!invalid.field().is_empty() && !invalid.reason().trim().is_empty());
            prop_assert!(
                text.contains(invalid.field()),
                "{text} does not name the field"
            );
        }
        other => prop_assert!(false, "unexpected error without a file: {other:?}"),
    }
    for secret in secrets {
        prop_assert!(!text.contains(secret), "{text} shows a secret");
        prop_assert!(
            !format!("{error:?}").contains(secret),
            "{error:?} shows a secret"
        );
    }
    Ok(())
}

fn check_load(loader: &ConfigLoader, secrets: &[&str]) -> Result<(), TestCaseError> {
    match loader.load() {
        Ok(config) => {
            prop_assert!(config.validate().is_ok(), "loaded but invalid: {config:?}");
            let debug = format!("{config:?}");
            for secret in secrets {
                prop_assert!(!debug.contains(secret), "Debug shows a secret");
            }
            Ok(())
        }
        Err(error) => check_error(&error, secrets),
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any text at all, as the file's contents.
    #[test]
    fn any_text_loads_or_names_what_is_wrong(text in ".{0,200}") {
        check_load(&ConfigLoader::new().toml(text), &[])?;
    }

    /// TOML-looking lines of known and unknown keys with random values and types.
    #[test]
    fn tomlish_text_loads_or_names_what_is_wrong(
        lines in prop::collection::vec(
            "\\[?[a-z_.]{0,20}\\]?( ?= ?(\"[^\"\\n]{0,12}\"|[0-9.e+-]{1,10}|true|\\[[0-9, ]{0,8}\\]|\\{[^}\\n]{0,10}\\}))?",
            0..8,
        )
    ) {
        check_load(&ConfigLoader::new().toml(lines.join("\n")), &[])?;
    }

    /// Structured documents of plausible sections and keys, values of random types, the
    /// environment over them, and secrets that must never be shown.
    #[test]
    fn structured_toml_and_env_load_or_name_the_key(
        text in structured_toml(),
        env in prop::collection::vec(env_var(), 0..6),
        secret in "[a-z0-9]{20}",
        where_ in 0..3u8,
    ) {
        let secret = format!("sk-{secret}");
        let mut loader = ConfigLoader::new().toml(text.clone()).env_vars(env);
        match where_ {
            0 => loader = loader.env_vars([("QDRANT_API_KEY", secret.as_str())]),
            1 => loader = loader.env_vars([("QDRANT_TOWER__ADMIN__TOKEN", secret.as_str())]),
            _ => loader = ConfigLoader::new()
                .toml(format!("api_key = {}\n{text}", quote(&secret)))
                .env_vars(Vec::<(String, String)>::new()),
        }
        check_load(&loader, &[&secret])?;
    }

    /// The environment alone: real prefixes and names, any values.
    #[test]
    fn any_environment_loads_or_names_the_variable(
        env in prop::collection::vec(env_var(), 0..10),
    ) {
        check_load(&ConfigLoader::new().env_vars(env), &[])?;
    }
}

/// Valid settings, written once as TOML and once as environment variables.
#[derive(Clone, Debug)]
struct Valid {
    profile: Profile,
    name: String,
    endpoints: Vec<String>,
    deadline_ms: u64,
    attempt_ms: u64,
    min: usize,
    max: usize,
    grow_at: usize,
    time_scale: f64,
    attempts: u32,
    base_ms: u64,
    max_ms: u64,
    failure_threshold: u32,
    trials: u32,
    successes: u32,
    open_wait_ms: u64,
    unhealthy_after: u32,
    collection_labels: usize,
    p2c: bool,
    idempotent_create: bool,
}

fn valid() -> impl Strategy<Value = Valid> {
    let profile = prop::sample::select(Profile::ALL.to_vec());
    let endpoints = prop::collection::vec(
        ("(http|https)", "[a-z][a-z0-9-]{0,10}", 1u16..=65535)
            .prop_map(|(scheme, host, port)| format!("{scheme}://{host}:{port}")),
        1..4,
    );
    (
        (
            profile,
            "[a-z][a-z0-9_-]{0,15}",
            endpoints,
            1u64..100_000_000,
            1u64..=100,
        ),
        (1usize..=256, 0usize..=256, 1usize..10_000),
        (
            prop_oneof![Just(1.0f64), 1e-6f64..1e6],
            1u32..20,
            0u64..100_000,
            0u64..100_000,
        ),
        (
            1u32..=65_535,
            1u32..=65_535,
            any::<u32>(),
            1u64..10_000_000,
            1u32..100,
        ),
        (0usize..=1_000, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (profile, name, endpoints, deadline_ms, attempt_pct),
                (min, extra, grow_at),
                (time_scale, attempts, base_ms, more_ms),
                (failure_threshold, trials, successes, open_wait_ms, unhealthy_after),
                (collection_labels, p2c, idempotent_create),
            )| Valid {
                profile,
                name,
                endpoints,
                deadline_ms,
                attempt_ms: (deadline_ms * attempt_pct / 100).max(1),
                min,
                max: (min + extra).min(256),
                grow_at,
                time_scale,
                attempts,
                base_ms,
                max_ms: base_ms + more_ms,
                failure_threshold,
                trials,
                successes: 1 + successes % trials,
                open_wait_ms,
                unhealthy_after,
                collection_labels,
                p2c,
                idempotent_create,
            },
        )
}

fn profile_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Development => "development",
        Profile::Staging => "staging",
        Profile::Production => "production",
        _ => "testing",
    }
}

impl Valid {
    fn toml(&self) -> String {
        let endpoints: Vec<String> = self.endpoints.iter().map(|e| quote(e)).collect();
        format!(
            "profile = \"{}\"\nname = {}\nendpoints = [{}]\ndeadline = \"{}ms\"\n\
             attempt_timeout = \"{}ms\"\nidempotent_create = {}\nbalance = \"{}\"\n\
             [connections]\nmin = {}\nmax = {}\ngrow_at = {}\n\
             [retry]\ntime_scale = {:?}\n[retry.unavailable]\nattempts = {}\n\
             base_delay = \"{}ms\"\nmax_delay = \"{}ms\"\n\
             [breaker]\nfailure_threshold = {}\nhalf_open_trials = {}\n\
             half_open_successes = {}\nopen_wait = \"{}ms\"\n\
             [health]\nunhealthy_after = {}\n[metrics]\ncollection_labels = {}\n",
            profile_name(self.profile),
            quote(&self.name),
            endpoints.join(", "),
            self.deadline_ms,
            self.attempt_ms,
            self.idempotent_create,
            if self.p2c { "p2c" } else { "round_robin" },
            self.min,
            self.max,
            self.grow_at,
            self.time_scale,
            self.attempts,
            self.base_ms,
            self.max_ms,
            self.failure_threshold,
            self.trials,
            self.successes,
            self.open_wait_ms,
            self.unhealthy_after,
            self.collection_labels,
        )
    }

    fn env(&self) -> Vec<(String, String)> {
        let p = "QDRANT_TOWER__";
        [
            ("PROFILE", profile_name(self.profile).to_owned()),
            ("NAME", self.name.clone()),
            ("DEADLINE", format!("{}ms", self.deadline_ms)),
            ("ATTEMPT_TIMEOUT", format!("{}ms", self.attempt_ms)),
            ("IDEMPOTENT_CREATE", self.idempotent_create.to_string()),
            (
                "BALANCE",
                if self.p2c { "p2c" } else { "round_robin" }.to_owned(),
            ),
            ("CONNECTIONS__MIN", self.min.to_string()),
            ("CONNECTIONS__MAX", self.max.to_string()),
            ("CONNECTIONS__GROW_AT", self.grow_at.to_string()),
            ("RETRY__TIME_SCALE", format!("{:?}", self.time_scale)),
            ("RETRY__UNAVAILABLE__ATTEMPTS", self.attempts.to_string()),
            (
                "RETRY__UNAVAILABLE__BASE_DELAY",
                format!("{}ms", self.base_ms),
            ),
            (
                "RETRY__UNAVAILABLE__MAX_DELAY",
                format!("{}ms", self.max_ms),
            ),
            (
                "BREAKER__FAILURE_THRESHOLD",
                self.failure_threshold.to_string(),
            ),
            ("BREAKER__HALF_OPEN_TRIALS", self.trials.to_string()),
            ("BREAKER__HALF_OPEN_SUCCESSES", self.successes.to_string()),
            ("BREAKER__OPEN_WAIT", format!("{}ms", self.open_wait_ms)),
            ("HEALTH__UNHEALTHY_AFTER", self.unhealthy_after.to_string()),
            (
                "METRICS__COLLECTION_LABELS",
                self.collection_labels.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{p}{k}"), v))
        .chain([("QDRANT_URL".to_owned(), self.endpoints.join(","))])
        .collect()
    }

    fn check(&self, config: &StackConfig) -> Result<(), TestCaseError> {
        let ms = Duration::from_millis;
        prop_assert_eq!(config.profile, self.profile);
        prop_assert_eq!(&config.name, &self.name);
        prop_assert_eq!(&config.endpoints, &self.endpoints);
        prop_assert_eq!(config.deadline, ms(self.deadline_ms));
        prop_assert_eq!(config.attempt_timeout, ms(self.attempt_ms));
        prop_assert_eq!(config.idempotent_create, self.idempotent_create);
        prop_assert_eq!(
            (
                config.connections.min,
                config.connections.max,
                config.connections.grow_at
            ),
            (self.min, self.max, self.grow_at)
        );
        prop_assert_eq!(config.retry.time_scale, self.time_scale);
        let row = config.retry.unavailable;
        prop_assert_eq!(
            (row.attempts, row.base_delay, row.max_delay),
            (self.attempts, ms(self.base_ms), ms(self.max_ms))
        );
        let b = config.breaker;
        prop_assert_eq!(
            (
                b.failure_threshold,
                b.half_open_trials,
                b.half_open_successes,
                b.open_wait
            ),
            (
                self.failure_threshold,
                self.trials,
                self.successes,
                ms(self.open_wait_ms)
            )
        );
        prop_assert_eq!(config.health.unhealthy_after, self.unhealthy_after);
        prop_assert_eq!(config.metrics.collection_labels, self.collection_labels);
        // Everything not written is the profile's default.
        let defaults = StackConfig::for_profile(self.profile);
        prop_assert_eq!(config.health.interval, defaults.health.interval);
        prop_assert_eq!(config.retry.connect, defaults.retry.connect);
        prop_assert_eq!(&config.cache, &defaults.cache);
        Ok(())
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// Valid settings load to exactly the values written, from a file as from the
    /// environment, and the two loads are the same configuration.
    #[test]
    fn valid_settings_round_trip_through_toml_and_environment(valid in valid()) {
        let from_toml = ConfigLoader::new().toml(valid.toml()).load();
        let from_toml = match from_toml {
            Ok(config) => config,
            Err(error) => return Err(TestCaseError::fail(format!("{error}\n{}", valid.toml()))),
        };
        valid.check(&from_toml)?;
        let from_env = ConfigLoader::new().env_vars(valid.env()).load();
        let from_env = match from_env {
            Ok(config) => config,
            Err(error) => return Err(TestCaseError::fail(format!("{error}\n{:?}", valid.env()))),
        };
        valid.check(&from_env)?;
        prop_assert_eq!(&from_toml, &from_env);
        // The environment overrides the file key by key: the file's values under the same
        // environment change nothing.
        let both = ConfigLoader::new()
            .toml(other_valid_toml())
            .env_vars(valid.env())
            .load();
        prop_assert_eq!(both.as_ref().ok(), Some(&from_env), "{:?}", both);
    }
}

/// A file that sets every key the environment of [`Valid::env`] sets, to other valid values.
#[allow(non_snake_case)]
fn other_valid_toml() -> String {
    "profile = \"testing\"\nname = \"other\"\nendpoints = [\"http://other:1\"]\n\
     deadline = \"7s\"\nattempt_timeout = \"7s\"\nidempotent_create = true\nbalance = \"p2c\"\n\
     [connections]\nmin = 2\nmax = 3\ngrow_at = 9\n[retry]\ntime_scale = 3.0\n\
     [retry.unavailable]\nattempts = 9\nbase_delay = \"9s\"\nmax_delay = \"99s\"\n\
     [breaker]\nfailure_threshold = 99\nhalf_open_trials = 9\nhalf_open_successes = 9\n\
     open_wait = \"9s\"\n[health]\nunhealthy_after = 9\n[metrics]\ncollection_labels = 9\n"
        .to_owned()
}
