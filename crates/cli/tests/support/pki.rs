//! A throw-away PKI made with openssl(1): a CA, a server certificate for
//! 127.0.0.1 and a client certificate, all P-256, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes `ca.pem`, `server.pem`/`server.key` and `client.pem`/`client.key`
    /// in `dir`.
    pub fn make(dir: &Path) -> Pki {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=palisade test CA",
        ];
        openssl(&[&["req", "-x509"][..], &ec, &ca].concat());
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
            ("client", "clientAuth", ""),
        ] {
            let (key, csr, subject) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("/CN={name}"),
            );
            let request = ["-keyout", &key, "-out", &csr, "-subj", &subject];
            openssl(&[&["req"][..], &ec, &request].concat());
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!("{san}basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"),
            )
            .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// The path of one of the files, as a string for a command line.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}
