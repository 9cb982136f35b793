//! Human output (coloured when the terminal supports it and NO_COLOR is unset) or JSON.

use anstyle::{AnsiColor, Style};
use serde_json::Value;

pub(crate) struct Output {
    json: bool,
}

const OK: Style = AnsiColor::Green.on_default().bold();
const BAD: Style = AnsiColor::Red.on_default().bold();
const DIM: Style = Style::new().dimmed();

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// A success line, or `value` as JSON.
    pub(crate) fn ok(&self, text: &str, value: Value) {
        if self.json {
            anstream::println!("{value}");
        } else {
            anstream::println!("{OK}ok{OK:#}: {text}");
        }
    }

    pub(crate) fn line(&self, text: &str) {
        anstream::println!("{text}");
    }

    pub(crate) fn dim(&self, text: &str) -> String {
        format!("{DIM}{text}{DIM:#}")
    }

    pub(crate) fn error(&self, e: &Failure) {
        if self.json {
            let mut v = serde_json::json!({ "ok": false, "error": e.message });
            if let Some(seq) = e.seq {
                v["seq"] = seq.into();
            }
            anstream::println!("{v}");
        } else {
            anstream::eprintln!("{BAD}error{BAD:#}: {}", e.message);
        }
    }
}

/// A command failure: the message, and the record sequence number it concerns, if any.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) seq: Option<u64>,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            seq: None,
        }
    }
}
