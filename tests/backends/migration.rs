//! The ownership migration (`20261202000001_ownership_and_audit.sql`) on a populated database,
//! for both stores: a database is brought to the previous schema with the earlier migration
//! files, filled with plain SQL as the previous version would have left it (duplicate ledger
//! rows, an RRset shared by two accounts), and then opened as usual, which applies only the new
//! migration (identical files have identical checksums).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use dnsorch::domain::{LiveRrset, RecordData, RecordType, RequestId, RequestStatus};
use dnsorch::store::{
    AuditAction, AuditFilter, AuditStore, Inserted, Outcome, PostgresStore, RecordFilter,
    RequestStore, Schema, SqliteStore, no_opening_log,
};
use serde_json::json;
use sqlx::migrate::Migrator;
use tempfile::TempDir;
use uuid::Uuid;

use crate::ownership::{adopt, completed, create, delete};

/// The version of the migration under test: everything before it is the previous schema.
const OWNERSHIP_MIGRATION: &str = "20261202000001";

/// A ledger row as the previous version wrote it, each with a request of its own (the old
/// schema has one row per request), in the order they were written (`seq`).
struct OldRow {
    label: &'static str,
    account: &'static str,
    domain: &'static str,
    record_type: &'static str,
    target: &'static str,
    priority: Option<i32>,
}

const fn old(
    label: &'static str,
    account: &'static str,
    domain: &'static str,
    record_type: &'static str,
    target: &'static str,
    priority: Option<i32>,
) -> OldRow {
    OldRow {
        label,
        account,
        domain,
        record_type,
        target,
        priority,
    }
}

const OLD_ROWS: [OldRow; 10] = [
    old(
        "dup-old",
        "acct-a",
        "dup.example.test",
        "A",
        "192.0.2.1",
        None,
    ),
    old(
        "shared-a",
        "acct-a",
        "shared.example.test",
        "A",
        "192.0.2.1",
        None,
    ),
    old(
        "solo-1",
        "acct-c",
        "solo.example.test",
        "A",
        "192.0.2.5",
        None,
    ),
    old(
        "mx10-old",
        "acct-a",
        "mx.example.test",
        "MX",
        "mail.example.test",
        Some(10),
    ),
    old(
        "shared-b",
        "acct-b",
        "shared.example.test",
        "A",
        "192.0.2.2",
        None,
    ),
    old(
        "dup-new",
        "acct-a",
        "dup.example.test",
        "A",
        "192.0.2.1",
        None,
    ),
    // acct-b also holds acct-a's record: merged into acct-a's older row.
    old(
        "shared-b-dup",
        "acct-b",
        "shared.example.test",
        "A",
        "192.0.2.1",
        None,
    ),
    old(
        "mx20",
        "acct-a",
        "mx.example.test",
        "MX",
        "mail.example.test",
        Some(20),
    ),
    old(
        "mx10-new",
        "acct-a",
        "mx.example.test",
        "MX",
        "mail.example.test",
        Some(10),
    ),
    old(
        "solo-2",
        "acct-c",
        "solo.example.test",
        "A",
        "192.0.2.6",
        None,
    ),
];

/// The request of each old row, by label.
type Ids = HashMap<&'static str, RequestId>;

/// A migrator of the store's migrations before the ownership migration, copied into a
/// directory of their own (kept alive with it).
async fn previous_migrations(store: &str) -> (TempDir, Migrator) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(store);
    let dir = TempDir::new().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&source)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&format!("{OWNERSHIP_MIGRATION}_"))),
        "{names:?}"
    );
    let previous: Vec<&String> = names
        .iter()
        .filter(|n| n.as_str() < OWNERSHIP_MIGRATION)
        .collect();
    assert_eq!(previous.len(), 2, "{previous:?}");
    for name in previous {
        std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    let migrator = Migrator::new(dir.path()).await.unwrap();
    assert_eq!(migrator.iter().count(), 2);
    (dir, migrator)
}

fn old_config(priority: Option<i32>) -> String {
    json!({"ttl": 300, "priority": priority, "extra_config": {}}).to_string()
}

