//! Bounded messages over stdio. A line longer than the limit is never buffered whole: it is
//! discarded as it arrives, and a request (one with a top-level `id` in its first bytes) is
//! answered with an error naming the limit, rather than left without an answer.
//!
//! The SDK's own line reader drops an oversized line silently; the client would wait for an
//! answer that never comes. Here the reading happens first, on the gateway's side of a pipe.

use rmcp::ErrorData as McpError;
use rmcp::model::CustomRequest;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader, DuplexStream};

/// The method of the stand-in for an oversized request, answered with an error.
const OVERSIZED: &str = "approvals/oversized";

/// How much of an oversized line is kept to find its `id`.
const PREFIX: usize = 64 * 1024;

/// Reads `input` line by line, up to `max` bytes a line, and yields what is accepted on the
/// returned stream (an oversized request replaced by a small stand-in).
pub(crate) fn lines<R>(input: R, max: usize) -> DuplexStream
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (mut tx, rx) = tokio::io::duplex(256 * 1024);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            let read = read_line(&mut reader, &mut line, max).await;
            let out = match read {
                Ok(Read::Line) => std::mem::take(&mut line),
                Ok(Read::Oversized { bytes }) => {
                    let stand_in = stand_in(&line, bytes, max);
                    line.clear();
                    match stand_in {
                        Some(s) => s,
                        None => continue,
                    }
                }
                Ok(Read::Eof) | Err(_) => break,
            };
            if tx.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    rx
}

enum Read {
    /// A whole line (with its newline, if the stream had one) is in the buffer.
    Line,
    /// The line had `bytes` bytes, more than the limit; its first bytes are in the buffer.
    Oversized {
        bytes: usize,
    },
    Eof,
}

async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Read> {
    let mut bytes = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match bytes {
                0 => Read::Eof,
                b if b > max => Read::Oversized { bytes: b },
                _ => Read::Line,
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        bytes += take;
        // The whole line while it is within the limit; of a longer one, its first bytes.
        let keep_to = if bytes > max { PREFIX } else { usize::MAX };
        let room = keep_to.saturating_sub(line.len());
        line.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        if bytes > max {
            line.truncate(PREFIX);
        }
        if done {
            return Ok(if bytes > max {
                Read::Oversized { bytes }
            } else {
                Read::Line
            });
        }
    }
}

/// The stand-in line for an oversized message: a request to [`OVERSIZED`] under the same id,
/// or nothing when no id is found (a notification, or an id past the first bytes).
fn stand_in(prefix: &[u8], bytes: usize, max: usize) -> Option<Vec<u8>> {
    let Some(id) = top_level_id(prefix) else {
        tracing::warn!(
            bytes,
            max,
            "mcp: refused an oversized message without an id in its first bytes"
        );
        return None;
    };
    tracing::warn!(bytes, max, "mcp: refused an oversized request");
    let stand_in = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": OVERSIZED,
        "params": {"bytes": bytes, "limit": max},
    });
    let mut out = serde_json::to_vec(&stand_in).ok()?;
    out.push(b'\n');
    Some(out)
}

/// The error answering the stand-in of an oversized request; `None` for any other request.
pub(crate) fn refusal(request: &CustomRequest) -> Option<McpError> {
    if request.method != OVERSIZED {
        return None;
    }
    let params = request.params.as_ref();
    let field = |k: &str| {
        params
            .and_then(|p| p.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Some(McpError::invalid_request(
        format!(
            "the message is {} bytes; this gateway accepts at most {} bytes a message, so it was not forwarded",
            field("bytes"),
            field("limit")
        ),
        None,
    ))
}

/// The `id` member of the JSON object `prefix` begins, found without parsing the rest (which
/// may be cut off): a string or a number, at the top level only.
///
/// Written by hand: a JSON parser needs the whole document, and the point is not to hold it.
fn top_level_id(prefix: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    let mut key_next = false;
    let mut i = 0;
    while i < prefix.len() {
        match prefix[i] {
            b'"' => {
                let end = string_end(prefix, i)?;
                if depth == 1 && key_next {
                    if &prefix[i + 1..end] == b"id" {
                        return value_after(prefix, end + 1);
                    }
                    key_next = false;
                }
                i = end;
            }
            b'{' => {
                depth += 1;
                key_next = depth == 1;
            }
            b'[' => {
                if depth == 0 {
                    return None;
                }
                depth += 1;
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => key_next = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote closing the string that opens at `start`.
fn string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The value after `: ` at `from`, if it is a string or a number.
fn value_after(s: &[u8], from: usize) -> Option<Value> {
    let skip = |mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip(from);
    if s.get(i) != Some(&b':') {
        return None;
    }
    i = skip(i + 1);
    let end = match s.get(i)? {
        b'"' => string_end(s, i)? + 1,
        b'-' | b'0'..=b'9' => {
            let mut j = i;
            while s
                .get(j)
                .is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(c))
            {
                j += 1;
            }
            j
        }
        _ => return None,
    };
    match serde_json::from_slice(&s[i..end]).ok()? {
        v @ (Value::String(_) | Value::Number(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_top_level_id_only() {
        let cases: &[(&str, Option<Value>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"#,
                Some(json!(7)),
            ),
            (
                r#"{"method":"x","params":{"id":1,"a":[{"id":2}]},"id":"abc""#,
                Some(json!("abc")),
            ),
            (r#"{"params":{"id":1,"#, None),
            (
                r#"{"method":"x","params":{"s":"\"id\":9,"}, "id" : -3 ,"#,
                Some(json!(-3)),
            ),
            (r#"{"note":"{\"id\":5}","id":"a\"b""#, Some(json!("a\"b"))),
            (r#"[{"id":1}]"#, None),
            (r#"{"id":null}"#, None),
            (r#"{"method":"notifications/progress","params":{"#, None),
        ];
        for (prefix, want) in cases {
            assert_eq!(&top_level_id(prefix.as_bytes()), want, "{prefix}");
        }
    }

    async fn through(input: Vec<u8>, max: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        lines(std::io::Cursor::new(input), max)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    #[tokio::test]
    async fn passes_lines_within_the_limit_and_stands_in_for_larger_requests() {
        let small = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n".to_vec();
        let big = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"x\":\"{}\"}}}}\n",
            "a".repeat(300_000)
        );
        let notification = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{{\"x\":\"{}\"}}}}\n",
            "b".repeat(300_000)
        );
        let mut input = small.clone();
        input.extend_from_slice(big.as_bytes());
        input.extend_from_slice(notification.as_bytes());
        input.extend_from_slice(&small);
        let out = through(input, 100_000).await;
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["method"], "ping");
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[1]["method"], OVERSIZED);
        assert_eq!(lines[1]["params"]["bytes"], big.len());
        assert_eq!(lines[1]["params"]["limit"], 100_000);
        assert_eq!(lines[2]["method"], "ping");
    }

    #[tokio::test]
    async fn a_last_line_without_newline_is_kept() {
        let out = through(b"{\"id\":1}".to_vec(), 100).await;
        assert_eq!(out, b"{\"id\":1}");
    }
}
