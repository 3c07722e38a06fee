//! The `guardrail` world: a plugin declares patterns once ([`GuardrailPlugin::patterns`]),
//! then validates candidates the host found with the declared regexes
//! ([`GuardrailPlugin::check`]) and scans texts for patterns without a regex
//! ([`GuardrailPlugin::scan`]).
//!
//! Every finding a plugin returns is checked before anyone sees it: the pattern id must be
//! one the plugin declared, the span must lie inside the text on UTF-8 character boundaries,
//! a replacement must be short, and there must not be an absurd number of findings. Anything
//! else fails the call as an invalid result.

use std::ops::Range;
use std::sync::Arc;

use super::PluginInfo;
use super::engine::Prepared;
use super::error::{CallError, CallErrorKind, PluginErrorKind};
use super::sandbox::{self, Armed, AsyncWorld, Lease, Phase, Sandbox, StoreState, WarmPool};
use super::wit::types as wt;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "guardrail",
        with: {
            "bitrouter:plugin/types": crate::plugins::wit::types,
            "bitrouter:plugin/host": crate::plugins::wit::host,
        },
    });
}

/// The same world with async exports, for components that import WASI: their calls run on
/// a fiber inline on the caller's task, with WASI's async host functions. (The sync shims
/// block on a tokio runtime, so sync calls of such components had to hop to the blocking
/// pool and back, two thread wake-ups per call: most of a JavaScript guardrail's added p99
/// at 1,000 req/s in bench scenario 8, see bench/REPORT.md.)
mod bindings_async {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "guardrail",
        exports: { default: async },
        with: {
            "bitrouter:plugin/types": crate::plugins::wit::types,
            "bitrouter:plugin/host": crate::plugins::wit::host,
        },
    });
}

use bindings::{Guardrail, GuardrailPre};

type AsyncGuardrail = bindings_async::Guardrail;

impl AsyncWorld for AsyncGuardrail {
    type Pre = bindings_async::GuardrailPre<StoreState>;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut wasmtime::Store<StoreState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send {
        pre.instantiate_async(store)
    }

    fn configure(
        &self,
        store: &mut wasmtime::Store<StoreState>,
        config: &str,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send {
        self.bitrouter_plugin_guard().call_configure(store, config)
    }
}

/// Most findings one call may return.
pub const MAX_FINDINGS: usize = 4096;
/// Longest replacement text a finding may carry, in bytes.
pub const MAX_REPLACEMENT: usize = 1024;
/// Most patterns one plugin may declare.
pub const MAX_PATTERNS: usize = 256;

/// Which way a text travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Text the model will see (messages, system prompt, tool results and arguments).
    Request,
    /// Text the model produced.
    Response,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Response => 1,
        }
    }
}

/// What the host does with a finding unless the config overrides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Refuse the request or cut the answer.
    Block,
    /// Replace the match (with the finding's replacement, or a placeholder).
    Redact,
    /// Let it through; log and count it.
    Warn,
}

/// A pattern a guardrail plugin declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Unique within the plugin; findings and config keys name it.
    pub id: String,
    /// The pattern applies to requests (upgoing).
    pub request: bool,
    /// The pattern applies to answers (downgoing).
    pub response: bool,
    /// What a finding does unless `guardrails.upgoing`/`downgoing` says otherwise.
    pub default_action: Action,
    /// What the pattern looks for, for people.
    pub description: String,
    /// The regex the host runs to find candidates; `None`: the plugin's `scan` finds them.
    pub regex: Option<String>,
    /// Upper bound on a match's length, in bytes; sizes the stream window.
    pub max_match_len: u32,
}

impl Pattern {
    /// Whether the pattern applies to `direction`.
    pub fn applies_to(&self, direction: Direction) -> bool {
        match direction {
            Direction::Request => self.request,
            Direction::Response => self.response,
        }
    }
}

