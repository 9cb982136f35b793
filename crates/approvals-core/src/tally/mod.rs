//! The rules of approval, in one place.
//!
//! Everything here is pure: no I/O, no clock, no locks. Every [`Store`](crate::Store) calls
//! these functions inside its own transaction, so no backend re-implements a rule:
//!
//! 1. A reviewer who is the requester or the on_behalf_of principal never counts.
//! 2. A reviewer counts only if eligible for a factor, judged by the groups recorded with the
//!    review (looked up by the gate at the time of review).
//! 3. One review per reviewer; one person fills at most one factor. Factors are filled by a
//!    maximum bipartite matching, so the outcome does not depend on the order of arrival.
//! 4. Any eligible Deny ends the request as Denied; Approved when every factor is filled.
//! 5. A review whose digest differs from the request's is refused.
//! 6. After expiry nothing can approve: the request is Expired. Reviews after a final state
//!    are refused.
//! 7. An approved request yields one permit ([`start`]); the body runs at most once.

//!
//! The rules are split by concern: [`quorum`] (who fills what), [`admission`] (whether a
//! review counts), [`lifecycle`] (delivery, escalation, expiry, the permit, re-attachment),
//! [`grants`] and [`edit`] (a reviewer approving a changed call). Every change to a request
//! goes through a function here, which bumps `request.version` when it changed something: the store persists the request and wakes its
//! waiters exactly then, and no caller bumps it by hand.

pub mod admission;
pub mod edit;
pub mod grants;
pub mod lifecycle;
pub mod quorum;

pub use admission::*;
pub use grants::*;
pub use lifecycle::*;
pub use quorum::*;
