//! Policy files: any text is loaded or refused with positioned errors, never a panic or a
//! crash; a file that loads judges calls without panicking.
#![no_main]

use approvals_core::{Action, Context, Principal, Timestamp};
use approvals_policy::FilePolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match FilePolicy::from_source("fuzz.toml", src) {
        Ok(p) => {
            let set = p.current();
            let ctx = Context::new(Principal::agent("ops-bot"))
                .on_behalf_of(Principal::human("dana"))
                .label("env", "prod");
            for name in set.names() {
                let action = Action::builder("app::f", &name)
                    .arg("limit", &5000)
                    .arg("env", &"prod")
                    .arg("items", &vec![1, 2, 3])
                    .build()
                    .expect("plain arguments");
                let _ = set.evaluate(&action, &ctx, Timestamp::from_unix_micros(0));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
