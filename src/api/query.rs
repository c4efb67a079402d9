//! Query strings of the list endpoints: parsing with JSON errors, filters and cursor paging.
//!
//! A cursor is the `seq` of the last row of the previous page, as text; pages are newest
//! first, so the next page holds the rows with a smaller `seq`.

use std::str::FromStr;

use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::{Fqdn, NameRules, ValidationError};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// `Query<T>` whose rejection is a JSON 422 naming the parameter.
#[derive(Debug)]
pub struct ListQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ListQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // An empty parameter (`?status=`, as an HTML form sends) means "no filter".
        let query = parts.uri.query().unwrap_or_default();
        let given: Vec<&str> = query
            .split('&')
            .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
            .collect();
        let uri: Uri = format!("/?{}", given.join("&"))
            .parse()
            .map_err(|_| ValidationError::field("query", "is not a valid query string"))?;
        Query::<T>::try_from_uri(&uri)
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ValidationError::field("query", rejection.body_text()).into())
    }
}

/// Collects the problems of a query string while its values are parsed.
#[derive(Debug, Default)]
pub struct Page {
    errors: ValidationError,
}

impl Page {
    /// Parses an optional value; a bad one is recorded against `field`.
    pub fn parse<T: FromStr>(&mut self, field: &str, value: Option<&str>) -> Option<T>
    where
        T::Err: ToString,
    {
        let value = value?;
        value
            .parse()
            .map_err(|e: T::Err| self.errors.fields.push(field_error(field, e.to_string())))
            .ok()
    }

    /// Normalises a `domain` filter the way intake normalises names.
    pub fn domain(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let rules = NameRules {
            underscore: true,
            wildcard: true,
        };
        let value = value?;
        Fqdn::parse(value, rules)
            .map(|name| name.to_string())
            .map_err(|e| self.errors.fields.push(field_error(field, e)))
            .ok()
    }

    /// The cursor (`seq` to start below) and the page size.
    pub fn window(&mut self, cursor: Option<&str>, limit: Option<&str>) -> (Option<i64>, u32) {
        let before = cursor.and_then(|c| match c.parse::<i64>() {
            Ok(seq) if seq > 0 => Some(seq),
            _ => {
                self.errors.fields.push(field_error(
                    "query.cursor",
                    "is not a cursor from a previous page".into(),
                ));
                None
            }
        });
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    self.errors.fields.push(field_error(
                        "query.limit",
                        format!("'{l}' is not a number from 1 to {MAX_LIMIT}"),
                    ));
                    DEFAULT_LIMIT
                }
            },
        };
        (before, limit)
    }

    /// Ends parsing.
    ///
    /// # Errors
    /// A 422 listing every bad parameter.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.fields.is_empty() {
            Ok(())
        } else {
            Err(self.errors.into())
        }
    }

    /// The cursor of the page after `items`, if it was full.
    pub fn next_cursor<T>(items: &[T], limit: u32, seq: impl Fn(&T) -> i64) -> Option<String> {
        if items.len() < limit as usize {
            return None;
        }
        items.last().map(|last| seq(last).to_string())
    }
}

fn field_error(field: &str, message: String) -> crate::domain::FieldError {
    crate::domain::FieldError {
        field: field.to_owned(),
        message,
    }
}
