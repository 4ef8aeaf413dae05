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

/// `fd` on the reactor: as a pipe through `pipe`, as a unix socket
/// through `socket`; `None` for anything else.
fn on_reactor<T>(
    fd: BorrowedFd<'_>,
    pipe: impl FnOnce(File) -> std::io::Result<T>,
    socket: impl FnOnce(tokio::net::UnixStream) -> T,
) -> Option<T> {
    let file = own_copy(fd)?;
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        return pipe(file).ok();
    }
    if !kind.is_socket() {
        return None;
    }
    let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok().map(socket)
}

/// Stdin, on the reactor where it can be (call within a runtime).
pub fn stdin() -> Input {
    on_reactor(
        std::io::stdin().as_fd(),
        |file| Ok(Box::new(tokio::net::unix::pipe::Receiver::from_file(file)?) as Input),
        |stream| Box::new(stream) as Input,
    )
    .unwrap_or_else(|| Box::new(tokio::io::stdin()))
}

/// Stdout, on the reactor where it can be (call within a runtime).
pub fn stdout() -> Output {
    on_reactor(
        std::io::stdout().as_fd(),
        |file| Ok(Box::new(tokio::net::unix::pipe::Sender::from_file(file)?) as Output),
        |stream| Box::new(stream) as Output,
    )
    .unwrap_or_else(|| Box::new(tokio::io::stdout()))
}
