//! A database of its own for each test, in the PostgreSQL that `scripts/test.sh` starts
//! (`TEST_POSTGRES_URL`) or in a private server. Included by the test crates that need it.

/// A new database in the shared PostgreSQL; its URL.
pub(crate) async fn shared_postgres_database() -> String {
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .expect("TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh");
    create_database(&admin_url).await
}

/// A new database on the server of `admin_url`; its URL.
pub(crate) async fn create_database(admin_url: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
