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
    read_container_log_gated(input, source, &|_| true, sink)
}

/// [`read_container_log`], where a log line whose message `admit`
/// refuses is counted and not handed out; a whole CRI line is refused
/// before anything is copied out of it (what the rules' message gate is
/// for: most lines concern no rule).
pub fn read_container_log_gated<R: BufRead>(
    mut input: R,
    source: Option<&LogSource>,
    admit: &dyn Fn(&str) -> bool,
    sink: &mut dyn FnMut(LogLine),
) -> LogStats {
    let mut stats = LogStats::default();
    let mut pending = Pending::default();
    let mut number = 0;
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match input.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => {
                stats.skip(number + 1, "read error", "read error".into());
                break;
            }
        }
        number += 1;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&bytes),
        };
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if text.trim().is_empty() {
            continue;
        }
        stats.records += 1;
        // The common case, decided on the borrowed line: a whole CRI line,
        // no partial one waiting on its stream. Other lines are decided
        // once whole (a JSON record's text, partial lines joined).
        let whole_cri = cri_fields(text)
            .filter(|&(stream, _, partial, _)| !partial && !pending.lines.contains_key(&stream));
        if let Some((_, _, _, message)) = whole_cri
            && !admit(message)
        {
            stats.lines += 1;
            continue;
        }
        let parsed = if text.starts_with('{') {
            json_record(text, source)
        } else {
            cri_record(text).map(|(stream, time, partial, message)| {
                (source.cloned(), stream, time, partial, message.to_string())
            })
        };
        let Some((record_source, stream, time, partial, message)) = parsed else {
            stats.skip(
                number,
                "not a container log line",
                "neither the CRI format nor a JSON log record".into(),
            );
            continue;
        };
        let entry = pending
            .lines
            .entry(stream)
            .or_insert_with(|| (String::new(), time.clone()));
        entry.0.push_str(&message);
        if partial {
            continue;
        }
        let (message, first_time) = pending.lines.remove(&stream).unwrap_or_default();
        stats.lines += 1;
        if whole_cri.is_none() && !admit(&message) {
            continue;
        }
        sink(LogLine {
            source: record_source,
            stream,
            time: first_time.or(time),
            message,
            line: number,
            unfinished: false,
        });
    }
    for (stream, (message, time)) in pending.lines {
        stats.lines += 1;
        if !admit(&message) {
            continue;
        }
        sink(LogLine {
            source: source.cloned(),
            stream,
            time,
            message,
            line: number,
            unfinished: true,
        });
    }
    stats
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