/// Fills a SQLite database at the previous schema.
async fn fill_sqlite(pool: &sqlx::SqlitePool) -> Ids {
    let mut ids = Ids::new();
    for (i, row) in OLD_ROWS.iter().enumerate() {
        let id = RequestId::new();
        let at = format!("2026-11-25T10:00:{i:02}.000Z");
        sqlx::query(
            "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
             target, config, status, fingerprint, attempts, next_attempt_at, applied_at, \
             verified_at, finished_at, created_at, updated_at) \
             values (?1, ?2, 'api', 'create', ?3, ?4, ?5, ?6, 'COMPLETED', 'old', 1, ?7, ?7, ?7, \
             ?7, ?7, ?7)",
        )
        .bind(id.0.to_string())
        .bind(row.account)
        .bind(row.record_type)
        .bind(row.domain)
        .bind(row.target)
        .bind(old_config(row.priority))
        .bind(&at)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into dns_records (id, request_id, account_id, record_type, domain, target, \
             ttl, priority, provisioned_at, created_at, updated_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, 300, ?7, ?8, ?8, ?8)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(id.0.to_string())
        .bind(row.account)
        .bind(row.record_type)
        .bind(row.domain)
        .bind(row.target)
        .bind(row.priority)
        .bind(&at)
        .execute(pool)
        .await
        .unwrap();
        ids.insert(row.label, id);
    }
    ids
}

/// Fills a PostgreSQL database at the previous schema.
async fn fill_postgres(pool: &sqlx::PgPool) -> Ids {
    let mut ids = Ids::new();
    for row in &OLD_ROWS {
        let id = RequestId::new();
        sqlx::query(
            "insert into dns_requests (id, account_id, source, operation, record_type, domain, \
             target, config, status, fingerprint, attempts, next_attempt_at, applied_at, \
             verified_at, finished_at, created_at, updated_at) \
             values ($1, $2, 'api', 'create', $3, $4, $5, $6::jsonb, 'COMPLETED', 'old', 1, now(), \
             now(), now(), now(), now(), now())",
        )
        .bind(id.0)
        .bind(row.account)
        .bind(row.record_type)
        .bind(row.domain)
        .bind(row.target)
        .bind(old_config(row.priority))
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into dns_records (id, request_id, account_id, record_type, domain, target, \
             ttl, priority, provisioned_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, 300, $7, now(), now(), now())",
        )
        .bind(Uuid::new_v4())
        .bind(id.0)
        .bind(row.account)
        .bind(row.record_type)
        .bind(row.domain)
        .bind(row.target)
        .bind(row.priority)
        .execute(pool)
        .await
        .unwrap();
        ids.insert(row.label, id);
    }
    ids
}

#[tokio::test]
async fn sqlite_a_populated_database_gets_one_owner_per_rrset_and_each_record_once() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}/store.db?mode=rwc", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (_migrations, previous) = previous_migrations("sqlite").await;
    previous.run(&pool).await.unwrap();
    let ids = fill_sqlite(&pool).await;
    pool.close().await;

    let store = SqliteStore::open(&url, Duration::from_secs(2))
        .await
        .unwrap();

    check_converted(&store, &store, &ids).await;
    drop(store);
    let again = SqliteStore::open(&url, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        merged_entries(&again).await,
        1,
        "opening again merges nothing"
    );
}

#[tokio::test]
async fn postgres_a_populated_database_gets_one_owner_per_rrset_and_each_record_once() {
    let url = crate::support::shared_postgres_database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (_migrations, previous) = previous_migrations("postgres").await;
    previous.run(&pool).await.unwrap();
    let ids = fill_postgres(&pool).await;
    pool.close().await;

    let open = async || {
        PostgresStore::open(
            &url,
            Duration::from_secs(2),
            Schema::Migrate,
            Duration::ZERO,
            dnsorch::store::InsertBatching::default(),
        )
        .await
        .unwrap()
    };
    let store = open().await;

    check_converted(&store, &store, &ids).await;
    let again = open().await;
    assert_eq!(
        merged_entries(&again).await,
        1,
        "opening again merges nothing"
    );
}

async fn merged_entries(audit: &dyn AuditStore) -> usize {
    let filter = AuditFilter {
        action: Some(AuditAction::RrsetMerged),
        before: None,
        limit: 100,
    };
    audit.list_audit(&filter).await.unwrap().len()
}

/// An RRset's ledger rows as (account, target, priority, request), sorted by target and
/// priority, and its owner.
async fn rrset(
    store: &dyn RequestStore,
    domain: &str,
    record_type: RecordType,
) -> (
    Option<String>,
    Vec<(String, String, Option<u16>, RequestId)>,
) {
    let (owner, rows) = store.rrset(domain, record_type).await.unwrap();
    let mut rows: Vec<_> = rows
        .into_iter()
        .map(|r| (r.account_id, r.target, r.priority, r.request_id))
        .collect();
    rows.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    (owner, rows)
}

fn row(
    account: &str,
    target: &str,
    priority: Option<u16>,
    request: RequestId,
) -> (String, String, Option<u16>, RequestId) {
    (account.to_owned(), target.to_owned(), priority, request)
}

