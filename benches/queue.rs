//! Append throughput of the write-behind queue, fsync on: `cargo bench --bench queue`.
//!
//! `enqueue` is the whole path a queued write takes once Qdrant has failed it — validation,
//! protobuf encoding, the hop to a blocking thread, the log's lock, the append and its
//! `sync_data` — measured beside the bare [`RecordLog::append`] of the same bytes in the same
//! run (the baseline: what the disk costs). The numbers are the disk's: quote them with the
//! machine.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qdrant_tower::client::log::RecordLog;
use qdrant_tower::qdrant::{PointStruct, UpsertPointsBuilder};
use qdrant_tower::queue::{QueueConfig, WriteBehindLayer};
use qdrant_tower::{ErrorKind, Payload, VectorError, VectorRequest, VectorResponse};
use tower::service_fn;

/// An upsert of one point whose encoding is about `bytes` long.
fn upsert(bytes: usize) -> VectorRequest {
    let dims = (bytes / 5).max(2);
    let point = PointStruct::new(1, vec![0.5; dims], Payload::new());
    UpsertPointsBuilder::new("bench", vec![point])
        .build()
        .into()
}

fn enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("queue");
    for size in [256usize, 4096] {
        let request = upsert(size);
        let payload = request.op().encode_to_vec();
        let (mut log, _) = RecordLog::open(dir.path().join(format!("log-{size}.log"))).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("log_append_fsync/{size}B"), |b| {
            b.iter(|| log.append(&payload).unwrap());
        });
        // Qdrant "down" for the whole run: replay tries once, fails, and waits an hour.
        let down = service_fn(|_: VectorRequest| async {
            Err::<VectorResponse, _>(VectorError::new(ErrorKind::Unavailable, "upsert", "down"))
        });
        let queue = runtime.block_on(async {
            WriteBehindLayer::open(
                QueueConfig::new(dir.path().join(format!("queue-{size}")), ["bench"])
                    .max_records(u64::MAX)
                    .max_bytes(u64::MAX)
                    .replay_interval(Duration::from_secs(3600)),
                down,
            )
            .unwrap()
            .handle()
        });
        group.bench_function(format!("enqueue_fsync/{size}B"), |b| {
            b.iter(|| runtime.block_on(queue.enqueue(request.clone())).unwrap());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = enqueue
}
criterion_main!(benches);
