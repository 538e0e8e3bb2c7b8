//! Unit tests of the static template checks.
use super::*;
use handlebars::Template;

fn problems(src: &str, partials: &[&str]) -> Vec<String> {
    let t = Template::compile(src).unwrap();
    let p: BTreeSet<String> = partials.iter().map(|s| s.to_string()).collect();
    check(&t, &p)
        .problems
        .into_iter()
        .map(|p| p.message)
        .collect()
}

#[test]
fn unknown_helpers_and_arity() {
    assert!(problems("{{currency price \"EUR\"}}", &[])[0].contains("unknown helper \"currency\""));
    assert!(problems("{{money price}}", &[])[0].contains("money takes 2 argument(s), got 1"));
    // A helper's name alone is a call, not a variable: `{{this.number}}` is the field.
    assert!(problems("{{number}}", &[])[0].contains("number takes 1 to 2 argument(s), got 0"));
    assert!(problems("{{#each event.lines}}{{this.number}}{{/each}}", &[]).is_empty());
    assert!(problems("{{number a 1 2}}", &[])[0].contains("number takes 1 to 2"));
    assert!(problems("{{upper a b}}", &[])[0].contains("upper takes 1 argument(s), got 2"));
    assert!(problems("{{#upper a}}x{{/upper}}", &[])[0].contains("not a block helper"));
    assert!(problems("{{if a}}", &[])[0].contains("block helper"));
    assert!(problems("{{#if (eq a)}}x{{/if}}", &[])[0].contains("eq takes 2"));
    assert!(problems("{{#if (nope a)}}x{{/if}}", &[])[0].contains("unknown helper \"nope\""));
    assert!(problems("{{event.name}} {{upper event.name}}", &[]).is_empty());
}

#[test]
fn the_digest_list_has_no_fields() {
    assert!(problems("{{events.length}} updates", &[])[0].contains("`events` is a digest's list"));
    assert!(problems("{{#if events.count}}x{{/if}}", &[])[0].contains("no fields"));
    assert!(problems("{{len events}} {{events.[0].n}} {{events.0.n}}", &[]).is_empty());
}

#[test]
fn literal_arguments() {
    assert!(problems("{{date event.at \"%Q\"}}", &[])[0].contains("date:"));
    assert!(problems("{{date event.at \"%Y\" \"Mars/Olympus\"}}", &[])[0].contains("time zone"));
    assert!(problems("{{date event.at \"%-d %B %Y\" \"Europe/Paris\"}}", &[]).is_empty());
    assert!(problems("{{date event.at event.pattern}}", &[]).is_empty());
}

#[test]
fn formatting_arguments_written_literally_are_checked() {
    let one = |src: &str| problems(src, &[]).join("\n");
    assert!(one("{{money event.total \"EURO\"}}").contains("money: unknown currency \"EURO\""));
    assert!(one("{{money event.total \"XAU\"}}").contains("no minor unit"));
    assert!(one("{{money event.total 978}}").contains("must be a string"));
    assert!(one("{{money 12.5 \"EUR\"}}").contains("floating-point"));
    assert!(one("{{number event.n 99}}").contains("decimals must be an integer from 0 to 20"));
    assert!(one("{{number event.n \"2\"}}").contains("decimals must be"));
    assert!(one("{{number event.n locale=\"no such locale!\"}}").contains("invalid locale"));
    assert!(one("{{number event.n lang=\"de\"}}").contains("unknown argument lang="));
    assert!(one("{{#if (money event.a \"ZZZ\")}}x{{/if}}").contains("unknown currency"));
    for ok in [
        "{{money event.total \"EUR\"}}",
        "{{money event.total \"jpy\" locale=\"ja\"}}",
        "{{money event.total event.currency}}",
        "{{money 1250 \"EUR\"}}",
        "{{number event.n}} {{number event.n 2}} {{number event.n 0 locale=meta.locale}}",
    ] {
        assert_eq!(one(ok), "", "{ok}");
    }
}

