//! Files the CLI writes before it may show them: OUT appears complete, verified, on disk and
//! with the permissions any other tool would give it, or not at all, and nothing is left
//! behind when the command fails or is interrupted.
//!
//! A staged file is a temporary file beside OUT, in the same directory so that the final
//! rename is atomic, private (0600) while it holds what has not been verified yet. Dropping it
//! removes it. A signal would end the process without running any destructor, so SIGINT,
//! SIGTERM and SIGHUP are caught by a thread that removes every staged file and then lets the
//! signal end the process as it would have (shells report 130, 143 or 129). SIGKILL cannot be
//! caught; a power loss leaves at most a temporary file, never a damaged OUT.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use rustix::fs::Mode;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tempfile::NamedTempFile;

/// Paths of the staged files that exist now. It is held while a file is created and
/// registered and while one is renamed into place, so the signal thread finds each file
/// either staged or committed, never in between.
static STAGED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn staged() -> MutexGuard<'static, Vec<PathBuf>> {
    STAGED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes the staged files when SIGINT, SIGTERM or SIGHUP arrives, then dies of that signal.
pub fn remove_on_signals() -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // The lock stays held until the process is gone, so nothing commits meanwhile.
                let staged = staged();
                for path in staged.iter() {
                    let _ = fs::remove_file(path);
                }
                // Dying of the signal (rather than exiting) tells the parent what happened:
                // an interactive shell stops a loop on SIGINT only if its child died of it.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// A temporary file that becomes `target` only when committed.
pub struct Staged {
    file: NamedTempFile,
    target: PathBuf,
    /// Declared after `file`, so the file is removed before its path is forgotten.
    registration: Registration,
}

impl Staged {
    pub fn beside(target: &Path) -> io::Result<Self> {
        let dir = directory_of(target);
        let mut staged = staged();
        let file = tempfile::Builder::new()
            .prefix(".sigma-")
            .tempfile_in(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        staged.push(file.path().to_owned());
        Ok(Self {
            registration: Registration(file.path().to_owned()),
            file,
            target: target.to_owned(),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the file `target`: its bytes reach the disk before its name does, so a crash
    /// leaves the previous `target` (or none), never an empty or truncated one; then the
    /// rename itself is made durable.
    pub fn commit(self) -> io::Result<()> {
        let Self {
            mut file,
            target,
            registration,
        } = self;
        file.flush()?;
        file.as_file().sync_all()?;
        file.as_file()
            .set_permissions(Permissions::from_mode(0o666 & !umask()))?;
        {
            let _no_signal_meanwhile = staged();
            file.persist(&target).map_err(|e| e.error)?;
        }
        drop(registration);
        File::open(directory_of(&target))?.sync_all()
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A staged path, forgotten by the signal thread when this is dropped.
struct Registration(PathBuf);

impl Drop for Registration {
    fn drop(&mut self) {
        staged().retain(|path| *path != self.0);
    }
}

fn directory_of(target: &Path) -> &Path {
    match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The process's umask, which can only be read by setting it: no other thread of the CLI
/// creates files, so none can be created meanwhile under the wrong mask.
fn umask() -> u32 {
    let mask = rustix::process::umask(Mode::empty());
    rustix::process::umask(mask);
    mask.bits()
}
