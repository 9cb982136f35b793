//! Microsoft Teams (feature `teams`): approval requests as Adaptive Cards.
//!
//! Two modes (see `docs/teams.md`):
//!
//! - **Bot mode.** [`TeamsApprover`] sends cards through the Bot Framework connector
//!   ([`Connector`]); clicks arrive on [`TeamsInvokes`]'s `/teams/messages` as
//!   `adaptiveCard/action` invokes. Each is verified by [`BotAuth`]: RS256 against the
//!   published keys, issuer, audience, expiry with bounded skew, endorsement and
//!   `serviceUrl`. The card is replaced by the outcome.
//! - **Webhook mode.** [`TeamsWebhookApprover`] posts the card to a Workflows incoming
//!   webhook; its buttons are single-use, expiring, signed links to the web console, where
//!   the reviewer signs in before the decision counts.

mod bot;
pub mod card;
mod connector;
pub mod jwt;
mod webhook;

pub use bot::{MAX_BODY, TeamsApprover, TeamsInvokes};
pub use connector::{Connector, ConnectorError, LOGIN_URL, SCOPE};
pub use jwt::{AuthError, BotAuth};
pub use webhook::{LinkKey, TeamsWebhookApprover};
