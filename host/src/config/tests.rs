use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/nonexistent/bitrouter.yaml"))
}

#[test]
fn builtin_registry_is_merged_under_the_file() {
    let c = parse(
        "providers:\n  openai:\n    api_key: sk-test\n  mine:\n    derives: anthropic\n    api_key: k\n    api_base: http://127.0.0.1:1\nmodels:\n  smart:\n    endpoints:\n      - provider: mine\n        service_id: claude\n      - provider: openai\n        model_id: gpt-4o\n",
    )
    .unwrap();
    assert_eq!(
        c.providers["mine"].protocol,
        Protocol::Native(crate::canonical::Dialect::Anthropic)
    );
    assert_eq!(c.providers["openai"].api_base, "https://api.openai.com/v1");
    assert!(c.providers["openai"].models.contains_key("gpt-4o"));
    assert_eq!(c.routes["smart"].endpoints[0].model_id, "claude");
    assert_eq!(c.providers.len(), 12);
}

#[test]
fn database_cache_size_defaults_and_bounds() {
    let c = parse("{}").unwrap();
    assert_eq!(c.database.cache_size, DEFAULT_REDB_CACHE);
    let c = parse("database:\n  cache_size: 64MiB\n").unwrap();
    assert_eq!(c.database.cache_size, 64 << 20);
    let e = parse("database:\n  url: memory://\n  cache_size: 4KiB\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bitrouter.yaml:3")
            && e.contains("database.cache_size")
            && e.contains("at least 1MiB"),
        "{e}"
    );
}

#[test]
fn database_flush_interval_defaults_and_bounds() {
    let c = parse("{}").unwrap();
    assert_eq!(c.database.flush_interval, Duration::from_millis(10));
    let c = parse("database:\n  flush_interval: 0s\n").unwrap();
    assert_eq!(c.database.flush_interval, Duration::ZERO);
    let e = parse("database:\n  url: memory://\n  flush_interval: 5m\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bitrouter.yaml:3")
            && e.contains("database.flush_interval")
            && e.contains("at most 10s"),
        "{e}"
    );
}

#[test]
fn env_expansion_and_env_prefix() {
    // SAFETY: tests in this module use variable names no other test touches.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("BR_TEST_KEY_1", "from-env");
        std::env::set_var("BRTESTPFX_API_KEY", "prefixed");
    }
    let c = parse("providers:\n  a:\n    api_protocol: openai\n    api_base: http://h/v1\n    api_key: ${BR_TEST_KEY_1}\n  b:\n    api_protocol: openai\n    api_base: ${BR_UNSET_VAR:-http://fallback/v1}\n    env_prefix: BRTESTPFX\n").unwrap();
    assert_eq!(c.providers["a"].api_key.as_deref(), Some("from-env"));
    assert_eq!(c.providers["b"].api_key.as_deref(), Some("prefixed"));
    assert_eq!(c.providers["b"].api_base, "http://fallback/v1");
}

#[test]
fn dotenv_beside_the_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "BR_DOTENV_ONLY_KEY=dot\n").unwrap();
    let path = dir.path().join("bitrouter.yaml");
    std::fs::write(&path, "providers:\n  a:\n    api_protocol: anthropic\n    api_base: http://h\n    api_key: ${BR_DOTENV_ONLY_KEY}\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.providers["a"].api_key.as_deref(), Some("dot"));
}

