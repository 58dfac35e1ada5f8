//! Scalar resolution by the YAML 1.2 core schema as goyaml.v3 implements
//! it (resolve.go): only plain scalars are typed; `true`/`false` in three
//! spellings are the only booleans; integers take Go's base prefixes
//! (`0x`, `0o`, `0b`, and a leading `0` for octal) with `_` ignored.

use super::{Scalar, Style};

const TAG_PREFIX: &str = "tag:yaml.org,2002:";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` that still fit 64 bits.
    UInt(u64),
    Float(f64),
    /// Anything else, including quoted and block scalars: the text itself.
    Str,
}

pub fn resolve(scalar: &Scalar) -> Resolved {
    match scalar
        .tag
        .as_deref()
        .and_then(|t| t.strip_prefix(TAG_PREFIX))
    {
        Some("str") | Some("binary") | Some("timestamp") => return Resolved::Str,
        Some("null") => return Resolved::Null,
        Some("bool") => return resolve_plain(&scalar.text).filter_bool(),
        Some("int") | Some("float") => return resolve_plain(&scalar.text).filter_number(),
        _ => {}
    }
    if scalar.style != Style::Plain {
        return Resolved::Str;
    }
    resolve_plain(&scalar.text)
}

impl Resolved {
    fn filter_bool(self) -> Resolved {
        match self {
            Resolved::Bool(_) => self,
            _ => Resolved::Str,
        }
    }

    fn filter_number(self) -> Resolved {
        match self {
            Resolved::Int(_) | Resolved::UInt(_) | Resolved::Float(_) => self,
            _ => Resolved::Str,
        }
    }
}

fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    // goyaml only tries numbers for scalars starting with a digit, a sign
    // or a dot.
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return Resolved::Str;
    }
    let plain: std::borrow::Cow<'_, str> = if text.contains('_') {
        text.replace('_', "").into()
    } else {
        text.into()
    };
    if let Some(v) = parse_go_int(&plain) {
        return v;
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
    {
        return Resolved::Float(f);
    }
    Resolved::Str
}

/// `strconv.ParseInt(s, 0, 64)` then `ParseUint(s, 0, 64)`: an optional
/// sign, then `0x`/`0X` hex, `0o`/`0O` or a bare leading `0` octal, `0b`/`0B`
/// binary, or decimal.
fn parse_go_int(s: &str) -> Option<Resolved> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = strip_prefix_ci(body, "0x") {
        (16, d)
    } else if let Some(d) = strip_prefix_ci(body, "0o") {
        (8, d)
    } else if let Some(d) = strip_prefix_ci(body, "0b") {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        // -9223372036854775808 is the one magnitude above i64::MAX allowed.
        if magnitude <= i64::MAX as u64 + 1 {
            return Some(Resolved::Int((magnitude as i128).wrapping_neg() as i64));
        }
        return None;
    }
    Some(match i64::try_from(magnitude) {
        Ok(v) => Resolved::Int(v),
        Err(_) => Resolved::UInt(magnitude),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// goyaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// YAML 1.1 boolean spellings, which goyaml.v3 still accepts when the
/// target field is a boolean (decode.go: "some compatibility with the 1.1
/// spec").
pub fn yaml11_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Resolved {
        resolve(&Scalar {
            text: text.into(),
            style: Style::Plain,
            tag: None,
        })
    }

    #[test]
    fn only_core_booleans_are_booleans() {
        for t in ["true", "True", "TRUE"] {
            assert_eq!(plain(t), Resolved::Bool(true), "{t}");
        }
        for t in ["y", "Y", "yes", "on", "On", "no", "off", "n", "tRUE"] {
            assert_eq!(plain(t), Resolved::Str, "{t}");
        }
    }

    #[test]
    fn nulls() {
        for t in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(t), Resolved::Null, "{t:?}");
        }
        assert_eq!(plain("nULL"), Resolved::Str);
    }

    #[test]
    fn integers_with_go_prefixes() {
        assert_eq!(plain("8080"), Resolved::Int(8080));
        assert_eq!(plain("-12"), Resolved::Int(-12));
        assert_eq!(plain("+12"), Resolved::Int(12));
        assert_eq!(plain("0x1F"), Resolved::Int(31));
        assert_eq!(plain("0o17"), Resolved::Int(15));
        assert_eq!(plain("0755"), Resolved::Int(493));
        assert_eq!(plain("0b101"), Resolved::Int(5));
        assert_eq!(plain("1_000"), Resolved::Int(1000));
        assert_eq!(plain("0"), Resolved::Int(0));
        assert_eq!(plain("-9223372036854775808"), Resolved::Int(i64::MIN));
        assert_eq!(plain("18446744073709551615"), Resolved::UInt(u64::MAX));
        // Not octal digits, but a valid float.
        assert_eq!(plain("089"), Resolved::Float(89.0));
    }

    #[test]
    fn floats_and_strings() {
        assert_eq!(plain("1.10"), Resolved::Float(1.1));
        assert_eq!(plain(".5"), Resolved::Float(0.5));
        assert_eq!(plain("1e3"), Resolved::Float(1000.0));
        assert_eq!(plain("-.inf"), Resolved::Float(f64::NEG_INFINITY));
        for t in [
            "1.2.3", "10.0.0.1", "1e", "e3", "v1", "1.10a", "0x", "-", ".",
        ] {
            assert_eq!(plain(t), Resolved::Str, "{t}");
        }
    }

    #[test]
    fn quoted_and_tagged() {
        let quoted = Scalar {
            text: "8080".into(),
            style: Style::DoubleQuoted,
            tag: None,
        };
        assert_eq!(resolve(&quoted), Resolved::Str);
        let tagged = Scalar {
            text: "8080".into(),
            style: Style::Plain,
            tag: Some("tag:yaml.org,2002:str".into()),
        };
        assert_eq!(resolve(&tagged), Resolved::Str);
        let int = Scalar {
            text: "12".into(),
            style: Style::SingleQuoted,
            tag: Some("tag:yaml.org,2002:int".into()),
        };
        assert_eq!(resolve(&int), Resolved::Int(12));
    }
}
