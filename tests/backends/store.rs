//! The `RequestStore` contract, checked against every implementation: the embedded SQLite
//! store and a real PostgreSQL (started by `scripts/test.sh`, which exports
//! `TEST_POSTGRES_URL`; each test makes its own database in it).

use std::sync::Arc;
use std::time::Duration;

use dnsorch::domain::{
    BeforeAfter, ChangeBody, ChangeRequest, LiveRrset, LogEntry, Operation, RecordType, RequestId,
    RequestStatus, Submitter, TokenId, validate,
};
use dnsorch::store::{
    AuditStore, ChangeSetStore, Claim, Inserted, OpeningLog, Outcome, PostgresStore, RecordFilter,
    RequestFilter, RequestStore, Schema, SqliteStore, StoreError, TokenStore, no_opening_log,
};
use serde_json::json;
use tempfile::TempDir;

const LEASE: Duration = Duration::from_secs(30);
/// `MAX_UNFINISHED_PER_NAME` for the tests that are not about it.
const UNFINISHED: u32 = 100;

/// A store and what keeps its database alive.
pub(crate) struct TestStore {
    pub(crate) store: Arc<dyn RequestStore>,
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) audit: Arc<dyn AuditStore>,
    pub(crate) sets: Arc<dyn ChangeSetStore>,
    /// The database's URL, for edits behind the store's back.
    pub(crate) url: String,
    _dir: Option<TempDir>,
}

pub(crate) async fn sqlite_store() -> TestStore {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}/store.db?mode=rwc", dir.path().display());
    let store = Arc::new(
        SqliteStore::open(&url, Duration::from_secs(2))
            .await
            .unwrap(),
    );
    TestStore {
        store: store.clone(),
        tokens: store.clone(),
        audit: store.clone(),
        sets: store,
        url,
        _dir: Some(dir),
    }
}

pub(crate) async fn postgres_store() -> TestStore {
    let url = crate::support::shared_postgres_database().await;
    let store = PostgresStore::open(
        &url,
        Duration::from_secs(2),
        Schema::Migrate,
        Duration::ZERO,
        dnsorch::store::InsertBatching::default(),
    )
    .await
    .unwrap();
    let store = Arc::new(store);
    TestStore {
        store: store.clone(),
        tokens: store.clone(),
        audit: store.clone(),
        sets: store,
        url,
        _dir: None,
    }
}

/// Runs `sql` on the store's database behind the store's back, as a hand edit would.
pub(crate) async fn edit_by_hand(t: &TestStore, sql: &'static str) {
    if t.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&t.url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&t.url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

/// Runs every check against each store.
macro_rules! store_battery {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $check() { super::$check(super::sqlite_store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $check() { super::$check(super::postgres_store().await).await; })*
        }
    };
}

store_battery!(
    an_inserted_request_is_pending_with_its_first_log_line,
    a_stored_value_that_does_not_decode_is_an_error_naming_its_column,
    an_idempotency_key_replays_its_change_and_refuses_another,
    concurrent_inserts_with_one_key_create_one_row,
    claims_take_the_oldest_first_and_wait_for_older_requests_for_the_name,
    a_claim_by_id_takes_only_a_claimable_request,
    concurrent_claims_never_take_the_same_request,
    writes_under_a_lost_claim_are_refused,
    a_retry_is_not_claimable_before_its_backoff,
    completion_writes_the_ledger_row_and_the_rrset_ttl,
    a_completed_delete_removes_only_the_accounts_ledger_rows,
    expired_leases_are_released_or_failed_when_attempts_are_used_up,
    lists_filter_and_page_newest_first,
    requests_are_counted_by_status,
    due_requests_are_requeued_once_per_bound,
    a_batch_is_recorded_in_one_go_and_answers_in_order,
    a_large_batch_records_every_change_with_its_first_log_line,
    the_submitter_is_recorded_by_single_and_batch_inserts,
    a_replace_of_several_records_is_stored_claims_its_rrset_and_sets_the_ledger_to_its_records,
);

fn change_for(domain: &str, target: &str, key: Option<&str>) -> ChangeRequest {
    let body: ChangeBody = serde_json::from_value(json!({
        "context": {"account_id": "acct-1"},
        "resource": {"record_type": "A", "domain": domain, "target": target}
    }))
    .unwrap();
    validate(body, Operation::Create, key, 4096).unwrap()
}

