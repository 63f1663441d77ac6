//! The write-behind queue under a real process kill: a child process (this test binary, run
//! as [`child_process`]) writes through a stack whose queue takes its writes, printing each
//! acknowledged write; the parent kills it with SIGKILL at random points (mid-append among
//! them), over and over, sometimes while Qdrant is unreachable (every write queued), sometimes
//! while it is back (replay racing the kill). At the end the parent opens the queue itself,
//! lets it drain, and checks that every acknowledged write is in Qdrant, and nothing that was
//! never written is. A SIGKILL cannot tear a record (the kernel completes a `write` before
//! the process dies; the kill lands before, between or after the write and its fsync), so
//! every fourth round also leaves a record cut short after its header, as a power cut would:
//! the next open must cut it off and replay none of it.
//!
//! Runs against the embedded server, or the real Qdrant at `QDRANT_URL`.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qdrant_tower::config::StackConfig;
use qdrant_tower::qdrant::{
    CountPointsBuilder, CreateCollectionBuilder, Distance, GetPointsBuilder, PointStruct,
    UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_tower::{Client, Payload, Profile, QdrantStack};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::ServiceExt;

use crate::backend::Backend;

const CHILD: &str = "QDRANT_TOWER_QUEUE_CHILD";
const ROUNDS: u64 = 14;
const IDS_PER_ROUND: u64 = 100_000;

fn stack_config(url: &str, dir: &str, collection: &str) -> StackConfig {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![url.to_owned()];
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|key| !key.is_empty())
        .map(qdrant_tower::config::Secret::new);
    config.deadline = Duration::from_secs(2);
    config.attempt_timeout = Duration::from_secs(1);
    config.breaker.open_wait = Duration::from_millis(100);
    config.queue.collections = vec![collection.to_owned()];
    config.queue.dir = Some(dir.into());
    config.queue.replay_interval = Duration::from_millis(20);
    config
}

/// The child's side: not a test of its own (ignored in a normal run); the parent runs it as
/// `e2e --ignored --exact queue_kill::child_process` with its orders in the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of write_behind_loses_no_acknowledged_write_under_sigkill"]
async fn child_process() {
    use std::io::Write;
    let orders = std::env::var(CHILD).expect("run by the parent test");
    let [url, dir, collection, start]: [&str; 4] = orders
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("url|dir|collection|start");
    let start: u64 = start.parse().unwrap();
    let stack = QdrantStack::builder()
        .config(stack_config(url, dir, collection))
        .build()
        .expect("the stack and its queue open");
    let client = stack.client();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for id in start..start + IDS_PER_ROUND {
        let point = PointStruct::new(
            id,
            vec![1.0, (id % 97) as f32],
            Payload::try_from(serde_json::json!({ "id": id })).unwrap(),
        );
        match client
            .upsert(UpsertPointsBuilder::new(collection, vec![point]).wait(true))
            .await
        {
            // Applied or queued (fsynced): acknowledged either way.
            Ok(written) => {
                let how = if written.queued().is_some() { "q" } else { "a" };
                writeln!(out, "ack {id} {how}").unwrap();
            }
            Err(error) => writeln!(out, "err {id} {}", error.kind()).unwrap(),
        }
        out.flush().unwrap();
    }
}

