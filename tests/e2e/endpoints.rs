//! Several endpoints: three embedded servers holding the same points, each behind a chaos
//! proxy, one ready stack over the three proxies. Reads fail over while an endpoint is down,
//! outlier detection ejects it and lets it back, never ejects more than its share, and power
//! of two choices keeps calls off a slow endpoint.

use std::time::Duration;

use qdrant_tower::config::{BalanceSetting, OutlierSettings, StackConfig};
use qdrant_tower::qdrant::SearchPointsBuilder;
use qdrant_tower::{Client, Profile, QdrantStack, StackService};
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use qdrant_tower_testkit::{ChaosProxy, Direction, TestServer};

use crate::backend::collection_with_a_point;

struct Fleet {
    servers: Vec<TestServer>,
    proxies: Vec<ChaosProxy>,
    stack: QdrantStack,
    client: Client<StackService>,
}

async fn fleet(balance: BalanceSetting, outlier: OutlierSettings) -> Fleet {
    fleet_with(balance, outlier, |_| {}).await
}

async fn fleet_with(
    balance: BalanceSetting,
    outlier: OutlierSettings,
    change: impl FnOnce(&mut StackConfig),
) -> Fleet {
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let server = TestServer::start().await.unwrap();
        // The same collection and point on each, written directly.
        let direct = Client::new(qdrant_tower::QdrantService::from_url(server.url()).unwrap());
        collection_with_a_point(&direct, "docs").await;
        proxies.push(ChaosProxy::start(server.addr()).await.unwrap());
        servers.push(server);
    }
    let mut config = StackConfig::for_profile(Profile::Production);
    config.endpoints = proxies.iter().map(ChaosProxy::url).collect();
    config.retry.time_scale = 0.05; // retries in milliseconds, not seconds
    config.deadline = Duration::from_secs(5);
    config.attempt_timeout = Duration::from_secs(2);
    config.balance = Some(balance);
    config.outlier = Some(outlier);
    change(&mut config);
    let stack = QdrantStack::builder().config(config).build().unwrap();
    let client = stack.client();
    Fleet {
        servers,
        proxies,
        stack,
        client,
    }
}

fn searches(server: &TestServer) -> usize {
    server.calls().count(Rpc::Search, "docs")
}

async fn read(client: &Client<StackService>) {
    let hits = client
        .search(SearchPointsBuilder::new("docs", vec![1.0, 0.0], 5))
        .await
        .expect("the read succeeds");
    assert!(hits.is_fresh());
    assert_eq!(hits.result.len(), 1);
}

fn quick_ejection() -> OutlierSettings {
    let mut outlier = OutlierSettings::default();
    outlier.consecutive_failures = 2;
    outlier.base_ejection = Duration::from_millis(400);
    outlier.max_ejection = Duration::from_secs(5);
    outlier
}