async fn insert(store: &dyn RequestStore, domain: &str) -> RequestId {
    match store
        .insert(&change_for(domain, "192.0.2.1", None), UNFINISHED)
        .await
        .unwrap()
    {
        Inserted::Created(request) => request.id,
        other => panic!("expected a new request, got {other:?}"),
    }
}

async fn claim(store: &dyn RequestStore, id: Option<RequestId>) -> Option<Claim> {
    store.claim(id, LEASE, no_opening_log()).await.unwrap()
}

fn completed() -> Outcome {
    Outcome::Completed {
        applied_at: chrono::Utc::now(),
        verified_at: Some(chrono::Utc::now()),
        rrsets: None,
    }
}

async fn an_inserted_request_is_pending_with_its_first_log_line(t: TestStore) {
    let id = insert(&*t.store, "www.example.test").await;
    assert_eq!(
        t.store.get(id).await.unwrap().unwrap().submitted_by,
        Submitter::default()
    );
    let request = t.store.get(id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Pending);
    assert_eq!(request.attempts, 0);
    assert_eq!(request.domain, "www.example.test");
    assert_eq!(request.config.ttl, 300);
    let log = request.log_messages.unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].message.starts_with("request accepted from api"));
    assert!(t.store.get(RequestId::new()).await.unwrap().is_none());
}

/// The error of a read that met a corrupt row; panics on anything else.
fn corrupt<T: std::fmt::Debug>(read: Result<T, StoreError>) -> String {
    match read {
        Err(StoreError::Corrupt(why)) => why,
        other => panic!("expected a corrupt row, got {other:?}"),
    }
}

async fn a_stored_value_that_does_not_decode_is_an_error_naming_its_column(t: TestStore) {
    // Arrange: each row gets one value its column's type cannot hold, by hand.
    let attempts = insert(&*t.store, "attempts.example.test").await;
    let config = insert(&*t.store, "config.example.test").await;
    let sound = insert(&*t.store, "sound.example.test").await;
    for domain in ["ttl.example.test", "priority.example.test"] {
        let id = insert(&*t.store, domain).await;
        let claimed = claim(&*t.store, Some(id)).await.unwrap();
        assert!(t.store.finish(&claimed, &completed(), &[]).await.unwrap());
    }
    edit_by_hand(
        &t,
        "update dns_requests set attempts = -1 where domain = 'attempts.example.test'",
    )
    .await;
    edit_by_hand(
        &t,
        "update dns_requests set config = '\"a string\"' where domain = 'config.example.test'",
    )
    .await;
    edit_by_hand(
        &t,
        "update dns_records set ttl = -5 where domain = 'ttl.example.test'",
    )
    .await;
    edit_by_hand(
        &t,
        "update dns_records set priority = 70000 where domain = 'priority.example.test'",
    )
    .await;
    let records = |domain: &str| RecordFilter {
        domain: Some(domain.to_owned()),
        limit: 10,
        ..RecordFilter::default()
    };

    // Act
    let bad_attempts = corrupt(t.store.get(attempts).await);
    let bad_config = corrupt(t.store.get(config).await);
    let bad_ttl = corrupt(t.store.list_records(&records("ttl.example.test")).await);
    let bad_priority = corrupt(
        t.store
            .list_records(&records("priority.example.test"))
            .await,
    );
    let bad_list = corrupt(
        t.store
            .list(&RequestFilter {
                limit: 10,
                ..RequestFilter::default()
            })
            .await,
    );

    // Assert: never a default in place of the value, and the column is named.
    assert!(bad_attempts.contains("attempts"), "{bad_attempts}");
    assert!(bad_config.contains("config"), "{bad_config}");
    assert!(bad_ttl.contains("ttl"), "{bad_ttl}");
    assert!(bad_priority.contains("priority"), "{bad_priority}");
    assert!(
        bad_list.contains("attempts") || bad_list.contains("config"),
        "{bad_list}"
    );
    assert_eq!(t.store.get(sound).await.unwrap().unwrap().attempts, 0);
}

