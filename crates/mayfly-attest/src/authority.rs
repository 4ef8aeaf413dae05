//! gRPC clients reaching a unix socket send the socket's path as the
//! HTTP/2 `:authority` (grpc-python sends `tmp%2Fdir%2Fworkload.sock`),
//! which the `h2` crate refuses as malformed and resets the stream
//! (hyperium/h2#487, grpc/grpc#38142). A unix socket's authority carries
//! nothing (the path already names the peer), so this shim sits between
//! the socket and the server: it decodes each request's header block
//! (HPACK), sets `:authority` to `localhost`, and encodes it again with an
//! encoder of its own, which keeps the server's decoder in step. Every
//! other frame, and everything the server sends, passes through as it is;
//! an HTTP/1.1 connection passes through untouched.

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};

/// The client connection preface of HTTP/2 (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frames larger than this end the connection (the server advertises
/// 16 KiB frames; a client that sends more is broken).
const MAX_FRAME: usize = 1 << 20;
/// A header block split over frames is held up to this size.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The largest frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE's
/// default, which the server keeps).
const SERVER_MAX_FRAME: usize = 16 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Serves `stream` through the shim: the returned end is what the HTTP
/// server reads and writes.
pub(crate) fn shim(stream: tokio::net::UnixStream) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut socket_read, mut socket_write) = stream.into_split();
    let (mut server_read, mut server_write) = tokio::io::split(ours);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut socket_write).await;
        let _ = socket_write.shutdown().await;
    });
    tokio::spawn(async move {
        if let Err(e) = rewrite(&mut socket_read, &mut server_write).await {
            tracing::debug!("local socket: connection ended: {e}");
        }
        let _ = server_write.shutdown().await;
    });
    theirs
}

fn broken(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// Copies the client's bytes to the server, rewriting header blocks.
async fn rewrite(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(16 * 1024);
    while buffer.len() < PREFACE.len() {
        if from.read_buf(&mut buffer).await? == 0 {
            to.write_all(&buffer).await?;
            return Ok(());
        }
        if !PREFACE.starts_with(buffer.get(..PREFACE.len()).unwrap_or(&buffer)) {
            break;
        }
    }
    if !buffer.starts_with(PREFACE) {
        to.write_all(&buffer).await?;
        tokio::io::copy(from, to).await?;
        return Ok(());
    }
    let mut frames = FrameRewriter::default();
    loop {
        let out = frames.take(&mut buffer)?;
        if !out.is_empty() {
            to.write_all(&out).await?;
        }
        if from.read_buf(&mut buffer).await? == 0 {
            return Ok(());
        }
    }
}

/// The frame-level state of one connection.
#[derive(Default)]
struct FrameRewriter {
    preface_done: bool,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    pending: Option<Pending>,
}

impl FrameRewriter {
    /// Takes every whole frame at the start of `buffer`; returns the bytes
    /// to send on.
    fn take(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        if !self.preface_done {
            if buffer.len() < PREFACE.len() {
                return Ok(out);
            }
            out.extend_from_slice(PREFACE);
            at = PREFACE.len();
            self.preface_done = true;
        }
        while let Some(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]) = buffer.get(at..at + 9) {
            let length = u32::from_be_bytes([0, l0, l1, l2]) as usize;
            if length > MAX_FRAME {
                return Err(broken(format!("a {length}-byte HTTP/2 frame")));
            }
            let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
            let Some(whole) = buffer.get(at..at + 9 + length) else {
                break;
            };
            let payload = whole.get(9..).unwrap_or_default();
            match kind {
                HEADERS => {
                    if self.pending.is_some() {
                        return Err(broken("HEADERS inside another header block"));
                    }
                    let fragment = headers_fragment(payload, flags)?;
                    self.pending = Some(Pending {
                        stream,
                        end_stream: flags & END_STREAM != 0,
                        block: fragment.to_vec(),
                    });
                }
                CONTINUATION => {
                    let pending = self
                        .pending
                        .as_mut()
                        .filter(|p| p.stream == stream)
                        .ok_or_else(|| broken("CONTINUATION outside a header block"))?;
                    pending.block.extend_from_slice(payload);
                    if pending.block.len() > MAX_HEADER_BLOCK {
                        return Err(broken("a header block over 64 KiB"));
                    }
                }
                _ => {
                    if self.pending.is_some() {
                        return Err(broken("a frame inside a header block"));
                    }
                    out.extend_from_slice(whole);
                }
            }
            if (kind == HEADERS || kind == CONTINUATION) && flags & END_HEADERS != 0 {
                let pending = self
                    .pending
                    .take()
                    .ok_or_else(|| broken("no header block"))?;
                self.emit(pending, &mut out)?;
            }
            at += 9 + length;
        }
        buffer.drain(..at);
        Ok(out)
    }

    /// Decodes a whole header block, sets `:authority`, encodes it again and
    /// frames it (HEADERS, then CONTINUATION when it is long).
    fn emit(&mut self, pending: Pending, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut headers = self
            .decoder
            .decode(&pending.block)
            .map_err(|e| broken(format!("a header block that does not decode ({e:?})")))?;
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" {
                *value = b"localhost".to_vec();
            }
        }
        let block = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut chunks = block.chunks(SERVER_MAX_FRAME).peekable();
        let mut kind = HEADERS;
        let mut first = true;
        // An empty block still needs its HEADERS frame.
        let empty: &[u8] = &[];
        let mut next = chunks.next().or(Some(empty));
        while let Some(chunk) = next {
            next = chunks.next();
            let mut flags = if next.is_none() { END_HEADERS } else { 0 };
            if first && pending.end_stream {
                flags |= END_STREAM;
            }
            let length = (chunk.len() as u32).to_be_bytes();
            out.extend_from_slice(&length[1..]);
            out.push(kind);
            out.push(flags);
            out.extend_from_slice(&pending.stream.to_be_bytes());
            out.extend_from_slice(chunk);
            kind = CONTINUATION;
            first = false;
        }
        Ok(())
    }
}

