//! Slack (feature `slack`): approval requests as Block Kit messages, verified clicks,
//! messages that show the outcome. See `docs/slack.md`.

mod approver;
mod client;
mod interactions;
pub mod message;
mod signature;
mod socket;

pub use approver::SlackApprover;
pub use client::{Posted, SlackClient, SlackError, SlackUser};
pub use interactions::{MAX_BODY, SlackInteractions};
pub use signature::{MAX_SKEW_SECS, SignatureError, SigningSecret};
pub use socket::SlackSocketMode;