#[test]
fn errors_name_file_line_key_and_expectation() {
    let e = parse("server:\n  listen: 127.0.0.1:8787\nmodels:\n  fast:\n    strategy: fastest\n    endpoints: []\n").unwrap_err().to_string();
    assert!(
        e.starts_with("/nonexistent/bitrouter.yaml:5: `models.fast.strategy`"),
        "{e}"
    );
    assert!(e.contains("priority") && e.contains("load_balance"), "{e}");

    let e = parse("server:\n  listne: x\n").unwrap_err().to_string();
    assert!(
        e.contains(":2") && e.contains("listne") && e.contains("listen"),
        "{e}"
    );

    let e =
        parse("models:\n  fast:\n    endpoints:\n      - provider: nope\n        model_id: m\n")
            .unwrap_err()
            .to_string();
    assert!(
        e.contains(":4: `models.fast.endpoints[0].provider`")
            && e.contains("unknown provider \"nope\""),
        "{e}"
    );

    let e = parse("server:\n  listen: not-an-addr\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":2: `server.listen`") && e.contains("127.0.0.1:8787"),
        "{e}"
    );

    let e = parse("models:\n  x:\n    endpoints:\n      - provider: deepseek\n        model_id: deepseek-chat\n").unwrap_err().to_string();
    assert!(e.contains("DEEPSEEK_API_KEY"), "{e}");

    let e = parse("providers:\n  p:\n    api_base: http://x\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`providers.p.api_protocol`") && e.contains(":2"),
        "{e}"
    );

    let e = parse("server:\n  max_body_size: lots\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_body_size") && e.contains("32MiB"), "{e}");

    let e = parse("server:\n  threads: 0\n").unwrap_err().to_string();
    assert!(
        e.contains("server.threads") && e.contains("1 to 1024") && e.contains(":2"),
        "{e}"
    );
    let e = parse("server:\n  threads: many\n").unwrap_err().to_string();
    assert!(e.contains("threads") && e.contains(":2"), "{e}");
    assert_eq!(
        parse("server:\n  threads: 1\n")
            .unwrap()
            .server
            .threads
            .map(|n| n.get()),
        Some(1)
    );
    assert_eq!(parse("{}\n").unwrap().server.threads, None);

    // `server.runtime`: one shared runtime by default; `per_core` counts its runtimes from
    // `threads`, else the CPUs.
    let e = parse("server:\n  runtime: per_thread\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("runtime") && e.contains("per_core") && e.contains(":2"),
        "{e}"
    );
    let server = parse("{}\n").unwrap().server;
    assert_eq!(
        (server.runtime, server.runtimes()),
        (crate::config::RuntimeKind::MultiThread, 1)
    );
    let server = parse("server:\n  runtime: per_core\n  threads: 3\n")
        .unwrap()
        .server;
    assert_eq!(server.runtimes(), 3);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = parse("server:\n  runtime: per_core\n").unwrap().server;
    assert_eq!(server.runtimes(), cpus);

    let e = parse("models: [1, 2]\n").unwrap_err().to_string();
    assert!(e.contains("`models`") && e.contains(":1"), "{e}");
}

#[test]
fn timeouts_layer_global_provider_route() {
    let c = parse("routing:\n  timeouts: { first_byte: 5s }\nproviders:\n  p:\n    api_protocol: openai\n    api_base: http://x\n    api_key_required: false\n    timeouts: { idle: 7s }\nmodels:\n  r:\n    timeouts: { total: 9s }\n    endpoints:\n      - provider: p\n        model_id: m\n").unwrap();
    let t = c.routes["r"].endpoints[0].timeouts;
    assert_eq!(t.first_byte, Duration::from_secs(5));
    assert_eq!(t.idle, Duration::from_secs(7));
    assert_eq!(t.total, Some(Duration::from_secs(9)));
}

#[test]
fn database_defaults_beside_the_config() {
    let c = parse("database:\n  durability: sync\n  on_full: block\n").unwrap();
    assert_eq!(c.database.url, "redb://bitrouter.redb");
    assert_eq!(c.database.base_dir, PathBuf::from("/nonexistent"));
    assert_eq!(
        (c.database.durability, c.database.on_full),
        (Durability::Sync, OnFull::Block)
    );
    let e = parse("database:\n  url: oracle://x\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":2: `database.url`") && e.contains("postgres://"),
        "{e}"
    );
}

