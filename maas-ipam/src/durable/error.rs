//! The errors of [`Durable`](super::Durable): [`DurableError`], and the shared form in which a
//! store's error reaches every waiter.

use std::error::Error as StdError;
use std::sync::Arc;

/// A store error shared by every waiter that reports it.
pub(super) type SharedError = Arc<dyn StdError + Send + Sync + 'static>;

/// Why a durable operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// The operation itself refused (an exhausted subnet, an unknown lease, ...). Whatever it
    /// changed before refusing is still made durable in order.
    #[error(transparent)]
    Ipam(#[from] crate::Error),
    /// The store could not be read at start.
    #[error("cannot load the address manager's state from its store: {0}")]
    Load(#[source] SharedError),
    /// The stored state does not make a consistent address manager.
    #[error("cannot rebuild the address manager from its stored state: {0}")]
    Restore(#[source] crate::Error),
    /// The store failed to commit the batch holding this operation's changes (or an earlier
    /// one). They are not durable: do not acknowledge them.
    #[error("the store failed to commit; this change is not durable: {0}")]
    Commit(#[source] SharedError),
    /// The store refused the batch holding this operation's changes, or an earlier one whose
    /// state the operation saw (see [`Store::is_refusal`]): in a database shared by several
    /// controllers, another one holds one of its addresses. None of it is durable: do not
    /// acknowledge it. The manager has reloaded its state from the store and goes on, so the
    /// operation may be tried again (a DHCP server answers with a NAK or not at all, and the
    /// client starts over).
    ///
    /// [`Store::is_refusal`]: crate::Store::is_refusal
    #[error(
        "the store refused these changes, which are not durable; the address manager reloaded its state from the store: {0}"
    )]
    Refused(#[source] SharedError),
    /// A commit failed earlier; the manager refuses changes so that nothing built on a change
    /// that was lost is acknowledged. Reopen it from its store to continue.
    #[error(
        "the address manager refuses changes since a commit failed ({0}); reopen it from its store"
    )]
    Poisoned(#[source] SharedError),
    /// An operation panicked while it held the address manager, which may be half-changed.
    /// The manager refuses changes; reopen it from its store to continue.
    #[error(
        "the address manager refuses changes since an operation panicked while changing it; \
         reopen it from its store"
    )]
    Panicked,
    /// The writer thread stopped without committing (the store panicked).
    #[error("the commit writer stopped unexpectedly; pending changes are not durable")]
    WriterStopped,
    /// The ticket was issued by another [`Durable`](super::Durable).
    #[error("the ticket was issued by another address manager")]
    ForeignTicket,
    /// The writer thread could not be started.
    #[error("cannot start the commit writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}
