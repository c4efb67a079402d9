//! The `AuditStore` contract, checked against both stores (as `store.rs` does for requests).

use chrono::Utc;
use dnsorch::domain::{Submitter, TokenId};
use dnsorch::store::{AuditAction, AuditFilter, AuditStore, NewAuditEntry};
use serde_json::json;

use crate::store::{TestStore, postgres_store, sqlite_store};

macro_rules! audit_battery {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $check() { super::$check(super::sqlite_store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $check() { super::$check(super::postgres_store().await).await; })*
        }
    };
}

audit_battery!(
    an_entry_is_stored_with_its_actor_details_and_the_database_clock,
    entries_are_listed_newest_first_and_paged_by_cursor,
    entries_are_filtered_by_action,
);

fn entry(action: AuditAction, subject: &str) -> NewAuditEntry {
    NewAuditEntry {
        action,
        subject: subject.into(),
        actor: Submitter {
            token_id: Some(TokenId::new()),
            token_name: Some("ops".into()),
            account_id: Some("admin".into()),
            client_addr: Some("192.0.2.7".into()),
        },
        details: json!({"token_name": "ci", "account_id": "acct-42"}),
    }
}

async fn all(audit: &dyn AuditStore, action: Option<AuditAction>) -> Vec<String> {
    let filter = AuditFilter {
        action,
        before: None,
        limit: 500,
    };
    let entries = audit.list_audit(&filter).await.unwrap();
    entries.into_iter().map(|e| e.subject).collect()
}

async fn an_entry_is_stored_with_its_actor_details_and_the_database_clock(t: TestStore) {
    assert!(
        all(&*t.audit, None).await.is_empty(),
        "a fresh database has no entries"
    );
    let new = entry(AuditAction::TokenCreate, "tok-1");
    let cli = NewAuditEntry {
        actor: Submitter {
            token_name: Some("cli".into()),
            ..Submitter::default()
        },
        details: json!({}),
        ..entry(AuditAction::TokenRevoke, "tok-2")
    };

    let stored = t.audit.record_audit(&new).await.unwrap();
    let by_cli = t.audit.record_audit(&cli).await.unwrap();

    assert_eq!(stored.action, AuditAction::TokenCreate);
    assert_eq!(stored.subject, "tok-1");
    assert_eq!(stored.actor, new.actor);
    assert_eq!(stored.details, new.details);
    let age = Utc::now() - stored.at;
    assert!(
        age.num_seconds().abs() < 60,
        "at {} is the database's now",
        stored.at
    );
    assert_ne!(stored.id, by_cli.id);
    assert!(by_cli.seq > stored.seq);
    assert_eq!(by_cli.actor, cli.actor);
    let listed = t
        .audit
        .list_audit(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![by_cli, stored]);
}

async fn entries_are_listed_newest_first_and_paged_by_cursor(t: TestStore) {
    for i in 1..=5 {
        t.audit
            .record_audit(&entry(AuditAction::TokenRotate, &format!("tok-{i}")))
            .await
            .unwrap();
    }

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let filter = AuditFilter {
            action: None,
            before,
            limit: 2,
        };
        let page = t.audit.list_audit(&filter).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        pages.push(page.iter().map(|e| e.subject.clone()).collect::<Vec<_>>());
    }

    assert_eq!(
        pages,
        vec![
            vec!["tok-5", "tok-4"],
            vec!["tok-3", "tok-2"],
            vec!["tok-1"],
        ]
    );
}

async fn entries_are_filtered_by_action(t: TestStore) {
    for (action, subject) in [
        (AuditAction::TokenCreate, "a"),
        (AuditAction::TokenRotate, "a"),
        (AuditAction::TokenCreate, "b"),
        (AuditAction::TokenRevoke, "a"),
        (AuditAction::RrsetAdopt, "www.example.com A"),
    ] {
        t.audit.record_audit(&entry(action, subject)).await.unwrap();
    }

    assert_eq!(
        all(&*t.audit, Some(AuditAction::TokenCreate)).await,
        ["b", "a"]
    );
    assert_eq!(all(&*t.audit, Some(AuditAction::TokenRevoke)).await, ["a"]);
    assert_eq!(
        all(&*t.audit, Some(AuditAction::RrsetAdopt)).await,
        ["www.example.com A"]
    );
    assert!(
        all(&*t.audit, Some(AuditAction::RrsetMerged))
            .await
            .is_empty()
    );
    assert_eq!(all(&*t.audit, None).await.len(), 5);
    let filter = AuditFilter {
        action: Some(AuditAction::TokenCreate),
        before: None,
        limit: 1,
    };
    let newest = t.audit.list_audit(&filter).await.unwrap();
    let older = t
        .audit
        .list_audit(&AuditFilter {
            before: Some(newest[0].seq),
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(older.iter().map(|e| &e.subject).collect::<Vec<_>>(), ["a"]);
}
