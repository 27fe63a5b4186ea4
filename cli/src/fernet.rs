//! `sigma decrypt`, `sigma encrypt`, `sigma keygen`: the service's Fernet core on files.
//!
//! OUT only ever appears complete and verified: output goes to a temporary file beside it
//! (so the final rename is atomic) and is renamed into place on success, or to a temporary
//! file copied to stdout only after verification when OUT is `-`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sigma_decrypt::fernet::{self, Decryptor, Key, KeyRing};
use tempfile::NamedTempFile;

const STDIO: &str = "-";

/// Keys on the command line or, better, in `FERNET_KEYS`, which keeps them out of the
/// process list.
#[derive(Args)]
pub struct Keys {
    /// A Fernet key; repeat for rotation, newest first (encrypt uses the first, as
    /// MultiFernet does). Defaults to $FERNET_KEYS (comma-separated)
    #[arg(
        long = "key",
        value_name = "KEY",
        env = "FERNET_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        required = true
    )]
    keys: Vec<String>,
}

#[derive(Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    keys: Keys,
    /// Refuse tokens older than this many seconds (Python's TTL rule, with 60 s of clock skew)
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
    /// The token file, or - for stdin
    input: PathBuf,
    /// Where the plaintext goes, or - for stdout
    output: PathBuf,
}

#[derive(Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    keys: Keys,
    /// The file to encrypt, or - for stdin
    input: PathBuf,
    /// Where the token goes, or - for stdout
    output: PathBuf,
}

pub fn keygen() -> anyhow::Result<()> {
    println!("{}", Key::generate().to_base64());
    Ok(())
}

pub fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let key: Key = args.keys.keys[0].parse().context("--key")?;
    let input = open_once(&args.input)?;
    let bar = progress(&args.input);
    let mut output = Output::beside(&args.output)?;
    fernet::encrypt(&key, bar.wrap_read(input), &mut output.file)
        .with_context(|| format!("encrypting {}", args.input.display()))?;
    bar.finish_and_clear();
    output.commit()
}

pub fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let keys = KeyRing::parse(&args.keys.keys.join(",")).context("--key")?;
    let decryptor = Decryptor::new(keys).with_ttl(args.ttl.map(Duration::from_secs));
    let source = Source::new(&args.input, decryptor_needs_rereads(&args))?;
    let bar = progress(&args.input);
    let decrypted = decryptor
        .decrypt(
            || {
                bar.reset();
                Ok(bar.wrap_read(source.open()?))
            },
            || Output::beside(&args.output).map_err(io::Error::other),
        )
        .with_context(|| format!("{} was not decrypted", args.input.display()))?;
    bar.finish_and_clear();
    decrypted.output.commit()
}

/// Several keys may need several passes, which stdin cannot give.
fn decryptor_needs_rereads(args: &DecryptArgs) -> bool {
    args.keys.keys.len() > 1
}

/// Where the token is read from, as many times as the decryptor asks.
enum Source {
    File(PathBuf),
    Stdin,
    /// stdin copied aside, because it can be read only once.
    Spooled(NamedTempFile),
}

impl Source {
    fn new(path: &Path, rereads: bool) -> anyhow::Result<Self> {
        if path.as_os_str() != STDIO {
            return Ok(Self::File(path.to_owned()));
        }
        if !rereads {
            return Ok(Self::Stdin);
        }
        let mut spool = NamedTempFile::new().context("creating a temporary file for stdin")?;
        io::copy(&mut io::stdin().lock(), &mut spool).context("reading stdin")?;
        Ok(Self::Spooled(spool))
    }

    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            Self::File(path) => Box::new(
                File::open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            ),
            Self::Stdin => Box::new(io::stdin().lock()),
            Self::Spooled(spool) => Box::new(spool.reopen()?),
        })
    }
}

fn open_once(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    if path.as_os_str() == STDIO {
        Ok(Box::new(io::stdin().lock()))
    } else {
        Ok(Box::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    }
}

/// A temporary file that becomes OUT only when committed, and vanishes otherwise.
struct Output {
    file: NamedTempFile,
    target: Option<PathBuf>,
}

impl Output {
    fn beside(target: &Path) -> anyhow::Result<Self> {
        if target.as_os_str() == STDIO {
            return Ok(Self {
                file: NamedTempFile::new().context("creating a temporary file")?,
                target: None,
            });
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Ok(Self {
            file: NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?,
            target: Some(target.to_owned()),
        })
    }

    fn commit(mut self) -> anyhow::Result<()> {
        self.file.flush()?;
        match self.target {
            Some(target) => {
                self.file
                    .persist(&target)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
            None => {
                let mut verified = self.file.reopen()?;
                let mut stdout = io::stdout().lock();
                io::copy(&mut verified, &mut stdout).context("writing stdout")?;
                stdout.flush()?;
            }
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A progress bar on a terminal for a file of known size; nothing otherwise.
fn progress(input: &Path) -> ProgressBar {
    let size = (input.as_os_str() != STDIO)
        .then(|| std::fs::metadata(input).ok())
        .flatten()
        .map(|m| m.len());
    match size {
        Some(size) if io::stderr().is_terminal() && size > 0 => {
            let bar = ProgressBar::new(size);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("the template is valid"),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    }
}
