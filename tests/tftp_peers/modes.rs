//! Serving modes: single-port mode and uploads with tftp-hpa `put`.

use super::*;

/// `--single-port`: every transfer from port 69 itself, several at once, each exact.
#[test]
fn single_port_mode() {
    if !can_run("single_port", &["ip", "atftp", "curl"]) {
        return;
    }
    let mut lan = Lan::new(11, "single-port");
    let data = lan.file("boot.img", 1_200_007);
    lan.serve(&["--single-port"]);
    let ip = lan.server_ip().to_string();
    lan.client(
        "atftp",
        &[
            "--option",
            "blksize 1468",
            "--option",
            "windowsize 16",
            "-g",
            "-r",
            "boot.img",
            "-l",
            &lan.out("atftp.out"),
            &ip,
        ],
    );
    lan.assert_received("atftp.out", &data, "atftp, single port");
    let url = format!("tftp://{ip}/boot.img");
    lan.client(
        "curl",
        &[
            "-sS",
            "--tftp-blksize",
            "8192",
            "-o",
            &lan.out("curl.out"),
            &url,
        ],
    );
    lan.assert_received("curl.out", &data, "curl, single port");
    // Transfers on the shared port run on the runtime that reads it, not on lanes.
    for i in 0..2 {
        let e = lan.completed("boot.img", i);
        assert!(e["lane"].is_null(), "{e}");
    }
    let lines = lan.client(
        &example("tftp").display().to_string(),
        &[
            "--server",
            &ip,
            "--get",
            "boot.img",
            "--out",
            &lan.out("own.out"),
            "--repeat",
            "50",
            "--concurrency",
            "50",
            "--blksize",
            "1468",
            "--windowsize",
            "8",
        ],
    );
    lan.assert_received("own.out", &data, "own client, single port");
    let done = lines
        .iter()
        .find_map(|l| support::netns::json_object(l))
        .unwrap();
    assert_eq!(done["failed"], 0, "{done}");
    let metrics = lan.stop();
    assert_eq!(metrics["completed"], 52, "{metrics}");
}

/// Uploads with tftp-hpa `put` into a directory enabled with `--allow-write`: binary and
/// netascii files arrive intact; an existing file, an escape, an oversized file and a
/// directory that does not exist are refused; nothing half-written is ever left behind.
#[test]
fn tftp_hpa_put_uploads() {
    if !can_run("tftp_hpa_put", &["ip", "tftp"]) {
        return;
    }
    let mut lan = Lan::new(12, "put");
    let uploads = lan.scratch.join("uploads");
    std::fs::create_dir_all(uploads.join("logs")).unwrap();
    std::fs::write(uploads.join("existing"), b"keep me").unwrap();
    let binary = pseudo_random(120_001, 12);
    std::fs::write(lan.scratch.join("bin.in"), &binary).unwrap();
    let text = b"line one\nline two\r\n\rbare\n".repeat(300);
    std::fs::write(lan.scratch.join("text.in"), &text).unwrap();
    std::fs::write(lan.scratch.join("big.in"), pseudo_random(200_000, 7)).unwrap();
    lan.serve(&[
        "--allow-write",
        &uploads.display().to_string(),
        "--max-upload",
        "150000",
    ]);
    let ip = lan.server_ip().to_string();
    let put = |mode: &str, local: &str, remote: &str| {
        let mut cmd = lan.cli.command("tftp", LIFETIME);
        cmd.args(["-m", mode, &ip, "-c", "put", &lan.out(local), remote]);
        let (lines, _) = run_bounded("tftp", cmd, WAIT);
        eprintln!("tftp put {local} {remote}: {lines:?}");
        lines
    };
    // Binary into a subdirectory, and netascii (converted back to the original bytes).
    put("binary", "bin.in", "logs/bin.out");
    lan.completed("logs/bin.out", 0);
    let got = std::fs::read(uploads.join("logs/bin.out")).unwrap();
    assert_eq!(
        (got.len(), fnv(&got)),
        (binary.len(), fnv(&binary)),
        "binary put"
    );
    put("netascii", "text.in", "text.out");
    lan.completed("text.out", 0);
    assert_eq!(
        std::fs::read(uploads.join("text.out")).unwrap(),
        text,
        "netascii put"
    );
    // Refusals, with the client's view of each.
    let lines = put("binary", "bin.in", "existing");
    assert!(
        lines.iter().any(|l| l.contains("already exists")),
        "{lines:?}"
    );
    assert_eq!(std::fs::read(uploads.join("existing")).unwrap(), b"keep me");
    let lines = put("binary", "bin.in", "../escaped");
    assert!(
        lines.iter().any(|l| l.contains("Access violation")),
        "{lines:?}"
    );
    assert!(!lan.scratch.join("escaped").exists());
    let lines = put("binary", "big.in", "big.out");
    assert!(lines.iter().any(|l| l.contains("too large")), "{lines:?}");
    let lines = put("binary", "bin.in", "nodir/x");
    assert!(lines.iter().any(|l| l.contains("not found")), "{lines:?}");
    // Only the two complete uploads and the original file: no temporary file left.
    let mut names: Vec<String> = walk(&uploads);
    names.sort();
    assert_eq!(names, ["existing", "logs/bin.out", "text.out"], "{names:?}");
    let metrics = lan.stop();
    assert_eq!(metrics["completed"], 2, "{metrics}");
}

/// The files under `dir`, as relative paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.extend(walk(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}
