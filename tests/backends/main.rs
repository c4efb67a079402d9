mod audit;
mod migration;
mod order;
mod ownership;
mod queue;
mod sets;
mod store;
#[path = "../support/postgres.rs"]
mod support;
mod tokens;
