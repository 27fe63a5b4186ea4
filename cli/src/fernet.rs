//! `sigma decrypt`, `sigma encrypt`, `sigma keygen`: the service's Fernet core on files.
//!
//! OUT only ever appears complete and verified: output is staged in a temporary file beside
//! it and renamed into place on success (see [`staged`](crate::staged)), or, when OUT is `-`,
//! kept in an unnamed temporary file and copied to stdout only after verification.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sigma_decrypt::fernet::{self, Decryptor, Key, KeyRing};

use crate::staged::{self, Staged};

const STDIO: &str = "-";

/// Keys on the command line or, better, in `FERNET_KEYS`, which keeps them out of the
/// process list. Every source is read by the one parser the service uses for its own
/// `FERNET_KEYS` ([`KeyRing::parse`]), so a key list works the same wherever it is put.
#[derive(Args)]
pub struct Keys {
    /// Fernet keys, newest first (encrypt uses the first, as MultiFernet does): repeat
    /// --key, or separate keys by commas, spaces or line breaks. Defaults to $FERNET_KEYS,
    /// in the same form. A urlsafe-base64 key may start with `-`, so values may too
    #[arg(
        long = "key",
        value_name = "KEYS",
        env = "FERNET_KEYS",
        hide_env_values = true,
        required = true,
        allow_hyphen_values = true
    )]
    lists: Vec<String>,
}

impl Keys {
    fn ring(&self) -> anyhow::Result<KeyRing> {
        KeyRing::parse(&self.lists.join(",")).context("--key or FERNET_KEYS")
    }

    /// The key `encrypt` uses, from the whole list parsed as decrypt parses it, so a list
    /// that decrypt would refuse is refused here too.
    fn newest(&self) -> anyhow::Result<Key> {
        Ok(self.ring()?.newest().clone())
    }
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
    let key = args.keys.newest()?;
    staged::remove_on_signals().context("catching signals")?;
    let input = open_once(&args.input)?;
    let bar = progress(&args.input);
    let mut output = Output::to(&args.output)?;
    fernet::encrypt(&key, bar.wrap_read(input), &mut output)
        .with_context(|| format!("encrypting {}", args.input.display()))?;
    bar.finish_and_clear();
    output.commit()
}

pub fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let keys = args.keys.ring()?;
    // Several keys may need several passes, which stdin cannot give.
    let rereads = keys.len() > 1;
    let decryptor = Decryptor::new(keys).with_ttl(args.ttl.map(Duration::from_secs));
    staged::remove_on_signals().context("catching signals")?;
    let source = Source::new(&args.input, rereads)?;
    let bar = progress(&args.input);
    let decrypted = decryptor
        .decrypt(
            || {
                bar.reset();
                Ok(bar.wrap_read(source.open()?))
            },
            || Output::to(&args.output),
        )
        .with_context(|| format!("{} was not decrypted", args.input.display()))?;
    bar.finish_and_clear();
    decrypted.output.commit()
}

/// Where the token is read from, as many times as the decryptor asks.
enum Source {
    File(PathBuf),
    Stdin,
    /// stdin copied aside, because it can be read only once, into an unnamed file that
    /// vanishes with the process however it ends.
    Spooled(File),
}

impl Source {
    fn new(path: &Path, rereads: bool) -> anyhow::Result<Self> {
        if path.as_os_str() != STDIO {
            return Ok(Self::File(path.to_owned()));
        }
        if !rereads {
            return Ok(Self::Stdin);
        }
        let mut spool = tempfile::tempfile().context("creating a temporary file for stdin")?;
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
            Self::Spooled(spool) => {
                let mut pass = spool.try_clone()?;
                pass.rewind()?;
                Box::new(pass)
            }
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

/// Where output waits until it is complete: staged beside OUT, or, for stdout, in an
/// unnamed temporary file (it has no name to remove, whatever ends the process).
enum Output {
    File(Staged),
    Stdout(File),
}

impl Output {
    fn to(target: &Path) -> io::Result<Self> {
        if target.as_os_str() == STDIO {
            Ok(Self::Stdout(tempfile::tempfile()?))
        } else {
            Staged::beside(target).map(Self::File)
        }
    }

    fn commit(self) -> anyhow::Result<()> {
        match self {
            Self::File(staged) => {
                let target = staged.target().display().to_string();
                staged.commit().with_context(|| format!("writing {target}"))
            }
            Self::Stdout(mut verified) => {
                verified.rewind()?;
                let mut stdout = io::stdout().lock();
                io::copy(&mut verified, &mut stdout).context("writing stdout")?;
                stdout.flush().context("writing stdout")
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(staged) => staged.write(buf),
            Self::Stdout(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::File(staged) => staged.flush(),
            Self::Stdout(file) => file.flush(),
        }
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
