//! Running external tools: argv only, never a shell. A trait so that unit
//! tests can record argv and return canned output. Each tool holds a lock
//! recorded before it starts ([`crate::toollock`]): a killed command's
//! tools are waited for before its leftovers are reconciled.

use crate::{err, Result};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// What a finished command left.
#[derive(Debug, Clone, Default)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The first non-empty line of stderr, for one-line errors.
    pub fn first_err_line(&self) -> String {
        self.stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.contains("leaked on"))
            .unwrap_or("")
            .to_string()
    }
}

pub trait Runner: Send + Sync {
    /// Run `argv[0]` with the rest as arguments.
    fn run(&self, argv: &[String]) -> Result<Out>;

    /// Run `a | b`: two processes joined by a pipe. `ok` only if both succeed.
    fn pipe(&self, a: &[String], b: &[String]) -> Result<Out>;

    /// Run `argv` with its stdout copied to `out` as it comes (a stream
    /// too large to hold, such as `zfs send`'s); `Out::stdout` stays empty.
    /// An error writing to `out` kills the tool and is returned.
    fn run_out(&self, argv: &[String], _out: &mut dyn Write) -> Result<Out> {
        Err(err!(
            Unsupported,
            "run command",
            "{}: no streaming runner here",
            argv[0]
        ))
    }

    /// Run `argv` with `input` copied to its stdin up to its end (or until
    /// the tool stops reading: its exit status says why). An error reading
    /// `input` kills the tool first, so that it never finishes anything
    /// from part of a stream, and is returned.
    fn run_in(&self, argv: &[String], _input: &mut dyn Read) -> Result<Out> {
        Err(err!(
            Unsupported,
            "run command",
            "{}: no streaming runner here",
            argv[0]
        ))
    }
}

/// The real thing: `std::process::Command`.
#[derive(Debug, Default)]
pub struct SystemRunner;

fn command(argv: &[String]) -> Result<Command> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| err!(InvalidArgument, "run command", "empty command"))?;
    let mut c = Command::new(prog);
    c.args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    Ok(c)
}

/// The lock the tools of one run hold; none when it cannot be made (a run
/// dir that cannot be written): the tool still runs, unrecorded.
/// Patient: the volume managers' tools run here (see [`crate::toollock`]).
fn tool_lock() -> Option<crate::toollock::ToolLock> {
    crate::toollock::ToolLock::patient()
        .map_err(|e| tracing::warn!("{e}"))
        .ok()
}

fn spawn_err(argv: &[String], e: std::io::Error) -> crate::Error {
    err!(Command, "run command", "cannot run {}: {e}", argv[0])
}

impl Runner for SystemRunner {
    fn run(&self, argv: &[String]) -> Result<Out> {
        tracing::debug!(?argv, "run");
        let mut c = command(argv)?;
        let t = std::time::Instant::now();
        let o = crate::toollock::output_patient(&mut c).map_err(|e| spawn_err(argv, e))?;
        // What each tool cost, for the figures of a slow machine (the guest's).
        tracing::debug!(
            ?argv,
            ms = t.elapsed().as_millis() as u64,
            ok = o.status.success(),
            "ran"
        );
        Ok(Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }

    fn pipe(&self, a: &[String], b: &[String]) -> Result<Out> {
        tracing::debug!(?a, ?b, "pipe");
        let lock = tool_lock();
        let (mut ca, mut cb) = (command(a)?, command(b)?);
        if let Some(l) = &lock {
            l.pass_to(&mut ca);
            l.pass_to(&mut cb);
        }
        let mut pa = ca
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_err(a, e))?;
        let out = pa.stdout.take().expect("piped");
        let pb = cb
            .stdin(Stdio::from(out))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let pb = match pb {
            Ok(p) => p,
            Err(e) => {
                let _ = pa.kill();
                let _ = pa.wait();
                return Err(spawn_err(b, e));
            }
        };
        // Drain a's stderr in a thread so it cannot block on a full pipe.
        let mut ea = pa.stderr.take().expect("piped");
        let t = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = ea.read_to_string(&mut s);
            s
        });
        let ob = pb.wait_with_output().map_err(|e| spawn_err(b, e))?;
        if !ob.status.success() {
            // The reader is gone: do not leave the writer blocked.
            let _ = pa.kill();
        }
        let sa = pa.wait().map_err(|e| spawn_err(a, e))?;
        let stderr_a = t.join().unwrap_or_default();
        Ok(Out {
            ok: sa.success() && ob.status.success(),
            stdout: String::from_utf8_lossy(&ob.stdout).into_owned(),
            stderr: format!("{stderr_a}{}", String::from_utf8_lossy(&ob.stderr)),
        })
    }

    fn run_out(&self, argv: &[String], out: &mut dyn Write) -> Result<Out> {
        self.streaming_out(argv, out)
    }

    fn run_in(&self, argv: &[String], input: &mut dyn Read) -> Result<Out> {
        tracing::debug!(?argv, "run streaming");
        let lock = tool_lock();
        let mut c = command(argv)?;
        if let Some(l) = &lock {
            l.pass_to(&mut c);
        }
        let fed = feed(&mut c, input, &mut |_| {}).map_err(|e| spawn_err(argv, e))?;
        drop(lock);
        match fed.broke {
            None => Ok(fed.out),
            Some(Broke::Read(e)) => Err(err!(InvalidArgument, "run command", "{}: its input: {e}", argv[0])),
            Some(Broke::Write(e)) => Err(err!(Io, "run command", "{}: writing its input: {e}", argv[0])),
        }
    }
}

