use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
};

use crate::error::panic_message;

/// A key half of a close callback's identity: any `PartialEq` value.
trait DynKey: Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

impl<T: PartialEq + Send + Sync + 'static> DynKey for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Entry {
    handler: Box<dyn DynKey>,
    key: Box<dyn DynKey>,
    callback: Box<dyn FnOnce() + Send>,
}

fn matches<T: PartialEq + 'static>(stored: &dyn DynKey, wanted: &T) -> bool {
    stored.as_any().downcast_ref::<T>() == Some(wanted)
}

/// getty's close callbacks: keyed by `(handler, key)`, replace in place,
/// run once in the order added.
#[derive(Default)]
pub(crate) struct CloseCallbacks {
    entries: Vec<Entry>,
    /// Set once the callbacks have run; later additions run at once.
    ran: bool,
}

impl CloseCallbacks {
    /// Adds or replaces; returns the callback back when the list already ran,
    /// so the caller can run it outside the lock.
    pub(crate) fn add<H, K, F>(&mut self, handler: H, key: K, callback: F) -> Option<F>
    where
        H: PartialEq + Send + Sync + 'static,
        K: PartialEq + Send + Sync + 'static,
        F: FnOnce() + Send + 'static,
    {
        if self.ran {
            return Some(callback);
        }
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| matches(&*e.handler, &handler) && matches(&*e.key, &key))
        {
            e.callback = Box::new(callback);
        } else {
            self.entries.push(Entry {
                handler: Box::new(handler),
                key: Box::new(key),
                callback: Box::new(callback),
            });
        }
        None
    }

    pub(crate) fn remove<H, K>(&mut self, handler: &H, key: &K)
    where
        H: PartialEq + Send + Sync + 'static,
        K: PartialEq + Send + Sync + 'static,
    {
        self.entries
            .retain(|e| !(matches(&*e.handler, handler) && matches(&*e.key, key)));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes the callbacks to run; afterwards the list counts as run.
    pub(crate) fn take(&mut self) -> Vec<Box<dyn FnOnce() + Send>> {
        self.ran = true;
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| e.callback)
            .collect()
    }
}

/// Runs one close callback, logging and containing a panic.
pub(crate) fn run_contained(session_id: u64, callback: Box<dyn FnOnce() + Send + '_>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(callback)) {
        tracing::error!(
            session = session_id,
            panic = %panic_message(&*payload),
            "close callback panicked; the panic was contained"
        );
    }
}
