//! The `TokenStore` contract, checked against both stores (as `store.rs` does for requests).

use std::time::Duration;

use dnsorch::domain::{Secret, TokenId, TokenSpec};
use dnsorch::store::{TokenChange, TokenFilter, TokenStore};

use crate::store::{TestStore, postgres_store, sqlite_store};

macro_rules! token_battery {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $check() { super::$check(super::sqlite_store().await).await; })*
        }
        mod postgres {
            $(#[tokio::test] async fn $check() { super::$check(super::postgres_store().await).await; })*
        }
    };
}

token_battery!(
    a_token_is_found_by_its_digest_only,
    a_rotation_replaces_the_digest_and_a_revoked_token_cannot_be_rotated,
    the_last_valid_admin_token_is_kept_even_against_concurrent_revocations,
    an_expired_admin_token_does_not_count_as_the_last_valid_one,
    the_first_token_is_created_only_in_an_empty_table,
    last_used_is_written_at_most_once_per_interval,
    tokens_are_listed_newest_first_by_account,
);

fn spec(account: &str, admin: bool) -> TokenSpec {
    TokenSpec {
        account_id: account.into(),
        name: format!("{account}-token"),
        policies: Vec::new(),
        expires_in: None,
        allowed_subnets: vec!["10.0.0.0/8".parse().unwrap()],
        admin,
        metrics: false,
        forwarder: false,
    }
}

async fn create(tokens: &dyn TokenStore, spec: &TokenSpec) -> (TokenId, Secret) {
    let secret = Secret::generate();
    let token = tokens.create_token(spec, &secret.digest()).await.unwrap();
    (token.id, secret)
}

async fn a_token_is_found_by_its_digest_only(t: TestStore) {
    let (id, secret) = create(&*t.tokens, &spec("acct-1", false)).await;

    let found = t
        .tokens
        .token_by_digest(&secret.digest())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(found.id, id);
    assert_eq!(found.account, "acct-1");
    assert_eq!(found.allowed_subnets[0].to_string(), "10.0.0.0/8");
    assert!(found.revoked_at.is_none() && found.expires_at.is_none());
    assert_eq!(t.tokens.get_token(id).await.unwrap().unwrap(), found);
    assert!(
        t.tokens
            .token_by_digest(secret.expose())
            .await
            .unwrap()
            .is_none()
    );
    assert!(t.tokens.get_token(TokenId::new()).await.unwrap().is_none());
}

async fn a_rotation_replaces_the_digest_and_a_revoked_token_cannot_be_rotated(t: TestStore) {
    let (id, old) = create(&*t.tokens, &spec("acct-1", false)).await;
    let new = Secret::generate();

    let rotated = t.tokens.rotate_token(id, &new.digest()).await.unwrap();

    assert!(
        matches!(&rotated, TokenChange::Done(token) if token.rotated_at.is_some()),
        "{rotated:?}"
    );
    assert!(
        t.tokens
            .token_by_digest(&old.digest())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        t.tokens
            .token_by_digest(&new.digest())
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(
        matches!(t.tokens.revoke_token(id).await.unwrap(), TokenChange::Done(token) if token.revoked_at.is_some())
    );
    let again = t
        .tokens
        .rotate_token(id, &Secret::generate().digest())
        .await
        .unwrap();
    assert!(matches!(again, TokenChange::Revoked(_)), "{again:?}");
    assert!(matches!(
        t.tokens.rotate_token(TokenId::new(), "x").await.unwrap(),
        TokenChange::NotFound
    ));
    assert!(matches!(
        t.tokens.revoke_token(TokenId::new()).await.unwrap(),
        TokenChange::NotFound
    ));
}

async fn the_last_valid_admin_token_is_kept_even_against_concurrent_revocations(t: TestStore) {
    let (a, _) = create(&*t.tokens, &spec("admin", true)).await;
    let (b, _) = create(&*t.tokens, &spec("admin", true)).await;
    let (plain, _) = create(&*t.tokens, &spec("acct-1", false)).await;

    let (first, second) = tokio::join!(t.tokens.revoke_token(a), t.tokens.revoke_token(b));

    let outcomes = [first.unwrap(), second.unwrap()];
    let done = outcomes
        .iter()
        .filter(|o| matches!(o, TokenChange::Done(_)))
        .count();
    let kept = outcomes
        .iter()
        .filter(|o| matches!(o, TokenChange::LastAdmin))
        .count();
    assert_eq!((done, kept), (1, 1), "{outcomes:?}");
    assert!(matches!(
        t.tokens.revoke_token(plain).await.unwrap(),
        TokenChange::Done(_)
    ));
}

async fn an_expired_admin_token_does_not_count_as_the_last_valid_one(t: TestStore) {
    let (valid, _) = create(&*t.tokens, &spec("admin", true)).await;
    let brief = TokenSpec {
        expires_in: Some(Duration::from_millis(1)),
        ..spec("admin", true)
    };
    create(&*t.tokens, &brief).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let refused = t.tokens.revoke_token(valid).await.unwrap();

    assert!(matches!(refused, TokenChange::LastAdmin), "{refused:?}");
}

async fn the_first_token_is_created_only_in_an_empty_table(t: TestStore) {
    let first = Secret::generate();
    let second = Secret::generate();

    let created = t
        .tokens
        .create_first_token(&spec("admin", true), &first.digest())
        .await
        .unwrap();
    let again = t
        .tokens
        .create_first_token(&spec("admin", true), &second.digest())
        .await
        .unwrap();

    assert!(created.is_some_and(|token| token.admin));
    assert!(again.is_none());
    assert!(
        t.tokens
            .token_by_digest(&second.digest())
            .await
            .unwrap()
            .is_none()
    );
}

async fn last_used_is_written_at_most_once_per_interval(t: TestStore) {
    let (id, _) = create(&*t.tokens, &spec("acct-1", false)).await;

    t.tokens
        .touch_token(id, Duration::from_secs(3600))
        .await
        .unwrap();
    let first = t.tokens.get_token(id).await.unwrap().unwrap().last_used_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.tokens
        .touch_token(id, Duration::from_secs(3600))
        .await
        .unwrap();
    let second = t.tokens.get_token(id).await.unwrap().unwrap().last_used_at;
    t.tokens.touch_token(id, Duration::ZERO).await.unwrap();
    let third = t.tokens.get_token(id).await.unwrap().unwrap().last_used_at;

    assert!(first.is_some());
    assert_eq!(first, second, "within the interval nothing is written");
    assert!(third > second, "after it, the time moves");
}

async fn tokens_are_listed_newest_first_by_account(t: TestStore) {
    let (a1, _) = create(&*t.tokens, &spec("acct-1", false)).await;
    let (_b, _) = create(&*t.tokens, &spec("acct-2", false)).await;
    let (a2, _) = create(&*t.tokens, &spec("acct-1", false)).await;

    let listed = t
        .tokens
        .list_tokens(&TokenFilter {
            account_id: Some("acct-1".into()),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();

    let ids: Vec<TokenId> = listed.iter().map(|t| t.id).collect();
    assert_eq!(ids, [a2, a1]);
}
