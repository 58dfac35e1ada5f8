//! Compiles the eBPF sensor (`bpf/sensor.bpf.c`) with clang against the
//! build machine's kernel types (`vmlinux.h`, dumped by bpftool from the
//! kernel's BTF). The object relocates its field accesses (CO-RE) when it
//! is loaded, so it runs on other kernels too.
//!
//! Without clang, bpftool or `/sys/kernel/btf/vmlinux` the crate still
//! builds, with an empty object in place of the sensor: the eBPF sensor
//! then refuses to start and says why, and everything else works. (CI
//! installs the tools, and its privileged tests fail on such a build.)

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/sensor.bpf.c";
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("sensor.bpf.o");
    if let Err(why) = compile(&out, &object) {
        println!("cargo:warning=building without the eBPF sensor: {why}");
        fs::write(&object, b"").expect("OUT_DIR is writable");
    }
}

fn compile(out: &Path, object: &Path) -> Result<(), String> {
    if !Path::new(KERNEL_BTF).exists() {
        return Err(format!("{KERNEL_BTF} is missing (a kernel without BTF)"));
    }
    let vmlinux = Command::new("bpftool")
        .args(["btf", "dump", "file", KERNEL_BTF, "format", "c"])
        .output()
        .map_err(|e| format!("bpftool: {e} (install bpftool)"))?;
    if !vmlinux.status.success() {
        return Err(format!(
            "bpftool failed: {}",
            String::from_utf8_lossy(&vmlinux.stderr)
        ));
    }
    fs::write(out.join("vmlinux.h"), vmlinux.stdout).map_err(|e| e.to_string())?;
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => return Err(format!("no eBPF build for {other}")),
        Err(_) => return Err("no target architecture".into()),
    };
    let status = Command::new("clang")
        .args(["-g", "-O2", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(out)
        .args(["-c", SOURCE, "-o"])
        .arg(object)
        .status()
        .map_err(|e| format!("clang: {e} (install clang and libbpf-dev)"))?;
    if !status.success() {
        return Err(format!("clang failed on {SOURCE} ({status})"));
    }
    Ok(())
}