/// A validated finding: `pattern` indexes [`GuardrailPlugin::patterns`]; `span` is a byte
/// range of the text on character boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Index of the finding's pattern in [`GuardrailPlugin::patterns`].
    pub pattern: usize,
    /// Byte range of the match in the text.
    pub span: Range<usize>,
    /// Text to put in place of the match on `redact`; `None`: `[REDACTED:<pattern id>]`.
    pub replacement: Option<String>,
}

/// A loaded guardrail plugin. Cheap to clone; calls may run concurrently, each in its own
/// instance.
#[derive(Clone)]
pub struct GuardrailPlugin(Arc<Inner>);

struct Inner {
    info: PluginInfo,
    sandbox: Arc<Sandbox>,
    pre: GuardrailPre<StoreState>,
    /// The config JSON re-applied to every fresh instance; `None` when it is `null`.
    config: Option<String>,
    /// Idle warm instances, for a plugin whose manifest says `stateless` (and whose config
    /// entry does not turn reuse off); `None`: a fresh instance per call.
    warm: Option<WarmPool<Guardrail>>,
    /// For a component that imports WASI: how its calls run inline (`pre` and `warm` above
    /// then serve only the load-time `configure` + `describe`).
    inline: Option<Inline>,
    patterns: Vec<Pattern>,
    /// Whether any regex-less pattern applies to a direction (indexed by `Direction`).
    scans: [bool; 2],
}

impl std::fmt::Debug for GuardrailPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailPlugin")
            .field("info", &self.0.info)
            .field("patterns", &self.0.patterns)
            .finish()
    }
}

impl GuardrailPlugin {
    pub(crate) fn load(
        info: PluginInfo,
        sandbox: Arc<Sandbox>,
        prepared: Prepared,
        config_json: String,
    ) -> Result<GuardrailPlugin, PluginErrorKind> {
        let pre = GuardrailPre::new(prepared.pre)
            .map_err(|e| PluginErrorKind::WorldMismatch(format!("{e:#}")))?;

        // configure + describe in one instance, under the configure deadline.
        let mut store = sandbox.store();
        let _ticking = sandbox.arm(&mut store, sandbox.configure_deadline);
        let fail = |store: &wasmtime::Store<StoreState>, e, phase| {
            sandbox.fail("configure", store, e, phase).kind.to_string()
        };
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| PluginErrorKind::Configure(fail(&store, e, Phase::Instantiate)))?;
        let guest = instance.bitrouter_plugin_guard();
        guest
            .call_configure(&mut store, &config_json)
            .map_err(|e| PluginErrorKind::Configure(fail(&store, e, Phase::Call)))?
            .map_err(PluginErrorKind::Configure)?;
        let raw = guest
            .call_describe(&mut store)
            .map_err(|e| PluginErrorKind::Describe(fail(&store, e, Phase::Call)))?;
        drop(store);

