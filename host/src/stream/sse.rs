//! Server-sent events split out of an upstream body as it arrives: each event's `data` is
//! handed out as a slice of one buffer that lives as long as the stream, so an event costs
//! no allocation (an event of several `data:` lines is joined into one reused string).
//!
//! Hand-written rather than `eventsource-stream`, which allocated the event's type, its data
//! and the carried-over buffer for every event: the largest allocation site of a streamed
//! answer (bench/REPORT.md, "Allocations per request"). Only `data` is kept: every provider
//! dialect names the event's type inside its JSON, and `event:`, `id:`, `retry:` and comment
//! lines change nothing the gateway does. Line ends and fields follow the WHATWG
//! event-stream format (`\r\n`, `\n` or `\r`; one space after the colon dropped; a leading
//! byte-order mark skipped).

use memchr::{memchr, memchr2};

/// Splits a byte stream into its events' data.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Where the bytes not yet split start in `buf`.
    start: usize,
    /// The data of an event with more than one `data:` line, joined with `\n`.
    joined: String,
    /// Whether the stream's first bytes were looked at for a byte-order mark.
    past_bom: bool,
}

/// The body holds an event whose data is not UTF-8.
#[derive(Debug, thiserror::Error)]
#[error("an SSE event's data is not UTF-8")]
pub struct NotUtf8;

/// Where one event's data lies.
enum Data {
    /// One `data:` line: this range of `buf`.
    Line(usize, usize),
    /// Several: in `joined`.
    Joined,
}