/// The shim over `data` as a client's bytes after the preface, fed in
/// pieces of the sizes its first byte picks.
pub(crate) fn fuzz(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut rewriter = FrameRewriter::default();
    let mut buffer = PREFACE.to_vec();
    for piece in data.chunks(step) {
        buffer.extend_from_slice(piece);
        if rewriter.take(&mut buffer).is_err() {
            return;
        }
    }
}

/// The header block fragment of a HEADERS frame, without its padding and
/// priority fields.
fn headers_fragment(payload: &[u8], flags: u8) -> std::io::Result<&[u8]> {
    let mut fragment = payload;
    let mut padding = 0usize;
    if flags & PADDED != 0 {
        let (&pad, rest) = fragment
            .split_first()
            .ok_or_else(|| broken("a padded HEADERS frame with no pad length"))?;
        padding = pad as usize;
        fragment = rest;
    }
    if flags & PRIORITY != 0 {
        fragment = fragment
            .get(5..)
            .ok_or_else(|| broken("a HEADERS frame too short for its priority"))?;
    }
    fragment
        .len()
        .checked_sub(padding)
        .and_then(|end| fragment.get(..end))
        .ok_or_else(|| broken("a HEADERS frame with more padding than payload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// What the server's decoder reads from the rewritten bytes.
    fn server_view(bytes: &[u8], decoder: &mut Decoder<'_>) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut blocks = Vec::new();
        let mut at = PREFACE.len();
        assert!(bytes.starts_with(PREFACE));
        let mut block = Vec::new();
        while at < bytes.len() {
            let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(&bytes[at + 9..at + 9 + length]);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            at += 9 + length;
        }
        blocks
    }

    #[test]
    fn the_authority_becomes_localhost_and_the_tables_stay_in_step() {
        let mut client = Encoder::new();
        let request = |authority: &[u8], client: &mut Encoder<'_>| {
            client.encode(vec![
                (&b":method"[..], &b"POST"[..]),
                (&b":scheme"[..], &b"http"[..]),
                (&b":path"[..], &b"/SpiffeWorkloadAPI/FetchJWTSVID"[..]),
                (&b":authority"[..], authority),
                (&b"workload.spiffe.io"[..], &b"true"[..]),
            ])
        };
        let first = request(b"tmp%2Fdir%2Fworkload.sock", &mut client);
        let second = request(b"tmp%2Fdir%2Fworkload.sock", &mut client);
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        // A padded, prioritised HEADERS split over a CONTINUATION.
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(&first[..4]);
        payload.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &first[4..]));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        // Fed in small pieces, as a socket delivers them.
        let mut rewriter = FrameRewriter::default();
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(7) {
            buffer.extend_from_slice(piece);
            out.extend(rewriter.take(&mut buffer).unwrap());
        }
        assert!(buffer.is_empty());
        let blocks = server_view(&out, &mut Decoder::new());
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            let authority = block.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(authority.1, b"localhost");
            assert!(
                block
                    .iter()
                    .any(|(n, v)| n == b":path" && v == b"/SpiffeWorkloadAPI/FetchJWTSVID")
            );
        }
    }

    #[test]
    fn broken_frames_end_the_connection() {
        let mut rewriter = FrameRewriter::default();
        let mut input = PREFACE.to_vec();
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b"x"));
        assert!(rewriter.take(&mut input).is_err());
        let mut rewriter = FrameRewriter::default();
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 1]));
        assert!(rewriter.take(&mut input).is_err());
        let mut rewriter = FrameRewriter::default();
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        assert!(rewriter.take(&mut input).is_err());
    }
}
