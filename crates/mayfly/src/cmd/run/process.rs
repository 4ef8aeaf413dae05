//! The process side of `mayfly run`: signals received and forwarded to
//! CMD, CMD's exit code, and the private directory its credential lives in.

/// The signals `mayfly run` forwards to CMD; installed before anything
/// else happens, so an interruption at any point still ends the task.
pub(super) struct Signals {
    #[cfg(unix)]
    streams: [tokio::signal::unix::Signal; 3],
}

/// A signal number (`SIGINT` 2, `SIGTERM` 15, `SIGHUP` 1).
pub(super) type SignalNumber = i32;

impl Signals {
    pub(super) fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                streams: [
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal received.
    pub(super) async fn next(&mut self) -> SignalNumber {
        #[cfg(unix)]
        {
            let [interrupt, terminate, hangup] = &mut self.streams;
            tokio::select! {
                _ = interrupt.recv() => 2,
                _ = terminate.recv() => 15,
                _ = hangup.recv() => 1,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}

/// The exit code of a process stopped by `signal`.
pub(super) fn killed_by(signal: SignalNumber) -> u8 {
    u8::try_from(128 + signal).unwrap_or(1)
}

/// A temporary directory only its owner can enter (0700).
pub(super) fn private_temp_dir() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("mayfly-run-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    Ok(builder.tempdir()?)
}

pub(super) async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    signals: &mut Signals,
) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        let signal = tokio::select! {
            status = child.wait() => return Ok(status?),
            signal = signals.next() => signal,
        };
        #[cfg(unix)]
        if let (Some(pid), Some(signal)) = (
            pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)),
            rustix::process::Signal::from_named_raw(signal),
        ) {
            let _ = rustix::process::kill_process(pid, signal);
        }
        #[cfg(not(unix))]
        let _ = (pid, signal);
    }
}

pub(super) fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return killed_by(signal);
        }
    }
    1
}
