//! Just enough of the BPF Type Format to read an enum's values and a
//! struct's size by name: the kernel's `enum skb_drop_reason` (whose
//! numbers change between kernels, so drop reasons are named from the
//! running kernel's BTF, never from a table), and the sizes of the sensor's
//! event structs in its own object (checked against the decoder).
//!
//! Layout: `include/uapi/linux/btf.h`. A header, then types (a common
//! 12-byte head and kind-specific data), then NUL-terminated strings.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF (bad magic)")]
    Magic,
    #[error("BTF truncated at byte {0}")]
    Truncated(usize),
    #[error("BTF type kind {0} unknown")]
    UnknownKind(u32),
}

const MAGIC: u16 = 0xeb9f;

/// Named structs, unions and enums of one BTF blob.
#[derive(Debug, Default)]
pub struct Types {
    sizes: HashMap<String, u32>,
    enums: HashMap<String, Vec<(String, i64)>>,
}

impl Types {
    pub fn parse(data: &[u8]) -> Result<Types, BtfError> {
        let reader = Reader { data };
        if reader.u16(0)? != MAGIC {
            return Err(BtfError::Magic);
        }
        let header_len = reader.u32(4)? as usize;
        let (type_off, type_len) = (reader.u32(8)? as usize, reader.u32(12)? as usize);
        let (str_off, str_len) = (reader.u32(16)? as usize, reader.u32(20)? as usize);
        let types_at = header_len + type_off;
        let strings_at = header_len + str_off;
        let strings = data
            .get(strings_at..strings_at + str_len)
            .ok_or(BtfError::Truncated(strings_at + str_len))?;
        let mut parsed = Types::default();
        let mut at = types_at;
        while at < types_at + type_len {
            at = parsed.read_type(&reader, strings, at)?;
        }
        Ok(parsed)
    }

    /// The size in bytes of the struct or union `name`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        self.sizes.get(name).copied()
    }

    /// The values of `enum name`, by value name.
    pub fn enum_values(&self, name: &str) -> Option<&[(String, i64)]> {
        self.enums.get(name).map(Vec::as_slice)
    }

    /// Reads the type at `at`; returns where the next one starts.
    fn read_type(&mut self, r: &Reader<'_>, strings: &[u8], at: usize) -> Result<usize, BtfError> {
        let name = string(strings, r.u32(at)? as usize);
        let info = r.u32(at + 4)?;
        let size = r.u32(at + 8)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let data = at + 12;
        let data_len = match kind {
            // int: one word; array; var; decl tag
            1 => 4,
            3 => 12,
            14 | 17 => 4,
            // pointer, forward, typedef, volatile, const, restrict, func,
            // float, type tag: nothing more
            2 | 7..=12 | 16 | 18 => 0,
            4 | 5 => {
                self.sizes.insert(name.to_string(), size);
                vlen * 12
            }
            6 => {
                let values = (0..vlen)
                    .map(|i| {
                        let at = data + i * 8;
                        let value = i64::from(r.u32(at + 4)? as i32);
                        Ok((string(strings, r.u32(at)? as usize).to_string(), value))
                    })
                    .collect::<Result<_, BtfError>>()?;
                self.enums.insert(name.to_string(), values);
                vlen * 8
            }
            13 => vlen * 8,
            15 => vlen * 12,
            19 => {
                let values = (0..vlen)
                    .map(|i| {
                        let at = data + i * 12;
                        let low = u64::from(r.u32(at + 4)?);
                        let high = u64::from(r.u32(at + 8)?);
                        let value = ((high << 32) | low) as i64;
                        Ok((string(strings, r.u32(at)? as usize).to_string(), value))
                    })
                    .collect::<Result<_, BtfError>>()?;
                self.enums.insert(name.to_string(), values);
                vlen * 12
            }
            other => return Err(BtfError::UnknownKind(other)),
        };
        Ok(data + data_len)
    }
}

fn string(strings: &[u8], offset: usize) -> &str {
    let tail = strings.get(offset..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).unwrap_or("")
}

/// Native-endian reads with bounds checks (BTF is in the host's order).
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], BtfError> {
        self.data
            .get(at..at + N)
            .and_then(|b| b.try_into().ok())
            .ok_or(BtfError::Truncated(at + N))
    }

    fn u16(&self, at: usize) -> Result<u16, BtfError> {
        self.bytes(at).map(u16::from_ne_bytes)
    }

    fn u32(&self, at: usize) -> Result<u32, BtfError> {
        self.bytes(at).map(u32::from_ne_bytes)
    }
}

/// The kernel's drop reasons by number, named without their
/// `SKB_DROP_REASON_` prefix (`NETFILTER_DROP`, `NO_SOCKET`).
pub fn drop_reasons(kernel: &Types) -> HashMap<u32, String> {
    kernel
        .enum_values("skb_drop_reason")
        .unwrap_or_default()
        .iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
            Some((u32::try_from(*value).ok()?, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with one struct and one enum, as the kernel lays it out.
    fn blob() -> Vec<u8> {
        let strings = b"\0pair\0colour\0RED\0BLUE\0".to_vec();
        let mut types = Vec::new();
        let word = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_ne_bytes());
        // int (kind 1), to show kind data is skipped
        word(&mut types, 0);
        word(&mut types, 1 << 24);
        word(&mut types, 4);
        word(&mut types, 32);
        // struct pair { two members } of 8 bytes
        word(&mut types, 1);
        word(&mut types, (4 << 24) | 2);
        word(&mut types, 8);
        types.extend_from_slice(&[0; 24]);
        // enum colour { RED = 1, BLUE = -2 }
        word(&mut types, 6);
        word(&mut types, (6 << 24) | 2);
        word(&mut types, 4);
        word(&mut types, 13);
        word(&mut types, 1);
        word(&mut types, 17);
        word(&mut types, (-2i32) as u32);
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_ne_bytes());
        data.extend_from_slice(&[1, 0]);
        for x in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            word(&mut data, x);
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn reads_struct_sizes_and_enum_values() {
        let types = Types::parse(&blob()).unwrap();
        assert_eq!(types.struct_size("pair"), Some(8));
        let colours = types.enum_values("colour").unwrap();
        assert_eq!(colours, [("RED".to_string(), 1), ("BLUE".to_string(), -2)]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let data = blob();
        assert_eq!(Types::parse(b"x").unwrap_err(), BtfError::Truncated(2));
        assert_eq!(Types::parse(&[0u8; 32]).unwrap_err(), BtfError::Magic);
        for end in 0..data.len() {
            let _ = Types::parse(&data[..end]);
        }
    }

    #[test]
    fn the_running_kernel_names_its_drop_reasons() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIP: no /sys/kernel/btf/vmlinux");
            return;
        };
        let reasons = drop_reasons(&Types::parse(&data).unwrap());
        assert!(reasons.values().any(|name| name == "NETFILTER_DROP"));
        assert!(reasons.values().any(|name| name == "NO_SOCKET"));
    }
}
