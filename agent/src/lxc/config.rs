//! A container config as a list of lines. Comments, blank lines, order, `lxc.include` lines,
//! unknown keys and repeated keys are kept as they were read, so a file that needs no change is
//! written back byte for byte; only lines hostguard replaces are re-spelled.

/// One `key = value` line, as LXC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// Blanks around it stripped, and one pair of matching surrounding quotes removed, as LXC's
    /// own parser does (`lxc.uts.name = "web1"` is `web1`).
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line exactly as read, its line ending included (the last line may have none).
    pub raw: String,
    /// `None` for comments, blank lines and anything LXC would not read as a key.
    pub entry: Option<Entry>,
}

impl Line {
    /// A line hostguard writes: `key = value`.
    pub fn new(key: &str, value: &str) -> Line {
        Line {
            raw: format!("{key} = {value}\n"),
            entry: Some(Entry { key: key.to_string(), value: value.to_string() }),
        }
    }

    /// A comment line (`# text`).
    pub fn comment(text: &str) -> Line {
        Line { raw: format!("# {text}\n"), entry: None }
    }

    /// The line without its line ending, for messages.
    pub fn shown(&self) -> &str {
        self.raw.trim_end_matches(['\n', '\r'])
    }

    fn parse(raw: &str) -> Line {
        Line { raw: raw.to_string(), entry: parse_entry(raw) }
    }
}

fn parse_entry(raw: &str) -> Option<Entry> {
    let t = raw.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    let key = k.trim();
    if !key.starts_with("lxc.") {
        return None;
    }
    let mut value = v.trim();
    let b = value.as_bytes();
    if b.len() > 1 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        value = &value[1..value.len() - 1];
    }
    Some(Entry { key: key.to_string(), value: value.to_string() })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub lines: Vec<Line>,
}

impl Config {
    pub fn parse(text: &str) -> Config {
        Config { lines: text.split_inclusive('\n').map(Line::parse).collect() }
    }

    /// The file's bytes: the raw lines joined, so an unchanged config is the file it was read from.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| l.raw.as_str()).collect()
    }

    pub fn entries(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.lines.iter().enumerate().filter_map(|(i, l)| l.entry.as_ref().map(|e| (i, e)))
    }

    /// The value LXC uses for a single-valued key: its last line.
    pub fn last(&self, key: &str) -> Option<&str> {
        self.entries().filter(|(_, e)| e.key == key).last().map(|(_, e)| e.value.as_str())
    }

    /// Append lines at the end, first ending an unterminated last line.
    pub fn append(&mut self, new: Vec<Line>) {
        if new.is_empty() {
            return;
        }
        if let Some(last) = self.lines.last_mut() {
            if !last.raw.ends_with('\n') {
                last.raw.push('\n');
            }
        }
        self.lines.extend(new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_byte_for_byte() {
        let text = "# c\n\n  lxc.uts.name = \"a\"  \r\nlxc.include=/x\nnot a key\nlxc.cap.drop = a\nlxc.cap.drop = b";
        let c = Config::parse(text);
        assert_eq!(c.text(), text);
        assert_eq!(c.last("lxc.uts.name"), Some("a"));
        assert_eq!(c.entries().filter(|(_, e)| e.key == "lxc.cap.drop").count(), 2);
        assert_eq!(c.last("lxc.include"), Some("/x"));
    }

    #[test]
    fn comments_and_lines_without_equals_are_not_entries() {
        let c = Config::parse("#lxc.a = 1\n   # lxc.b = 2\nlxc.c\n\n");
        assert_eq!(c.entries().count(), 0);
    }

    #[test]
    fn appending_terminates_the_last_line() {
        let mut c = Config::parse("lxc.a = 1");
        c.append(vec![Line::new("lxc.b", "2")]);
        assert_eq!(c.text(), "lxc.a = 1\nlxc.b = 2\n");
    }
}
