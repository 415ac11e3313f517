//! The generated part of a Markdown file: what a run writes between a begin and an end marker,
//! leaving the hand-written rest of the file as it is. Shared by `make bench` and `make soak`.

use std::path::Path;

/// A marked place in a Markdown file.
pub struct Markers {
    /// The line the generated part starts with.
    pub begin: &'static str,
    /// The line it ends with.
    pub end: &'static str,
}

impl Markers {
    /// An empty generated part, for a template.
    pub fn empty(&self) -> String {
        format!("{}\n{}", self.begin, self.end)
    }

    /// Puts `generated` between the markers of `path`, creating the file from `template` (which
    /// holds the markers) when it does not exist yet, and appending the part when it has none.
    pub fn write(&self, path: &Path, template: &str, generated: &str) -> std::io::Result<()> {
        let (begin, end) = (self.begin, self.end);
        let existing = std::fs::read_to_string(path).unwrap_or_else(|_| template.to_string());
        let generated = format!("{begin}\n{generated}{end}");
        let text = match (existing.find(begin), existing.find(end)) {
            (Some(b), Some(e)) if b < e => {
                format!(
                    "{}{generated}{}",
                    &existing[..b],
                    &existing[e + end.len()..]
                )
            }
            _ => format!("{}\n{generated}\n", existing.trim_end()),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)
    }
}
