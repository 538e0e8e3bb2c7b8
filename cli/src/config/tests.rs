//! Unit tests of the configuration file: sections, positions, problems, secrets.
use super::*;
use std::collections::BTreeSet;
use std::path::Path;

use super::file::{Pos, parse, position};

fn check(text: &str) -> Result<ConfigFile, Vec<String>> {
    parse(
        text,
        Path::new("h.toml"),
        Found::Flag,
        &settings(&Cli::command()),
    )
}

#[test]
fn every_setting_has_a_known_section() {
    let all = settings(&Cli::command());
    let sections: BTreeSet<_> = all.iter().map(|s| s.key.section.clone()).collect();
    let known: BTreeSet<Option<String>> = [
        None,
        Some("relay"),
        Some("worker"),
        Some("http"),
        Some("up"),
    ]
    .into_iter()
    .map(|s| s.map(str::to_string))
    .collect();
    assert!(
        sections.is_subset(&known),
        "a setting outside the documented sections: {sections:?}"
    );
    for name in [
        "database_url",
        "nats_url",
        "smtp_url",
        "workflows",
        "stream",
    ] {
        assert!(
            all.iter()
                .any(|s| s.key.section.is_none() && s.key.name == name),
            "{name}"
        );
    }
    assert!(all.iter().all(|s| s.key.name != "config"));
}

#[test]
fn values_are_kept_with_their_position() {
    let f = check("stream = \"S\"\n\n[relay]\nrelay_batch = 7\n").unwrap();
    let v = &f.values[&Key {
        section: Some("relay".into()),
        name: "relay_batch".into(),
    }];
    assert_eq!(v.raw, "7");
    assert_eq!(v.at, Pos { line: 4, col: 15 });
}

#[test]
fn problems_name_file_line_col() {
    let e = check("strem = \"S\"\n[relay]\nrelay_batch = \"many\"\nconcurrency = 3\n[wrker]\n")
        .unwrap_err();
    let all = e.join("\n");
    assert!(
        all.contains(
            "h.toml:1:1: unknown key \"strem\" at the top level (did you mean \"stream\"?)"
        ),
        "{all}"
    );
    assert!(
        all.contains("h.toml:3:15: relay.relay_batch must be an integer, not a string"),
        "{all}"
    );
    assert!(
        all.contains("h.toml:4:1: unknown key \"concurrency\" in [relay]: it belongs in [worker]"),
        "{all}"
    );
    assert!(
        all.contains("h.toml:5:2: unknown section [wrker] (did you mean \"worker\"?)"),
        "{all}"
    );
    let e = check("[relay]\nrelay_batch = 0\nrelay_poll = \"soon\"\n").unwrap_err();
    assert!(
        e[0].starts_with("h.toml:2:15: invalid relay.relay_batch \"0\": 0 is not in 1..=10000"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("h.toml:3:14: invalid relay.relay_poll \"soon\""),
        "{e:?}"
    );
    let e = check("relay = 5\n").unwrap_err();
    assert!(
        e[0].contains("\"relay\" is a section: write [relay]"),
        "{e:?}"
    );
    let e = check("log_format = \"xml\"\n").unwrap_err();
    assert!(e[0].contains("expected one of text, json"), "{e:?}");
    let e = check("stream = \n").unwrap_err();
    assert!(e[0].starts_with("h.toml:1:"), "{e:?}");
    assert!(e[0].contains("invalid TOML"), "{e:?}");
}

#[test]
fn secrets_are_not_echoed_in_problems() {
    let e = check("[http]\nhttp_token = 5\n").unwrap_err();
    assert!(e[0].contains("must be a string"), "{e:?}");
    let e = check("database_url = \"postgres://u:hunter2@h/d\"\nnats_url = 7\n").unwrap_err();
    assert!(!e.join("").contains("hunter2"));
}

#[test]
fn positions_count_characters() {
    assert_eq!(position("é = 1\nab", 7), Pos { line: 2, col: 1 });
    assert_eq!(position("é = 1", 4), Pos { line: 1, col: 4 });
}
