//! The reservation store the allocator works on; callers hold it exclusively for one operation.

use crate::spec::Attachment;
use std::net::IpAddr;
use std::path::PathBuf;

/// One reserved address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reservation {
    /// The address.
    pub ip: IpAddr,
    /// The holder's container ID.
    pub container_id: String,
    /// The holder's interface; `None` for files written by host-local before it recorded interfaces.
    pub ifname: Option<String>,
}

impl Reservation {
    /// Whether this reservation belongs to `attachment` exactly.
    pub fn is_held_by(&self, attachment: &Attachment) -> bool {
        self.container_id == attachment.container_id
            && self.ifname.as_deref() == Some(attachment.ifname.as_str())
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the store's files failed.
    #[error("IPAM store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<Error> for crate::spec::Error {
    fn from(e: Error) -> Self {
        crate::spec::Error::new(crate::spec::Code::Io, e.to_string())
    }
}

/// Reserved addresses, per network. Implementations need no locking of their
/// own: the caller holds the store exclusively for a whole operation.
pub trait Store {
    /// Reserves `ip` for `holder` and records it as range set `range_set`'s last
    /// reserved address; `false` (and nothing recorded) if it is already reserved.
    fn reserve(&mut self, ip: IpAddr, holder: &Attachment, range_set: usize)
        -> Result<bool, Error>;

    /// The last address reserved from range set `range_set`, if recorded.
    fn last_reserved(&self, range_set: usize) -> Result<Option<IpAddr>, Error>;

    /// Every reservation.
    fn reservations(&self) -> Result<Vec<Reservation>, Error>;

    /// Drops the reservation of `ip`, if any.
    fn release(&mut self, ip: IpAddr) -> Result<(), Error>;
}
