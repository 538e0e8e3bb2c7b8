//! Golden files: a rendered email compared byte for byte with
//! `tests/golden/NAME.eml`, after replacing what differs between runs.

/// Replace what differs between runs (event id, Date, MIME boundary) so a
/// rendered email can be compared with its golden file.
pub fn normalize(data: &str, event_id: &str) -> String {
    let mut out = data.replace(event_id, "{EVENT_ID}");
    if let Some(start) = out.find("boundary=\"") {
        let rest = &out[start + 10..];
        if let Some(end) = rest.find('"') {
            let boundary = rest[..end].to_string();
            out = out.replace(&boundary, "{BOUNDARY}");
        }
    }
    out.split("\r\n")
        .map(|l| {
            if l.starts_with("Date: ") {
                "Date: {DATE}"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compare with tests/golden/NAME.eml; HERALD_UPDATE_GOLDEN=1 rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = crate::workspace_root()
        .join("tests/golden")
        .join(format!("{name}.eml"));
    if std::env::var("HERALD_UPDATE_GOLDEN").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (HERALD_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "rendered email differs from {}",
        path.display()
    );
}
