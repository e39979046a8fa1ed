//! A self-signed test certificate, made with the `openssl` CLI (installed by
//! `scripts/test`), for the TLS tests of every listener.

use std::path::Path;
use std::process::Command;

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`: the paths of its
/// PEM certificate and key.
pub fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