/// Reads a child's pipe to the end in a thread (so that the child never
/// blocks on a full pipe), keeping the first MiB.
fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.by_ref().take(1 << 20).read_to_end(&mut v);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        String::from_utf8_lossy(&v).into_owned()
    })
}

impl SystemRunner {
    /// `argv` with its stdout copied to `out` as it comes.
    fn streaming_out(&self, argv: &[String], out: &mut dyn Write) -> Result<Out> {
        tracing::debug!(?argv, "run streaming");
        let lock = tool_lock();
        let mut c = command(argv)?;
        if let Some(l) = &lock {
            l.pass_to(&mut c);
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().map_err(|e| spawn_err(argv, e))?;
        let err = drain(ch.stderr.take());
        let mut so = ch.stdout.take().expect("piped");
        let copied = std::io::copy(&mut so, out);
        drop(so);
        if copied.is_err() {
            let _ = ch.kill();
        }
        let st = ch.wait().map_err(|e| spawn_err(argv, e))?;
        let stderr = err.join().unwrap_or_default();
        drop(lock);
        if let Err(e) = copied {
            return Err(err!(Io, "run command", "{}: writing its output: {e}", argv[0]));
        }
        Ok(Out {
            ok: st.success(),
            stdout: String::new(),
            stderr,
        })
    }
}

/// How feeding a tool its input broke off (the tool was killed for it).
#[derive(Debug)]
pub enum Broke {
    /// Reading the input failed: a cut or bad stream.
    Read(std::io::Error),
    /// Writing to the tool failed otherwise than by its closing its stdin.
    Write(std::io::Error),
}

impl Broke {
    /// The one-line error of a receive whose stream broke: a cut or
    /// malformed stream is bad input, anything else an I/O error at `path`.
    pub fn receive_error(self, op: &'static str, path: &std::path::Path) -> crate::Error {
        let (Broke::Read(e) | Broke::Write(e)) = self;
        match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                err!(InvalidArgument, op, "{e}")
            }
            _ => crate::Error::io(op, path, e),
        }
    }
}

/// What [`feed`] left: the tool's exit and output, and whether feeding it
/// broke off.
#[derive(Debug)]
pub struct Fed {
    pub out: Out,
    pub broke: Option<Broke>,
}

/// The one loop that streams into a tool (`zfs receive`, `btrfs receive`,
/// `rbd import-diff`): runs `c` (its tool lock already passed to it) with
/// `input` copied to its stdin in chunks up to the input's end, each chunk
/// shown to `each` before it is written, and its stdout and stderr kept
/// (their first MiB). The tool closing its stdin early is left to its exit
/// status to explain; any other failure to read the input or to write to
/// the tool kills the tool first, so that it never finishes anything from
/// part of a stream, and is returned in [`Fed::broke`]. Only a tool that
/// cannot be started or waited for is an `Err`.
pub fn feed(c: &mut Command, input: &mut dyn Read, each: &mut dyn FnMut(&[u8])) -> std::io::Result<Fed> {
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut ch = c.spawn()?;
    let err = drain(ch.stderr.take());
    let o = drain(ch.stdout.take());
    let mut si = ch.stdin.take().expect("piped");
    let mut broke = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                broke = Some(Broke::Read(e));
                break;
            }
        };
        each(&buf[..n]);
        if let Err(e) = si.write_all(&buf[..n]) {
            // The tool stopped reading: its exit says why (or the stream goes on past its end).
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                broke = Some(Broke::Write(e));
            }
            break;
        }
    }
    drop(si);
    if broke.is_some() {
        let _ = ch.kill();
    }
    let st = ch.wait()?;
    Ok(Fed {
        out: Out {
            ok: st.success(),
            stdout: o.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        },
        broke,
    })
}

