//! Container logs as a node keeps them and as collectors ship them: the
//! CRI format (`<time> <stream> <P|F> <message>`, partial `P` lines joined
//! until the `F` that ends them), Docker's json-file (`{"log":...,
//! "stream":..., "time":...}`, a line without its final newline continued
//! by the next record), and Fluent Bit `json_lines` records with their
//! `kubernetes` block. Who wrote a line comes from the file's path
//! (`/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`, or the
//! `/var/log/containers/<pod>_<ns>_<container>-<id>.log` link) or from the
//! record's `kubernetes` block.
//!
//! Every line is accounted for: a log line, part of one, or a counted skip
//! with a diagnostic; a partial line still open at the end is handed out
//! as it is, marked.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::prefilter::LineFilter;

/// Whose log it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSource {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: Option<String>,
    pub container: String,
}

/// The source a kubelet log path names, if it names one.
pub fn source_of_path(path: &str) -> Option<LogSource> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let file = *parts.last()?;
    if let Some(at) = parts.iter().rposition(|p| *p == "pods")
        && parts.len() == at + 4
    {
        // /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log: names cannot
        // hold `_`, so the directory splits in three.
        let mut pod_dir = parts[at + 1].splitn(3, '_');
        let (namespace, pod, uid) = (pod_dir.next()?, pod_dir.next()?, pod_dir.next()?);
        return Some(LogSource {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            pod_uid: Some(uid.to_string()),
            container: parts[at + 2].to_string(),
        });
    }
    // /var/log/containers/<pod>_<ns>_<container>-<64 hex>.log
    let stem = file.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut fields = rest.splitn(3, '_');
    let (pod, namespace, container) = (fields.next()?, fields.next()?, fields.next()?);
    Some(LogSource {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        pod_uid: None,
        container: container.to_string(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub source: Option<LogSource>,
    pub stream: Stream,
    /// RFC 3339, as the runtime wrote it.
    pub time: Option<String>,
    pub message: String,
    /// The input line where the log line ends.
    pub line: u64,
    /// The input ended while the line was still partial.
    pub unfinished: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Non-blank input lines.
    pub records: u64,
    /// Log lines handed out (partial records joined count once).
    pub lines: u64,
    pub skipped: BTreeMap<String, u64>,
    /// Line and reason, the first 100.
    pub diagnostics: Vec<(u64, String)>,
}

impl LogStats {
    fn skip(&mut self, line: u64, reason: &str, detail: String) {
        *self.skipped.entry(reason.to_string()).or_insert(0) += 1;
        if self.diagnostics.len() < 100 {
            self.diagnostics.push((line, detail));
        }
    }
}

/// A Docker json-file record, or a Fluent Bit record.
#[derive(Deserialize)]
struct JsonRecord {
    log: Option<String>,
    stream: Option<String>,
    time: Option<String>,
    date: Option<serde_json::Value>,
    kubernetes: Option<Kubernetes>,
}

#[derive(Deserialize)]
struct Kubernetes {
    pod_name: Option<String>,
    namespace_name: Option<String>,
    pod_id: Option<String>,
    container_name: Option<String>,
}

/// Partial lines waiting for their end, per stream.
#[derive(Default)]
struct Pending {
    lines: BTreeMap<Stream, (String, Option<String>)>,
}

/// Reads a container log; `source` is whose it is, when the file's path
/// says (records that carry a `kubernetes` block say it themselves).
pub fn read_container_log<R: BufRead>(
    input: R,
    source: Option<&LogSource>,
    sink: &mut dyn FnMut(LogLine),
) -> LogStats {
    read_container_log_gated(input, source, &|_| true, None, sink)
}

/// [`read_container_log`], where a log line whose message `admit`
/// refuses is counted and not handed out; a whole CRI line is refused
/// before anything is copied out of it (what the rules' message gate is
/// for: most lines concern no rule).
///
/// `prefilter`, when given, finds every line whose message `admit` may
/// accept: the input is then searched a block at a time, and `admit`
/// asked only about the lines it finds. One search over a megabyte costs
/// far less than a search per line of a few hundred bytes.
pub fn read_container_log_gated<R: BufRead>(
    mut input: R,
    source: Option<&LogSource>,
    admit: &dyn Fn(&str) -> bool,
    prefilter: Option<&LineFilter>,
    sink: &mut dyn FnMut(LogLine),
) -> LogStats {
    let mut reader = Reader {
        source,
        admit,
        sink,
        stats: LogStats::default(),
        pending: Pending::default(),
        number: 0,
        lowered: Vec::new(),
        places: Vec::new(),
    };
    let mut buffer = vec![0; BLOCK];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            // One line longer than the buffer: make room for it.
            buffer.resize(buffer.len() * 2, 0);
        }
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let line = reader.number + 1;
                reader.stats.skip(line, "read error", "read error".into());
                // What is left of the last line is lost with the input.
                filled = 0;
                break;
            }
        }
        let Some(last) = memchr::memrchr(b'\n', &buffer[..filled]) else {
            continue;
        };
        reader.lines(&buffer[..=last], prefilter);
        buffer.copy_within(last + 1..filled, 0);
        filled -= last + 1;
    }
    if filled > 0 {
        reader.line(&buffer[..filled], true);
    }
    reader.finish()
}

