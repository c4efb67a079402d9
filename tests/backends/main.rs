mod audit;
mod queue;
mod store;
#[path = "../support/postgres.rs"]
mod support;
mod tokens;