async fn an_idempotency_key_replays_its_change_and_refuses_another(t: TestStore) {
    let first = t
        .store
        .insert(
            &change_for("www.example.test", "192.0.2.1", Some("k")),
            UNFINISHED,
        )
        .await
        .unwrap();
    let Inserted::Created(first) = first else {
        panic!("{first:?}")
    };
    let again = t
        .store
        .insert(
            &change_for("WWW.example.test.", "192.0.2.1", Some("k")),
            UNFINISHED,
        )
        .await
        .unwrap();
    assert!(
        matches!(again, Inserted::Existing(ref r) if r.id == first.id),
        "{again:?}"
    );
    let other = t
        .store
        .insert(
            &change_for("www.example.test", "192.0.2.2", Some("k")),
            UNFINISHED,
        )
        .await
        .unwrap();
    assert!(
        matches!(other, Inserted::KeyReused(id) if id == first.id),
        "{other:?}"
    );
    // Keys are per account: another account's "k" is a key of its own (at a name of its own,
    // since acct-1 owns www.example.test A).
    let mut another_account = change_for("other.example.test", "192.0.2.2", Some("k"));
    another_account.account_id = "acct-2".into();
    let theirs = t.store.insert(&another_account, UNFINISHED).await.unwrap();
    assert!(
        matches!(theirs, Inserted::Created(ref r) if r.id != first.id && r.account_id == "acct-2"),
        "{theirs:?}"
    );
}

async fn concurrent_inserts_with_one_key_create_one_row(t: TestStore) {
    let change = change_for("www.example.test", "192.0.2.1", Some("same"));
    let inserts = (0..16).map(|_| t.store.insert(&change, UNFINISHED));
    let results = futures::future::join_all(inserts).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Inserted::Created(_))))
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Inserted::Created(_) | Inserted::Existing(_))))
    );
}

async fn claims_take_the_oldest_first_and_wait_for_older_requests_for_the_name(t: TestStore) {
    let a1 = insert(&*t.store, "a.example.test").await;
    let a2 = insert(&*t.store, "a.example.test").await;
    let b1 = insert(&*t.store, "b.example.test").await;

    let first = claim(&*t.store, None).await.unwrap();
    let second = claim(&*t.store, None).await.unwrap();
    assert_eq!((first.request.id, second.request.id), (a1, b1));
    assert_eq!(first.request.status, RequestStatus::Processing);
    assert_eq!(first.request.attempts, 1);
    assert!(
        claim(&*t.store, None).await.is_none(),
        "a2 must wait for a1"
    );

    assert!(t.store.finish(&first, &completed(), &[]).await.unwrap());
    assert_eq!(claim(&*t.store, None).await.unwrap().request.id, a2);
}

async fn a_claim_by_id_takes_only_a_claimable_request(t: TestStore) {
    let id = insert(&*t.store, "www.example.test").await;
    let opening: OpeningLog = Arc::new(|r| vec![LogEntry::info(format!("attempt {}", r.attempts))]);
    let claimed = t
        .store
        .claim(Some(id), LEASE, opening)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.request.id, id);
    assert!(
        claim(&*t.store, Some(id)).await.is_none(),
        "already PROCESSING"
    );
    t.store.finish(&claimed, &completed(), &[]).await.unwrap();
    assert!(
        claim(&*t.store, Some(id)).await.is_none(),
        "already COMPLETED"
    );
    let log = t
        .store
        .get(id)
        .await
        .unwrap()
        .unwrap()
        .log_messages
        .unwrap();
    assert_eq!(
        log[1].message, "attempt 1",
        "the opening log is written with the claim"
    );
}

async fn concurrent_claims_never_take_the_same_request(t: TestStore) {
    for i in 0..24 {
        insert(&*t.store, &format!("h{i}.example.test")).await;
    }
    let workers = (0..6).map(|_| {
        let store = t.store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(c) = store.claim(None, LEASE, no_opening_log()).await.unwrap() {
                mine.push(c.request.id);
            }
            mine
        })
    });
    let mut all: Vec<RequestId> = Vec::new();
    for worker in futures::future::join_all(workers).await {
        all.extend(worker.unwrap());
    }
    let total = all.len();
    all.sort_by_key(|id| id.0);
    all.dedup();
    assert_eq!((total, all.len()), (24, 24));
}

