//! This process's stdin and stdout for the commands that speak a protocol
//! on them (`mayfly run --mcp-gate`, `mayfly mcp connect`). Pipes and unix
//! sockets are watched by the runtime's reactor, so a message costs no hop
//! to a blocking thread each way (tokio's own stdio reads and writes on
//! one); anything else (a terminal, a file) goes through tokio's stdio.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};

use tokio::io::{AsyncRead, AsyncWrite};

/// An async stdin.
pub type Input = Box<dyn AsyncRead + Unpin + Send>;
/// An async stdout.
pub type Output = Box<dyn AsyncWrite + Unpin + Send>;

/// A copy of `fd` that may be made non-blocking: not the open file that
/// stderr writes to (a non-blocking stderr could fail `eprintln!`).
fn own_copy(fd: BorrowedFd<'_>) -> Option<File> {
    let file = File::from(fd.try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let shares_stderr = File::from(stderr)
        .metadata()
        .is_ok_and(|e| e.dev() == meta.dev() && e.ino() == meta.ino());
    (!shares_stderr).then_some(file)
}

fn unix_stream(file: File) -> Option<tokio::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}

/// Stdin, on the reactor where it can be (call within a runtime).
pub fn stdin() -> Input {
    let stdin = std::io::stdin();
    if let Some(file) = own_copy(stdin.as_fd()) {
        match file.metadata().map(|m| m.file_type()) {
            Ok(kind) if kind.is_fifo() => {
                if let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_file(file) {
                    return Box::new(pipe);
                }
            }
            Ok(kind) if kind.is_socket() => {
                if let Some(stream) = unix_stream(file) {
                    return Box::new(stream);
                }
            }
            _ => {}
        }
    }
    Box::new(tokio::io::stdin())
}

/// Stdout, on the reactor where it can be (call within a runtime).
pub fn stdout() -> Output {
    let stdout = std::io::stdout();
    if let Some(file) = own_copy(stdout.as_fd()) {
        match file.metadata().map(|m| m.file_type()) {
            Ok(kind) if kind.is_fifo() => {
                if let Ok(pipe) = tokio::net::unix::pipe::Sender::from_file(file) {
                    return Box::new(pipe);
                }
            }
            Ok(kind) if kind.is_socket() => {
                if let Some(stream) = unix_stream(file) {
                    return Box::new(stream);
                }
            }
            _ => {}
        }
    }
    Box::new(tokio::io::stdout())
}
