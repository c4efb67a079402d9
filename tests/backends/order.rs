//! Per-name order on PostgreSQL, with transactions held open by hand: one name's requests are
//! claimed in the order they commit, and at most one of them is PROCESSING, whatever order
//! concurrent inserts become visible in. (SQLite has one writer: its requests become visible in
//! the order they are numbered.)

use std::time::Duration;

use dnsorch::domain::RequestId;
use dnsorch::store::{
    InsertBatching, Inserted, PostgresStore, RequestStore, Schema, no_opening_log,
};
use sqlx::PgPool;

use crate::ownership::change;
use dnsorch::domain::Operation;

const LEASE: Duration = Duration::from_secs(30);

async fn open(url: &str) -> PostgresStore {
    PostgresStore::open(
        url,
        Duration::from_secs(2),
        Schema::Migrate,
        Duration::ZERO,
        InsertBatching::default(),
    )
    .await
    .unwrap()
}

/// A PENDING create of `account` for `domain` (type `record_type`), inserted as the store's
/// insert does: admitted by `dnsorch_admit` in the statement. Its id.
async fn insert_admitted(
    connection: &mut sqlx::PgConnection,
    account: &str,
    domain: &str,
    record_type: &str,
) -> RequestId {
    let id = RequestId::new();
    let stored = sqlx::query(
        "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
         target, config, status, fingerprint, next_attempt_at, created_at, updated_at) \
         select $1, $2, 'kafka', 'create', $3, $4, '192.0.2.1', \
         '{\"ttl\": 300, \"priority\": null, \"extra_config\": {}}', 'PENDING', 'f', \
         now(), now(), now() where dnsorch_admit('create', $4, $3, $2, 100)",
    )
    .bind(id.0)
    .bind(account)
    .bind(record_type)
    .bind(domain)
    .execute(connection)
    .await
    .unwrap();
    assert_eq!(stored.rows_affected(), 1);
    id
}

async fn processing(pool: &PgPool, domain: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from dns_requests where domain = $1 and status = 'PROCESSING'",
    )
    .bind(domain)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_a_request_that_commits_late_is_still_claimed_before_a_later_one_for_its_name() {
    let url = crate::support::shared_postgres_database().await;
    let store = std::sync::Arc::new(open(&url).await);
    let pool = PgPool::connect(&url).await.unwrap();
    let domain = "late.example.test";

    // A Kafka batch's insert for the name, in a transaction that commits late.
    let mut batch = pool.begin().await.unwrap();
    let early = insert_admitted(&mut batch, "acct-1", domain, "A").await;

    // Meanwhile an API insert for the same name (another account, another type).
    let api_change = change(
        "acct-2",
        Operation::Create,
        domain,
        "TXT",
        Some("later"),
        None,
    );
    let api = tokio::spawn({
        let store = store.clone();
        async move { store.insert(&api_change, 100).await.unwrap() }
    });
    // Until it has either finished or is waiting for a lock (states, not time).
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' \
             and wait_event = 'advisory' and datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if api.is_finished() || waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A worker looks for work now: nothing of that name may run before the batch's request.
    let first = store.claim(None, LEASE, no_opening_log()).await.unwrap();
    batch.commit().await.unwrap();
    let later = match api.await.unwrap() {
        Inserted::Created(request) => request,
        other => panic!("the API insert was not stored: {other:?}"),
    };

    // The name's requests are numbered in commit order and claimed in that order, one at a time.
    let early_seq: i64 = sqlx::query_scalar("select seq from dns_requests where id = $1")
        .bind(early.0)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(early_seq < later.seq, "{early_seq} !< {}", later.seq);
    let first = match first {
        Some(claim) => claim,
        None => store
            .claim(None, LEASE, no_opening_log())
            .await
            .unwrap()
            .expect("the batch's request is claimable once committed"),
    };
    assert_eq!(first.request.id, early);
    assert_eq!(processing(&pool, domain).await, 1);
    assert!(
        store
            .claim(None, LEASE, no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(processing(&pool, domain).await, 1);
}

#[tokio::test]
async fn postgres_two_open_transactions_cannot_both_make_a_name_processing() {
    let url = crate::support::shared_postgres_database().await;
    let store = open(&url).await;
    let pool = PgPool::connect(&url).await.unwrap();
    let domain = "twice.example.test";
    let mut connection = pool.acquire().await.unwrap();
    let one = insert_admitted(&mut connection, "acct-1", domain, "A").await;
    let two = insert_admitted(&mut connection, "acct-1", domain, "A").await;
    drop(connection);
    let set_processing = "update dns_requests set status = 'PROCESSING' where id = $1";

    // Two transactions each make one of the name's requests PROCESSING.
    let mut first = pool.begin().await.unwrap();
    sqlx::query(set_processing)
        .bind(one.0)
        .execute(&mut *first)
        .await
        .unwrap();
    let second = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut second = pool.begin().await.unwrap();
            let done = sqlx::query(set_processing)
                .bind(two.0)
                .execute(&mut *second)
                .await;
            match done {
                Ok(_) => second.commit().await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
    });
    first.commit().await.unwrap();

    // The second waited for the first and was refused by the index.
    let refused = second
        .await
        .unwrap()
        .expect_err("two requests of one name PROCESSING");
    let constraint = refused
        .as_database_error()
        .and_then(|e| e.constraint().map(str::to_owned));
    assert_eq!(
        constraint.as_deref(),
        Some("dns_requests_one_processing_per_name")
    );
    assert_eq!(processing(&pool, domain).await, 1);
    // And a claim finds nothing of the name while one is PROCESSING.
    assert!(
        store
            .claim(None, LEASE, no_opening_log())
            .await
            .unwrap()
            .is_none()
    );
}