async fn writes_under_a_lost_claim_are_refused(t: TestStore) {
    let id = insert(&*t.store, "www.example.test").await;
    let stale = t
        .store
        .claim(Some(id), Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(t.store.release_expired_leases(5).await.unwrap(), [id]);
    let fresh = claim(&*t.store, Some(id)).await.unwrap();

    assert!(
        !t.store
            .append_log(&stale, &[LogEntry::info("late")])
            .await
            .unwrap()
    );
    assert!(!t.store.renew_lease(&stale, LEASE).await.unwrap());
    assert!(!t.store.finish(&stale, &completed(), &[]).await.unwrap());
    assert!(t.store.renew_lease(&fresh, LEASE).await.unwrap());
    assert!(
        t.store
            .finish(&fresh, &completed(), &[LogEntry::info("done")])
            .await
            .unwrap()
    );

    let request = t.store.get(id).await.unwrap().unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
    assert_eq!(request.attempts, 2);
    let log: Vec<String> = request
        .log_messages
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(!log.contains(&"late".to_owned()));
    assert_eq!(log.last().unwrap(), "done");
    let records = t
        .store
        .list_records(&RecordFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
}

async fn a_retry_is_not_claimable_before_its_backoff(t: TestStore) {
    let id = insert(&*t.store, "www.example.test").await;
    let first = claim(&*t.store, None).await.unwrap();
    let retry = Outcome::Retry {
        error: "SERVFAIL".into(),
        retry_in: Duration::from_secs(60),
    };
    assert!(t.store.finish(&first, &retry, &[]).await.unwrap());
    let waiting = t.store.get(id).await.unwrap().unwrap();
    assert_eq!(waiting.status, RequestStatus::Pending);
    assert_eq!(waiting.last_error.as_deref(), Some("SERVFAIL"));
    assert!(claim(&*t.store, None).await.is_none());
    assert!(claim(&*t.store, Some(id)).await.is_none());

    let other = insert(&*t.store, "other.example.test").await;
    let second = claim(&*t.store, Some(other)).await.unwrap();
    let now = Outcome::Retry {
        error: "timeout".into(),
        retry_in: Duration::ZERO,
    };
    t.store.finish(&second, &now, &[]).await.unwrap();
    assert_eq!(claim(&*t.store, None).await.unwrap().request.attempts, 2);
}

async fn completion_writes_the_ledger_row_and_the_rrset_ttl(t: TestStore) {
    let mut first = change_for("www.example.test", "192.0.2.1", None);
    first.ttl = 600;
    let mut second = change_for("www.example.test", "192.0.2.2", None);
    second.ttl = 60;
    t.store.insert(&first, UNFINISHED).await.unwrap();
    t.store.insert(&second, UNFINISHED).await.unwrap();
    for _ in 0..2 {
        let c = claim(&*t.store, None).await.unwrap();
        assert!(t.store.finish(&c, &completed(), &[]).await.unwrap());
    }
    let records = t
        .store
        .list_records(&RecordFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut rows: Vec<(String, u32)> = records.iter().map(|r| (r.target.clone(), r.ttl)).collect();
    rows.sort();
    assert_eq!(
        rows,
        [("192.0.2.1".to_owned(), 60), ("192.0.2.2".to_owned(), 60)]
    );
    let request = t.store.get(records[0].request_id).await.unwrap().unwrap();
    assert!(
        request.finished_at.is_some()
            && request.applied_at.is_some()
            && request.verified_at.is_some()
    );
}

/// A change of `operation` by `account` (no target: the whole RRset).
fn change_by(account: &str, operation: Operation, target: Option<&str>) -> ChangeRequest {
    let mut resource = json!({"record_type": "A", "domain": "www.example.test"});
    if let Some(target) = target {
        resource["target"] = json!(target);
    }
    let body: ChangeBody =
        serde_json::from_value(json!({"context": {"account_id": account}, "resource": resource}))
            .unwrap();
    validate(body, operation, None, 4096).unwrap()
}

async fn a_completed_delete_removes_only_the_accounts_ledger_rows(t: TestStore) {
    // Arrange: acct-1 holds .1 and .2, the RRset's only records.
    for target in ["192.0.2.1", "192.0.2.2"] {
        let created = t
            .store
            .insert(
                &change_by("acct-1", Operation::Create, Some(target)),
                UNFINISHED,
            )
            .await
            .unwrap();
        assert!(matches!(created, Inserted::Created(_)), "{created:?}");
        let c = claim(&*t.store, None).await.unwrap();
        assert!(t.store.finish(&c, &completed(), &[]).await.unwrap());
    }
    let rrset = async || {
        let (owner, rows) = t
            .store
            .rrset("www.example.test", RecordType::A)
            .await
            .unwrap();
        let mut rows: Vec<(String, String)> =
            rows.into_iter().map(|r| (r.account_id, r.target)).collect();
        rows.sort();
        (owner, rows)
    };

    // Act and assert: one record, then the whole RRset.
    t.store
        .insert(
            &change_by("acct-1", Operation::Delete, Some("192.0.2.2")),
            UNFINISHED,
        )
        .await
        .unwrap();
    let c = claim(&*t.store, None).await.unwrap();
    assert!(t.store.finish(&c, &completed(), &[]).await.unwrap());
    assert_eq!(
        rrset().await,
        (
            Some("acct-1".to_owned()),
            vec![("acct-1".to_owned(), "192.0.2.1".to_owned())]
        )
    );
    t.store
        .insert(&change_by("acct-1", Operation::Delete, None), UNFINISHED)
        .await
        .unwrap();
    let c = claim(&*t.store, None).await.unwrap();
    assert_eq!(c.request.target, "");
    assert!(t.store.finish(&c, &completed(), &[]).await.unwrap());
    assert_eq!(rrset().await, (None, vec![]), "nothing left, and no owner");
}

async fn expired_leases_are_released_or_failed_when_attempts_are_used_up(t: TestStore) {
    let id = insert(&*t.store, "www.example.test").await;
    t.store
        .claim(Some(id), Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    let live = insert(&*t.store, "live.example.test").await;
    claim(&*t.store, Some(live)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;

    assert_eq!(t.store.release_expired_leases(2).await.unwrap(), [id]);
    let released = t.store.get(id).await.unwrap().unwrap();
    assert_eq!(released.status, RequestStatus::Pending);
    assert!(
        released
            .log_messages
            .unwrap()
            .last()
            .unwrap()
            .message
            .contains("lease expired after attempt 1")
    );

    t.store
        .claim(Some(id), Duration::from_millis(1), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(t.store.release_expired_leases(2).await.unwrap(), [id]);
    let failed = t.store.get(id).await.unwrap().unwrap();
    assert_eq!(failed.status, RequestStatus::Failed);
    assert!(failed.finished_at.is_some());
    assert_eq!(
        t.store.get(live).await.unwrap().unwrap().status,
        RequestStatus::Processing
    );
}

async fn lists_filter_and_page_newest_first(t: TestStore) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert(&*t.store, &format!("h{i}.example.test")).await);
    }
    let done = claim(&*t.store, None).await.unwrap();
    t.store.finish(&done, &completed(), &[]).await.unwrap();

    let page = |before, status| RequestFilter {
        limit: 2,
        before,
        status,
        ..Default::default()
    };
    let first = t.store.list(&page(None, None)).await.unwrap();
    let second = t.store.list(&page(Some(first[1].seq), None)).await.unwrap();
    assert_eq!(
        [first[0].id, first[1].id, second[0].id, second[1].id],
        [ids[4], ids[3], ids[2], ids[1]]
    );
    assert!(first[0].log_messages.is_none(), "lists leave logs out");
    let completed = t
        .store
        .list(&page(None, Some(RequestStatus::Completed)))
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].id, ids[0]);
    let by_domain = RequestFilter {
        limit: 10,
        domain: Some("h3.example.test".into()),
        ..Default::default()
    };
    assert_eq!(t.store.list(&by_domain).await.unwrap()[0].id, ids[3]);
}

async fn requests_are_counted_by_status(t: TestStore) {
    for i in 0..3 {
        insert(&*t.store, &format!("h{i}.example.test")).await;
    }
    claim(&*t.store, None).await.unwrap();
    let mut counts = t.store.count_by_status().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        [(RequestStatus::Pending, 2), (RequestStatus::Processing, 1)]
    );
}

