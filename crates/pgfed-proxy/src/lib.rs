//! The Postgres wire-protocol proxy: accepts clients, relays their authentication to the upstream
//! Postgres (which stays the only authority on roles and passwords), and then relays every message
//! unchanged in both directions, consulting the [router](pgfed_router) for each statement.
//!
//! [`Server::serve`] takes the listener and a shutdown token from the caller, so tests run a real
//! proxy on port 0 in three lines. Inside: [`server`] accepts and tracks sessions, [`session`]
//! negotiates TLS, cancel and startup and relays authentication, [`relay`] moves bytes, [`cancel`]
//! maps pgfed's cancel keys to the upstream's, [`upstream`] connects (and cancels) upstream, [`tls`]
//! builds rustls settings for both legs.

mod cancel;
mod error;
pub mod federation;
mod local;
mod metrics;
mod relay;
mod server;
mod session;
mod stream;
mod tls;
mod upstream;

pub use error::SessionError;
pub use server::{Server, ServerError};
pub use tls::TlsError;
