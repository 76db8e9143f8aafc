//! SQLSTATE codes pgfed raises itself. Errors from the upstream Postgres are forwarded with
//! their own codes and never pass through here.

pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const CONNECTION_FAILURE: &str = "08006";
pub const CONNECTION_EXCEPTION: &str = "08000";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
pub const QUERY_CANCELED: &str = "57014";
pub const INTERNAL_ERROR: &str = "XX000";
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
pub const UNDEFINED_PREPARED_STATEMENT: &str = "26000";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const UNDEFINED_CURSOR: &str = "34000";
pub const DATA_EXCEPTION: &str = "22000";