        let patterns = validate_patterns(raw).map_err(PluginErrorKind::Describe)?;
        let mut scans = [false; 2];
        for p in patterns.iter().filter(|p| p.regex.is_none()) {
            scans[0] |= p.request;
            scans[1] |= p.response;
        }
        let reuse = info.reuses_instances;
        let cap = warm_cap(&sandbox);
        let inline = match prepared.pre_async {
            Some(pre) => Some(Inline {
                pre: bindings_async::GuardrailPre::new(pre)
                    .map_err(|e| PluginErrorKind::WorldMismatch(format!("{e:#}")))?,
                warm: reuse.then(|| WarmPool::new(cap)),
            }),
            None => None,
        };
        let warm = (reuse && inline.is_none()).then(|| WarmPool::new(cap));
        Ok(GuardrailPlugin(Arc::new(Inner {
            sandbox,
            pre,
            config: (config_json != "null").then_some(config_json),
            warm,
            inline,
            info,
            patterns,
            scans,
        })))
    }

    /// The plugin's manifest id.
    pub fn id(&self) -> &str {
        &self.0.info.id
    }

    /// What the host knows about the plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.0.info
    }

    /// The patterns the plugin declared at load.
    pub fn patterns(&self) -> &[Pattern] {
        &self.0.patterns
    }

    /// Whether `scan` has anything to do for `direction` (some pattern of that direction has
    /// no regex).
    pub fn scans(&self, direction: Direction) -> bool {
        self.0.scans[direction.index()]
    }

    /// A snapshot of the plugin's call counters.
    pub fn stats(&self) -> super::PluginStats {
        self.0.sandbox.stats()
    }

    /// Asks the plugin which of `candidates` (byte ranges of `text` where the regex of the
    /// pattern `pattern` matched) are real findings.
    pub async fn check(
        &self,
        pattern: &str,
        text: &str,
        candidates: &[Range<usize>],
    ) -> Result<Vec<Finding>, CallError> {
        if let Some(inline) = &self.0.inline {
            let mut armed = self.armed(inline, "check").await?;
            let spans = spans(candidates);
            let raw = armed
                .bindings
                .bitrouter_plugin_guard()
                .call_check(&mut armed.store, pattern, text, &spans)
                .await;
            let raw = self
                .0
                .sandbox
                .finish("check", armed, inline.warm.as_ref(), raw);
            self.renew_if_due();
            return self.validate("check", text, raw?);
        }
        let lease = self.lease().await;
        self.check_now(lease, pattern, text, candidates)
    }

    /// Looks for the plugin's regex-less patterns of `direction` in `text`.
    pub async fn scan(&self, direction: Direction, text: &str) -> Result<Vec<Finding>, CallError> {
        if let Some(inline) = &self.0.inline {
            let mut armed = self.armed(inline, "scan").await?;
            let raw = armed
                .bindings
                .bitrouter_plugin_guard()
                .call_scan(&mut armed.store, wit_direction(direction), text)
                .await;
            let raw = self
                .0
                .sandbox
                .finish("scan", armed, inline.warm.as_ref(), raw);
            self.renew_if_due();
            return self.validate("scan", text, raw?);
        }
        let lease = self.lease().await;
        self.scan_now(lease, direction, text)
    }

    /// Instantiates one instance (configured, when there is a config) and drops it, without
    /// calling the plugin: the fixed cost of every call in a fresh instance, for benchmarks
    /// and health checks.
    pub async fn instantiate_once(&self) -> Result<(), CallError> {
        let permit = self.0.sandbox.engine.permit().await;
        let inner = &*self.0;
        if let Some(inline) = &inner.inline {
            let sandbox = &inner.sandbox;
            let armed: Armed<AsyncGuardrail> = sandbox
                .instance_async(
                    "instantiate",
                    Lease::fresh(permit),
                    inner.config.as_deref(),
                    &inline.pre,
                )
                .await?;
            return sandbox.finish("instantiate", armed, None, Ok(()));
        }
        inner.sandbox.call_fresh(
            "instantiate",
            inner.config.as_deref(),
            |store| inner.pre.instantiate(store),
            |store, g, config| g.bitrouter_plugin_guard().call_configure(store, config),
            |_, _| {
                drop(permit);
                Ok(())
            },
        )
    }

    /// Idle warm instances kept now (0 for a plugin that gets a fresh instance per call).
    pub fn warm_instances(&self) -> usize {
        match &self.0.inline {
            Some(inline) => inline.warm.as_ref().map_or(0, WarmPool::idle),
            None => self.0.warm.as_ref().map_or(0, WarmPool::idle),
        }
    }

    /// An instance of a WASI component armed for one inline call (see [`Inline`]).
    async fn armed(
        &self,
        inline: &Inline,
        func: &'static str,
    ) -> Result<Armed<AsyncGuardrail>, CallError> {
        let engine = &self.0.sandbox.engine;
        let lease = match &inline.warm {
            Some(pool) => pool.lease(engine).await,
            None => Lease::fresh(engine.permit().await),
        };
        self.0
            .sandbox
            .instance_async(func, lease, self.0.config.as_deref(), &inline.pre)
            .await
    }

    /// What the next call runs in: for a stateless plugin, its turn and then an idle warm
    /// instance (or a permit for a new one); else a permit for a fresh instance. The wait is
    /// not charged to the call's deadline.
    async fn lease(&self) -> Lease<Guardrail> {
        let engine = &self.0.sandbox.engine;
        match &self.0.warm {
            Some(pool) => pool.lease(engine).await,
            None => Lease::fresh(engine.permit().await),
        }
    }

    fn check_now(
        &self,
        lease: Lease<Guardrail>,
        pattern: &str,
        text: &str,
        candidates: &[Range<usize>],
    ) -> Result<Vec<Finding>, CallError> {
        let spans = spans(candidates);
        let raw = self.call(lease, "check", |store, g| {
            g.bitrouter_plugin_guard()
                .call_check(store, pattern, text, &spans)
        })?;
        self.renew_if_due();
        self.validate("check", text, raw)
    }

    fn scan_now(
        &self,
        lease: Lease<Guardrail>,
        direction: Direction,
        text: &str,
    ) -> Result<Vec<Finding>, CallError> {
        let raw = self.call(lease, "scan", |store, g| {
            g.bitrouter_plugin_guard()
                .call_scan(store, wit_direction(direction), text)
        })?;
        self.renew_if_due();
        self.validate("scan", text, raw)
    }

    fn call<R>(
        &self,
        lease: Lease<Guardrail>,
        func: &'static str,
        f: impl FnOnce(&mut wasmtime::Store<StoreState>, &Guardrail) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let inner = &*self.0;
        let instantiate = |store: &mut wasmtime::Store<StoreState>| inner.pre.instantiate(store);
        let configure = |store: &mut wasmtime::Store<StoreState>, g: &Guardrail, config: &str| {
            g.bitrouter_plugin_guard().call_configure(store, config)
        };
        match (&inner.warm, lease) {
            (Some(pool), lease) => inner.sandbox.call_warm(
                pool,
                lease,
                func,
                inner.config.as_deref(),
                instantiate,
                configure,
                f,
            ),
            (None, lease) => {
                // The instance permit is held for the call.
                let _hold = lease;
                inner
                    .sandbox
                    .call_fresh(func, inner.config.as_deref(), instantiate, configure, f)
            }
        }
    }

    /// Starts setting up a successor for a warm instance that has served its calls, when
    /// one is due ([`WarmPool::renewal_wanted`]), on a blocking thread: instantiating and
    /// configuring a JS or Python instance took milliseconds, which a request paid for
    /// every `WARM_USES` calls when it happened on the call's path.
    fn renew_if_due(&self) {
        let inner = &*self.0;
        let due = match &inner.inline {
            Some(inline) => inline.warm.as_ref().is_some_and(WarmPool::renewal_wanted),
            None => inner.warm.as_ref().is_some_and(WarmPool::renewal_wanted),
        };
        if !due {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // Not reached from the async calls above. Counted as a failed renewal: the due
            // instance serves on and is retired at `RETIRE_USES`.
            match &inner.inline {
                Some(inline) => inline.warm.as_ref().map(|p| p.renewed(None)),
                None => inner.warm.as_ref().map(|p| p.renewed(None)),
            };
            return;
        };
        let me = self.clone();
        let handle = rt;
        sandbox::off_path(Box::new(move || {
            let inner = &*me.0;
            let config = inner.config.as_deref();
            if let Some(inline) = &inner.inline {
                if let Some(pool) = &inline.warm {
                    let warm_up = async |store: &mut wasmtime::Store<StoreState>,
                                         g: &AsyncGuardrail| {
                        warm_up(&inner.patterns, inner.scans, store, g).await
                    };
                    handle.block_on(
                        inner
                            .sandbox
                            .renew_async(pool, config, &inline.pre, warm_up),
                    );
                }
            } else if let Some(pool) = &inner.warm {
                inner.sandbox.renew(
                    pool,
                    config,
                    |store| inner.pre.instantiate(store),
                    |store, g: &Guardrail, config| {
                        g.bitrouter_plugin_guard().call_configure(store, config)
                    },
                );
            }
        }));
    }

    fn validate(
        &self,
        func: &'static str,
        text: &str,
        raw: Vec<wt::Finding>,
    ) -> Result<Vec<Finding>, CallError> {
        validate_findings(&self.0.patterns, text, raw).map_err(|reason| {
            self.0
                .sandbox
                .error(func, CallErrorKind::InvalidResult(reason))
        })
    }
}

