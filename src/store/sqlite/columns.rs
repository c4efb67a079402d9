//! How SQLite holds the values whose types differ between the stores: UUIDs and JSON as text,
//! every integer as 64 bits. The rest of the decoding is shared (`store::rows`).

use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::rows::{Columns, Plain, corrupt, decode};

impl Columns for SqliteRow {
    fn plain<T: Plain>(&self, column: &'static str) -> Result<T, StoreError> {
        decode(self, column)
    }

    fn integer(&self, column: &'static str) -> Result<Option<i64>, StoreError> {
        decode(self, column)
    }

    fn uuid(&self, column: &'static str) -> Result<Option<Uuid>, StoreError> {
        let text: Option<String> = decode(self, column)?;
        text.map(|text| Uuid::parse_str(&text).map_err(|e| corrupt(column, e)))
            .transpose()
    }

    fn json<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError> {
        let text: String = decode(self, column)?;
        serde_json::from_str(&text).map_err(|e| corrupt(column, e))
    }

    fn json_or_null<T: DeserializeOwned>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = decode(self, column)?;
        text.map(|text| serde_json::from_str(&text).map_err(|e| corrupt(column, e)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::{RequestId, RequestStatus};

    use super::*;

    /// One row of `select`, from an in-memory database.
    async fn row(select: &'static str) -> SqliteRow {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query(select).fetch_one(&pool).await.unwrap()
    }

    fn corrupt_column<T: std::fmt::Debug>(read: Result<T, StoreError>) -> String {
        match read {
            Err(StoreError::Corrupt(why)) => why,
            other => panic!("expected a corrupt value, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn counts_out_of_range_are_errors_naming_the_column() {
        let row = row("select -1 as attempts, 4294967296 as ttl, 70000 as priority, 7 as n").await;

        assert_eq!(
            corrupt_column(row.get::<u32>("attempts")),
            "column attempts: -1 is out of range"
        );
        assert_eq!(
            corrupt_column(row.get::<u32>("ttl")),
            "column ttl: 4294967296 is out of range"
        );
        assert_eq!(
            corrupt_column(row.get::<Option<u16>>("priority")),
            "column priority: 70000 is out of range"
        );
        assert_eq!(row.get::<u32>("n").unwrap(), 7);
    }

    #[tokio::test]
    async fn vocabularies_json_uuids_and_nulls_that_do_not_decode_name_the_column() {
        let row = row(
            "select 'DONE' as status, '{' as config, 'not-a-uuid' as id, null as seq, \
             'PENDING' as sound",
        )
        .await;

        assert_eq!(
            corrupt_column(row.get::<RequestStatus>("status")),
            "column status: unexpected value 'DONE'"
        );
        let config = corrupt_column(row.json::<serde_json::Value>("config"));
        assert!(config.starts_with("column config: "), "{config}");
        let id = corrupt_column(row.get::<RequestId>("id"));
        assert!(id.starts_with("column id: "), "{id}");
        assert_eq!(
            corrupt_column(row.get::<i64>("seq")),
            "column seq: null where a value is required"
        );
        assert_eq!(
            row.get::<RequestStatus>("sound").unwrap(),
            RequestStatus::Pending
        );
    }
}
