//! Cancel keys. A client's BackendKeyData carries the upstream backend's pid (so `PQbackendPID`,
//! `pg_backend_pid()` and the sender pid of notifications agree, as they do without a proxy) and
//! a secret of pgfed's own. A CancelRequest with that key is mapped to the upstream's secret and
//! sent on; the upstream's secret never leaves pgfed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng;

use crate::local::LocalCancel;
use crate::upstream::UpstreamKey;

struct Entry {
    secret: [u8; 4],
    upstream: UpstreamKey,
    /// Stops a statement pgfed runs itself (foreign scans do not run in the upstream backend).
    local: Arc<LocalCancel>,
}

/// pid to session key map shared by all sessions. Upstream pids are unique among live sessions of
/// one upstream server.
#[derive(Default)]
pub(crate) struct CancelRegistry {
    sessions: Mutex<HashMap<i32, Entry>>,
}

/// Removes the session's key when the session ends, however it ends.
pub(crate) struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: [u8; 4],
    pub local: Arc<LocalCancel>,
}

impl CancelRegistry {
    /// Issues the client-facing key for a session whose upstream key is `upstream`.
    pub(crate) fn register(self: &Arc<Self>, upstream: UpstreamKey) -> Registration {
        let secret: [u8; 4] = rand::rng().random();
        let pid = upstream.pid;
        let local = Arc::new(LocalCancel::default());
        // A pid still registered belongs to a session whose upstream backend is gone (Postgres
        // reused the pid); that session is ending, so the new one takes the slot.
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pid, Entry { secret, upstream, local: local.clone() });
        Registration { registry: self.clone(), pid, secret, local }
    }

    /// The upstream key for a client's cancel request, if the key is valid. Also cancels the
    /// session's local statement, if one runs.
    ///
    /// `Some(None)`: the key is valid and a statement of pgfed's own was running; it was
    /// cancelled, and it sends the upstream a cancel itself only while the upstream works for it
    /// (a cancel forwarded now could arrive during the client's next statement).
    pub(crate) fn lookup(&self, pid: i32, secret: &[u8]) -> Option<Option<UpstreamKey>> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = sessions.get(&pid)?;
        if !same_secret(secret, &entry.secret) {
            return None;
        }
        if entry.local.cancel() {
            return Some(None);
        }
        Some(Some(entry.upstream.clone()))
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self.registry.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // Only our own entry: a newer session may have taken over a reused pid.
        if sessions.get(&self.pid).is_some_and(|e| e.secret == self.secret) {
            sessions.remove(&self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_upstream_key_until_the_session_ends() {
        let reg = Arc::new(CancelRegistry::default());
        let r = reg.register(UpstreamKey { pid: 7, secret: vec![9; 4] });
        assert_eq!(r.pid, 7);
        assert_eq!(reg.lookup(7, &r.secret).flatten().map(|k| k.secret), Some(vec![9; 4]));
        let mut wrong = r.secret;
        wrong[0] ^= 1;
        assert!(reg.lookup(7, &wrong).is_none());
        assert!(reg.lookup(7, &r.secret[..3]).is_none());
        let secret = r.secret;
        drop(r);
        assert!(reg.lookup(7, &secret).is_none());
    }

    #[test]
    fn a_reused_pid_is_not_removed_by_the_old_session() {
        let reg = Arc::new(CancelRegistry::default());
        let old = reg.register(UpstreamKey { pid: 7, secret: vec![1; 4] });
        let new = reg.register(UpstreamKey { pid: 7, secret: vec![2; 4] });
        drop(old);
        assert_eq!(reg.lookup(7, &new.secret).flatten().map(|k| k.secret), Some(vec![2; 4]));
    }
}