/// How the calls of a component that imports WASI run: async bindings on a fiber, inline on
/// the caller's task, with WASI's async host functions.
struct Inline {
    pre: bindings_async::GuardrailPre<StoreState>,
    warm: Option<WarmPool<AsyncGuardrail>>,
}

/// What a renewed instance of a WASI guardrail is called with before it serves: ordinary
/// prose, no finding in it for any plugin we know, long enough to run the plugin's code
/// paths for a real text.
const WARM_UP_TEXT: &str = "The gateway forwards this request to the provider and records \
    the usage of the answer. Nothing in this text is a secret; it only warms up a new \
    instance of the plugin before the host hands it a request.";

/// The calls a request makes, with [`WARM_UP_TEXT`]: `scan` in each direction the plugin
/// scans, `check` of its first regex pattern with the whole text as the candidate.
async fn warm_up(
    patterns: &[Pattern],
    scans: [bool; 2],
    store: &mut wasmtime::Store<StoreState>,
    g: &AsyncGuardrail,
) -> wasmtime::Result<()> {
    let guard = g.bitrouter_plugin_guard();
    for (direction, scanned) in [Direction::Request, Direction::Response]
        .into_iter()
        .zip(scans)
    {
        if scanned {
            guard
                .call_scan(&mut *store, wit_direction(direction), WARM_UP_TEXT)
                .await?;
        }
    }
    if let Some(p) = patterns.iter().find(|p| p.regex.is_some()) {
        let whole = [wt::Span {
            start: 0,
            end: WARM_UP_TEXT.len() as u32,
        }];
        guard
            .call_check(&mut *store, &p.id, WARM_UP_TEXT, &whole)
            .await?;
    }
    Ok(())
}

