//! Template paths stay inside the workflows directory: `*_file` fields,
//! partials and symlinks. Nothing outside is read, rendered or mailed.

use super::{dir, env_with, text};
use std::os::unix::fs::symlink;

const SECRET: &str = "root:x:0:0:not-for-mail";

const USES: &str = "name: leak\non: { subjects: [events.a] }\nemail:\n  from: a@example.com\n  to: b@example.com\n  subject: hi\n  text: \"{{> pw}}\"\n";

/// `../` and absolute paths are refused, a template file or a partial that
/// is a symlink to a file outside is refused and never read, and a symlink
/// loop among the directories is read once (it used to give one "duplicate
/// workflow name" per level until the path grew too long).
#[test]
fn template_paths_and_partials_stay_inside_the_workflows_directory() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("passwd");
    std::fs::write(&secret, SECRET).unwrap();
    let d = dir(&[
        ("leak.yaml", USES),
        (
            "file.yaml",
            &USES.replace("name: leak", "name: file").replace(
                "  text: \"{{> pw}}\"",
                "  text_file: ../passwd\n  html_file: templates/link.hbs",
            ),
        ),
    ]);
    std::fs::create_dir_all(d.path().join("templates/partials")).unwrap();
    symlink(&secret, d.path().join("templates/partials/pw.hbs")).unwrap();
    symlink(&secret, d.path().join("templates/link.hbs")).unwrap();
    symlink(d.path(), d.path().join("loop")).unwrap();

    let out = env_with(&d).run(&["workflows", "validate"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = |f: &str| d.path().join(f).display().to_string();
    for expected in [
        format!(
            "{}:1:1: a symlink that leads outside the workflows directory",
            at("templates/partials/pw.hbs")
        ),
        format!(
            "{}:1:1: a symlink that leads outside the workflows directory",
            at("templates/link.hbs")
        ),
        "template path \"../passwd\" must be relative and stay inside the workflows directory"
            .to_string(),
        "template path \"templates/link.hbs\" resolves outside the workflows directory".to_string(),
        "unknown partial \"pw\"".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        !err.contains("duplicate"),
        "the loop was read more than once:\n{err}"
    );
    assert!(!err.contains(SECRET), "{err}");

    let out = env_with(&d).run(&["workflows", "render", "leak", "--payload", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stdout).contains(SECRET));
}

/// A FIFO in the workflows directory (a workflow file, a partial or a
/// template a workflow names) is reported and never opened: reading one
/// blocked validation, and a reload and the shutdown behind it, forever.
#[test]
fn a_fifo_in_the_workflows_directory_is_reported_not_read() {
    let d = dir(&[(
        "w.yaml",
        &USES
            .replace("name: leak", "name: w")
            .replace("  text: \"{{> pw}}\"", "  text_file: templates/t.hbs"),
    )]);
    std::fs::create_dir_all(d.path().join("templates/partials")).unwrap();
    for fifo in ["zz.yaml", "templates/partials/p.hbs", "templates/t.hbs"] {
        let made = std::process::Command::new("mkfifo")
            .arg(d.path().join(fifo))
            .status()
            .unwrap();
        assert!(made.success());
    }
    let out = env_with(&d).run(&["workflows", "validate"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = |f: &str| d.path().join(f).display().to_string();
    for expected in [
        format!("{}:1:1: not a regular file: not read", at("zz.yaml")),
        format!(
            "{}:1:1: not a regular file: not read",
            at("templates/partials/p.hbs")
        ),
        "template path \"templates/t.hbs\" is not a regular file".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}
