//! Configuration: precedence of profile < file < environment < builder, each validation
//! error, unknown keys with "did you mean", and secrets kept out of every text.
//!
//! The environment is injected (`ConfigLoader::env_vars`): no test touches the process's.

use std::time::Duration;

use qdrant_tower::Profile;
use qdrant_tower::config::{ConfigError, ConfigLoader, Keyed, StackConfig};

fn file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn profile_then_file_then_environment() {
    let toml = file(
        r#"
        profile = "development"
        deadline = "20s"
        attempt_timeout = "4s"
        [breaker]
        failure_threshold = 9
        open_wait = "45s"
        [retry.unavailable]
        attempts = 2
        "#,
    );
    let config = ConfigLoader::new()
        .file(toml.path())
        .env_vars([
            ("QDRANT_TOWER__BREAKER__FAILURE_THRESHOLD", "4"),
            ("QDRANT_TOWER__RETRY__TIME_SCALE", "0.5"),
            ("QDRANT_URL", "http://a:6334, http://b:6334"),
            ("QDRANT_API_KEY", "12345"),
            ("UNRELATED_VARIABLE", "ignored"),
            ("QDRANT_TOWER_SINGLE_UNDERSCORE", "ignored"),
        ])
        .load()
        .unwrap();
    // The profile named in the file is the base...
    assert_eq!(config.profile, Profile::Development);
    assert_eq!(config.health.interval, Duration::from_secs(60));
    assert_eq!(config.connections.min, 1);
    assert_eq!(config.connections.max, 5);
    // ...the file overrides it...
    assert_eq!(config.deadline, Duration::from_secs(20));
    assert_eq!(config.breaker.open_wait, Duration::from_secs(45));
    assert_eq!(config.retry.unavailable.attempts, 2);
    // ...and the environment overrides the file.
    assert_eq!(config.breaker.failure_threshold, 4);
    assert_eq!(config.retry.time_scale, 0.5);
    assert_eq!(config.endpoints, ["http://a:6334", "http://b:6334"]);
    assert_eq!(
        config.api_key.as_ref().map(|k| k.expose()),
        Some("12345"),
        "a numeric key stays a string"
    );
    // What nobody set keeps the development profile's value.
    assert_eq!(
        config.retry.rate_limited,
        StackConfig::for_profile(Profile::Development)
            .retry
            .rate_limited
    );
}

#[test]
fn the_environment_can_choose_the_profile_and_the_loader_default_is_lowest() {
    let config = ConfigLoader::new()
        .profile(Profile::Testing)
        .toml("profile = \"staging\"")
        .env_vars([("QDRANT_TOWER__PROFILE", "production")])
        .load()
        .unwrap();
    assert_eq!(config, StackConfig::for_profile(Profile::Production));
    let config = ConfigLoader::new()
        .profile(Profile::Testing)
        .load()
        .unwrap();
    assert_eq!(config, StackConfig::for_profile(Profile::Testing));
}

