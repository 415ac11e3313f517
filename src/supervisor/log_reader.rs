//! Reads what is appended to one instance's log, whole lines at a time: the file half of following a
//! log. The backend writes the file itself (its descriptor is inherited), so this only watches it.
//! It keeps reading across the instance's restarts (the same file, appended) and rotation (the path
//! names another file: the rest of the old one is read first, then the new one from its start).
//!
//! Only whole lines are handed out, so that a secret the backend echoes is never split across two
//! pieces (pieces are scrubbed one by one); a line longer than a block goes out in blocks.

use super::logs;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

/// Largest piece read at once.
pub(crate) const BLOCK: usize = 64 * 1024;

/// Which file a path names: a rotated log keeps its identity under its new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A log file being read, and how much of it has been handed out.
#[derive(Debug)]
struct Current {
    file: File,
    id: FileId,
    /// Bytes handed out so far: always the end of a whole line (or of a block of a long one).
    offset: u64,
}

impl Current {
    fn open(path: &std::path::Path) -> io::Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = FileId::of(&file.metadata()?);
        Ok(Some(Current {
            file,
            id,
            offset: 0,
        }))
    }

    /// Reads the whole lines between `offset` and `len` into `out`, at most `budget` bytes of them;
    /// false if the budget ran out first.
    fn read_lines(
        &mut self,
        len: u64,
        budget: &mut usize,
        out: &mut Vec<Vec<u8>>,
    ) -> io::Result<bool> {
        while self.offset < len {
            if *budget == 0 {
                return Ok(false);
            }
            let want = BLOCK.min(usize::try_from(len - self.offset).unwrap_or(BLOCK));
            let mut buf = vec![0; want];
            let n = self.file.read_at(&mut buf, self.offset)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let cut = match buf.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                // A line longer than a block goes out a block at a time.
                None if n == BLOCK => n,
                // The rest is a line still being written.
                None => break,
            };
            if cut > *budget && !out.is_empty() {
                return Ok(false);
            }
            buf.truncate(cut);
            self.offset += cut as u64;
            *budget = budget.saturating_sub(cut);
            out.push(buf);
        }
        Ok(true)
    }

    /// Everything after `offset`, however it ends: the file is finished (rotated away).
    fn read_rest(&mut self, out: &mut Vec<Vec<u8>>) -> io::Result<()> {
        loop {
            let mut buf = vec![0; BLOCK];
            let n = self.file.read_at(&mut buf, self.offset)?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            self.offset += n as u64;
            out.push(buf);
        }
    }
}

/// Follows the log file at one path.
#[derive(Debug)]
pub(crate) struct LogReader {
    path: PathBuf,
    current: Option<Current>,
}

impl LogReader {
    /// A reader that starts after the last whole line of the file `path` names now; a file that
    /// appears later is read from its start.
    pub(crate) fn at_end(path: PathBuf) -> io::Result<Self> {
        let mut current = Current::open(&path)?;
        if let Some(current) = &mut current {
            let len = current.file.metadata()?.len();
            let block = BLOCK.min(usize::try_from(len).unwrap_or(BLOCK));
            let start = len - block as u64;
            let mut buf = vec![0; block];
            current.file.read_exact_at(&mut buf, start)?;
            current.offset = match buf.iter().rposition(|&b| b == b'\n') {
                Some(newline) => start + newline as u64 + 1,
                None => start,
            };
        }
        Ok(LogReader { path, current })
    }

    /// A reader that has read nothing yet (its file could not be opened).
    pub(crate) fn empty(path: PathBuf) -> Self {
        LogReader {
            path,
            current: None,
        }
    }