async fn due_requests_are_requeued_once_per_bound(t: TestStore) {
    // Inserted requests count as queued when they are accepted.
    let fresh = insert(&*t.store, "fresh.example.test").await;
    assert!(
        t.store
            .requeue_due(Duration::from_secs(30), 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A retry whose backoff ended was never queued again: it is queued at the next pass.
    let c = claim(&*t.store, Some(fresh)).await.unwrap();
    let retry = Outcome::Retry {
        error: "SERVFAIL".into(),
        retry_in: Duration::ZERO,
    };
    t.store.finish(&c, &retry, &[]).await.unwrap();
    assert_eq!(
        t.store
            .requeue_due(Duration::from_secs(30), 100)
            .await
            .unwrap(),
        [fresh]
    );
    assert!(
        t.store
            .requeue_due(Duration::from_secs(30), 100)
            .await
            .unwrap()
            .is_empty()
    );
    // A delivery that went missing: queued again once the bound has passed.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let older = t
        .store
        .requeue_due(Duration::from_millis(10), 100)
        .await
        .unwrap();
    assert_eq!(older, [fresh]);
    // Concurrent passes share the backlog without queueing a request twice. The bound must
    // be longer than the passes take: a stamp older than the bound is stale by definition.
    for i in 0..20 {
        insert(&*t.store, &format!("h{i}.example.test")).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let passes = (0..4).map(|_| t.store.requeue_due(Duration::from_secs(1), 7));
    let mut all: Vec<RequestId> = futures::future::join_all(passes)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    let total = all.len();
    all.sort_by_key(|id| id.0);
    all.dedup();
    assert_eq!((total, all.len()), (21, 21));
}

async fn the_submitter_is_recorded_by_single_and_batch_inserts(t: TestStore) {
    let submitter = Submitter {
        token_id: Some(TokenId::new()),
        token_name: Some("ci".into()),
        account_id: Some("admin".into()),
        client_addr: Some("192.0.2.200".into()),
    };
    let mut one = change_for("one.example.test", "192.0.2.1", None);
    one.submitter = submitter.clone();
    let mut batch = change_for("two.example.test", "192.0.2.1", Some("b"));
    batch.submitter = Submitter {
        token_id: None,
        token_name: Some("kafka-trusted".into()),
        account_id: Some("acct-1".into()),
        client_addr: None,
    };

    let Inserted::Created(first) = t.store.insert(&one, UNFINISHED).await.unwrap() else {
        panic!("not created")
    };
    let answers = t
        .store
        .insert_many(std::slice::from_ref(&batch), UNFINISHED)
        .await
        .unwrap();

    assert_eq!(first.submitted_by, submitter);
    assert_eq!(
        t.store.get(first.id).await.unwrap().unwrap().submitted_by,
        submitter
    );
    let Inserted::Created(second) = answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(
        t.store.get(second).await.unwrap().unwrap().submitted_by,
        batch.submitter
    );
}

async fn a_batch_is_recorded_in_one_go_and_answers_in_order(t: TestStore) {
    let earlier = t
        .store
        .insert(
            &change_for("a.example.test", "192.0.2.1", Some("k1")),
            UNFINISHED,
        )
        .await
        .unwrap();
    let Inserted::Created(earlier) = earlier else {
        panic!("{earlier:?}")
    };
    let batch = [
        change_for("b.example.test", "192.0.2.2", Some("k2")),
        change_for("a.example.test", "192.0.2.1", Some("k1")),
        change_for("c.example.test", "192.0.2.3", Some("k1")),
        change_for("b.example.test", "192.0.2.2", Some("k2")),
    ];

    let answers = t.store.insert_many(&batch, UNFINISHED).await.unwrap();

    assert_eq!(answers.len(), 4);
    let Inserted::Created(new) = &answers[0] else {
        panic!("{answers:?}")
    };
    assert!(
        matches!(&answers[1], Inserted::Existing(id) if *id == earlier.id),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[2], Inserted::KeyReused(id) if *id == earlier.id),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[3], Inserted::Existing(id) if id == new),
        "a repeat within the batch"
    );
    assert!(
        t.store
            .insert_many(&[], UNFINISHED)
            .await
            .unwrap()
            .is_empty()
    );
    let all = t
        .store
        .list(&RequestFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        all.iter().any(|r| r.id == *new),
        "the new request is stored"
    );
}

async fn a_large_batch_records_every_change_with_its_first_log_line(t: TestStore) {
    // More rows than one insert statement carries (SQLite splits a batch).
    let batch: Vec<ChangeRequest> = (0..1_200)
        .map(|i| {
            change_for(
                &format!("n{i}.example.test"),
                "192.0.2.1",
                Some(&format!("k{i}")),
            )
        })
        .collect();

    let answers = t.store.insert_many(&batch, UNFINISHED).await.unwrap();

    let ids: Vec<RequestId> = answers
        .iter()
        .map(|a| match a {
            Inserted::Created(id) => *id,
            other => panic!("expected a new request, got {other:?}"),
        })
        .collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 1_200);
    let last = t.store.get(ids[1_199]).await.unwrap().expect("stored");
    assert_eq!(last.domain.as_str(), "n1199.example.test");
    assert_eq!(last.idempotency_key.as_deref(), Some("k1199"));
    assert_eq!(last.status, RequestStatus::Pending);
    assert_eq!(last.log_messages.map(|log| log.len()), Some(1));
    let total: i64 = t
        .store
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, 1_200);
}