#[test]
fn auth_section_is_typed_and_checked() {
    let c = parse("auth:\n  mode: on\n  accounts: ['solana:*:Abc*']\n  clock_skew: 5s\n").unwrap();
    assert!(c.warnings.is_empty());
    assert_eq!(c.auth.mode, Some(AuthMode::On));
    assert_eq!(c.auth.clock_skew, Duration::from_secs(5));
    assert!(c.auth_enabled());
    // Loopback defaults to off, anything else to on.
    assert!(
        !parse("server: { listen: 127.0.0.1:1 }\n")
            .unwrap()
            .auth_enabled()
    );
    assert!(
        parse("server: { listen: 0.0.0.0:1 }\n")
            .unwrap()
            .auth_enabled()
    );
    let e = parse("auth:\n  mode: maybe\n").unwrap_err().to_string();
    assert!(e.contains("auth.mode") && e.contains("off"), "{e}");
    let e = parse("auth:\n  accounts: [bob]\n").unwrap_err().to_string();
    assert!(
        e.contains(":2: `auth.accounts[0]`") && e.contains("CAIP-10"),
        "{e}"
    );
    let e = parse("auth:\n  operator_keys:\n    - alg: EdDSA\n      public_key: nope\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("auth.operator_keys[0]") && e.contains("PEM"),
        "{e}"
    );
    let e = parse("auth:\n  operator_keys:\n    - alg: HS256\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("auth.operator_keys[0].alg") && e.contains("EdDSA"),
        "{e}"
    );
}