    /// The whole lines appended since the last call, about `budget` bytes at most (the rest waits
    /// for the next call). After a rotation, the old file's rest comes first, then the new file's.
    pub(crate) fn read_new(&mut self, budget: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut budget = budget;
        loop {
            let Some(current) = self.current.as_mut() else {
                self.current = Current::open(&self.path)?;
                if self.current.is_none() {
                    return Ok(out);
                }
                continue;
            };
            let len = current.file.metadata()?.len();
            if len < current.offset {
                // Truncated in place (by someone else): what it holds now is new.
                current.offset = 0;
            }
            if !current.read_lines(len, &mut budget, &mut out)? {
                return Ok(out);
            }
            let rotated = match std::fs::metadata(&self.path) {
                Ok(meta) => FileId::of(&meta) != current.id,
                // Removed (the instance is being deleted) and not yet made again: keep the old one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            if !rotated {
                return Ok(out);
            }
            current.read_rest(&mut out)?;
            self.current = Current::open(&self.path)?;
        }
    }

    /// The last `lines` lines (all for `None`) of what was handed out of the current file: the
    /// tail a new follower gets before the pieces read after it.
    pub(crate) fn tail(&self, lines: Option<usize>) -> io::Result<String> {
        match &self.current {
            Some(current) => logs::tail_of(&current.file, current.offset, lines),
            None => Ok(String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn text(pieces: Vec<Vec<u8>>) -> String {
        String::from_utf8(pieces.concat()).unwrap()
    }

    #[test]
    fn starts_after_the_last_whole_line_and_hands_out_only_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        append(&path, "old 1\nold 2\npart");
        let mut reader = LogReader::at_end(path.clone()).unwrap();
        assert_eq!(reader.tail(Some(1)).unwrap(), "old 2\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "");

        append(&path, "ial\nnew 1\nnew");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "partial\nnew 1\n");
        append(&path, " 2\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "new 2\n");
        assert_eq!(reader.tail(Some(2)).unwrap(), "new 1\nnew 2\n");
    }

    #[test]
    fn follows_a_rotation_finishing_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        append(&path, "before\n");
        let mut reader = LogReader::at_end(path.clone()).unwrap();
        append(&path, "last of old\nunfinished");
        std::fs::rename(&path, dir.path().join("m.log.1")).unwrap();
        append(&path, "first of new\n");
        assert_eq!(
            text(reader.read_new(1 << 20).unwrap()),
            "last of old\nunfinishedfirst of new\n"
        );
        append(&path, "second of new\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "second of new\n");
        assert_eq!(reader.tail(None).unwrap(), "first of new\nsecond of new\n");
    }

    #[test]
    fn a_file_that_appears_later_is_read_from_its_start_and_a_removed_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let mut reader = LogReader::at_end(path.clone()).unwrap();
        assert_eq!(reader.tail(None).unwrap(), "");
        assert!(reader.read_new(1 << 20).unwrap().is_empty());
        append(&path, "hello\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "hello\n");
        std::fs::remove_file(&path).unwrap();
        assert!(reader.read_new(1 << 20).unwrap().is_empty());
        append(&path, "again\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "again\n");
    }

    #[test]
    fn the_budget_bounds_one_call_and_the_rest_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let mut reader = LogReader::at_end(path.clone()).unwrap();
        let line = format!("{}\n", "x".repeat(1000));
        let all: String = (0..300).map(|_| line.as_str()).collect();
        append(&path, &all);
        let first = text(reader.read_new(100_000).unwrap());
        assert!(first.len() <= 100_000 + BLOCK, "{}", first.len());
        assert!(first.len() < all.len());
        let rest = text(reader.read_new(1 << 20).unwrap());
        assert_eq!(first.len() + rest.len(), all.len());
        assert!(
            first + &rest == all,
            "the pieces do not add up to what was written"
        );
    }

    #[test]
    fn a_line_longer_than_a_block_goes_out_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let mut reader = LogReader::at_end(path.clone()).unwrap();
        let long = "y".repeat(BLOCK + 10);
        append(&path, &long);
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "y".repeat(BLOCK));
        append(&path, "\n");
        assert_eq!(text(reader.read_new(1 << 20).unwrap()), "yyyyyyyyyy\n");
    }
}
