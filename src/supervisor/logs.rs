//! Instance log files: one `<name>.log` per instance, appended on each start, read from the end.
//! The directory and the files are private to llamactl's user (see [`crate::files`]): a log holds
//! the backend's command line and whatever the backend prints.

use crate::files;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A log larger than this is moved to `<name>.log.1` when the instance next starts.
const ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// The log file of an instance.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Opens the log for a new run, rotating an oversized one, and writes a header line.
pub fn open_for_run(dir: &Path, name: &str, argv: &[String]) -> io::Result<File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(files::DIR_MODE)
        .create(dir)?;
    let file = path(dir, name);
    if std::fs::metadata(&file)
        .map(|m| m.len() > ROTATE_BYTES)
        .unwrap_or(false)
    {
        std::fs::rename(&file, dir.join(format!("{name}.log.1")))?;
    }
    let mut log = files::append_private(&file)?;
    writeln!(
        log,
        "=== llamactl: starting '{name}' at {}: {} ===",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        argv.join(" ")
    )?;
    Ok(log)
}

/// Opens the log for a new run like [`open_for_run`]; when there is no space for it, the run's
/// output goes to `/dev/null` instead, with the reason to report: a full disk stops the log from
/// growing, it does not stop the instance.
pub fn open_for_run_or_discard(
    dir: &Path,
    name: &str,
    argv: &[String],
) -> io::Result<(File, Option<String>)> {
    match open_for_run(dir, name, argv) {
        Ok(log) => Ok((log, None)),
        Err(e) if crate::error::is_storage_full(&e) => {
            let discard = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
            let why = format!(
                "no space left for its log in {} ({e}): its output is discarded until it is \
                 started again",
                dir.display()
            );
            Ok((discard, Some(why)))
        }
        Err(e) => Err(e),
    }
}

/// Creates the log directory private, and tightens it and the logs in it if an older llamactl
/// left them readable to others.
pub fn make_private(dir: &Path) -> crate::error::Result<()> {
    files::private_dir(dir, "create log directory")?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| crate::error::Error::io("read log directory", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".log") || name.ends_with(".log.1") {
            files::tighten(&entry.path());
        }
    }
    Ok(())
}

/// Removes an instance's logs.
pub fn remove(dir: &Path, name: &str) {
    for file in [path(dir, name), dir.join(format!("{name}.log.1"))] {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(file = %file.display(), error = %e, "could not remove log");
            }
        }
    }
}

/// The last `lines` lines of a file (all of it for `None`); a missing file reads as empty.
pub fn tail(file: &Path, lines: Option<usize>) -> io::Result<String> {
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    tail_of(&f, len, lines)
}

/// The last `lines` lines of the first `end` bytes of `f` (all of them for `None`). A follower
/// reads its tail up to the offset from which it is sent what is appended.
pub fn tail_of(f: &File, end: u64, lines: Option<usize>) -> io::Result<String> {
    let Some(want) = lines else {
        let mut all = vec![0; usize::try_from(end).unwrap_or(usize::MAX)];
        f.read_exact_at(&mut all, 0)?;
        return Ok(String::from_utf8_lossy(&all).into_owned());
    };
    if want == 0 {
        return Ok(String::new());
    }
    // Read backwards in blocks until enough newlines are seen.
    let mut pos = end;
    let mut buf: Vec<u8> = Vec::new();
    const BLOCK: u64 = 64 * 1024;
    loop {
        // A trailing newline ends the last line; it does not start a new one.
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        let trailing = usize::from(buf.last() == Some(&b'\n'));
        if pos == 0 || newlines > want - 1 + trailing {
            break;
        }
        let step = BLOCK.min(pos);
        pos -= step;
        let mut block = vec![0; step as usize];
        f.read_exact_at(&mut block, pos)?;
        block.extend_from_slice(&buf);
        buf = block;
    }
    let text = String::from_utf8_lossy(&buf);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let all: Vec<&str> = body.split('\n').collect();
    let start = all.len().saturating_sub(want);
    let mut out = all[start..].join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.log");
        std::fs::write(&file, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&file, Some(2)).unwrap(), "b\nc\n");
        assert_eq!(tail(&file, Some(1)).unwrap(), "c\n");
        assert_eq!(tail(&file, Some(10)).unwrap(), "a\nb\nc\n");
        assert_eq!(tail(&file, None).unwrap(), "a\nb\nc\n");
        assert_eq!(tail(&file, Some(0)).unwrap(), "");
        std::fs::write(&file, "a\nb").unwrap();
        assert_eq!(tail(&file, Some(1)).unwrap(), "b");
        assert_eq!(tail(&dir.path().join("missing.log"), Some(3)).unwrap(), "");
    }

    #[test]
    fn tails_across_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.log");
        let text: String = (0..30000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&file, &text).unwrap();
        assert_eq!(
            tail(&file, Some(3)).unwrap(),
            "line 29997\nline 29998\nline 29999\n"
        );
        let many = tail(&file, Some(20000)).unwrap();
        assert_eq!(many.lines().count(), 20000);
        assert!(many.starts_with("line 10000\n"));
    }

    #[test]
    fn a_log_without_space_discards_the_output_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", path(dir.path(), "m")).unwrap();
        let (mut out, why) = open_for_run_or_discard(dir.path(), "m", &["x".into()]).unwrap();
        let why = why.expect("the reason the output is discarded");
        assert!(why.contains("no space left"), "{why}");
        assert!(why.contains(&dir.path().display().to_string()), "{why}");
        writeln!(out, "the backend's output").expect("goes nowhere, without failing");

        let (_, why) = open_for_run_or_discard(dir.path(), "ok", &["x".into()]).unwrap();
        assert_eq!(why, None, "a log with space is a log");
    }

    #[test]
    fn each_run_appends_a_header() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_for_run(dir.path(), "m", &["llama-server".into(), "-m".into()]).unwrap());
        drop(open_for_run(dir.path(), "m", &["llama-server".into()]).unwrap());
        let text = tail(&path(dir.path(), "m"), None).unwrap();
        assert_eq!(text.matches("=== llamactl: starting 'm'").count(), 2);
        remove(dir.path(), "m");
        assert!(!path(dir.path(), "m").exists());
    }
}
