//! The `#[requires_approval]` attribute of [`approvals`](https://docs.rs/approvals).
//!
//! Use it through the `approvals` crate (`approvals::requires_approval`); its documentation
//! there describes every option and the code it expands to.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod expand;
mod parse;

use proc_macro::TokenStream;

/// Gates a function behind a policy and, where the policy asks for it, human approval.
///
/// See the `approvals` crate for the full documentation.
#[proc_macro_attribute]
pub fn requires_approval(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::requires_approval(args.into(), item.into()).into()
}