/// What the migration must have made of `OLD_ROWS`, and that intake respects it.
async fn check_converted(store: &dyn RequestStore, audit: &dyn AuditStore, ids: &Ids) {
    let a = Some("acct-a".to_owned());
    // Duplicates merged into the oldest row.
    assert_eq!(
        rrset(store, "dup.example.test", RecordType::A).await,
        (
            a.clone(),
            vec![row("acct-a", "192.0.2.1", None, ids["dup-old"])]
        )
    );
    // Priority is part of the record: MX 10 twice is one record, MX 20 another.
    assert_eq!(
        rrset(store, "mx.example.test", RecordType::Mx).await,
        (
            a.clone(),
            vec![
                row("acct-a", "mail.example.test", Some(10), ids["mx10-old"]),
                row("acct-a", "mail.example.test", Some(20), ids["mx20"]),
            ]
        )
    );
    // The shared RRset goes to the account of its oldest row, with every row.
    assert_eq!(
        rrset(store, "shared.example.test", RecordType::A).await,
        (
            a.clone(),
            vec![
                row("acct-a", "192.0.2.1", None, ids["shared-a"]),
                row("acct-a", "192.0.2.2", None, ids["shared-b"]),
            ]
        )
    );
    // A single-account RRset stays as it was.
    assert_eq!(
        rrset(store, "solo.example.test", RecordType::A).await,
        (
            Some("acct-c".to_owned()),
            vec![
                row("acct-c", "192.0.2.5", None, ids["solo-1"]),
                row("acct-c", "192.0.2.6", None, ids["solo-2"]),
            ]
        )
    );
    let all = RecordFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.list_records(&all).await.unwrap().len(), 7);
    // The requests themselves are history and stay as they were.
    let old = store.get(ids["shared-b"]).await.unwrap().unwrap();
    assert_eq!(
        (old.account_id.as_str(), old.status),
        ("acct-b", RequestStatus::Completed)
    );

    // One audit entry, for the shared RRset only.
    let everything = AuditFilter {
        action: None,
        before: None,
        limit: 100,
    };
    let entries = audit.list_audit(&everything).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.action, AuditAction::RrsetMerged);
    assert_eq!(entry.subject, "shared.example.test A");
    assert_eq!(entry.actor.token_name.as_deref(), Some("migration"));
    assert_eq!(entry.details["domain"], "shared.example.test");
    assert_eq!(entry.details["record_type"], "A");
    assert_eq!(entry.details["owner"], "acct-a");
    let mut accounts: Vec<&str> = entry.details["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", entry.details))
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    accounts.sort_unstable();
    assert_eq!(accounts, ["acct-a", "acct-b"]);

    // Intake respects the owners the migration set.
    for refused in [
        create("acct-b", "shared.example.test", "192.0.2.3"),
        delete("acct-b", "shared.example.test", Some("192.0.2.2")),
        delete("acct-b", "shared.example.test", None),
        create("acct-b", "solo.example.test", "192.0.2.3"),
        create("acct-c", "dup.example.test", "192.0.2.3"),
    ] {
        let answer = store.insert(&refused, 100).await.unwrap();
        assert!(
            matches!(answer, Inserted::NotOwner),
            "{refused:?}: {answer:?}"
        );
    }
    // The owner's create of a record it holds writes no new row (the new unique index).
    let again = match store
        .insert(&create("acct-a", "shared.example.test", "192.0.2.1"), 100)
        .await
        .unwrap()
    {
        Inserted::Created(request) => request.id,
        other => panic!("{other:?}"),
    };
    run(store, again, completed()).await;
    assert_eq!(
        rrset(store, "shared.example.test", RecordType::A)
            .await
            .1
            .len(),
        2
    );
    // An adoption writes several rows for one request (request_id is no longer unique).
    let adoption = match store
        .insert(&adopt("acct-b", "solo.example.test"), 100)
        .await
        .unwrap()
    {
        Inserted::Created(request) => request.id,
        other => panic!("{other:?}"),
    };
    let live = LiveRrset {
        ttl: 600,
        records: vec![
            RecordData::A(Ipv4Addr::new(192, 0, 2, 7)),
            RecordData::A(Ipv4Addr::new(192, 0, 2, 8)),
        ],
    };
    run(
        store,
        adoption,
        Outcome::Adopted {
            at: Utc::now(),
            live: Some(live),
        },
    )
    .await;
    assert_eq!(
        rrset(store, "solo.example.test", RecordType::A).await,
        (
            Some("acct-b".to_owned()),
            vec![
                row("acct-b", "192.0.2.7", None, adoption),
                row("acct-b", "192.0.2.8", None, adoption),
            ]
        )
    );
}

async fn run(store: &dyn RequestStore, id: RequestId, outcome: Outcome) {
    let claimed = store
        .claim(Some(id), Duration::from_secs(30), no_opening_log())
        .await
        .unwrap()
        .unwrap();
    assert!(store.finish(&claimed, &outcome, &[]).await.unwrap());
}