#[test]
fn partials_must_exist_and_be_named() {
    assert!(problems("{{> layout}}", &["layout"]).is_empty());
    assert!(problems("{{> nope}}", &["layout"])[0].contains("unknown partial \"nope\""));
    assert!(problems("{{> (lookup a \"b\")}}", &[])[0].contains("written out"));
    assert!(problems("{{#*inline \"x\"}}a{{/inline}}{{> x}}", &[]).is_empty());
}

/// `fuzz/regressions/workflow_load/bare-partial-block-*`: these passed
/// validation and failed every render ("Partial block cound not be found").
#[test]
fn a_bare_partial_block_needs_a_block_inclusion() {
    let facts = |src: &str| {
        check(
            &Template::compile(src).unwrap(),
            &BTreeSet::from(["pb".to_string()]),
        )
    };
    assert!(facts("{{> @partial-block}}").bare_partial_block.is_some());
    assert!(
        facts("{{#> @partial-block}}fallback{{/@partial-block}}")
            .bare_partial_block
            .is_none()
    );
    assert!(facts("{{> pb}}").included_bare.contains_key("pb"));
    assert!(!facts("{{#> pb}}x{{/pb}}").included_bare.contains_key("pb"));
    assert!(
        problems(
            "{{#*inline \"x\"}}{{> @partial-block}}{{/inline}}{{> x}}",
            &[]
        )[0]
        .contains("@partial-block")
    );
    assert!(
        problems(
            "{{#*inline \"x\"}}{{> @partial-block}}{{/inline}}{{#> x}}y{{/x}}",
            &[]
        )
        .is_empty()
    );
}

#[test]
fn block_paths_from_the_root_only() {
    let t = Template::compile(
        "{{#each event.owners}}{{#each this.tags}}{{/each}}{{/each}}{{#with meta}}{{/with}}",
    )
    .unwrap();
    let f = check(&t, &BTreeSet::new());
    assert_eq!(
        f.block_paths,
        vec![
            vec!["event".to_string(), "owners".to_string()],
            vec!["meta".to_string()]
        ]
    );
}

#[test]
fn prescan_refuses_deep_nesting_before_parsing() {
    let deep = "{{#if a}}".repeat(MAX_NESTING + 1);
    assert!(prescan(&deep).is_err());
    let parens = format!("{{{{x {}a{}}}}}", "(".repeat(20), ")".repeat(20));
    assert!(prescan(&parens).is_err());
    assert!(prescan("{{#if a}}{{#each b}}x{{/each}}{{/if}}").is_ok());
}

#[test]
fn partial_cycles_are_found() {
    let mut g = BTreeMap::new();
    g.insert("pa".to_string(), (BTreeSet::from(["pb".to_string()]), 0));
    g.insert("pb".to_string(), (BTreeSet::from(["pa".to_string()]), 0));
    let p = check_partial_graph(&g).problems;
    assert!(p.values().flatten().any(|m| m.contains("cycle")), "{p:?}");
    let mut g = BTreeMap::new();
    g.insert(
        "self".to_string(),
        (BTreeSet::from(["self".to_string()]), 0),
    );
    assert!(!check_partial_graph(&g).problems.is_empty());
}

#[test]
fn partial_chains_are_bounded() {
    let mut g = BTreeMap::new();
    for i in 0..=MAX_PARTIAL_DEPTH {
        let next: BTreeSet<String> = if i < MAX_PARTIAL_DEPTH {
            BTreeSet::from([format!("p{}", i + 1)])
        } else {
            BTreeSet::new()
        };
        g.insert(format!("p{i}"), (next, 1));
    }
    let r = check_partial_graph(&g);
    assert!(
        r.problems.values().flatten().any(|m| m.contains("deep")),
        "{:?}",
        r.problems
    );
    assert_eq!(
        r.reach(&BTreeSet::from(["p1".to_string()])).0,
        MAX_PARTIAL_DEPTH
    );
}
