//! Integration tests: a real pgfed in-process on port 0 in front of the private Postgres cluster
//! that `scripts/test` starts, driven by real clients. One binary, so everything links once.

#![allow(clippy::unwrap_used)]

mod auth;
mod bad_input;
mod clients;
mod lifecycle;
mod protocol;
mod support;