fn spans(candidates: &[Range<usize>]) -> Vec<wt::Span> {
    candidates
        .iter()
        .map(|r| wt::Span {
            start: r.start as u32,
            end: r.end as u32,
        })
        .collect()
}

fn wit_direction(direction: Direction) -> wt::Direction {
    match direction {
        Direction::Request => wt::Direction::Request,
        Direction::Response => wt::Direction::Response,
    }
}

/// Idle warm instances one stateless plugin keeps: one per core (calls beyond that wait for a
/// core anyway), at most a quarter of the instance slots.
fn warm_cap(sandbox: &Sandbox) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(sandbox.engine.warm_max / 2).max(1)
}

fn validate_patterns(raw: Vec<wt::Pattern>) -> Result<Vec<Pattern>, String> {
    if raw.len() > MAX_PATTERNS {
        return Err(format!(
            "{} patterns declared; at most {MAX_PATTERNS}",
            raw.len()
        ));
    }
    let mut out: Vec<Pattern> = Vec::with_capacity(raw.len());
    for p in raw {
        let valid_id = !p.id.is_empty()
            && p.id.len() <= 64
            && p.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !valid_id {
            return Err(format!("pattern id `{}`: use 1-64 of [a-z0-9._-]", p.id));
        }
        if out.iter().any(|q| q.id == p.id) {
            return Err(format!("pattern id `{}` declared twice", p.id));
        }
        if p.directions == wt::Directions::empty() {
            return Err(format!("pattern `{}` applies to no direction", p.id));
        }
        out.push(Pattern {
            request: p.directions.contains(wt::Directions::REQUEST),
            response: p.directions.contains(wt::Directions::RESPONSE),
            default_action: match p.default_action {
                wt::Action::Block => Action::Block,
                wt::Action::Redact => Action::Redact,
                wt::Action::Warn => Action::Warn,
            },
            id: p.id,
            description: p.description,
            regex: p.regex,
            max_match_len: p.max_match_len,
        });
    }
    Ok(out)
}

