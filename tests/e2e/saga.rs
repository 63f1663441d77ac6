//! Dual-store writes: the saga's Qdrant write, the user's step and the compensation, each
//! failed in turn with the embedded server's fault injection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use qdrant_tower::config::StackConfig;
use qdrant_tower::qdrant::{
    DeletePointsBuilder, GetPointsBuilder, GetResponse, PointStruct, PointsIdsList,
    SetPayloadPointsBuilder, UpsertPointsBuilder,
};
use qdrant_tower::saga::{Compensation, Saga, SagaError};
use qdrant_tower::{ErrorKind, Payload, Profile, QdrantStack, VectorOp};
use qdrant_tower_testkit::TestServer;
use qdrant_tower_testkit::faults::{Fault, FaultRule, Rpc};
use serde_json::json;

use crate::backend::collection_with_a_point;

fn stack(server: &TestServer, queue: Option<&std::path::Path>) -> QdrantStack {
    let mut config = StackConfig::for_profile(Profile::Testing);
    config.endpoints = vec![server.url()];
    if let Some(dir) = queue {
        // A queue for the repairs; "docs" is not listed, so its writes are never queued.
        config.queue.collections = vec!["elsewhere".into()];
        config.queue.dir = Some(dir.to_owned());
        config.queue.replay_interval = Duration::from_millis(20);
    }
    QdrantStack::builder().config(config).build().unwrap()
}

fn point(id: u64, title: &str) -> PointStruct {
    PointStruct::new(
        id,
        vec![id as f32, 1.0],
        Payload::try_from(json!({ "title": title })).unwrap(),
    )
}

/// (id, title, vector) of each point found, by id.
async fn state(
    client: &qdrant_tower::Client<qdrant_tower::StackService>,
    ids: &[u64],
) -> Vec<(u64, Option<String>, Vec<f32>)> {
    use qdrant_tower::qdrant::point_id::PointIdOptions;
    use qdrant_tower::qdrant::vector_output::Vector;
    use qdrant_tower::qdrant::vectors_output::VectorsOptions;
    let got: GetResponse = client
        .get(
            GetPointsBuilder::new("docs", ids.iter().map(|&id| id.into()).collect::<Vec<_>>())
                .with_payload(true)
                .with_vectors(true),
        )
        .await
        .unwrap()
        .into_inner();
    let mut points: Vec<_> = got
        .result
        .into_iter()
        .map(|p| {
            let Some(PointIdOptions::Num(id)) = p.id.unwrap().point_id_options else {
                panic!("numeric ids")
            };
            let title = p
                .payload
                .get("title")
                .and_then(|v| v.as_str().map(ToString::to_string));
            #[allow(deprecated)] // Older servers answer in `data`.
            let vector = match p.vectors.and_then(|v| v.vectors_options) {
                Some(VectorsOptions::Vector(v)) => match v.vector {
                    Some(Vector::Dense(d)) => d.data,
                    _ => v.data,
                },
                other => panic!("a dense vector, not {other:?}"),
            };
            assert_eq!(vector.len(), 2, "the point's vector");
            (id, title, vector)
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

async fn failing_step() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("the SQL insert failed"))
}

#[tokio::test]
async fn a_failed_step_undoes_the_write_new_points_deleted_old_ones_restored() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, None);
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;
    client
        .upsert(UpsertPointsBuilder::new("docs", vec![point(1, "old")]).wait(true))
        .await
        .unwrap();
    let before = state(&client, &[1, 10, 11]).await;
    let saga = Saga::new(client.clone());

    // The step succeeds: both stores have it.
    let done: Result<u32, SagaError<std::io::Error>> = saga
        .write(
            UpsertPointsBuilder::new("docs", vec![point(5, "kept")]),
            || async { Ok(7) },
        )
        .await;
    assert_eq!(done.unwrap(), 7);
    assert_eq!(state(&client, &[5]).await[0].1.as_deref(), Some("kept"));

    // The step fails: the upsert of 1 (changed) and 10, 11 (new) is undone.
    let failed = saga
        .write(
            UpsertPointsBuilder::new(
                "docs",
                vec![point(1, "new"), point(10, "new"), point(11, "new")],
            ),
            failing_step,
        )
        .await
        .unwrap_err();
    let SagaError::Step {
        error,
        compensation: Compensation::Applied,
    } = failed
    else {
        panic!("compensated: {failed:?}")
    };
    assert_eq!(error.to_string(), "the SQL insert failed");
    assert_eq!(
        state(&client, &[1, 10, 11]).await,
        before,
        "payload and vector of 1 restored, 10 and 11 gone"
    );

    // A payload change by ids is undone the same way; a filter cannot be, and is refused.
    let failed = saga
        .write(
            SetPayloadPointsBuilder::new("docs", Payload::try_from(json!({"title": "x"})).unwrap())
                .points_selector(PointsIdsList {
                    ids: vec![1.into()],
                })
                .build(),
            failing_step,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        failed,
        SagaError::Step {
            compensation: Compensation::Applied,
            ..
        }
    ));
    assert_eq!(state(&client, &[1]).await, before[..1]);
    let refused = saga
        .write(
            DeletePointsBuilder::new("docs")
                .points(qdrant_tower::qdrant::Filter::must([
                    qdrant_tower::qdrant::Condition::matches("title", "old".to_string()),
                ]))
                .build(),
            failing_step,
        )
        .await
        .unwrap_err();
    let SagaError::Read(refused) = refused else {
        panic!("refused before anything: {refused:?}")
    };
    assert_eq!(refused.kind(), ErrorKind::InvalidRequest);
    assert!(refused.message().contains("explicit ids"), "{refused}");
}

