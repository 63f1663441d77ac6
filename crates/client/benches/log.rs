//! Append throughput of the write-behind queue's record log, fsync on (every append waits for
//! `sync_data`): `cargo bench -p qdrant-tower-client --bench log`. The number is the disk's:
//! quote it with the machine.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qdrant_tower_client::log::RecordLog;

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("log");
    for size in [256usize, 4096] {
        let (mut log, _) = RecordLog::open(dir.path().join(format!("bench-{size}.log"))).unwrap();
        let payload = vec![7u8; size];
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("append_fsync/{size}B"), |b| {
            b.iter(|| log.append(&payload).unwrap());
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
    targets = append
}
criterion_main!(benches);