/// A xorshift generator: kill points that differ run to run, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An address nothing listens on (bound, then released): Qdrant "down".
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_loses_no_acknowledged_write_under_sigkill() {
    let backend = Backend::start().await;
    let collection = backend.unique("killed");
    let direct = backend.direct();
    direct
        .clone()
        .oneshot(
            CreateCollectionBuilder::new(&collection)
                .vectors_config(VectorParamsBuilder::new(2, Distance::Dot))
                .into(),
        )
        .await
        .expect("collection created");
    let _cleanup = Cleanup(&backend, vec![collection.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let dir_name = dir.path().to_str().unwrap().to_owned();
    let seed = std::env::var("QDRANT_TOWER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill points seeded with QDRANT_TOWER_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let dead = dead_url().await;

    let mut acked = BTreeSet::new();
    let mut queued_acks = 0;
    let mut attempted = BTreeSet::new();
    let mut injected = 0;
    for round in 0..ROUNDS {
        // Qdrant is reachable in every third round: replay runs while the kill comes.
        let up = round % 3 == 2;
        let url = if up { backend.url() } else { dead.clone() };
        let start = round * IDS_PER_ROUND;
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "queue_kill::child_process",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD, format!("{url}|{dir_name}|{collection}|{start}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the child starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait for the child's stack, so that the kill lands among the writes.
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // The harness prints "test … ... " before the child's first line.
                if line.ends_with("ready") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("the child is ready within 30 s");
        assert!(ready, "the child ended before it was ready");
        let kill_after = Duration::from_micros(2_000 + rng.next() % 250_000);
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                seen.push(line);
            }
            seen
        });
        tokio::time::sleep(kill_after).await;
        child.start_kill().expect("SIGKILL sent");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the child dies within 10 s")
            .unwrap();
        assert!(!status.success(), "killed, not finished");
        let seen = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("its output ends")
            .unwrap();
        let mut round_acks = 0;
        for line in seen {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("ack"), Some(id), Some(how)) => {
                    acked.insert(id.parse::<u64>().unwrap());
                    round_acks += 1;
                    queued_acks += usize::from(how == "q");
                }
                (Some("err"), Some(id), kind) => panic!("write {id} failed: {kind:?}"),
                _ => {}
            }
        }
        // A SIGKILL cannot tear a record (the kernel finishes a write before the process
        // dies); a power cut can. Every fourth round leaves what one would: a record cut
        // short after its header.
        if round % 4 == 1 {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join("queue.log"))
                .unwrap();
            let mut torn = Vec::new();
            torn.extend_from_slice(&64u32.to_le_bytes());
            torn.extend_from_slice(&(rng.next() as u32).to_le_bytes());
            torn.extend_from_slice(&u64::MAX.to_le_bytes());
            torn.extend_from_slice(&[0xAB; 20]);
            log.write_all(&torn).unwrap();
            injected += 1;
        }
        // Ids the child may have tried: up to one past its last acknowledged one.
        attempted.extend(start..start + round_acks + 1);
        eprintln!(
            "round {round}: Qdrant {}, killed after {kill_after:?}, {round_acks} acknowledged",
            if up { "up" } else { "down" }
        );
    }
    let torn = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains("corrupt"))
        })
        .count();

    // The parent opens the queue now (Qdrant reachable) and lets it drain.
    let stack = QdrantStack::builder()
        .config(stack_config(&backend.url(), &dir_name, &collection))
        .build()
        .expect("the queue opens after the last kill");
    let queue = stack.queue().unwrap();
    let torn = torn + usize::from(queue.stats().damaged.is_some());
    assert!(
        queue.drained(Duration::from_secs(120)).await,
        "replayed: {:?}",
        queue.stats()
    );
    assert_eq!(queue.stats().dead_letters, 0);
    eprintln!(
        "{} writes acknowledged ({queued_acks} of them queued) over {ROUNDS} kills; torn tails cut: {torn} ({injected} made)",
        acked.len()
    );
    assert!(queued_acks > 0, "the kills hit queued writes");
    assert!(
        torn >= 1 && injected >= 1,
        "the torn records were found and cut: {torn} of {injected}"
    );

    let client = Client::new(direct);
    let ids: Vec<u64> = acked.iter().copied().collect();
    for chunk in ids.chunks(500) {
        let got = client
            .get(GetPointsBuilder::new(
                &collection,
                chunk.iter().map(|&id| id.into()).collect::<Vec<_>>(),
            ))
            .await
            .unwrap();
        assert_eq!(
            got.result.len(),
            chunk.len(),
            "every acknowledged write of ids {}..={} is in Qdrant",
            chunk[0],
            chunk[chunk.len() - 1]
        );
    }
    // Nothing else: each point in Qdrant is one the children tried to write, once.
    let count = client
        .count(CountPointsBuilder::new(&collection).exact(true))
        .await
        .unwrap()
        .result
        .unwrap()
        .count as usize;
    assert!(
        count >= acked.len() && count <= attempted.len(),
        "{count} points: at least the {} acknowledged, at most the {} tried",
        acked.len(),
        attempted.len()
    );
}

/// Deletes the test's collections from a real server when the test ends.
struct Cleanup<'a>(&'a Backend, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.drop_collections(&self.1);
    }
}
