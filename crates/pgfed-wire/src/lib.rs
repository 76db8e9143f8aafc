//! PostgreSQL protocol v3 framing for a proxy that forwards bytes it does not need to understand.
//!
//! The relay's hot path never decodes a DataRow or CopyData: [`FrameScanner`] walks frame
//! headers in a read buffer, tells the caller which frames it must look inside (Query, Parse,
//! ReadyForQuery, ErrorResponse, ...) and lets everything else stream through, even frames larger
//! than the buffer. [`startup`] parses the untyped packets that open a connection (SSLRequest,
//! GSSENCRequest, CancelRequest, StartupMessage), [`message`] builds the few messages pgfed writes
//! itself (errors, BackendKeyData, ...) and reads the few it inspects. Nothing here does I/O.

pub mod extended;
pub mod frame;
pub mod message;
pub mod sqlstate;
pub mod startup;

pub use frame::{FrameError, FrameScanner, Scanned};
pub use message::{ErrorFields, PgError, Severity};
pub use startup::{ProtocolVersion, StartupError, StartupPacket, StartupParams};

/// Frontend (client to server) message tags that pgfed cares about.
pub mod frontend {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const EXECUTE: u8 = b'E';
    pub const DESCRIBE: u8 = b'D';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
}

/// Backend (server to client) message tags that pgfed cares about.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
}
