//! Parsing `#[requires_approval(...)]` options.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Path, Token, parenthesized};

mod kw {
    syn::custom_keyword!(policy);
    syn::custom_keyword!(name);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(redact);
    syn::custom_keyword!(gate);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(defer);
    syn::custom_keyword!(editable);
}

pub(crate) const ACCEPTED: &str = "accepted options: policy = \"..\", name = \"..\", skip(..), redact(..), editable(..), gate = <expr>, timeout = \"..\", defer, crate = \"..\"";

/// The parsed options.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) policy: Option<LitStr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) redact: Vec<Ident>,
    pub(crate) editable: Vec<Ident>,
    pub(crate) gate: Option<Expr>,
    /// Milliseconds, with the literal for error spans.
    pub(crate) timeout: Option<u64>,
    pub(crate) defer: bool,
    pub(crate) krate: Option<Path>,
    seen: Vec<&'static str>,
}

impl Args {
    fn once(&mut self, option: &'static str, span: Span) -> syn::Result<()> {
        if self.seen.contains(&option) {
            return Err(syn::Error::new(
                span,
                format!("`{option}` is given more than once"),
            ));
        }
        self.seen.push(option);
        Ok(())
    }
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let look = input.lookahead1();
            if look.peek(kw::policy) {
                let k: kw::policy = input.parse()?;
                args.once("policy", k.span)?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                if lit.value().trim().is_empty() {
                    return Err(syn::Error::new(lit.span(), "`policy` must name a policy"));
                }
                args.policy = Some(lit);
            } else if look.peek(kw::name) {
                let k: kw::name = input.parse()?;
                args.once("name", k.span)?;
                input.parse::<Token![=]>()?;
                args.name = Some(input.parse()?);
            } else if look.peek(kw::skip) {
                let k: kw::skip = input.parse()?;
                args.once("skip", k.span)?;
                args.skip = idents(input)?;
            } else if look.peek(kw::redact) {
                let k: kw::redact = input.parse()?;
                args.once("redact", k.span)?;
                args.redact = idents(input)?;
            } else if look.peek(kw::editable) {
                let k: kw::editable = input.parse()?;
                args.once("editable", k.span)?;
                args.editable = idents(input)?;
            } else if look.peek(kw::gate) {
                let k: kw::gate = input.parse()?;
                args.once("gate", k.span)?;
                input.parse::<Token![=]>()?;
                args.gate = Some(input.parse()?);
            } else if look.peek(kw::timeout) {
                let k: kw::timeout = input.parse()?;
                args.once("timeout", k.span)?;
                input.parse::<Token![=]>()?;
                if input.peek(syn::LitInt) {
                    let n: syn::LitInt = input.parse()?;
                    return Err(syn::Error::new(
                        n.span(),
                        format!(
                            "`timeout` takes a duration with its unit, as a string: timeout = \"{}s\" (or \"{}ms\", \"{}m\")",
                            n.base10_digits(),
                            n.base10_digits(),
                            n.base10_digits()
                        ),
                    ));
                }
                let lit: LitStr = input.parse()?;
                let ms =
                    parse_duration(&lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))?;
                args.timeout = Some(ms);
            } else if look.peek(kw::defer) {
                let k: kw::defer = input.parse()?;
                args.once("defer", k.span)?;
                args.defer = true;
            } else if look.peek(Token![crate]) {
                let k: Token![crate] = input.parse()?;
                args.once("crate", k.span)?;
                input.parse::<Token![=]>()?;
                let lit: LitStr = input.parse()?;
                args.krate = Some(lit.parse()?);
            } else if input.peek(Ident) {
                let unknown: Ident = input.parse()?;
                let hint = closest(&unknown.to_string(), OPTIONS)
                    .map(|o| format!(" (did you mean `{o}`?)"))
                    .unwrap_or_default();
                return Err(syn::Error::new(
                    unknown.span(),
                    format!("unknown option `{unknown}`{hint}; {ACCEPTED}"),
                ));
            } else {
                return Err(look.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// Every option's name.
const OPTIONS: &[&str] = &[
    "policy", "name", "skip", "redact", "editable", "gate", "timeout", "defer", "crate",
];

/// The candidate nearest to `word`, if one is near enough to be a typo (an edit distance of
/// at most a third of its length). Written here: this crate depends on syn and quote only.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= c.len().max(3) / 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn idents(input: ParseStream<'_>) -> syn::Result<Vec<Ident>> {
    let content;
    parenthesized!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

/// Parses `"30s"`, `"5m"`, `"1h30m"`, `"500ms"`, `"2d"` into milliseconds: the grammar of
/// the policy file's durations (humantime's), so a duration reads the same in both places.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let hint = "write it with a unit: \"90s\", \"10m\", \"1h30m\", \"2d\"";
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration `{s}`: {e}; {hint}"))?;
    if d.is_zero() {
        return Err(format!("`{s}` is zero: a timeout must be longer than that"));
    }
    u64::try_from(d.as_millis()).map_err(|_| format!("`{s}` is too long for a timeout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("2d"), Ok(172_800_000));
        for bad in [
            "",
            "s",
            "10",
            "5 mintues",
            "0s",
            "-1s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn typos_find_their_option() {
        assert_eq!(closest("polcy", OPTIONS), Some("policy"));
        assert_eq!(closest("timout", OPTIONS), Some("timeout"));
        assert_eq!(closest("redcat", OPTIONS), Some("redact"));
        assert_eq!(closest("retry", OPTIONS), None);
    }

    #[test]
    fn options_parse() {
        let args: Args = syn::parse_quote!(policy = "p", skip(a, b), timeout = "1s", defer);
        assert_eq!(args.policy.map(|l| l.value()).as_deref(), Some("p"));
        assert_eq!(args.skip.len(), 2);
        assert_eq!(args.timeout, Some(1000));
        assert!(args.defer);
    }

    #[test]
    fn unknown_and_repeated_options_are_refused() {
        let err = syn::parse2::<Args>(quote::quote!(policy = "p", polcy = "q"))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("unknown option `polcy`") && e.contains("redact(..)"))
        );
        let err = syn::parse2::<Args>(quote::quote!(policy = "p", policy = "q"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("`policy` is given more than once"));
    }
}