#[tokio::test]
async fn a_failed_read_or_write_never_runs_the_step_and_an_applied_half_is_undone() {
    let server = TestServer::start().await.unwrap();
    let stack = stack(&server, None);
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;
    let before = state(&client, &[1, 20]).await;
    let ran = Arc::new(AtomicBool::new(false));

    // The before-image cannot be read: nothing is written, the step does not run.
    server.set_faults(
        FaultRule::new(Fault::unavailable())
            .rpc(Rpc::GetPoints)
            .first(1),
    );
    let flag = Arc::clone(&ran);
    let failed = Saga::new(client.clone())
        .write(
            UpsertPointsBuilder::new("docs", vec![point(20, "never")]),
            || async move {
                flag.store(true, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, SagaError::Read(e) if e.kind() == ErrorKind::Unavailable),
        "{failed:?}"
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(
        server.calls().count(Rpc::Upsert, "docs"),
        1,
        "only the setup's"
    );

    server.set_faults(
        FaultRule::new(Fault::apply_then_unavailable())
            .rpc(Rpc::Upsert)
            .first(1),
    );
    let flag = Arc::clone(&ran);
    let failed = Saga::new(client.clone())
        .write(
            UpsertPointsBuilder::new("docs", vec![point(1, "half"), point(20, "half")]),
            || async move {
                flag.store(true, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            },
        )
        .await
        .unwrap_err();
    let SagaError::Write {
        error,
        compensation: Compensation::Applied,
    } = failed
    else {
        panic!("{failed:?}")
    };
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(!ran.load(Ordering::SeqCst), "the step did not run");
    assert_eq!(
        state(&client, &[1, 20]).await,
        before,
        "the applied half undone"
    );
}

#[tokio::test]
async fn an_undo_qdrant_refuses_goes_to_the_queue_or_back_to_the_caller() {
    let server = TestServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(&server, Some(dir.path()));
    let client = stack.client();
    collection_with_a_point(&client, "docs").await;
    let before = state(&client, &[1, 30]).await;

    // The undo's delete of the new point fails: it is queued, and applied when Qdrant is back.
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::DeletePoints));
    let saga = Saga::new(client.clone()).repair_into(stack.queue().unwrap());
    let failed = saga
        .write(
            UpsertPointsBuilder::new("docs", vec![point(1, "new"), point(30, "new")]),
            failing_step,
        )
        .await
        .unwrap_err();
    let SagaError::Step {
        compensation: Compensation::Queued(queued),
        ..
    } = &failed
    else {
        panic!("{failed:?}")
    };
    assert_eq!(queued.len(), 1, "the delete (the restore of 1 applied)");
    assert!(failed.to_string().contains("queued"), "{failed}");
    assert_eq!(
        state(&client, &[1]).await,
        before[..1],
        "1 restored already"
    );
    server.clear_faults();
    let queue = stack.queue().unwrap();
    assert!(
        queue.drained(Duration::from_secs(10)).await,
        "{:?}",
        queue.stats()
    );
    assert_eq!(
        state(&client, &[1, 30]).await,
        before,
        "30 deleted by the replay"
    );

    // Without a queue the caller gets the repair itself, and nothing is silent.
    server.set_faults(FaultRule::new(Fault::unavailable()).rpc(Rpc::DeletePoints));
    let failed = Saga::new(client.clone())
        .write(
            UpsertPointsBuilder::new("docs", vec![point(31, "new")]),
            failing_step,
        )
        .await
        .unwrap_err();
    let SagaError::Step {
        compensation: Compensation::Failed { error, repair },
        ..
    } = failed
    else {
        panic!("{failed:?}")
    };
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let [VectorOp::Delete(delete)] = repair.as_slice() else {
        panic!("the delete to send again: {repair:?}")
    };
    server.clear_faults();
    client.delete(delete.clone()).await.unwrap();
    assert!(state(&client, &[31]).await.is_empty());
}