#[test]
fn every_key_of_the_table_is_read_from_the_environment() {
    let vars = [
        ("QDRANT_TOWER__NAME", "search"),
        ("QDRANT_TOWER__DEADLINE", "7s"),
        ("QDRANT_TOWER__ATTEMPT_TIMEOUT", "3s"),
        ("QDRANT_TOWER__IDEMPOTENT_CREATE", "true"),
        ("QDRANT_TOWER__CONNECTIONS__MIN", "2"),
        ("QDRANT_TOWER__CONNECTIONS__MAX", "6"),
        ("QDRANT_TOWER__CONNECTIONS__GROW_AT", "10"),
        ("QDRANT_TOWER__CONNECTIONS__IDLE", "30s"),
        ("QDRANT_TOWER__RETRY__CONNECT__ATTEMPTS", "4"),
        ("QDRANT_TOWER__RETRY__TIMEOUT__BASE_DELAY", "50ms"),
        ("QDRANT_TOWER__RETRY__RATE_LIMITED__MAX_DELAY", "1m"),
        ("QDRANT_TOWER__RETRY__INTERNAL__ATTEMPTS", "1"),
        ("QDRANT_TOWER__BREAKER__FAILURE_RATE", "0.5"),
        ("QDRANT_TOWER__BREAKER__MINIMUM_CALLS", "10"),
        ("QDRANT_TOWER__BREAKER__HALF_OPEN_TRIALS", "4"),
        ("QDRANT_TOWER__BREAKER__HALF_OPEN_SUCCESSES", "3"),
        ("QDRANT_TOWER__BREAKER__KEYED", "collection_and_class"),
        ("QDRANT_TOWER__HEALTH__INTERVAL", "2s"),
        ("QDRANT_TOWER__HEALTH__PROBE_TIMEOUT", "1s"),
        ("QDRANT_TOWER__HEALTH__UNHEALTHY_AFTER", "5"),
        ("QDRANT_TOWER__HEALTH__HEALTHY_AFTER", "2"),
        ("QDRANT_TOWER__ENDPOINTS", "http://x:6334"),
    ];
    let c = ConfigLoader::new().env_vars(vars).load().unwrap();
    assert_eq!(c.name, "search");
    assert_eq!(
        (c.deadline, c.attempt_timeout),
        (Duration::from_secs(7), Duration::from_secs(3))
    );
    assert!(c.idempotent_create);
    assert_eq!(
        (
            c.connections.min,
            c.connections.max,
            c.connections.grow_at,
            c.connections.idle
        ),
        (2, 6, 10, Duration::from_secs(30))
    );
    assert_eq!(c.retry.connect.attempts, 4);
    assert_eq!(c.retry.timeout.base_delay, Duration::from_millis(50));
    assert_eq!(c.retry.rate_limited.max_delay, Duration::from_secs(60));
    assert_eq!(c.retry.internal.attempts, 1);
    assert_eq!(c.breaker.failure_rate, Some(0.5));
    assert_eq!(
        (
            c.breaker.minimum_calls,
            c.breaker.half_open_trials,
            c.breaker.half_open_successes
        ),
        (10, 4, 3)
    );
    assert_eq!(c.breaker.keyed, Keyed::CollectionAndClass);
    assert_eq!(
        (
            c.health.interval,
            c.health.probe_timeout,
            c.health.unhealthy_after,
            c.health.healthy_after
        ),
        (Duration::from_secs(2), Duration::from_secs(1), 5, 2)
    );
    assert_eq!(c.endpoints, ["http://x:6334"]);
    // And they reach the layers' configurations.
    let breaker = c.breaker_config();
    assert_eq!(breaker.failure_rate(), Some(0.5));
    assert_eq!(breaker.half_open_trials(), 4);
    let retry = c.retry_policy();
    assert_eq!(retry.kind(qdrant_tower::ErrorKind::Connect).max_attempts, 4);
    assert_eq!(c.health_config().name(), "search");
}

