//! Authentication and authorisation: SMART Backend Services tokens, client certificates, and
//! the `Principal` every protected route extracts.

pub mod keys;
pub mod limits;
pub mod principal;
pub mod scope;
pub mod token;

pub use principal::{PeerIdentity, Principal, certificate_thumbprint};
pub use scope::{Permission, Scope};