#[test]
fn guardrail_errors_name_the_key_and_line() {
    let e = parse("guardrails:\n  custom_patterns:\n    - name: t\n      regex: \"a(\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("guardrails.custom_patterns[0].regex"), "{e}");
    let e = parse("guardrails:\n  upgoing: { api_keys: shout }\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("guardrails.upgoing.api_keys") && e.contains("block"),
        "{e}"
    );
}

#[test]
fn plugin_distribution_keys_are_checked_at_their_key() {
    let err = |yaml: &str| parse(yaml).unwrap_err().to_string();
    let e = err("plugins:\n  update_interval: 100ms\n");
    assert!(
        e.contains(":2: `plugins.update_interval`") && e.contains("at least 1s"),
        "{e}"
    );
    let e = err("plugins:\n  max_artifact_size: 0\n");
    assert!(e.contains("`plugins.max_artifact_size`"), "{e}");
    let e = err("plugins:\n  registries:\n    reg.example: { username: ci }\n");
    assert!(
        e.contains("`plugins.registries.reg.example`") && e.contains("password_env"),
        "{e}"
    );
    let e = err("plugins:\n  trust:\n    - keys: [\"zz\"]\n      scope: \"*\"\n");
    assert!(e.contains("`plugins.trust[0].keys[0]`"), "{e}");
    let e = err("guardrails:\n  plugins:\n    - { path: a.wasm, oci: \"reg.example/a:1\" }\n");
    assert!(e.contains("one of path or oci"), "{e}");
    let e = err("guardrails:\n  plugins:\n    - { oci: \"UPPER/Case:1\" }\n");
    assert!(e.contains("`guardrails.plugins[0].oci`"), "{e}");
    let ok = parse(
        "plugins:\n  update_interval: 5m\n  max_artifact_size: 8MiB\n  registries:\n    reg.example: { username: ci, password_env: PW, plain_http: true }\n",
    )
    .unwrap();
    assert_eq!(
        ok.plugins.update_interval,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(ok.plugins.max_artifact_size, 8 << 20);
    assert!(ok.plugins.registries["reg.example"].plain_http);
}

#[test]
fn policy_and_failure_keys_are_checked_at_their_key() {
    let err = |yaml: &str| parse(yaml).unwrap_err().to_string();
    let e = err("guardrails:\n  policies:\n    - { path: a.policy, oci: \"reg.example/p:1\" }\n");
    assert!(
        e.contains("`guardrails.policies[0]`") && e.contains("one of path or oci"),
        "{e}"
    );
    let e = err("guardrails:\n  policies:\n    - { grants: [] }\n");
    assert!(
        e.contains("`guardrails.policies[0].path`") && e.contains(".policy"),
        "{e}"
    );
    let e = err("guardrails:\n  policies:\n    - { oci: \"UPPER/Case:1\" }\n");
    assert!(e.contains("`guardrails.policies[0].oci`"), "{e}");
    let e = err("guardrails:\n  plugin_failure: sometimes\n");
    assert!(
        e.contains("guardrails.plugin_failure") && e.contains("open"),
        "{e}"
    );
    let ok = parse(
        "guardrails:\n  plugin_failure: closed\n  plugins:\n    - { path: a.wasm, plugin_failure: open, reuse_instances: false }\n  policies:\n    - { path: base.policy, grants: [wall-clock] }\n",
    )
    .unwrap();
    let g = &ok.guardrails;
    assert_eq!(g.plugin_failure, Some(crate::plugins::OnFailure::Closed));
    assert_eq!(
        g.plugins[0].plugin_failure,
        Some(crate::plugins::OnFailure::Open)
    );
    assert_eq!(g.plugins[0].reuse_instances, Some(false));
    assert_eq!(g.policies[0].key, "guardrails.policies[0]");
    assert!(g.policies[0].path.ends_with("base.policy"));
    assert_eq!(g.policies[0].grants, ["wall-clock"]);
}

#[test]
fn mid_stream_failover_and_the_stream_idle_timeout() {
    let route = "providers:\n  p:\n    api_protocol: openai\n    api_base: http://x\n    api_key_required: false\nmodels:\n  r:\n    endpoints:\n      - provider: p\n        model_id: m\n  s:\n    mid_stream_failover: restart\n    endpoints:\n      - provider: p\n        model_id: m\n";
    let c = parse(route).unwrap();
    assert_eq!(c.mid_stream, MidStream::Off);
    assert_eq!(c.routes["r"].mid_stream, MidStream::Off);
    let c = parse(&format!(
        "routing:\n  mid_stream_failover: continue\n  stream_idle_timeout: 20s\n{route}"
    ))
    .unwrap();
    assert_eq!(c.mid_stream, MidStream::Continue);
    assert_eq!(c.routes["r"].mid_stream, MidStream::Continue);
    assert_eq!(c.routes["s"].mid_stream, MidStream::Restart);
    assert_eq!(
        c.routes["r"].endpoints[0].timeouts.idle,
        Duration::from_secs(20)
    );
    // `provider:model` requests start from `routing.timeouts` too.
    assert_eq!(
        c.direct_timeouts(&c.providers["p"]).idle,
        Duration::from_secs(20)
    );
    let e = parse("routing:\n  timeouts: { idle: 5s }\n  stream_idle_timeout: 20s\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bitrouter.yaml:3") && e.contains("routing.stream_idle_timeout"),
        "{e}"
    );
    let e = parse("routing:\n  stream_idle_timeout: 0s\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("above 0"), "{e}");
    let e = parse(&route.replace("restart", "sometimes"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bitrouter.yaml:12")
            && e.contains("models.s.mid_stream_failover")
            && e.contains("continue"),
        "{e}"
    );
}

#[test]
fn rate_limits_are_checked_against_the_file() {
    let base = "providers:\n  p:\n    api_protocol: openai\n    api_base: http://x\n    api_key_required: false\nmodels:\n  r:\n    endpoints:\n      - provider: p\n        model_id: m\n";
    let c = parse(&format!("{base}rate_limits:\n  store: redis://127.0.0.1:6379\n  on_store_error: open\n  defaults: {{ requests_per_minute: 600, tokens_per_minute: 200000 }}\n  routes:\n    r: {{ requests_per_minute: 100 }}\n  providers:\n    p: {{ tokens_per_minute: 2000000 }}\n")).unwrap();
    assert_eq!(
        c.rate_limits.store,
        RateStore::Redis("redis://127.0.0.1:6379".into())
    );
    assert!(c.rate_limits.settings.fail_open);
    assert_eq!(c.rate_limits.settings.defaults.requests, Some(600));
    assert_eq!(c.rate_limits.settings.routes["r"].requests, Some(100));
    assert_eq!(
        c.rate_limits.settings.providers["p"].tokens,
        Some(2_000_000)
    );
    for (yaml, line, key, says) in [
        (
            "rate_limits:\n  defaults: { requests_per_minute: 0 }\n",
            12,
            "rate_limits.defaults.requests_per_minute",
            "1 or more",
        ),
        (
            "rate_limits:\n  defaults: { requests_per_minute: -5 }\n",
            12,
            "rate_limits.defaults.requests_per_minute",
            "integer `-5`",
        ),
        (
            "rate_limits:\n  routes:\n    nope: { requests_per_minute: 5 }\n",
            13,
            "rate_limits.routes.nope",
            "unknown route",
        ),
        (
            "rate_limits:\n  providers:\n    nope: { requests_per_minute: 5 }\n",
            13,
            "rate_limits.providers.nope",
            "unknown provider",
        ),
        (
            "rate_limits:\n  store: memcached://x\n",
            12,
            "rate_limits.store",
            "expected memory, postgres or a redis:// URL",
        ),
        (
            "rate_limits:\n  store: postgres\n",
            12,
            "rate_limits.store",
            "database.url",
        ),
        (
            "rate_limits:\n  routes:\n    r: {}\n",
            13,
            "rate_limits.routes.r",
            "requests_per_minute and/or tokens_per_minute",
        ),
    ] {
        let e = parse(&format!("{base}{yaml}")).unwrap_err().to_string();
        assert!(
            e.contains(&format!("bitrouter.yaml:{line}")) && e.contains(key) && e.contains(says),
            "{yaml}: {e}"
        );
    }
}

#[test]
fn otlp_settings_and_their_errors() {
    let c = parse("observe:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    headers: { authorization: Bearer x }\n    sample_ratio: 0.25\n    metrics_interval: 2s\n").unwrap();
    let o = c.observe.otlp.unwrap();
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    assert_eq!(
        o.headers,
        [("authorization".to_owned(), "Bearer x".to_owned())]
    );
    assert!(o.traces && o.metrics);
    assert_eq!(o.sample_ratio, 0.25);
    assert_eq!(o.metrics_interval, Duration::from_secs(2));
    assert_eq!(o.compression, None);
    let c = parse("observe:\n  otlp:\n    compression: GZIP\n").unwrap();
    assert_eq!(
        c.observe.otlp.unwrap().compression,
        Some(crate::observe::otlp::Compression::Gzip)
    );
    for (yaml, key, says) in [
        (
            "observe:\n  otlp:\n    endpoint: grpc://x:4317\n",
            "observe.otlp.endpoint",
            "http://",
        ),
        (
            "observe:\n  otlp:\n    sample_ratio: 1.5\n",
            "observe.otlp.sample_ratio",
            "0 to 1",
        ),
        (
            "observe:\n  otlp:\n    metrics_interval: 1ms\n",
            "observe.otlp.metrics_interval",
            "100ms",
        ),
        (
            "observe:\n  otlp:\n    headers: { \"bad header\": x }\n",
            "observe.otlp.headers",
            "HTTP header",
        ),
        (
            "observe:\n  otlp:\n    tracing: true\n",
            "observe.otlp",
            "unknown field",
        ),
        (
            "observe:\n  otlp:\n    compression: zip\n",
            "observe.otlp.compression",
            "expected gzip or none",
        ),
    ] {
        let e = parse(yaml).unwrap_err().to_string();
        assert!(
            e.contains("bitrouter.yaml:") && e.contains(key) && e.contains(says),
            "{yaml}: {e}"
        );
    }
}