/// How much input is searched at once.
const BLOCK: usize = 1 << 20;

/// The reader's state between input lines.
struct Reader<'a> {
    source: Option<&'a LogSource>,
    admit: &'a dyn Fn(&str) -> bool,
    sink: &'a mut dyn FnMut(LogLine),
    stats: LogStats,
    pending: Pending,
    /// The last input line read.
    number: u64,
    /// The prefilter's scratch space.
    lowered: Vec<u8>,
    places: Vec<usize>,
}

impl Reader<'_> {
    /// Whole lines, each ending in `\n`.
    fn lines(&mut self, block: &[u8], prefilter: Option<&LineFilter>) {
        let (Some(prefilter), Ok(text)) = (prefilter, std::str::from_utf8(block)) else {
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', block) {
                self.line(&block[start..end], true);
                start = end + 1;
            }
            return;
        };
        let mut places = std::mem::take(&mut self.places);
        prefilter.places(text, &mut self.lowered, &mut places);
        let mut next = places.iter().copied().peekable();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', block) {
            // Places are in order, and those of earlier lines are taken.
            let mut maybe = false;
            while next.next_if(|&at| at <= end).is_some() {
                maybe = true;
            }
            self.text(&text[start..end], maybe);
            start = end + 1;
        }
        self.places = places;
    }

    /// One input line, without its `\n`.
    fn line(&mut self, bytes: &[u8], maybe: bool) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text(text, maybe),
            Err(_) => self.text(&String::from_utf8_lossy(bytes), maybe),
        }
    }

    /// One input line, as text; `maybe` false when it is known that
    /// `admit` refuses its message if it is a whole CRI line.
    fn text(&mut self, text: &str, maybe: bool) {
        self.number += 1;
        let number = self.number;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            return;
        }
        let (stats, pending) = (&mut self.stats, &mut self.pending);
        stats.records += 1;
        // The common case, decided on the borrowed line: a whole CRI line,
        // no partial one waiting on its stream. Other lines are decided
        // once whole (a JSON record's text, partial lines joined).
        let whole_cri = cri_fields(text)
            .filter(|&(stream, _, partial, _)| !partial && !pending.lines.contains_key(&stream));
        if let Some((_, _, _, message)) = whole_cri
            && !(maybe && (self.admit)(message))
        {
            stats.lines += 1;
            return;
        }
        let parsed = if text.starts_with('{') {
            json_record(text, self.source)
        } else {
            cri_record(text).map(|(stream, time, partial, message)| {
                (
                    self.source.cloned(),
                    stream,
                    time,
                    partial,
                    message.to_string(),
                )
            })
        };
        let Some((record_source, stream, time, partial, message)) = parsed else {
            stats.skip(
                number,
                "not a container log line",
                "neither the CRI format nor a JSON log record".into(),
            );
            return;
        };
        let entry = pending
            .lines
            .entry(stream)
            .or_insert_with(|| (String::new(), time.clone()));
        entry.0.push_str(&message);
        if partial {
            return;
        }
        let (message, first_time) = pending.lines.remove(&stream).unwrap_or_default();
        stats.lines += 1;
        if whole_cri.is_none() && !(self.admit)(&message) {
            return;
        }
        (self.sink)(LogLine {
            source: record_source,
            stream,
            time: first_time.or(time),
            message,
            line: number,
            unfinished: false,
        });
    }

    /// Partial lines still open at the end are handed out as they are.
    fn finish(mut self) -> LogStats {
        for (stream, (message, time)) in std::mem::take(&mut self.pending.lines) {
            self.stats.lines += 1;
            if !(self.admit)(&message) {
                continue;
            }
            (self.sink)(LogLine {
                source: self.source.cloned(),
                stream,
                time,
                message,
                line: self.number,
                unfinished: true,
            });
        }
        self.stats
    }
}