impl SseSplitter {
    /// Appends the next chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        // Bytes were split off already: the stream's first three are behind.
        self.past_bom |= self.start > 0;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.len() + chunk.len() > self.buf.capacity() {
            // Moving the unsplit tail to the front is cheaper than growing the buffer: it is
            // at most one unfinished event.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
        if !self.past_bom && self.buf.len() >= 3 {
            self.past_bom = true;
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.start = 3;
            }
        }
    }

    /// Bytes held that do not end an event yet: an event the upstream has not finished (or a
    /// comment or blank padding).
    pub fn unfinished(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole event's data, if the bytes pushed hold one. `at_end`: no more bytes
    /// will come, so a `\r` that ends what was pushed ends its line (rather than perhaps
    /// being the first half of `\r\n`). An event without a `data:` line is skipped, as is
    /// one whose data is empty: no dialect has an event without data.
    pub fn next_event(&mut self, at_end: bool) -> Result<Option<&str>, NotUtf8> {
        let data = loop {
            let Some((end, data)) = self.split(at_end)? else {
                return Ok(None);
            };
            self.start = end;
            match data {
                Some(Data::Line(a, b)) if b > a => break Data::Line(a, b),
                Some(Data::Joined) if !self.joined.is_empty() => break Data::Joined,
                _ => {}
            }
        };
        Ok(Some(match data {
            Data::Line(a, b) => std::str::from_utf8(&self.buf[a..b]).map_err(|_| NotUtf8)?,
            Data::Joined => &self.joined,
        }))
    }

    /// Finds the end of the next event after `start` (the offset past its blank line) and
    /// where its data is; `None` when no blank line has arrived yet.
    fn split(&mut self, at_end: bool) -> Result<Option<(usize, Option<Data>)>, NotUtf8> {
        let buf = &self.buf;
        let mut pos = self.start;
        let mut data: Option<Data> = None;
        loop {
            let Some(i) = memchr2(b'\n', b'\r', &buf[pos..]).map(|i| pos + i) else {
                return Ok(None);
            };
            let eol = match (buf[i], buf.get(i + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\r', None) if !at_end => return Ok(None),
                _ => 1,
            };
            let line = pos..i;
            pos = i + eol;
            if line.is_empty() {
                return Ok(Some((pos, data)));
            }
            let bytes = &buf[line.clone()];
            let (name, value) = match memchr(b':', bytes) {
                Some(c) => {
                    let v = line.start + c + 1;
                    let v = if buf.get(v) == Some(&b' ') && v < line.end {
                        v + 1
                    } else {
                        v
                    };
                    (&bytes[..c], v..line.end)
                }
                None => (bytes, line.end..line.end),
            };
            if name != b"data" {
                continue;
            }
            let text = || std::str::from_utf8(&buf[value.clone()]).map_err(|_| NotUtf8);
            data = Some(match data {
                // Checked for UTF-8 when it is handed out.
                None => Data::Line(value.start, value.end),
                Some(Data::Line(a, b)) => {
                    self.joined.clear();
                    self.joined
                        .push_str(std::str::from_utf8(&buf[a..b]).map_err(|_| NotUtf8)?);
                    self.joined.push('\n');
                    self.joined.push_str(text()?);
                    Data::Joined
                }
                Some(Data::Joined) => {
                    self.joined.push('\n');
                    self.joined.push_str(text()?);
                    Data::Joined
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event's data from `body` pushed in `chunks` pieces of the given sizes.
    fn split_in(body: &[u8], sizes: impl Iterator<Item = usize>) -> Vec<String> {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        let mut rest = body;
        for n in sizes {
            let n = n.min(rest.len());
            s.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(d) = s.next_event(false).unwrap() {
                out.push(d.to_owned());
            }
            if rest.is_empty() {
                break;
            }
        }
        s.push(rest);
        while let Some(d) = s.next_event(true).unwrap() {
            out.push(d.to_owned());
        }
        out
    }

    fn split(body: &str) -> Vec<String> {
        split_in(body.as_bytes(), std::iter::once(usize::MAX))
    }

    #[test]
    fn events_fields_and_line_ends() {
        assert_eq!(split("data: a\n\ndata:b\n\n"), ["a", "b"]);
        assert_eq!(
            split("data: a\r\n\r\ndata: b\r\rdata: c\n\r\n"),
            ["a", "b", "c"]
        );
        // Several data lines join with \n; only one space after the colon is dropped.
        assert_eq!(split("data: x\ndata:  y\ndata\n\n"), ["x\n y\n"]);
        // Other fields, comments, events without data and empty data are skipped.
        assert_eq!(
            split(
                ": keep-alive\n\nevent: ping\nid: 7\nretry: 10\n\ndata:\n\nevent: e\ndata: {\"k\":1}\n\n"
            ),
            ["{\"k\":1}"]
        );
        // A byte-order mark before the first event is not part of it.
        assert_eq!(split("\u{feff}data: a\n\n"), ["a"]);
        assert_eq!(
            split_in("\n\u{feff}data: a\n\n".as_bytes(), std::iter::repeat(1)),
            [] as [&str; 0]
        );
        // Colons after the first belong to the value.
        assert_eq!(split("data: {\"a\":\"b:c\"}\n\n"), ["{\"a\":\"b:c\"}"]);
    }

    #[test]
    fn an_unfinished_event_is_held_and_counted() {
        let mut s = SseSplitter::default();
        s.push(b"data: a\n\ndata: b");
        assert_eq!(s.next_event(false).unwrap(), Some("a"));
        assert_eq!(s.next_event(false).unwrap(), None);
        assert_eq!(s.unfinished(), "data: b".len());
        s.push(b"c\n\n");
        assert_eq!(s.next_event(false).unwrap(), Some("bc"));
        assert_eq!(s.unfinished(), 0);
        // A \r at the end of what arrived may be half of \r\n: held until the next bytes.
        s.push(b"data: d\r\r");
        assert_eq!(s.next_event(false).unwrap(), None);
        assert_eq!(s.next_event(true).unwrap(), Some("d"));
    }

    #[test]
    fn every_split_of_a_body_gives_the_same_events() {
        let body = "\u{feff}: hi\r\nevent: message_start\r\ndata: {\"t\":\"é\"}\r\n\r\ndata: 1\ndata: 2\n\ndata: x\r\rdata: [DONE]\n\n";
        let whole = split(body);
        assert_eq!(whole, ["{\"t\":\"é\"}", "1\n2", "x", "[DONE]"]);
        for size in 1..body.len() {
            assert_eq!(
                split_in(body.as_bytes(), std::iter::repeat(size)),
                whole,
                "chunks of {size}"
            );
        }
        for cut in 1..body.len() {
            let sizes = [cut, usize::MAX].into_iter();
            assert_eq!(split_in(body.as_bytes(), sizes), whole, "cut at {cut}");
        }
    }

    #[test]
    fn data_that_is_not_utf8_is_an_error() {
        let mut s = SseSplitter::default();
        s.push(b"data: \xff\xfe\n\n");
        assert!(s.next_event(false).is_err());
    }

    #[test]
    fn the_buffer_does_not_grow_with_the_stream() {
        let mut s = SseSplitter::default();
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"token\"}}]}\n\n";
        for _ in 0..10_000 {
            // Each event in two pieces, so an unfinished tail is always carried over.
            s.push(&event[..20]);
            assert_eq!(s.next_event(false).unwrap(), None);
            s.push(&event[20..]);
            assert!(s.next_event(false).unwrap().is_some());
        }
        assert!(s.buf.capacity() <= 4 * event.len(), "{}", s.buf.capacity());
    }
}
