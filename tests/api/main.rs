mod auth;
mod changes;
mod health;
mod helpers;
mod idempotency;
mod lifecycle;
mod limits;
mod lists;
#[path = "../support/settings.rs"]
mod settings;
mod tokens;
mod validation;