fn invalid(toml: &str) -> String {
    match ConfigLoader::new().toml(toml).load() {
        Ok(config) => panic!("{toml} loaded: {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn each_validation_error_names_field_value_and_reason() {
    let cases = [
        (
            "[retry.unavailable]\nbase_delay = \"100ms\"\nmax_delay = \"0s\"",
            "retry.unavailable.max_delay (0s) must be ≥ retry.unavailable.base_delay (100ms)",
        ),
        (
            "[retry.connect]\nattempts = 0",
            "retry.connect.attempts (0) must be at least 1",
        ),
        (
            "[retry]\ntime_scale = -1.0",
            "retry.time_scale (-1) must be a positive, finite factor",
        ),
        (
            "deadline = \"0s\"",
            "deadline (0s) must be greater than zero",
        ),
        (
            "deadline = \"1s\"\nattempt_timeout = \"2s\"",
            "attempt_timeout (2s) must be ≤ deadline (1s)",
        ),
        (
            "endpoints = []",
            "endpoints ([]) needs at least one endpoint",
        ),
        (
            "endpoints = [\"localhost:6334\"]",
            "endpoints[0] (\"localhost:6334\") must be an http:// or https:// URL",
        ),
        ("name = \" \"", "name (\" \") must not be empty"),
        ("api_key = \"\"", "api_key (\"\") must not be empty"),
        (
            "[connections]\nmin = 0",
            "connections.min (0) must be at least 1",
        ),
        (
            "[connections]\nmin = 4\nmax = 2",
            "connections.max (2) must be ≥ connections.min (4)",
        ),
        (
            "[connections]\nmax = 1000",
            "connections.max (1000) must be at most 256",
        ),
        (
            "[connections]\ngrow_at = 0",
            "connections.grow_at (0) must be at least 1",
        ),
        (
            "[connections]\nidle = \"0s\"",
            "connections.idle (0s) must be greater than zero",
        ),
        (
            "[breaker]\nfailure_threshold = 0",
            "breaker.failure_threshold (0) must be between 1 and 65535",
        ),
        (
            "[breaker]\nfailure_rate = 1.5",
            "breaker.failure_rate (1.5) must be in (0, 1]",
        ),
        (
            "[breaker]\nminimum_calls = 0",
            "breaker.minimum_calls (0) must be between 1 and 100",
        ),
        (
            "[breaker]\nopen_wait = \"0s\"",
            "breaker.open_wait (0s) must be greater than zero",
        ),
        (
            "[breaker]\nhalf_open_trials = 0",
            "breaker.half_open_trials (0) must be between 1 and 65535",
        ),
        (
            "[breaker]\nhalf_open_trials = 2\nhalf_open_successes = 3",
            "breaker.half_open_successes (3) must be between 1 and breaker.half_open_trials (2)",
        ),
        (
            "[health]\ninterval = \"0s\"",
            "health.interval (0s) must be greater than zero",
        ),
        (
            "[health]\nprobe_timeout = \"0s\"",
            "health.probe_timeout (0s) must be greater than zero",
        ),
        (
            "[health]\nunhealthy_after = 0",
            "health.unhealthy_after (0) must be at least 1",
        ),
        (
            "[health]\nhealthy_after = 0",
            "health.healthy_after (0) must be at least 1",
        ),
        (
            "[admin]\ntoken = \"\"",
            "admin.token (\"\") must not be empty",
        ),
        (
            "[admin]\nerror_rate_alert = 0.0",
            "admin.error_rate_alert (0) must be in (0, 1]",
        ),
        (
            "[cache]\nttl = \"0s\"",
            "cache.ttl (0s) must be greater than zero",
        ),
        (
            "[cache]\nmax_entries = 0",
            "cache.max_entries (0) must be at least 1",
        ),
        (
            "[metrics]\ncollection_labels = 5000",
            "metrics.collection_labels (5000) must be at most 1000",
        ),
    ];
    for (toml, expected) in cases {
        let message = invalid(toml);
        assert!(
            message.starts_with(expected),
            "{toml}\n  said:     {message}\n  expected: {expected}"
        );
        assert!(message.contains("(in TOML source string)"), "{message}");
    }
}

#[test]
fn the_error_says_which_source_gave_the_bad_value() {
    let toml = file("[breaker]\nfailure_threshold = 0\n");
    let error = ConfigLoader::new().file(toml.path()).load().unwrap_err();
    let ConfigError::Invalid(invalid) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(invalid.field(), "breaker.failure_threshold");
    assert_eq!(invalid.value(), "0");
    assert_eq!(
        invalid.origin(),
        Some(format!("in {}", toml.path().display()).as_str())
    );
    let error = ConfigLoader::new()
        .file(toml.path())
        .env_vars([("QDRANT_TOWER__HEALTH__HEALTHY_AFTER", "0")])
        .env_vars([("QDRANT_TOWER__BREAKER__FAILURE_THRESHOLD", "3")])
        .load()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "health.healthy_after (0) must be at least 1 probe \
         (from environment variable QDRANT_TOWER__HEALTH__HEALTHY_AFTER)"
    );
    // A value set in code has no source to name.
    let mut config = StackConfig::default();
    config.health.healthy_after = 0;
    assert_eq!(config.validate().unwrap_err().origin(), None);
}

#[test]
fn unknown_keys_and_values_are_errors_with_a_suggestion() {
    let message = invalid("[breaker]\nfailure_treshold = 3");
    assert_eq!(
        message,
        "unknown key `failure_treshold` at `breaker.failure_treshold` (in TOML source string): \
         did you mean `failure_threshold`?"
    );
    let message = invalid("deadlnie = \"5s\"");
    assert!(message.contains("did you mean `deadline`?"), "{message}");
    let message = invalid("[retyr]\ntime_scale = 1.0");
    assert!(message.contains("did you mean `retry`?"), "{message}");
    let message = invalid("profile = \"prodution\"");
    assert!(
        message.contains("unknown value `prodution`") && message.contains("`production`?"),
        "{message}"
    );
    let message = invalid("[breaker]\nkeyed = \"colection\"");
    assert!(message.contains("did you mean `collection`?"), "{message}");
    // Nothing close: the known names are listed instead.
    let message = invalid("[health]\nzzz = 1");
    assert!(
        message.contains("expected one of: interval, probe_timeout"),
        "{message}"
    );
    // The environment's unknown keys too, named as variables.
    let error = ConfigLoader::new()
        .env_vars([("QDRANT_TOWER__BREAKER__OPEN_WIAT", "5s")])
        .load()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown key `open_wiat` at `breaker.open_wiat` (from environment variable \
         QDRANT_TOWER__BREAKER__OPEN_WIAT): did you mean `open_wait`?"
    );
}