type Record = (Option<LogSource>, Stream, Option<String>, bool, String);

/// `2024-05-01T10:00:00.123456789Z stdout F message`
fn cri_record(text: &str) -> Option<(Stream, Option<String>, bool, &str)> {
    let (stream, time, partial, message) = cri_fields(text)?;
    Some((stream, Some(time.to_string()), partial, message))
}

/// A CRI line's stream, time, whether it is partial (`P`), and message,
/// borrowed.
fn cri_fields(text: &str) -> Option<(Stream, &str, bool, &str)> {
    // Fields are split at single spaces, so a second space in a row makes
    // an empty field, which is neither a stream nor a tag.
    if !text.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    let (time, rest) = text.split_once(' ')?;
    let stream = stream_of(rest.get(..6)?)?;
    let rest = rest[6..].strip_prefix(' ')?;
    let partial = match rest.as_bytes().first()? {
        b'P' => true,
        b'F' => false,
        _ => return None,
    };
    let message = match rest.as_bytes().get(1) {
        None => "",
        Some(b' ') => &rest[2..],
        Some(_) => return None,
    };
    Some((stream, time, partial, message))
}

fn json_record(text: &str, source: Option<&LogSource>) -> Option<Record> {
    let record: JsonRecord = serde_json::from_str(text).ok()?;
    let log = record.log?;
    let stream = record
        .stream
        .as_deref()
        .map_or(Some(Stream::Stdout), stream_of)?;
    // json-file keeps the newline; a record without one is continued.
    let (message, partial) = match log.strip_suffix('\n') {
        Some(line) => (line.to_string(), false),
        None if record.kubernetes.is_some() => (log, false),
        None => (log, true),
    };
    let own = record.kubernetes.and_then(|k| {
        Some(LogSource {
            namespace: k.namespace_name?,
            pod: k.pod_name?,
            pod_uid: k.pod_id,
            container: k.container_name.unwrap_or_default(),
        })
    });
    let time = record
        .time
        .or(record.date.as_ref().and_then(fluent_bit_date));
    Some((
        own.or_else(|| source.cloned()),
        stream,
        time,
        partial,
        message,
    ))
}