/// A recording double for unit tests: returns canned output per command
/// prefix and records every argv. Not behind cfg(test): the backends' unit
/// tests use it from their own crates.
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeRunner {
        pub calls: Mutex<Vec<Vec<String>>>,
        /// What each [`Runner::run_in`] was fed, in order.
        pub fed: Mutex<Vec<Vec<u8>>>,
        /// (argv prefix joined by ' ', output); the last added match wins.
        pub canned: Mutex<Vec<(String, Out)>>,
    }

    impl FakeRunner {
        pub fn on(&self, prefix: &str, ok: bool, stdout: &str) {
            self.canned.lock().unwrap().push((
                prefix.to_string(),
                Out {
                    ok,
                    stdout: stdout.to_string(),
                    stderr: if ok { String::new() } else { format!("{prefix}: failed") },
                },
            ));
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().iter().map(|v| v.join(" ")).collect()
        }

        fn answer(&self, argv: &[String]) -> Out {
            let line = argv.join(" ");
            self.calls.lock().unwrap().push(argv.to_vec());
            self.canned
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(p, _)| line.starts_with(p.as_str()))
                .map(|(_, o)| o.clone())
                .unwrap_or(Out {
                    ok: true,
                    ..Out::default()
                })
        }
    }

    impl Runner for FakeRunner {
        fn run(&self, argv: &[String]) -> Result<Out> {
            Ok(self.answer(argv))
        }

        fn pipe(&self, a: &[String], b: &[String]) -> Result<Out> {
            let oa = self.answer(a);
            let ob = self.answer(b);
            Ok(Out {
                ok: oa.ok && ob.ok,
                ..ob
            })
        }

        /// The canned stdout goes to `out`.
        fn run_out(&self, argv: &[String], out: &mut dyn Write) -> Result<Out> {
            let o = self.answer(argv);
            out.write_all(o.stdout.as_bytes())
                .map_err(|e| err!(Io, "run command", "{e}"))?;
            Ok(Out {
                stdout: String::new(),
                ..o
            })
        }

        /// The input is read to its end and kept in `fed`.
        fn run_in(&self, argv: &[String], input: &mut dyn Read) -> Result<Out> {
            let o = self.answer(argv);
            let mut v = Vec::new();
            input
                .read_to_end(&mut v)
                .map_err(|e| err!(InvalidArgument, "run command", "{e}"))?;
            self.fed.lock().unwrap().push(v);
            Ok(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `ok` bytes, then fails as a cut stream does.
    struct Cut(usize);
    impl Read for Cut {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "stream cut"));
            }
            let n = self.0.min(buf.len()).min(1000);
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn feed_streams_every_chunk_to_the_tool_and_the_callback() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut seen = Vec::new();
        let fed = feed(&mut sh("wc -c; echo err >&2"), &mut data.as_slice(), &mut |b| {
            seen.extend_from_slice(b)
        })
        .unwrap();
        assert!(fed.broke.is_none() && fed.out.ok);
        assert_eq!(fed.out.stdout.trim(), "3000000");
        assert_eq!(fed.out.stderr, "err\n");
        assert_eq!(seen, data);
    }

    #[test]
    fn a_cut_input_kills_the_tool_before_it_finishes() {
        // The tool would report success once its input ends: killed, it cannot.
        let fed = feed(&mut sh("cat >/dev/null; echo finished"), &mut Cut(5000), &mut |_| {}).unwrap();
        assert!(matches!(fed.broke, Some(Broke::Read(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof));
        assert!(!fed.out.ok);
        assert_eq!(fed.out.stdout, "");
        let e = fed.broke.unwrap().receive_error("receive", std::path::Path::new("/x"));
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        // Through the runner: one error naming the tool's input.
        let e = SystemRunner.run_in(&["cat".to_string()], &mut Cut(10)).unwrap_err();
        assert!(e.to_string().contains("cat: its input: stream cut"), "{e}");
    }

    #[test]
    fn a_tool_that_stops_reading_is_judged_by_its_exit() {
        let mut big = std::io::repeat(b'y').take(64 << 20);
        let fed = feed(&mut sh("head -c 10 >/dev/null; exit 3"), &mut big, &mut |_| {}).unwrap();
        assert!(fed.broke.is_none());
        assert!(!fed.out.ok);
        let mut big = std::io::repeat(b'y').take(64 << 20);
        let o = SystemRunner
            .run_in(&["head".into(), "-c".into(), "1".into()], &mut big)
            .unwrap();
        assert!(o.ok && o.stdout == "y", "{o:?}");
    }
}
