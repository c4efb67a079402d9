//! How PostgreSQL holds the values whose types differ between the stores: native `uuid`,
//! `jsonb`, and integers of the column's width (`integer` for attempts and priorities,
//! `bigint` for the rest). The rest of the decoding is shared (`store::rows`).

use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Row as _, TypeInfo as _, ValueRef as _};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::rows::{Columns, Plain, decode};

impl Columns for PgRow {
    fn plain<T: Plain>(&self, column: &'static str) -> Result<T, StoreError> {
        decode(self, column)
    }

    fn integer(&self, column: &'static str) -> Result<Option<i64>, StoreError> {
        let raw = self.try_get_raw(column)?;
        Ok(match raw.type_info().name() {
            "INT4" => decode::<_, Option<i32>>(self, column)?.map(i64::from),
            _ => decode(self, column)?,
        })
    }

    fn uuid(&self, column: &'static str) -> Result<Option<Uuid>, StoreError> {
        decode(self, column)
    }

    fn json<T: DeserializeOwned>(&self, column: &'static str) -> Result<T, StoreError> {
        decode::<_, Json<T>>(self, column).map(|Json(value)| value)
    }

    fn json_or_null<T: DeserializeOwned>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, StoreError> {
        decode::<_, Option<Json<T>>>(self, column).map(|value| value.map(|Json(value)| value))
    }
}