#[test]
fn wrong_types_and_syntax_name_the_key() {
    let message = invalid("[breaker]\nfailure_threshold = \"many\"");
    assert!(
        message.starts_with("breaker.failure_threshold: "),
        "{message}"
    );
    assert!(message.contains("many"), "{message}");
    let message = invalid("deadline = \"soon\"");
    assert!(message.starts_with("deadline: "), "{message}");
    let message = invalid("[breaker\n");
    assert!(!message.is_empty());
    let error = ConfigLoader::new()
        .file("/nonexistent/qdrant-tower.toml")
        .load()
        .unwrap_err();
    assert!(
        matches!(error, ConfigError::Read { .. })
            && error.to_string().contains("/nonexistent/qdrant-tower.toml"),
        "{error}"
    );
}

#[test]
fn secrets_stay_out_of_debug_dumps_and_errors() {
    let secret = "k3y-that-must-not-leak";
    let config = ConfigLoader::new()
        .env_vars([("QDRANT_API_KEY", secret)])
        .toml(format!("[admin]\ntoken = \"{secret}\""))
        .load()
        .unwrap();
    assert_eq!(config.admin.token.as_ref().unwrap().expose(), secret);
    assert_eq!(config.api_key.as_ref().unwrap().expose(), secret);
    let debug = format!("{config:?}");
    let dumped = toml_dump(&config);
    assert!(
        !debug.contains(secret) && debug.contains("[redacted]"),
        "{debug}"
    );
    assert!(
        !dumped.contains(secret) && dumped.contains("[redacted]"),
        "{dumped}"
    );
    let loader = ConfigLoader::new().env_vars([("QDRANT_API_KEY", secret)]);
    assert!(!format!("{loader:?}").contains(secret));
    // An error elsewhere in a config holding the key does not show it.
    let error = ConfigLoader::new()
        .env_vars([("QDRANT_API_KEY", secret), ("QDRANT_TOWER__DEADLINE", "0s")])
        .load()
        .unwrap_err();
    assert!(!format!("{error} {error:?}").contains(secret));
    // A key of the wrong type is not quoted back.
    let error = ConfigLoader::new()
        .toml("api_key = 982451653")
        .load()
        .unwrap_err();
    assert!(
        !format!("{error} {error:?}").contains("982451653")
            && error.to_string().starts_with("api_key: must be a string"),
        "{error}"
    );
}

fn toml_dump(config: &StackConfig) -> String {
    serde_json::to_string(config).unwrap()
}

#[test]
fn the_degraded_modes_sections_from_the_environment_and_their_validation() {
    let c = ConfigLoader::new()
        .env_vars([
            ("QDRANT_TOWER__CACHE__STALE_FOR", "5m"),
            ("QDRANT_TOWER__FALLBACK__STALE", "true"),
            ("QDRANT_TOWER__FALLBACK__ON", "circuit_open, unhealthy"),
            ("QDRANT_TOWER__QUEUE__COLLECTIONS", "docs,products"),
            ("QDRANT_TOWER__QUEUE__DIR", "/var/lib/app/queue"),
            ("QDRANT_TOWER__QUEUE__MAX_RECORDS", "500"),
            ("QDRANT_TOWER__QUEUE__MAX_BYTES", "1048576"),
            ("QDRANT_TOWER__QUEUE__REPLAY_INTERVAL", "250ms"),
        ])
        .load()
        .unwrap();
    assert_eq!(c.cache.stale_for, Duration::from_secs(300));
    assert!(c.fallback.stale);
    assert_eq!(
        c.fallback.kinds().unwrap(),
        [
            qdrant_tower::ErrorKind::CircuitOpen,
            qdrant_tower::ErrorKind::Unhealthy
        ]
    );
    assert_eq!(c.queue.collections, ["docs", "products"]);
    assert_eq!(
        c.queue.dir.as_deref(),
        Some(std::path::Path::new("/var/lib/app/queue"))
    );
    assert_eq!(
        (
            c.queue.max_records,
            c.queue.max_bytes,
            c.queue.replay_interval
        ),
        (500, 1 << 20, Duration::from_millis(250))
    );

    let error = invalid("[queue]\ncollections = [\"docs\"]");
    assert!(
        error.contains("queue.dir (none) must be set when queue.collections lists collections"),
        "{error}"
    );
    let error = invalid("[fallback]\non = [\"circuit_open\", \"sometimes\"]");
    assert!(
        error.contains("fallback.on (sometimes) is not an error kind (one of: connect,"),
        "{error}"
    );
    let error = invalid("[queue]\nmax_records = 0");
    assert!(
        error.contains("queue.max_records (0) must be at least 1"),
        "{error}"
    );
}