async fn a_replace_of_several_records_is_stored_claims_its_rrset_and_sets_the_ledger_to_its_records(
    t: TestStore,
) {
    // Arrange: an applied A record, then a replace of its RRset by three others, given once
    // alone and once in a batch (for another name).
    let old = insert(&*t.store, "www.example.test").await;
    let claimed = claim(&*t.store, Some(old)).await.unwrap();
    assert!(t.store.finish(&claimed, &completed(), &[]).await.unwrap());
    let replace = |domain: &str| {
        let body: ChangeBody = serde_json::from_value(json!({
            "context": {"account_id": "acct-1"},
            "resource": {"record_type": "A", "domain": domain, "config": {"ttl": 900},
                         "targets": ["192.0.2.7", "192.0.2.8", "192.0.2.9"]}
        }))
        .unwrap();
        validate(body, Operation::Replace, None, 4096).unwrap()
    };
    let single = replace("www.example.test");

    // Act
    let Inserted::Created(stored) = t.store.insert(&single, UNFINISHED).await.unwrap() else {
        panic!("not stored");
    };
    let batched = t
        .store
        .insert_many(&[replace("mail.example.test")], UNFINISHED)
        .await
        .unwrap();
    let claimed = claim(&*t.store, Some(stored.id)).await.unwrap();
    let rrsets = BeforeAfter {
        before: LiveRrset {
            ttl: 300,
            records: vec![change_for("x.test", "192.0.2.1", None).records[0].clone()],
        },
        after: LiveRrset {
            ttl: 900,
            records: single.records.clone(),
        },
    };
    let outcome = Outcome::Completed {
        applied_at: chrono::Utc::now(),
        verified_at: None,
        rrsets: Some(rrsets.clone()),
    };
    assert!(t.store.finish(&claimed, &outcome, &[]).await.unwrap());

    // Assert: the records and the RRsets read back typed, the ledger is exactly the set.
    let read = t.store.get(stored.id).await.unwrap().unwrap();
    assert_eq!(read.operation, Operation::Replace);
    assert_eq!(read.records, single.records);
    assert_eq!(read.before, Some(rrsets.before));
    assert_eq!(read.after, Some(rrsets.after));
    let Inserted::Created(batched) = &batched[0] else {
        panic!("{batched:?}")
    };
    let batched = t.store.get(*batched).await.unwrap().unwrap();
    assert_eq!(batched.records, single.records);
    assert_eq!(batched.before, None);
    let (owner, rows) = t
        .store
        .rrset("mail.example.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        owner.as_deref(),
        Some("acct-1"),
        "a replace claims its RRset"
    );
    assert!(rows.is_empty());
    let (_, rows) = t
        .store
        .rrset("www.example.test", RecordType::A)
        .await
        .unwrap();
    let held: Vec<(String, u32)> = rows.iter().map(|r| (r.target.clone(), r.ttl)).collect();
    assert_eq!(
        held,
        [
            ("192.0.2.7".to_owned(), 900),
            ("192.0.2.8".to_owned(), 900),
            ("192.0.2.9".to_owned(), 900)
        ]
    );
    assert_eq!(
        t.store.record_types("www.example.test").await.unwrap(),
        [RecordType::A]
    );
}