/// Fluent Bit's `date` as RFC 3339: its `json_date_format` writes epoch
/// seconds (`double`, the default, or `epoch`) or text (`iso8601`,
/// `java_sql_timestamp`); text that is no epoch number is kept as it is.
fn fluent_bit_date(date: &serde_json::Value) -> Option<String> {
    let text = match date {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    match palisade_flow::generic::parse_epoch_seconds(&text) {
        Ok(micros) => Some(palisade_detect::rfc3339(micros)),
        Err(_) => Some(text),
    }
}

fn stream_of(text: &str) -> Option<Stream> {
    match text {
        "stdout" => Some(Stream::Stdout),
        "stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<LogLine>, LogStats) {
        let mut lines = Vec::new();
        let stats = read_container_log(text.as_bytes(), None, &mut |l| lines.push(l));
        (lines, stats)
    }

    #[test]
    fn kubelet_paths_name_the_pod_and_container() {
        let source = source_of_path("/var/log/pods/shop_web-7d9f-x2_0b1c-44/nginx/0.log").unwrap();
        assert_eq!(source.namespace, "shop");
        assert_eq!(source.pod, "web-7d9f-x2");
        assert_eq!(source.pod_uid.as_deref(), Some("0b1c-44"));
        assert_eq!(source.container, "nginx");
        let id = "a".repeat(64);
        let link =
            source_of_path(&format!("/var/log/containers/web-1_shop_nginx-{id}.log")).unwrap();
        assert_eq!(
            (link.pod.as_str(), link.namespace.as_str()),
            ("web-1", "shop")
        );
        assert_eq!(link.container, "nginx");
        assert_eq!(source_of_path("/var/log/syslog"), None);
        assert_eq!(source_of_path("/var/log/containers/x-short.log"), None);
    }

    #[test]
    fn cri_partial_lines_are_joined_per_stream() {
        let text = "2024-05-01T10:00:00.1Z stdout P hello \n\
                    2024-05-01T10:00:00.2Z stderr F oops\n\
                    2024-05-01T10:00:00.3Z stdout F world\n\
                    2024-05-01T10:00:00.4Z stdout F \n";
        let (lines, stats) = read(text);
        let messages: Vec<(&str, Stream)> = lines
            .iter()
            .map(|l| (l.message.as_str(), l.stream))
            .collect();
        assert_eq!(
            messages,
            [
                ("oops", Stream::Stderr),
                ("hello world", Stream::Stdout),
                ("", Stream::Stdout)
            ]
        );
        assert_eq!(lines[1].time.as_deref(), Some("2024-05-01T10:00:00.1Z"));
        assert_eq!((stats.records, stats.lines), (4, 3));
    }

    #[test]
    fn docker_json_file_and_fluent_bit_records() {
        let text = concat!(
            "{\"log\":\"connection refu\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00Z\"}\n",
            "{\"log\":\"sed to 10.0.0.9:5432\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:01Z\"}\n",
            "{\"date\":1714557600.5,\"log\":\"GET / 403\",\"kubernetes\":{\"pod_name\":\"web-1\",\"namespace_name\":\"shop\",\"pod_id\":\"u1\",\"container_name\":\"nginx\"}}\n",
        );
        let (lines, _) = read(text);
        assert_eq!(lines[0].message, "connection refused to 10.0.0.9:5432");
        assert_eq!(lines[1].source.as_ref().unwrap().pod, "web-1");
        assert_eq!(lines[1].message, "GET / 403");
    }

    /// The CRI line split as `splitn(4, ' ')` splits it, the definition
    /// the fast split must agree with.
    fn cri_fields_by_split(text: &str) -> Option<(Stream, &str, bool, &str)> {
        let mut fields = text.splitn(4, ' ');
        let time = fields.next()?;
        let stream = stream_of(fields.next()?)?;
        let partial = match fields.next()? {
            "P" => true,
            "F" => false,
            _ => return None,
        };
        if !time.as_bytes().first()?.is_ascii_digit() {
            return None;
        }
        Some((stream, time, partial, fields.next().unwrap_or("")))
    }

    #[test]
    fn cri_fields_split_at_single_spaces() {
        let lines = [
            "2024-05-01T10:00:00Z stdout F message  with  spaces ",
            "2024-05-01T10:00:00Z stderr P x",
            "2024-05-01T10:00:00Z stdout  F x",
            "2024-05-01T10:00:00Z stdoutF x",
            "2024-05-01T10:00:00Z stdout FF x",
            "2024-05-01T10:00:00Z stdou F x",
            "2024-05-01T10:00:00Z std\u{e9}t F x",
            "2024-05-01T10:00:00Z  stdout F x",
            "x024-05-01T10:00:00Z stdout F x",
        ];
        for line in lines {
            for end in 0..=line.len() {
                let Some(text) = line.get(..end) else {
                    continue;
                };
                assert_eq!(cri_fields(text), cri_fields_by_split(text), "{text:?}");
            }
        }
    }

    /// Hands out its text a few bytes at a time, as a pipe may.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn gated(
        text: &[u8],
        chunk: usize,
        prefilter: Option<&LineFilter>,
    ) -> (Vec<LogLine>, LogStats) {
        let admit = |m: &str| m.contains("token") || m.starts_with("^");
        let mut lines = Vec::new();
        let input = std::io::BufReader::new(Trickle(text, chunk));
        let stats =
            read_container_log_gated(input, None, &admit, prefilter, &mut |l| lines.push(l));
        (lines, stats)
    }

    /// Searching blocks with a prefilter hands out exactly the lines that
    /// asking about every line does, wherever the reads cut the input:
    /// lines across reads, partial lines, JSON records, bad UTF-8, a line
    /// longer than a block, and no final newline.
    #[test]
    fn block_search_agrees_with_asking_per_line() {
        let long = format!(
            "2024-05-01T10:00:00Z stdout F {}token\n",
            "x".repeat(BLOCK + 5)
        );
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&match i % 7 {
                0 => format!("2024-05-01T10:00:{:02}Z stdout F a token {i}\n", i % 60),
                1 => format!("2024-05-01T10:00:00Z stdout P to\n2024-05-01T10:00:00Z stdout F ken {i}\n"),
                2 => format!("{{\"log\":\"tok\",\"stream\":\"stderr\"}}\n{{\"log\":\"en {i}\\n\",\"stream\":\"stderr\"}}\n"),
                3 => "garbage\n\r\n\n".to_string(),
                4 => format!("2024-05-01T10:00:00Z stderr F ^anchored {i}\r\n"),
                _ => format!("2024-05-01T10:00:00Z stdout F nothing here {i}\n"),
            });
        }
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"2024-05-01T10:00:00Z stdout F bad \xff token\n");
        bytes.extend_from_slice(long.as_bytes());
        bytes.extend_from_slice(b"2024-05-01T10:00:00Z stdout F last token");
        let expected = gated(&bytes, bytes.len(), None);
        assert!(expected.0.len() > 150, "{}", expected.0.len());
        // With literals, and with the automaton (no literal starts `.*`).
        for patterns in [["token", "\\^"], ["token", ".*\\^"]] {
            let patterns = patterns.map(String::from);
            let prefilter = LineFilter::new(&patterns).unwrap();
            for chunk in [1, 7, 4096, bytes.len()] {
                let found = gated(&bytes, chunk, Some(&prefilter));
                assert_eq!(found, expected, "{patterns:?}, reads of {chunk}");
            }
        }
        assert_eq!(gated(&bytes, 13, None), expected);
    }

    #[test]
    fn bad_lines_are_counted_and_an_open_partial_line_is_kept() {
        let text = "garbage\n{\"no\":\"log\"}\n2024-05-01T10:00:00Z stdin F x\n2024-05-01T10:00:00Z stdout P tail";
        let (lines, stats) = read(text);
        assert_eq!(stats.skipped["not a container log line"], 3);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].unfinished);
        assert_eq!(lines[0].message, "tail");
        let full = "2024-05-01T10:00:00Z stdout F message\n";
        for end in 0..full.len() {
            let _ = read(&full[..end]);
        }
    }
}