fn validate_findings(
    patterns: &[Pattern],
    text: &str,
    raw: Vec<wt::Finding>,
) -> Result<Vec<Finding>, String> {
    if raw.len() > MAX_FINDINGS {
        return Err(format!(
            "{} findings; at most {MAX_FINDINGS} per call",
            raw.len()
        ));
    }
    raw.into_iter()
        .map(|f| {
            let pattern = patterns
                .iter()
                .position(|p| p.id == f.pattern)
                .ok_or_else(|| format!("unknown pattern id `{}`", f.pattern))?;
            let (start, end) = (f.span.start as usize, f.span.end as usize);
            if start > end || end > text.len() {
                return Err(format!(
                    "span {start}..{end} is outside the text (length {})",
                    text.len()
                ));
            }
            if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                return Err(format!(
                    "span {start}..{end} is not on UTF-8 character boundaries"
                ));
            }
            if f.replacement
                .as_ref()
                .is_some_and(|r| r.len() > MAX_REPLACEMENT)
            {
                return Err(format!("replacement longer than {MAX_REPLACEMENT} bytes"));
            }
            Ok(Finding {
                pattern,
                span: start..end,
                replacement: f.replacement,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(id: &str) -> Pattern {
        Pattern {
            id: id.into(),
            request: true,
            response: false,
            default_action: Action::Block,
            description: String::new(),
            regex: None,
            max_match_len: 10,
        }
    }

    fn raw(pattern: &str, start: u32, end: u32) -> wt::Finding {
        wt::Finding {
            pattern: pattern.into(),
            span: wt::Span { start, end },
            replacement: None,
        }
    }

    #[test]
    fn findings_are_validated() {
        let ps = [pattern("a"), pattern("b")];
        let text = "héllo";
        let ok = validate_findings(&ps, text, vec![raw("b", 0, 3), raw("a", 6, 6)]).unwrap();
        assert_eq!(ok[0].pattern, 1);
        assert_eq!(ok[0].span, 0..3);
        for (f, needle) in [
            (raw("c", 0, 1), "unknown pattern id"),
            (raw("a", 0, 7), "outside"),
            (raw("a", 3, 2), "outside"),
            (raw("a", 0, 2), "boundaries"),
        ] {
            let err = validate_findings(&ps, text, vec![f]).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let many = (0..=MAX_FINDINGS).map(|_| raw("a", 0, 0)).collect();
        assert!(validate_findings(&ps, text, many).is_err());
        let mut long = raw("a", 0, 0);
        long.replacement = Some("x".repeat(MAX_REPLACEMENT + 1));
        assert!(validate_findings(&ps, text, vec![long]).is_err());
    }

    #[test]
    fn patterns_are_validated() {
        let p = |id: &str, d: wt::Directions| wt::Pattern {
            id: id.into(),
            directions: d,
            default_action: wt::Action::Redact,
            description: String::new(),
            regex: Some("x".into()),
            max_match_len: 1,
        };
        let both = wt::Directions::REQUEST | wt::Directions::RESPONSE;
        let ok = validate_patterns(vec![p("a.b-c_1", both)]).unwrap();
        assert!(ok[0].request && ok[0].response);
        assert_eq!(ok[0].default_action, Action::Redact);
        assert!(validate_patterns(vec![p("A", both)]).is_err());
        assert!(validate_patterns(vec![p("a", both), p("a", both)]).is_err());
        assert!(validate_patterns(vec![p("a", wt::Directions::empty())]).is_err());
    }
}
