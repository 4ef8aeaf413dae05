//! Server-sent events read as they arrive: the event-stream format of the
//! WHATWG HTML standard (lines ended by CRLF, LF or CR; `data`, `event`,
//! `id` and `retry` fields; `:` comments; a blank line dispatches), fed in
//! chunks of any size, with every line and event bounded so a server
//! cannot make the reader hold an unbounded amount.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type (`event:`), `None` for the default `message`.
    pub event: Option<String>,
    /// Its data lines, joined by `\n`.
    pub data: String,
    /// The last event id the stream set, if any.
    pub id: Option<String>,
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event's data passed the reader's bound.
    #[error("a server-sent event is larger than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
}

/// An event stream being read.
#[derive(Debug)]
pub struct EventReader {
    limit: usize,
    line: Vec<u8>,
    /// A CR ended the last chunk: an LF starting the next one is part of
    /// the same line break.
    after_cr: bool,
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
}

impl EventReader {
    /// A reader holding at most `limit` bytes of one line or one event.
    pub fn new(limit: usize) -> EventReader {
        EventReader {
            limit,
            line: Vec::new(),
            after_cr: false,
            started: false,
            data: String::new(),
            has_data: false,
            event: None,
            last_id: None,
        }
    }

    /// The last event id the stream set (for `Last-Event-ID` on a
    /// reconnection).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Reads `bytes`; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if rest.is_empty() {
            return Ok(events);
        }
        if std::mem::take(&mut self.after_cr)
            && let Some(after) = rest.strip_prefix(b"\n")
        {
            rest = after;
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, ending) = rest.split_at(end);
            self.extend_line(line)?;
            rest = match ending {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.take_line(&line)? {
                events.push(event);
            }
        }
        self.extend_line(rest)?;
        Ok(events)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        let mut line = String::from_utf8_lossy(line);
        if !self.started {
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned().into();
            }
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::TooLarge { limit: self.limit });
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take().filter(|e| !e.is_empty());
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        Some(Event {
            event,
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(text: &str) -> Vec<Event> {
        EventReader::new(1 << 20).feed(text.as_bytes()).unwrap()
    }

    fn message(data: &str) -> Event {
        Event {
            event: None,
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn fields_lines_and_dispatch_follow_the_standard() {
        assert_eq!(read("data: {\"a\":1}\n\n"), vec![message("{\"a\":1}")]);
        // Two data lines join with LF; one space after the colon is dropped.
        assert_eq!(read("data:a\ndata:  b\n\n"), vec![message("a\n b")]);
        // CR, CRLF and LF all end lines; comments and unknown fields are skipped.
        assert_eq!(
            read(": ping\r\nretry: 10\rfoo: bar\r\ndata\r\n\r\n"),
            vec![message("")]
        );
        // No data: nothing dispatched, and the event type does not carry over.
        assert_eq!(read("event: endpoint\n\ndata: x\n\n"), vec![message("x")]);
        assert_eq!(
            read("\u{feff}event: endpoint\nid: 7\ndata: /messages?s=1\n\n"),
            vec![Event {
                event: Some("endpoint".into()),
                data: "/messages?s=1".into(),
                id: Some("7".into()),
            }]
        );
        // An event not ended by a blank line is not dispatched.
        assert_eq!(read("data: half\n"), vec![]);
    }

    #[test]
    fn the_id_persists_and_a_nul_id_is_ignored() {
        let mut reader = EventReader::new(1024);
        let events = reader
            .feed(b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n")
            .unwrap();
        assert_eq!(events[1].id.as_deref(), Some("1"));
        assert_eq!(reader.last_event_id(), Some("1"));
    }

    #[test]
    fn lines_and_events_are_bounded() {
        let mut reader = EventReader::new(16);
        assert_eq!(
            reader.feed(&[b'x'; 17]),
            Err(SseError::TooLarge { limit: 16 })
        );
        let mut reader = EventReader::new(16);
        assert!(
            reader
                .feed(b"data: 0123456789\ndata: 0123456789\n")
                .is_err()
        );
    }

    proptest! {
        /// However the bytes are cut into chunks, the same events come out.
        #[test]
        fn chunking_does_not_change_the_events(
            lines in proptest::collection::vec(
                prop_oneof![
                    "data: [a-z{}\":,]{0,12}".prop_map(String::from),
                    "event: [a-z]{0,6}".prop_map(String::from),
                    "id: [0-9]{0,3}".prop_map(String::from),
                    ": [a-z ]{0,5}".prop_map(String::from),
                    Just(String::new()),
                ],
                0..24,
            ),
            ends in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 24),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let text: String = lines
                .iter()
                .zip(ends.iter().cycle())
                .map(|(line, end)| format!("{line}{end}"))
                .collect();
            let bytes = text.as_bytes();
            let whole = EventReader::new(1 << 16).feed(bytes).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut reader = EventReader::new(1 << 16);
            let mut pieces = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieces.extend(reader.feed(&bytes[from..cut]).unwrap());
                from = cut;
            }
            prop_assert_eq!(whole, pieces);
        }
    }
}
