//! Where the cgroup hierarchies are mounted, from `/proc/self/mountinfo`.
//! The cgroup2 tree is not always at `/sys/fs/cgroup`: hybrid hosts mount
//! it at `/sys/fs/cgroup/unified`, next to the v1 controllers.

use std::path::PathBuf;

/// The cgroup mounts of one mount namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The cgroup2 (unified) hierarchy, if mounted.
    pub unified: Option<PathBuf>,
    /// cgroup v1 hierarchies with their controllers (`cpu`, `memory`,
    /// `name=systemd`, ...), for hybrid nodes whose pods live in v1 only.
    pub v1: Vec<(PathBuf, Vec<String>)>,
}

/// Reads mountinfo text (proc(5): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`). Lines that do not parse
/// are skipped; the first cgroup2 mount wins.
pub fn cgroup_mounts(mountinfo: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = before.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let mut after = after.split(' ');
        let fstype = after.next().unwrap_or("");
        let super_options = after.nth(1).unwrap_or("");
        match fstype {
            "cgroup2" if mounts.unified.is_none() => mounts.unified = Some(mount_point.into()),
            "cgroup" => {
                let controllers = super_options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro"))
                    .map(str::to_string)
                    .collect();
                mounts.v1.push((mount_point.into(), controllers));
            }
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host_mounts_cgroup2_at_unified() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = cgroup_mounts(text);
        assert_eq!(m.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1.len(), 2);
        assert_eq!(m.v1[1].1, ["name=systemd"]);
    }

    #[test]
    fn unified_host_and_escaped_mount_points() {
        let text = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n\
                    90 29 0:26 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n\
                    garbage line\n";
        let m = cgroup_mounts(text);
        assert_eq!(m.unified, Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(unescape("/mnt/my\\040cgroups\\134x"), "/mnt/my cgroups\\x");
        assert!(cgroup_mounts("").unified.is_none());
    }
}