#[test]
fn balance_and_outlier_detection_from_a_file_and_the_environment() {
    use qdrant_tower::config::BalanceSetting;
    let f =
        file("balance = \"p2c\"\n[outlier]\nconsecutive_failures = 3\nbase_ejection = \"2s\"\n");
    let c = ConfigLoader::new()
        .file(f.path())
        .env_vars([("QDRANT_TOWER__OUTLIER__MAX_EJECTED_SHARE", "0.3")])
        .load()
        .unwrap();
    assert_eq!(c.balance, Some(BalanceSetting::P2c));
    let outlier = c.outlier.clone().unwrap();
    assert_eq!(
        (
            outlier.consecutive_failures,
            outlier.base_ejection,
            outlier.max_ejected_share
        ),
        (3, Duration::from_secs(2), 0.3)
    );
    assert_eq!(
        outlier.max_ejection,
        Duration::from_secs(300),
        "the rest defaulted"
    );
    let detection = outlier.detection();
    assert_eq!(detection.consecutive_failures, 3);
    // Without the keys, the service's own defaults (or `configure_service`) hold.
    let plain = ConfigLoader::new().load().unwrap();
    assert_eq!((plain.balance, plain.outlier), (None, None));

    for (toml, message) in [
        (
            "[outlier]\nmax_ejected_share = 1.5",
            "outlier.max_ejected_share (1.5) must be within 0 and 1",
        ),
        (
            "[outlier]\nbase_ejection = \"10s\"\nmax_ejection = \"5s\"",
            "outlier.max_ejection (5s) must be ≥ outlier.base_ejection (10s)",
        ),
        ("balance = \"random\"", "balance"),
    ] {
        let error = invalid(toml);
        assert!(error.contains(message), "{toml}: {error}");
    }
}

#[test]
fn discovery_is_off_unless_its_section_is_there() {
    assert_eq!(ConfigLoader::new().load().unwrap().discovery, None);
    let f = file("endpoints = [\"http://10.0.0.5:6334\"]\n[discovery]\ninterval = \"10s\"\n");
    let c = ConfigLoader::new()
        .file(f.path())
        .env_vars([("QDRANT_TOWER__DISCOVERY__GRPC_PORT_OFFSET", "-2")])
        .load()
        .unwrap();
    let d = c.discovery.clone().unwrap();
    assert_eq!(
        (d.interval, d.timeout),
        (Duration::from_secs(10), Duration::from_secs(5))
    );
    assert_eq!(
        (d.rest_port_offset, d.grpc_port_offset, d.max_endpoints),
        (-1, -2, 16)
    );
    assert_eq!(d.discovery().ports(), (-1, -2));
    for (toml, message) in [
        (
            "[discovery]\nmax_endpoints = 65",
            "discovery.max_endpoints (65) must be within the 1 configured endpoints and 64",
        ),
        ("[discovery]\ninterval = \"0s\"", "discovery.interval"),
        ("[discovery]\nport = 1", "port"),
    ] {
        let error = invalid(toml);
        assert!(error.contains(message), "{toml}: {error}");
    }
}

#[test]
fn hedging_is_for_reads_named_by_operation() {
    let c = ConfigLoader::new()
        .env_vars([
            ("QDRANT_TOWER__HEDGE__OPERATIONS", "search, query"),
            ("QDRANT_TOWER__HEDGE__DELAY", "40ms"),
        ])
        .load()
        .unwrap();
    assert_eq!(c.hedge.operations, ["search", "query"]);
    assert_eq!(c.hedge.delay, Some(Duration::from_millis(40)));
    assert!(c.hedge.hedge_config().unwrap().is_some());
    assert!(
        ConfigLoader::new()
            .load()
            .unwrap()
            .hedge
            .hedge_config()
            .unwrap()
            .is_none(),
        "off unless listed"
    );
    for (toml, message) in [
        (
            "[hedge]\noperations = [\"upsert\"]",
            "hedge.operations (upsert) is not a read",
        ),
        (
            "[hedge]\noperations = [\"serach\"]",
            "hedge.operations (serach) is not an operation name",
        ),
        (
            "[hedge]\noperations = [\"search\"]\npercentile = 1.5",
            "hedge.percentile (1.5) must be within 0 and 1",
        ),
    ] {
        let error = invalid(toml);
        assert!(error.contains(message), "{toml}: {error}");
    }
}
