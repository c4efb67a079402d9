mod changes;
mod health;
mod helpers;
mod idempotency;
mod lifecycle;
mod limits;
mod lists;
mod validation;
