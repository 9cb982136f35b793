//! Generating the gated function: the signature is kept, the body is wrapped.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    Block, Expr, FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::parse::Args;

/// A recorded argument: its name and the span of its type, where a missing `Serialize`
/// should point.
struct Param {
    ident: Ident,
    ty_span: Span,
    /// Whether it is the whole parameter (`name: Type`), not a binding inside a pattern.
    whole: bool,
}

/// Expands the attribute; on error, the error and the function unchanged.
pub(crate) fn requires_approval(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_error(e, item),
    };
    let args: Args = match syn::parse2(args) {
        Ok(a) => a,
        Err(e) => return with_error(e, item),
    };
    match expand(args, func) {
        Ok(tokens) => tokens,
        Err(e) => with_error(e, item),
    }
}

/// Emits the error next to the unchanged item, so the rest of the crate still compiles and
/// only the real mistake is reported (tokio's `token_stream_with_error`).
fn with_error(e: syn::Error, item: TokenStream) -> TokenStream {
    let mut out = item;
    out.extend(e.into_compile_error());
    out
}

fn expand(args: Args, mut func: ItemFn) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new_spanned(
            c,
            "#[requires_approval] cannot gate a `const fn`: approval happens at run time",
        ));
    }
    let Some(policy) = &args.policy else {
        return Err(syn::Error::new(
            Span::call_site(),
            "missing `policy = \"...\"`: name the policy that judges this call, e.g. #[requires_approval(policy = \"deploy\")]",
        ));
    };
    let ret_ty = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                "a #[requires_approval] function must return `Result<T, E>` where `E: From<approvals::Error>`, so a refusal can reach the caller",
            ));
        }
    };

    let params = params(&func)?;
    for ident in args.skip.iter().chain(&args.redact).chain(&args.editable) {
        if !params.iter().any(|p| p.ident == *ident) {
            let names: Vec<String> = params.iter().map(|p| p.ident.to_string()).collect();
            return Err(syn::Error::new_spanned(
                ident,
                format!(
                    "`{ident}` is not a parameter of `{}`; parameters: {}",
                    sig.ident,
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    }
    if let Some(both) = args.skip.iter().find(|i| args.redact.contains(i)) {
        return Err(syn::Error::new_spanned(
            both,
            format!("`{both}` is both skipped and redacted; choose one"),
        ));
    }
    for e in &args.editable {
        let hidden = if args.skip.contains(e) {
            Some("skipped")
        } else if args.redact.contains(e) {
            Some("redacted")
        } else {
            None
        };
        if let Some(how) = hidden {
            return Err(syn::Error::new_spanned(
                e,
                format!(
                    "`{e}` is {how}, so it cannot be editable: a reviewer edits a value they can see"
                ),
            ));
        }
        if params.iter().any(|p| p.ident == *e && !p.whole) {
            return Err(syn::Error::new_spanned(
                e,
                format!(
                    "`{e}` is bound inside a pattern; an editable argument must be a whole parameter (`{e}: Type`)"
                ),
            ));
        }
    }

    let krate = match &args.krate {
        Some(p) => p.to_token_stream(),
        None => quote!(::approvals),
    };
    let private = quote!(#krate::__private);

    let name = match &args.name {
        Some(n) => n.to_token_stream(),
        None => {
            let f = sig.ident.to_string();
            let f = f.strip_prefix("r#").unwrap_or(&f).to_owned();
            quote!(::core::concat!(::core::module_path!(), "::", #f))
        }
    };
    // Recorded in the order of their names, which is the order of canonical JSON: the
    // builder then writes each straight after the one before, with nothing to sort.
    let mut recorded_params: Vec<_> = params
        .iter()
        .filter(|p| !args.skip.contains(&p.ident))
        .map(|p| {
            let key = p.ident.to_string();
            (key.strip_prefix("r#").unwrap_or(&key).to_owned(), p)
        })
        .collect();
    recorded_params.sort_by(|a, b| a.0.cmp(&b.0));
    let record = recorded_params.into_iter().map(|(key, p)| {
        let ident = &p.ident;
        let method = if args.redact.contains(ident) {
            quote!(redact)
        } else {
            quote!(arg)
        };
        // Through a trait of ours, so a type that cannot be recorded is told how to fix it
        // (derive Serialize, redact, or skip) at the parameter's type.
        quote_spanned!(p.ty_span=> #private::Recordable::#method(&#ident, &mut __approvals_b, {
                // Checked by the compiler, once.
                const NAME: #private::ArgName<'static> = #private::ArgName::new(#key);
                NAME
            });)
    });
    let mark_editable = args.editable.iter().map(|ident| {
        let key = ident.to_string();
        let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
        quote!(__approvals_b = __approvals_b.editable(#key);)
    });
    let gate = match &args.gate {
        Some(expr) => quote_spanned!(expr.span()=> #private::gate_from(&(#expr))),
        None => quote!(#private::find_gate()),
    };
    let timeout = match args.timeout {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let defer = args.defer;

    // The end of the digest's encoding, written now, at compile time, not again on every
    // call; core's constant keeps it only if neither name needs an escape.
    let builder = quote! {
        #private::Action::builder_static({
            const NAMES: #private::StaticNames = #private::StaticNames::new(
                #name,
                #policy,
                ::core::concat!(",\"name\":\"", #name, "\",\"policy\":\"", #policy, "\"}"),
            );
            NAMES
        })
    };
    let recorded: Vec<String> = params
        .iter()
        .filter(|p| !args.skip.contains(&p.ident))
        .map(|p| {
            let key = p.ident.to_string();
            key.strip_prefix("r#").unwrap_or(&key).to_owned()
        })
        .collect();
    let prelude = quote! {
        // Registers the policy name and the recorded arguments at link time, so building a
        // gate can check that the policy exists and that its conditions read real arguments.
        #private::inventory::submit! {
            #private::PolicyUse { policy: #policy, function: #name, params: &[#(#recorded),*] }
        }
        let __approvals_action = {
            // Static names are shared, never copied into each call.
            #[allow(unused_mut)]
            let mut __approvals_b = #builder;
            #(#record)*
            #(#mark_editable)*
            __approvals_b.build()
        };
        let __approvals_gate = #gate;
        let __approvals_opts = #private::options(#timeout, #defer);
    };
    let reject = respan(quote!(#private::reject(__approvals_err)), ret_ty.span());
    let outcome = quote! {{
        #[allow(unused_imports)]
        use #private::{ViaDebug as _, ViaDisplay as _, ViaNothing as _};
        match #private::CallResult::as_result(&__approvals_result) {
            ::core::result::Result::Ok(_) => ::core::result::Result::Ok(()),
            ::core::result::Result::Err(__approvals_e) => ::core::result::Result::Err(
                (&&&#private::Describe(__approvals_e)).describe(),
            ),
        }
    }};
    let authorize = quote! {
        #private::authorize(__approvals_gate, __approvals_action, #private::context(), __approvals_opts)
    };
    // In an async function the gate's decision is begun at once (`authorizing`), once the
    // gate and the call are checked: the call moves into the judging, which borrows the
    // caller's context, and the function's future keeps only the answer or a pointer to the
    // rest, not a copy of them, for as long as the call waits.
    let permit_async = |reject: &TokenStream| {
        quote! {
            {
                // Bound before anything is awaited: a `match` would keep its scrutinee
                // across the wait.
                let __approvals_gate = match #private::prepare(__approvals_gate) {
                    ::core::result::Result::Ok(__approvals_gate) => __approvals_gate,
                    ::core::result::Result::Err(__approvals_err) => return #reject,
                };
                match #private::authorizing(&__approvals_gate, __approvals_action, #private::context(), __approvals_opts).await {
                    ::core::result::Result::Ok(p) => p,
                    ::core::result::Result::Err(__approvals_err) => return #reject,
                }
            }
        }
    };

    // An editable argument takes the value a reviewer set, if they changed it: read into its
    // type through a trait of ours (so a type that cannot be read back is told at its type),
    // and a value that does not fit fails the call closed before the body runs.
    let rebind = |reject: &TokenStream, sync: bool| -> Vec<TokenStream> {
        args.editable
            .iter()
            .map(|ident| {
                let key = ident.to_string();
                let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
                let span = params
                    .iter()
                    .find(|p| p.ident == *ident)
                    .map_or(ident.span(), |p| p.ty_span);
                let finish = if sync {
                    quote!(let _ = #private::block_on(__approvals_permit.finish(::core::result::Result::Err(::std::string::ToString::to_string(&__approvals_err))));)
                } else {
                    quote!(__approvals_permit.finish(::core::result::Result::Err(::std::string::ToString::to_string(&__approvals_err))).await;)
                };
                let read = quote_spanned!(span=> #private::edited(&__approvals_permit, #key, #ident));
                quote! {
                    #[allow(unused_mut)]
                    let mut #ident = match #read {
                        ::core::result::Result::Ok(v) => v,
                        ::core::result::Result::Err(__approvals_err) => {
                            #finish
                            return #reject;
                        }
                    };
                }
            })
            .collect()
    };

    // The body of an editable function sees the edit it runs under (`scope::current_edit`);
    // others are left as they are, so the allowed path of every other function stays small.
    let editable = !args.editable.is_empty();
    let with_edit = |body: TokenStream| {
        if editable {
            quote!(#private::with_edit(&__approvals_permit, #body))
        } else {
            body
        }
    };
    if sig.asyncness.is_some() {
        let fake = fake_return(&ret_ty);
        let rebind = rebind(&reject, false);
        // The body's statements, not its block: `{ { Ok(x) } }` would warn of unnecessary
        // braces in the user's crate.
        let block = &func.block.stmts;
        let permit = permit_async(&reject);
        let body = with_edit(quote!(async move { #fake #(#block)* }));
        let ran = run_async(&private, &permit, &rebind, &body, &outcome);
        let body = quote! {
            #prelude
            #ran
        };
        *func.block = syn::parse2(quote!({ #body }))?;
    } else if let Some((output, inner)) = async_trait_body(&mut func) {
        // `#[async_trait]` ran first: the body is `Box::pin(async move { .. })`; gate inside.
        let fake = fake_return(&output);
        let reject = respan(quote!(#private::reject(__approvals_err)), output.span());
        let rebind = rebind(&reject, false);
        let permit = permit_async(&reject);
        let stmts = std::mem::take(&mut inner.stmts);
        let body = with_edit(quote!(async move { #(#stmts)* }));
        let ran = run_async(&private, &permit, &rebind, &body, &outcome);
        let body = quote! {
            #fake
            #prelude
            #ran
        };
        *inner = syn::parse2(quote!({ #body }))?;
    } else {
        let fake = fake_return(&ret_ty);
        let rebind = rebind(&reject, true);
        let block = &func.block.stmts;
        let call = if editable {
            quote!(#private::with_edit_sync(&__approvals_permit, move || { #fake #(#block)* }))
        } else {
            quote! {
                #[allow(clippy::redundant_closure_call)]
                (move || { #fake #(#block)* })()
            }
        };
        let body = quote! {
            #prelude
            let __approvals_permit = match #private::block_on(#authorize) {
                ::core::result::Result::Ok(::core::result::Result::Ok(p)) => p,
                ::core::result::Result::Ok(::core::result::Result::Err(__approvals_err))
                | ::core::result::Result::Err(__approvals_err) => return #reject,
            };
            #(#rebind)*
            let __approvals_result = {
                let __approvals_span = __approvals_permit.body_span();
                let __approvals_entered = __approvals_span.enter();
                #call
            };
            let _ = #private::block_on(__approvals_permit.finish(#outcome));
            __approvals_result
        };
        *func.block = syn::parse2(quote!({ #body }))?;
    }
    Ok(func.into_token_stream())
}

/// An async gated function's statements once its call is prepared: its permit awaited, its
/// body run in the permit's span, then its end recorded.
///
/// The permit lives in a block of its own that ends before the end is awaited, and the
/// recording is a boxed future taken from it (`ending`), awaited with the result in one
/// future (`finishing`) that no named local copies: the function's future then keeps, at
/// each await, only what that await needs (the gate's answer; the permit and the body; the
/// result and a pointer). A permit still in scope at the last await kept room for the
/// permit and the result across every await, the wait for a decision included: a waiting
/// call's future went from 240 bytes to 128 for a function of one `usize`.
fn run_async(
    private: &TokenStream,
    permit: &TokenStream,
    rebind: &[TokenStream],
    body: &TokenStream,
    outcome: &TokenStream,
) -> TokenStream {
    quote! {
        #private::finishing({
            let __approvals_permit = #private::into_body(#permit);
            #(#rebind)*
            let __approvals_result = #private::in_body(&__approvals_permit, #body).await;
            let __approvals_ending = #private::ending(__approvals_permit, #outcome);
            (__approvals_result, __approvals_ending)
        }).await
    }
}

/// Gives every token of `tokens` the span `span`, so that an error about the whole path
/// (a return type that is not a fitting `Result`) points at the user's return type.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `if let Some(r) = None::<Ret> { return r; }`: pins the type of the wrapped body so `?`
/// inside it converts into the function's error type (async-trait's trick). `impl Trait`
/// in the return type becomes `_`.
fn fake_return(ret: &Type) -> TokenStream {
    let mut ret = ret.clone();
    ImplToInfer.visit_type_mut(&mut ret);
    let var = format_ident!("__approvals_ret");
    quote! {
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return)]
        if let ::core::option::Option::Some(#var) = ::core::option::Option::None::<#ret> {
            return #var;
        }
    }
}

struct ImplToInfer;

impl VisitMut for ImplToInfer {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(t) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: syn::Token![_](t.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

/// The recorded parameters: every binding of every typed parameter (receivers are never
/// recorded; a pattern like `(a, b): (u32, u32)` records `a` and `b`).
fn params(func: &ItemFn) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    for input in &func.sig.inputs {
        if let FnArg::Typed(pt) = input {
            let ty_span = pt.ty.span();
            let whole =
                matches!(&*pt.pat, Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none());
            let mut idents = Vec::new();
            bindings(&pt.pat, &mut idents);
            out.extend(idents.into_iter().map(|ident| Param {
                ident,
                ty_span,
                whole,
            }));
        }
    }
    Ok(out)
}

fn bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bindings(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| bindings(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| bindings(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| bindings(&f.pat, out)),
        Pat::Reference(r) => bindings(&r.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|p| bindings(p, out)),
        Pat::Type(t) => bindings(&t.pat, out),
        Pat::Paren(p) => bindings(&p.pat, out),
        _ => {}
    }
}

/// Recognises a body that `#[async_trait]` produced: a sync fn returning
/// `Pin<Box<dyn Future<Output = T> + ..>>` whose body is `Box::pin(async move { .. })`.
/// Returns `T` and the inner block.
fn async_trait_body(func: &mut ItemFn) -> Option<(Type, &mut Block)> {
    let ReturnType::Type(_, ty) = &func.sig.output else {
        return None;
    };
    let output = future_output(ty)?;
    let [Stmt::Expr(Expr::Call(call), None)] = func.block.stmts.as_mut_slice() else {
        return None;
    };
    let Expr::Path(callee) = &*call.func else {
        return None;
    };
    let segs: Vec<String> = callee
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segs.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut()? {
        Expr::Async(a) if a.capture.is_some() => Some((output, &mut a.block)),
        _ => None,
    }
}

/// `T` of `Pin<Box<dyn Future<Output = T> + ..>>`.
fn future_output(ty: &Type) -> Option<Type> {
    let inner = generic_arg(ty, "Pin")?;
    let boxed = generic_arg(&inner, "Box")?;
    let Type::TraitObject(obj) = boxed else {
        return None;
    };
    obj.bounds.iter().find_map(|b| {
        let TypeParamBound::Trait(t) = b else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(at) if at.ident == "Output" => Some(at.ty.clone()),
            _ => None,
        })
    })
}

fn generic_arg(ty: &Type, name: &str) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(args: TokenStream, item: TokenStream) -> String {
        requires_approval(args, item).to_string()
    }

    #[test]
    fn wraps_the_body_and_keeps_the_signature() {
        let out = expand_str(
            quote!(policy = "export"),
            quote!(
                async fn export(&self, limit: u32) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.starts_with("async fn export (& self , limit : u32) -> Result < () , E >"));
        assert!(out.contains(":: approvals :: __private :: prepare"));
        assert!(out.contains(":: approvals :: __private :: authorizing (& __approvals_gate"));
        assert!(
            out.contains("Recordable :: arg (& limit , & mut __approvals_b , {"),
            "{out}"
        );
        assert!(out.contains("ArgName :: new (\"limit\")"), "{out}");
        // The name and the policy need no escape: the digest's end is written now.
        assert!(out.contains("Action :: builder_static ("), "{out}");
        assert!(
            out.contains(r#""\",\"policy\":\"" , "export" , "\"}""#),
            "{out}"
        );
    }

    #[test]
    fn skip_and_redact_choose_what_is_recorded() {
        let out = expand_str(
            quote!(policy = "p", skip(conn), redact(token)),
            quote!(
                fn f(conn: Conn, token: String, n: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(!out.contains("\"conn\""));
        assert!(
            out.contains("Recordable :: redact (& token , & mut __approvals_b , {"),
            "{out}"
        );
        assert!(out.contains("ArgName :: new (\"token\")"), "{out}");
        assert!(
            out.contains("Recordable :: arg (& n , & mut __approvals_b , {"),
            "{out}"
        );
        assert!(out.contains("ArgName :: new (\"n\")"), "{out}");
    }

    #[test]
    fn patterns_record_each_binding() {
        let out = expand_str(
            quote!(policy = "p"),
            quote!(
                fn f((a, b): (u8, u8), Point { x, .. }: Point) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        for name in ["\"a\"", "\"b\"", "\"x\""] {
            assert!(out.contains(name), "{name} missing from {out}");
        }
    }

    #[test]
    fn errors_keep_the_function() {
        let out = expand_str(
            quote!(),
            quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("compile_error"));
        assert!(out.contains("fn f () -> Result < () , E > { Ok (()) }"));
    }

    #[test]
    fn crate_option_changes_the_paths() {
        let out = expand_str(
            quote!(policy = "p", crate = "my_approvals"),
            quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("my_approvals :: __private"));
        assert!(!out.contains(":: approvals :: __private"));
    }
}
