//! The generic schema's fields, and the two ways values for them arrive:
//! a JSON object, or a CSV row under a header.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::csv::Fields as Cells;
use super::json::{Scalar, Text};
use super::time::scalar_time;
use crate::model::Micros;

/// The schema's fields, in the order of [`Field::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Time,
    EndTime,
    SrcIp,
    SrcPort,
    DstIp,
    DstPort,
    Protocol,
    Outcome,
    SrcNamespace,
    SrcPod,
    DstNamespace,
    DstPod,
    PacketsOut,
    PacketsIn,
    BytesOut,
    BytesIn,
    Connections,
}

const FIELD_COUNT: usize = 17;

impl Field {
    const ALL: [Field; FIELD_COUNT] = [
        Field::Time,
        Field::EndTime,
        Field::SrcIp,
        Field::SrcPort,
        Field::DstIp,
        Field::DstPort,
        Field::Protocol,
        Field::Outcome,
        Field::SrcNamespace,
        Field::SrcPod,
        Field::DstNamespace,
        Field::DstPod,
        Field::PacketsOut,
        Field::PacketsIn,
        Field::BytesOut,
        Field::BytesIn,
        Field::Connections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::EndTime => "end_time",
            Field::SrcIp => "src_ip",
            Field::SrcPort => "src_port",
            Field::DstIp => "dst_ip",
            Field::DstPort => "dst_port",
            Field::Protocol => "protocol",
            Field::Outcome => "outcome",
            Field::SrcNamespace => "src_namespace",
            Field::SrcPod => "src_pod",
            Field::DstNamespace => "dst_namespace",
            Field::DstPod => "dst_pod",
            Field::PacketsOut => "packets_out",
            Field::PacketsIn => "packets_in",
            Field::BytesOut => "bytes_out",
            Field::BytesIn => "bytes_in",
            Field::Connections => "connections",
        }
    }

    fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One record's values, by field.
#[derive(Default)]
pub(crate) struct Values<'a>([Option<Scalar<'a>>; FIELD_COUNT]);

impl<'a> Values<'a> {
    pub fn get(&self, field: Field) -> Option<&Scalar<'a>> {
        self.0[field as usize].as_ref()
    }

    fn set(&mut self, field: Field, value: Scalar<'a>) -> Result<(), String> {
        let slot = &mut self.0[field as usize];
        if slot.is_some() {
            return Err(format!("{} is given twice", field.name()));
        }
        *slot = Some(value);
        Ok(())
    }

    /// The value as text; numbers are written out (a pod may be named `42`).
    pub fn text(&self, field: Field) -> Option<Cow<'_, str>> {
        self.get(field).map(Scalar::text)
    }

    pub fn required(&self, field: Field) -> Result<Cow<'_, str>, String> {
        self.text(field)
            .ok_or_else(|| format!("{} is missing", field.name()))
    }

    pub fn time(&self, field: Field) -> Result<Option<Micros>, String> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        scalar_time(value)
            .map(Some)
            .map_err(|e| format!("{} {:?}: {e}", field.name(), value.text()))
    }

    pub fn count(&self, field: Field) -> Result<u64, String> {
        let Some(value) = self.get(field) else {
            return Ok(0);
        };
        value
            .as_u64()
            .ok_or_else(|| format!("{} {:?} is not a count", field.name(), value.text()))
    }

    /// A port; 0 means none.
    pub fn port(&self, field: Field) -> Result<Option<u16>, String> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let port = value.as_u64().and_then(|n| u16::try_from(n).ok());
        match port {
            Some(0) => Ok(None),
            Some(port) => Ok(Some(port)),
            None => Err(format!("{} {:?} is not a port", field.name(), value.text())),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Values<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ValuesVisitor)
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a flow record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values<'de>, A::Error> {
        let mut values = Values::default();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let Some(field) = Field::from_name(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if let Some(value) = map.next_value::<Option<Scalar<'de>>>()? {
                values.set(field, value).map_err(serde::de::Error::custom)?;
            }
        }
        Ok(values)
    }
}

/// Which schema field each CSV column holds.
#[derive(Clone, Debug)]
pub struct CsvHeader {
    columns: Vec<Option<Field>>,
    /// The header's cells, lower case, to recognise it when repeated.
    names: Vec<String>,
}

impl CsvHeader {
    /// Reads a header row. Fails when a required column is missing or a
    /// schema column appears twice.
    pub fn parse(row: &[u8]) -> Result<CsvHeader, String> {
        let text = super::lines::utf8(row)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut cells = Cells::default();
        cells.split(text)?;
        let names: Vec<String> = (0..cells.len())
            .map(|i| cells.get(i).unwrap_or_default().trim().to_ascii_lowercase())
            .collect();
        let columns: Vec<Option<Field>> = names.iter().map(|n| Field::from_name(n)).collect();
        for field in Field::ALL {
            if columns.iter().filter(|c| **c == Some(field)).count() > 1 {
                return Err(format!("column {} appears twice", field.name()));
            }
        }
        let has = |field| columns.contains(&Some(field));
        for field in [Field::Protocol, Field::Outcome] {
            if !has(field) {
                return Err(format!("no {} column", field.name()));
            }
        }
        for (ip, pod) in [(Field::SrcIp, Field::SrcPod), (Field::DstIp, Field::DstPod)] {
            if !has(ip) && !has(pod) {
                return Err(format!(
                    "neither a {} nor a {} column",
                    ip.name(),
                    pod.name()
                ));
            }
        }
        Ok(CsvHeader { columns, names })
    }

    pub(crate) fn is_repeated_header(&self, cells: &Cells) -> bool {
        cells.len() == self.names.len()
            && self.names.iter().enumerate().all(|(i, name)| {
                cells
                    .get(i)
                    .is_some_and(|cell| cell.trim().eq_ignore_ascii_case(name))
            })
    }

    pub(crate) fn values<'c>(&self, cells: &'c Cells) -> Result<Values<'c>, String> {
        if cells.len() != self.columns.len() {
            return Err(format!(
                "the row has {} cells but the header has {}",
                cells.len(),
                self.columns.len()
            ));
        }
        let mut values = Values::default();
        for (i, column) in self.columns.iter().enumerate() {
            let (Some(field), Some(cell)) = (column, cells.get(i)) else {
                continue;
            };
            let cell = cell.trim();
            if !cell.is_empty() {
                values.set(*field, Scalar::Text(Cow::Borrowed(cell)))?;
            }
        }
        Ok(values)
    }
}