#[tokio::test]
async fn reads_fail_over_while_an_endpoint_is_down_which_is_ejected_and_returns() {
    let fleet = fleet(BalanceSetting::RoundRobin, quick_ejection()).await;
    for _ in 0..6 {
        read(&fleet.client).await;
    }
    // In turn (health probes take turns too).
    assert!(
        fleet.servers.iter().all(|s| searches(s) >= 1),
        "round-robin"
    );
    let before: Vec<usize> = fleet.servers.iter().map(searches).collect();

    // Endpoint 0 goes down: every read still succeeds, on the other two.
    fleet.proxies[0].refuse(true).await.unwrap();
    fleet.proxies[0].reset_all().await;
    for _ in 0..30 {
        read(&fleet.client).await;
    }
    assert_eq!(searches(&fleet.servers[0]), before[0], "nothing reached it");
    assert_eq!(
        searches(&fleet.servers[1]) + searches(&fleet.servers[2]),
        before[1] + before[2] + 30
    );
    let stats = fleet.stack.pool_stats();
    assert!(stats[0].ejected && stats[0].ejections >= 1, "{stats:?}");
    assert!(!stats[1].ejected && !stats[2].ejected);
    // Operators see it in the admin API.
    let addr = crate::admin::serve(
        fleet
            .stack
            .admin(qdrant_tower::admin::AdminConfig::default()),
    )
    .await;
    let listed = crate::capture::http(addr, "GET", "/endpoints", None, "")
        .await
        .json();
    assert_eq!(listed[0]["endpoint"], fleet.proxies[0].url());
    assert_eq!(listed[0]["ejected"], true);
    assert_eq!(listed[1]["ejected"], false);
    // No discovery here: nothing retired, no peer ids known.
    assert_eq!(listed[0]["retired"], false);
    assert!(listed[0]["peer_id"].is_null());

    // It comes back; once its ejection ends it gets calls again, on its own.
    fleet.proxies[0].refuse(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..6 {
        read(&fleet.client).await;
    }
    assert!(
        searches(&fleet.servers[0]) > before[0],
        "returned to rotation"
    );
    assert!(!fleet.stack.pool_stats()[0].ejected);
}

#[tokio::test]
async fn never_more_than_the_share_is_ejected_and_reads_still_find_the_live_endpoint() {
    let mut outlier = quick_ejection();
    outlier.max_ejected_share = 0.34;
    let fleet = fleet(BalanceSetting::RoundRobin, outlier).await;
    for proxy in &fleet.proxies[..2] {
        proxy.refuse(true).await.unwrap();
        proxy.reset_all().await;
    }
    for _ in 0..20 {
        read(&fleet.client).await;
    }
    assert_eq!(
        searches(&fleet.servers[2]),
        20,
        "every read ended on the live one"
    );
    let ejected = fleet
        .stack
        .pool_stats()
        .iter()
        .filter(|s| s.ejected)
        .count();
    assert_eq!(ejected, 1, "a third of three: one at a time");
}

#[tokio::test]
async fn power_of_two_choices_keeps_calls_off_a_slow_endpoint() {
    let mut off = OutlierSettings::default();
    off.consecutive_failures = 0;
    off.minimum_hosts = 0;
    let fleet = fleet(BalanceSetting::P2c, off).await;
    fleet.proxies[0].latency(
        Direction::Downstream,
        Duration::from_millis(300),
        Duration::ZERO,
    );
    let mut calls = Vec::new();
    for _ in 0..60 {
        let client = fleet.client.clone();
        calls.push(tokio::spawn(async move { read(&client).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for call in calls {
        call.await.unwrap();
    }
    let counts: Vec<usize> = fleet.servers.iter().map(searches).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60);
    // Round-robin would send it 20; with a call in flight there for 300 ms, it loses every
    // draw against an idle endpoint.
    assert!(counts[0] <= 10, "the slow endpoint got {counts:?}");
}

fn no_ejection() -> OutlierSettings {
    let mut off = OutlierSettings::default();
    off.consecutive_failures = 0;
    off.minimum_hosts = 0;
    off
}

#[tokio::test]
async fn a_hedged_read_is_answered_by_another_endpoint_and_the_loser_is_cancelled() {
    let fleet = fleet_with(BalanceSetting::RoundRobin, no_ejection(), |config| {
        config.hedge.operations = vec!["search".into()];
        config.hedge.delay = Some(Duration::from_millis(50));
        config.hedge.budget_percent = 1.0;
        // Long enough that only a cancellation can end the hung attempts in time.
        config.deadline = Duration::from_secs(60);
        config.attempt_timeout = Duration::from_secs(30);
    })
    .await;
    fleet.servers[0].set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
    for _ in 0..9 {
        read(&fleet.client).await;
    }
    let hung = searches(&fleet.servers[0]);
    assert!(hung >= 1, "some first attempts went to the hung endpoint");
    // Every read answered; the hung attempts were dropped when their hedge won.
    let in_flight = fleet.stack.pool_stats()[0].in_flight;
    assert_eq!(in_flight, 0, "the losers were cancelled");
    // A write is never hedged.
    fleet.servers[0].set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Upsert));
    let before: usize = fleet
        .servers
        .iter()
        .map(|s| s.calls().count(Rpc::Upsert, "docs"))
        .sum();
    let writes: Vec<_> = (0..3)
        .map(|id| {
            let client = fleet.client.clone();
            tokio::spawn(async move {
                let point = qdrant_tower::qdrant::PointStruct::new(
                    100 + id,
                    vec![1.0, 1.0],
                    qdrant_tower::Payload::new(),
                );
                client
                    .with_timeout(Duration::from_millis(300))
                    .upsert(qdrant_tower::qdrant::UpsertPointsBuilder::new(
                        "docs",
                        vec![point],
                    ))
                    .await
            })
        })
        .collect();
    for write in writes {
        let _ = write.await.unwrap();
    }
    let after: usize = fleet
        .servers
        .iter()
        .map(|s| s.calls().count(Rpc::Upsert, "docs"))
        .sum();
    assert!(
        after - before <= 3 * 2,
        "at most the retry table's attempts, no hedges"
    );
}

#[tokio::test]
async fn hedges_stay_within_their_budget() {
    let fleet = fleet_with(BalanceSetting::RoundRobin, no_ejection(), |config| {
        config.profile = Profile::Testing; // one attempt per call: only hedges add calls
        config.retry = StackConfig::for_profile(Profile::Testing).retry;
        config.hedge.operations = vec!["search".into()];
        config.hedge.delay = Some(Duration::from_millis(20));
        config.hedge.budget_percent = 0.0;
        config.hedge.budget_per_second = 1; // the window starts with 10 (1/s × 10 s)
        config.attempt_timeout = Duration::from_millis(200);
    })
    .await;
    for server in &fleet.servers {
        server.set_faults(FaultRule::new(Fault::hang()).rpc(Rpc::Search));
    }
    let reads: Vec<_> = (0..30)
        .map(|_| {
            let client = fleet.client.clone();
            tokio::spawn(async move {
                client
                    .search(SearchPointsBuilder::new("docs", vec![1.0, 0.0], 5))
                    .await
            })
        })
        .collect();
    for read in reads {
        let error = read.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), qdrant_tower::ErrorKind::Timeout);
    }
    let sent: usize = fleet.servers.iter().map(searches).sum();
    assert!(
        (30..=30 + 11).contains(&sent),
        "30 first attempts and at most the budget's 10 (+1 refilled) hedges: {sent}"
    );
    assert!(sent > 30, "some hedges went out: {sent}");
}
