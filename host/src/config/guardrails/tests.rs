use super::*;

fn parse(yaml: &str) -> Result<Guardrails, Problem> {
    let section: GuardrailsSection = serde_yaml::from_str(yaml).unwrap();
    resolve_guardrails(section, Path::new("/cfg"), &|s| s.to_owned())
}

#[test]
fn the_seed_example_resolves() {
    let g = parse(
        r#"
enabled: true
disabled_patterns: [ip_addresses]
upgoing:   { api_keys: redact, private_keys: block, credentials: block, pii_emails: warn }
downgoing: { suspicious_commands: block }
custom_patterns:
  - name: internal_token
    regex: "myapp_[A-Za-z0-9]{32}"
    direction: upgoing
custom_upgoing:   { internal_token: redact }
custom_downgoing: {}
block_message: { include_details: true, include_help_link: true }
"#,
    )
    .unwrap();
    assert!(g.enabled && g.builtin);
    assert_eq!(g.disabled_patterns, ["ip_addresses"]);
    assert_eq!(g.upgoing["api_keys"], ActionName::Redact);
    assert_eq!(g.custom_patterns[0].name, "internal_token");
    assert!(g.custom_patterns[0].upgoing && !g.custom_patterns[0].downgoing);
    assert_eq!(g.custom_upgoing["internal_token"], ActionName::Redact);
    assert_eq!(g.stream_window, DEFAULT_STREAM_WINDOW);
}

#[test]
fn bad_regex_names_its_key() {
    let (key, msg) = parse("custom_patterns: [{ name: t, regex: \"a(b\" }]").unwrap_err();
    assert_eq!(key, "guardrails.custom_patterns[0].regex");
    assert!(msg.contains("regex"), "{msg}");
    let (key, _) = parse("custom_patterns: [{ name: t, regex: \"x*\" }]").unwrap_err();
    assert_eq!(key, "guardrails.custom_patterns[0].regex");
}

#[test]
fn unknown_custom_action_target_is_named() {
    let (key, msg) = parse("custom_upgoing: { nope: block }").unwrap_err();
    assert_eq!(key, "guardrails.custom_upgoing.nope");
    assert!(msg.contains("unknown custom pattern"), "{msg}");
    let (key, msg) = parse(
        "custom_patterns: [{ name: t, regex: \"tok_[0-9]{4}\", direction: upgoing }]\ncustom_downgoing: { t: block }",
    )
    .unwrap_err();
    assert_eq!(key, "guardrails.custom_downgoing.t");
    assert!(msg.contains("does not look downgoing"), "{msg}");
}

#[test]
fn plugin_paths_are_relative_to_the_config() {
    let g = parse("plugins: [{ path: p/x.wasm, config: { a: 1 } }]").unwrap();
    assert_eq!(g.plugins[0].path, Path::new("/cfg/p/x.wasm"));
    assert_eq!(g.plugins[0].config, Some(serde_json::json!({"a": 1})));
    assert_eq!(g.plugins[0].key, "guardrails.plugins[0]");
}
