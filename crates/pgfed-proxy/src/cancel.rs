//! Cancel keys. Clients get a key of pgfed's own in BackendKeyData; a CancelRequest carrying it is
//! mapped to the upstream key of the same session and sent on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng;

use crate::upstream::UpstreamKey;

struct Entry {
    secret: [u8; 4],
    upstream: UpstreamKey,
}

/// pid to session key map shared by all sessions.
#[derive(Default)]
pub(crate) struct CancelRegistry {
    sessions: Mutex<HashMap<i32, Entry>>,
}

/// Removes the session's key when the session ends, however it ends.
pub(crate) struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: [u8; 4],
}

impl CancelRegistry {
    /// Issues a fresh key for a session whose upstream key is `upstream`.
    pub(crate) fn register(self: &Arc<Self>, upstream: UpstreamKey) -> Registration {
        let mut rng = rand::rng();
        let secret: [u8; 4] = rng.random();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = loop {
            // Positive like a real pid; some clients print it.
            let pid = rng.random_range(1..i32::MAX);
            if !sessions.contains_key(&pid) {
                break pid;
            }
        };
        sessions.insert(pid, Entry { secret, upstream });
        Registration { registry: self.clone(), pid, secret }
    }

    /// The upstream key for a client's cancel request, if the key is valid.
    pub(crate) fn lookup(&self, pid: i32, secret: &[u8]) -> Option<UpstreamKey> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = sessions.get(&pid)?;
        // Compare without an early exit so timing does not reveal how much of a guess matched.
        let same = secret.len() == entry.secret.len()
            && secret.iter().zip(entry.secret.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        same.then(|| entry.upstream.clone())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_upstream_key_until_the_session_ends() {
        let reg = Arc::new(CancelRegistry::default());
        let r = reg.register(UpstreamKey { pid: 7, secret: vec![9; 4] });
        assert_eq!(reg.lookup(r.pid, &r.secret).map(|k| k.pid), Some(7));
        let mut wrong = r.secret;
        wrong[0] ^= 1;
        assert!(reg.lookup(r.pid, &wrong).is_none());
        assert!(reg.lookup(r.pid, &r.secret[..3]).is_none());
        let (pid, secret) = (r.pid, r.secret);
        drop(r);
        assert!(reg.lookup(pid, &secret).is_none());
    }
}
