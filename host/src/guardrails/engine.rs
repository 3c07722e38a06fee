//! `GuardrailEngine`: every enabled pattern (the plugins' and the config's custom ones),
//! with the action the config gives it per direction, and the one-pass matcher per
//! direction that finds their candidates natively.
//!
//! Finding a text's hits: first where the first match of any of a direction's regexes is
//! (a clean text — the common case — costs exactly that; `candidates` says how it is
//! found); only when there is one does each pattern's own regex run, from there on, so
//! patterns whose matches overlap are all found. A plugin pattern's candidates then go to its plugin's `check`, with the
//! text around them; regex-less patterns go to the plugin's `scan`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input};

use crate::config::{ActionName, Guardrails};
use crate::plugins::{Action, Direction, GuardrailPlugin};

use super::GuardrailError;
use super::candidates::Candidates;

/// Most bytes of context given to `check` on either side of the candidates. The built-in
/// plugins read shapes that reach past their candidate: a private key's body (1.7 KB for
/// RSA-2048, 3.2 KB for RSA-4096), a CSV table's rows under a `password` header, a
/// `.pgpass` file's lines after its name. 4 KiB holds them and bounds what one call copies
/// into the sandbox when a long text has a single candidate.
pub const CHECK_CONTEXT: usize = 4096;

/// One enabled pattern.
pub struct ActivePattern {
    /// The id findings, logs and config keys use.
    pub id: Arc<str>,
    /// `None` for a custom pattern from the config.
    pub plugin: Option<PluginPattern>,
    /// The action per direction (`Direction::Request` first); `None`: not looked for.
    pub actions: [Option<Action>; 2],
    /// The longest match, in bytes; sizes the stream window.
    pub max_match_len: usize,
    /// Findings so far, by action (block, redact, warn), and plugin-call failures.
    pub counts: [AtomicU64; 3],
    /// Plugin calls for this pattern that failed.
    pub failures: AtomicU64,
    /// What a failed call does: `None`, fail closed when the pattern blocks, open otherwise.
    pub on_failure: Option<crate::plugins::OnFailure>,
}

pub struct PluginPattern {
    pub plugin: GuardrailPlugin,
    /// The pattern's id inside its plugin.
    pub local_id: String,
    /// Found by `scan` rather than by a regex.
    pub scanned: bool,
}

impl ActivePattern {
    /// The action in `direction`; `None`: the pattern is not looked for there.
    pub fn action(&self, direction: Direction) -> Option<Action> {
        self.actions[dir_index(direction)]
    }
}

pub(crate) fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

pub fn action_index(a: Action) -> usize {
    match a {
        Action::Block => 0,
        Action::Redact => 1,
        Action::Warn => 2,
    }
}

/// The action's name in findings, logs and config (`block`, `redact`, `warn`).
pub fn action_str(a: Action) -> &'static str {
    match a {
        Action::Block => "block",
        Action::Redact => "redact",
        Action::Warn => "warn",
    }
}

fn action_of(a: ActionName) -> Action {
    match a {
        ActionName::Block => Action::Block,
        ActionName::Redact => Action::Redact,
        ActionName::Warn => Action::Warn,
    }
}

/// The patterns of one direction, compiled.
#[derive(Default)]
struct Matcher {
    /// Each pattern's candidates, and where the first of them is (the yes/no of a clean
    /// text).
    candidates: Candidates,
    /// Plugins with regex-less patterns here, and which active patterns those are.
    scanners: Vec<(GuardrailPlugin, Vec<usize>)>,
    max_match_len: usize,
    /// The same regexes as an anchored lazy DFA, to tell whether a text's tail could still
    /// grow into a match (streams release everything before the first such tail).
    live: Option<LiveDfa>,
}

/// Makes a cache for the liveness DFA.
type CacheFn = Box<dyn Fn() -> DfaCache + Send + Sync>;

/// The liveness DFA and a pool of its caches. A cache is taken for one `live_start` call
/// only, so open streams do not each hold one (a cache grows toward `cache_capacity` as
/// states are found), and a stream starts with the states earlier streams already built.
struct LiveDfa {
    dfa: DFA,
    caches: Pool<DfaCache, CacheFn>,
}

impl LiveDfa {
    fn new(dfa: DFA) -> LiveDfa {
        let for_caches = dfa.clone();
        LiveDfa {
            dfa,
            caches: Pool::new(Box::new(move || for_caches.create_cache())),
        }
    }
}

/// Something found in one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`GuardrailEngine::patterns`].
    pub pattern: usize,
    /// Byte range of the match in the text.
    pub span: Range<usize>,
    /// What to do with it.
    pub action: Action,
    /// Text to put in place of the match on `redact`; `None`: `[REDACTED:<pattern id>]`.
    pub replacement: Option<String>,
    /// The pattern's plugin failed: not a match (its span is empty) but the verdict — with
    /// `action` Block the request fails closed, with Warn it fails open.
    pub failed: bool,
}

/// The firewall: every active pattern, the matchers over them, and how block errors read.
pub struct GuardrailEngine {
    patterns: Vec<ActivePattern>,
    matchers: [Matcher; 2],
    /// `guardrails.block_message.include_details`: block errors name the patterns.
    pub include_details: bool,
    /// `guardrails.block_message.include_help_link`: block errors end with a help link.
    pub include_help_link: bool,
    /// Bytes of response text a stream holds back (see `stream.rs`).
    pub stream_window: usize,
}

impl std::fmt::Debug for GuardrailEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailEngine")
            .field(
                "patterns",
                &self.patterns.iter().map(|p| &*p.id).collect::<Vec<_>>(),
            )
            .field("stream_window", &self.stream_window)
            .finish()
    }
}

impl GuardrailEngine {
    /// An engine that finds nothing (guardrails disabled).
    pub fn disabled() -> GuardrailEngine {
        GuardrailEngine {
            patterns: Vec::new(),
            matchers: [Matcher::default(), Matcher::default()],
            include_details: true,
            include_help_link: true,
            stream_window: 0,
        }
    }

    /// Resolves the config's actions over the plugins' patterns and compiles the matchers.
    /// Unknown pattern ids in the config are errors naming the key.
    pub fn build(
        config: &Guardrails,
        plugins: &[GuardrailPlugin],
    ) -> Result<GuardrailEngine, GuardrailError> {
        Self::build_merged(config, plugins, &[])
    }

    /// [`GuardrailEngine::build`] over settings merged from policies' `fragments` (each with
    /// the prefix that names it in errors): the names each fragment uses are checked, and
    /// reported, as that fragment's.
    pub fn build_merged(
        config: &Guardrails,
        plugins: &[GuardrailPlugin],
        fragments: &[(String, &Guardrails)],
    ) -> Result<GuardrailEngine, GuardrailError> {
        if !config.enabled {
            return Ok(GuardrailEngine::disabled());
        }
        // Pattern ids are the plugins' own while they are unique. When several plugins
        // declare the same id, each of those patterns goes by `<plugin id>/<pattern id>`
        // (in the config, metrics, headers and findings), and the bare id names none of them.
        // Any plugin pattern may always be named by its full id.
        let mut declarers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for plugin in plugins {
            for p in plugin.patterns() {
                declarers.entry(&p.id).or_default().push(plugin.id());
            }
        }
        let shared = |id: &str| declarers.get(id).is_some_and(|d| d.len() > 1);
        let full_id = |plugin: &GuardrailPlugin, id: &str| format!("{}/{id}", plugin.id());
        let name_of = |plugin: &GuardrailPlugin, id: &str| {
            if shared(id) {
                full_id(plugin, id)
            } else {
                id.to_owned()
            }
        };
        // Every name a config key may use for a pattern, enabled or not: a plugin pattern's
        // name (and its full id), each custom pattern's name.
        let mut declared: BTreeMap<String, (Option<(GuardrailPlugin, usize)>, String)> =
            BTreeMap::new();
        for plugin in plugins {
            for (i, p) in plugin.patterns().iter().enumerate() {
                let entry = (Some((plugin.clone(), i)), plugin.id().to_owned());
                declared.insert(full_id(plugin, &p.id), entry.clone());
                declared.insert(name_of(plugin, &p.id), entry);
            }
        }
        for c in &config.custom_patterns {
            let plugin = match declared.get(&c.name) {
                Some((Some((plugin, _)), _)) => Some(plugin.id().to_owned()),
                _ => declarers.get(c.name.as_str()).map(|d| d.join("`, `")),
            };
            if let Some(plugin) = plugin {
                return Err(GuardrailError::config(
                    "guardrails.custom_patterns",
                    format!(
                        "custom pattern `{}` has the id of a pattern of plugin `{plugin}`; rename it",
                        c.name,
                    ),
                ));
            }
            declared.insert(c.name.clone(), (None, "custom".into()));
        }
        let known = || {
            declared
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ambiguous = |name: &str| {
            declarers.get(name).filter(|d| d.len() > 1).map(|d| {
                d.iter()
                    .map(|plugin| format!("`{plugin}/{name}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
        };
        // Each policy's fragment first, so a bad name there is reported as the policy's.
        let sources = fragments
            .iter()
            .map(|(prefix, g)| (prefix.as_str(), *g))
            .chain([("guardrails", config)]);
        for (prefix, g) in sources {
            for (field, names) in [
                (
                    "disabled_patterns",
                    g.disabled_patterns.iter().collect::<Vec<_>>(),
                ),
                ("upgoing", g.upgoing.keys().collect()),
                ("downgoing", g.downgoing.keys().collect()),
            ] {
                for name in names {
                    let key = format!("{prefix}.{field}.{name}");
                    match declared.get(name) {
                        None if ambiguous(name).is_some() => {
                            return Err(GuardrailError::config(
                                &key,
                                format!(
                                    "pattern `{name}` is declared by several plugins; name the one you mean: {}",
                                    ambiguous(name).unwrap_or_default()
                                ),
                            ));
                        }
                        None => {
                            return Err(GuardrailError::config(
                                &key,
                                format!(
                                    "unknown pattern `{name}`; the loaded patterns are {}",
                                    known()
                                ),
                            ));
                        }
                        Some((None, _)) if field != "disabled_patterns" => {
                            return Err(GuardrailError::config(
                                &key,
                                format!(
                                    "`{name}` is a custom pattern; set its action under custom_{field}"
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
        }

        let mut patterns = Vec::new();
        for plugin in plugins {
            for p in plugin.patterns() {
                let (name, full) = (name_of(plugin, &p.id), full_id(plugin, &p.id));
                let named = |n: &String| *n == name || *n == full;
                if config.disabled_patterns.iter().any(named) {
                    continue;
                }
                let pick = |declared: bool, map: &BTreeMap<String, ActionName>| {
                    map.get(&name)
                        .or_else(|| map.get(&full))
                        .map(|a| action_of(*a))
                        .or(declared.then_some(p.default_action))
                };
                patterns.push(ActivePattern {
                    id: Arc::from(name.as_str()),
                    plugin: Some(PluginPattern {
                        plugin: plugin.clone(),
                        local_id: p.id.clone(),
                        scanned: p.regex.is_none(),
                    }),
                    actions: [
                        pick(p.request, &config.upgoing),
                        pick(p.response, &config.downgoing),
                    ],
                    max_match_len: p.max_match_len as usize,
                    counts: Default::default(),
                    failures: AtomicU64::new(0),
                    on_failure: plugin.info().on_failure.or(config.plugin_failure),
                });
            }
        }
        let mut custom_regexes = Vec::new();
        for c in &config.custom_patterns {
            if config.disabled_patterns.contains(&c.name) {
                continue;
            }
            let pick = |on: bool, map: &BTreeMap<String, ActionName>| {
                on.then(|| action_of(*map.get(&c.name).unwrap_or(&c.action)))
            };
            custom_regexes.push((patterns.len(), c.regex.clone()));
            patterns.push(ActivePattern {
                id: Arc::from(c.name.as_str()),
                plugin: None,
                actions: [
                    pick(c.upgoing, &config.custom_upgoing),
                    pick(c.downgoing, &config.custom_downgoing),
                ],
                max_match_len: c.max_match_len,
                counts: Default::default(),
                failures: AtomicU64::new(0),
                on_failure: None,
            });
        }

        let mut matchers = [Matcher::default(), Matcher::default()];
        for direction in [Direction::Request, Direction::Response] {
            let m = &mut matchers[dir_index(direction)];
            let mut sources = Vec::new();
            let mut indexed = Vec::new();
            for (i, p) in patterns.iter().enumerate() {
                if p.action(direction).is_none() {
                    continue;
                }
                m.max_match_len = m.max_match_len.max(p.max_match_len);
                match &p.plugin {
                    Some(pp) if pp.scanned => {
                        match m
                            .scanners
                            .iter_mut()
                            .find(|(g, _)| g.id() == pp.plugin.id())
                        {
                            Some((_, ids)) => ids.push(i),
                            None => m.scanners.push((pp.plugin.clone(), vec![i])),
                        }
                    }
                    Some(pp) => {
                        let source = pp
                            .plugin
                            .patterns()
                            .iter()
                            .find(|q| q.id == pp.local_id)
                            .and_then(|q| q.regex.clone())
                            .unwrap_or_default();
                        compile(&source).map_err(|e| {
                            GuardrailError::plugin(
                                pp.plugin.id(),
                                format!("pattern `{}`: invalid regex: {e}", p.id),
                            )
                        })?;
                        indexed.push((i, source.clone()));
                        sources.push(source);
                    }
                    None => {
                        let (_, regex) = custom_regexes
                            .iter()
                            .find(|(j, _)| *j == i)
                            .expect("every custom pattern has its regex");
                        sources.push(regex.as_str().to_owned());
                        indexed.push((i, regex.as_str().to_owned()));
                    }
                }
            }
            if !sources.is_empty() {
                m.candidates = Candidates::build(&indexed).map_err(|e| {
                    GuardrailError::config(
                        "guardrails",
                        format!("cannot compile the patterns' regexes: {e}"),
                    )
                })?;
                // Without a DFA (it fails to build for some Unicode constructs) streams
                // fall back to holding back a fixed window.
                m.live = DFA::builder()
                    .configure(
                        DFA::config()
                            .unicode_word_boundary(true)
                            .cache_capacity(4 << 20),
                    )
                    .build_many(&sources)
                    .ok()
                    .map(LiveDfa::new);
            }
        }
        let max_down = matchers[1].max_match_len;
        Ok(GuardrailEngine {
            patterns,
            matchers,
            include_details: config.include_details.unwrap_or(true),
            include_help_link: config.include_help_link.unwrap_or(true),
            stream_window: config.stream_window.max(4 * max_down),
        })
    }

    /// Every active pattern; [`Hit::pattern`] indexes it.
    pub fn patterns(&self) -> &[ActivePattern] {
        &self.patterns
    }

    /// Whether anything is looked for in `direction`.
    pub fn active(&self, direction: Direction) -> bool {
        let m = &self.matchers[dir_index(direction)];
        !m.candidates.is_empty() || !m.scanners.is_empty()
    }

    /// The longest match any pattern of `direction` may have.
    pub fn max_match_len(&self, direction: Direction) -> usize {
        self.matchers[dir_index(direction)].max_match_len
    }

    /// Whether streams of `direction` can release text early: every pattern has a regex and
    /// the liveness DFA exists. Otherwise they hold back a fixed window.
    pub fn tail_checkable(&self, direction: Direction) -> bool {
        let m = &self.matchers[dir_index(direction)];
        m.scanners.is_empty() && (m.live.is_some() || m.candidates.is_empty())
    }

    /// The first position at or after `from` where a match of `direction`'s regexes could
    /// start and still be in progress at the end of `text` (it has not failed yet; it may
    /// already match and grow longer). `None` when no tail can become a match. When the DFA
    /// gives up (a Unicode word boundary next to non-ASCII text) the position counts as
    /// live, which only holds text back longer.
    pub fn live_start(&self, direction: Direction, text: &str, from: usize) -> Option<usize> {
        let live = self.matchers[dir_index(direction)].live.as_ref()?;
        let dfa = &live.dfa;
        let mut cache = live.caches.get();
        let cache = &mut *cache;
        let bytes = text.as_bytes();
        let mut s = ceil_char(text, from);
        while s < text.len() {
            let input = Input::new(text).range(s..).anchored(Anchored::Yes);
            let alive = match dfa.start_state_forward(cache, &input) {
                Err(_) => true,
                Ok(mut state) => {
                    let mut alive = !state.is_dead();
                    for &b in &bytes[s..] {
                        if !alive {
                            break;
                        }
                        match dfa.next_state(cache, state, b) {
                            Ok(next) => {
                                state = next;
                                alive = !state.is_dead() && !state.is_quit();
                                if state.is_quit() {
                                    // Gave up: assume the worst.
                                    return Some(s);
                                }
                            }
                            Err(_) => return Some(s),
                        }
                    }
                    alive
                }
            };
            if alive {
                return Some(s);
            }
            s = next_char(text, s);
        }
        None
    }

    /// Whether `text` might hold something: the one-pass regex test, plus any scanner.
    pub fn may_match(&self, direction: Direction, text: &str) -> bool {
        let m = &self.matchers[dir_index(direction)];
        !m.scanners.is_empty() || m.candidates.first(text).is_some()
    }

    /// The hits in `text`, sorted by start, overlaps included. Plugin failures are counted;
    /// for a pattern that blocks they become a fail-closed hit.
    pub async fn scan(&self, direction: Direction, text: &str) -> Vec<Hit> {
        let m = &self.matchers[dir_index(direction)];
        let mut hits = Vec::new();
        if text.is_empty() {
            return hits;
        }
        if let Some(first) = m.candidates.first(text) {
            for (i, spans) in m.candidates.find(text, first) {
                self.confirm(direction, i, text, spans, &mut hits).await;
            }
        }
        for (plugin, ids) in &m.scanners {
            match plugin.scan(direction, text).await {
                Ok(found) => {
                    for f in found {
                        let local = &plugin.patterns()[f.pattern].id;
                        if let Some(&i) = ids.iter().find(|&&i| {
                            self.patterns[i]
                                .plugin
                                .as_ref()
                                .is_some_and(|pp| &pp.local_id == local)
                        }) {
                            self.push_hit(direction, i, f.span, f.replacement, &mut hits);
                        }
                    }
                }
                Err(e) => {
                    for &i in ids {
                        self.failed(direction, i, &e.to_string(), &mut hits);
                    }
                }
            }
        }
        hits.sort_by_key(|h| (h.span.start, std::cmp::Reverse(h.span.end)));
        hits
    }

    /// Turns the regex candidates of pattern `i` into hits: directly for a custom pattern,
    /// through the plugin's `check` (with some text around them) otherwise.
    async fn confirm(
        &self,
        direction: Direction,
        i: usize,
        text: &str,
        spans: Vec<Range<usize>>,
        hits: &mut Vec<Hit>,
    ) {
        let Some(pp) = &self.patterns[i].plugin else {
            for span in spans {
                self.push_hit(direction, i, span, None, hits);
            }
            return;
        };
        let lo = floor_char(text, spans[0].start.saturating_sub(CHECK_CONTEXT));
        let hi = ceil_char(
            text,
            (spans[spans.len() - 1].end + CHECK_CONTEXT).min(text.len()),
        );
        let window = &text[lo..hi];
        let local: Vec<Range<usize>> = spans.iter().map(|s| s.start - lo..s.end - lo).collect();
        match pp.plugin.check(&pp.local_id, window, &local).await {
            Ok(found) => {
                for f in found {
                    if pp.plugin.patterns()[f.pattern].id != pp.local_id {
                        // A finding for another of its patterns: that pattern's own
                        // candidates are confirmed by their own call.
                        continue;
                    }
                    let span = f.span.start + lo..f.span.end + lo;
                    self.push_hit(direction, i, span, f.replacement, hits);
                }
            }
            Err(e) => self.failed(direction, i, &e.to_string(), hits),
        }
    }

    fn push_hit(
        &self,
        direction: Direction,
        i: usize,
        span: Range<usize>,
        replacement: Option<String>,
        hits: &mut Vec<Hit>,
    ) {
        if span.is_empty() {
            return;
        }
        let Some(action) = self.patterns[i].action(direction) else {
            return;
        };
        hits.push(Hit {
            pattern: i,
            span,
            action,
            replacement,
            failed: false,
        });
    }

    /// A plugin call for pattern `i` failed. Fail closed (a blocking hit) when the plugin's
    /// `plugin_failure` says so, or by default when the pattern blocks; else fail open: a
    /// `Warn` hit marked failed, which blocks and redacts nothing but is counted and shown on
    /// the response (`x-bitrouter-guardrail-failures`), so a policy that stops applying
    /// under load is never silent.
    fn failed(&self, direction: Direction, i: usize, error: &str, hits: &mut Vec<Hit>) {
        let p = &self.patterns[i];
        p.failures.fetch_add(1, Ordering::Relaxed);
        let Some(action) = p.action(direction) else {
            return;
        };
        let closed = match p.on_failure {
            Some(crate::plugins::OnFailure::Closed) => true,
            Some(crate::plugins::OnFailure::Open) => false,
            None => action == Action::Block,
        };
        tracing::warn!(
            pattern = &*p.id,
            error,
            fail = if closed { "closed" } else { "open" },
            "guardrail plugin call failed"
        );
        hits.push(Hit {
            pattern: i,
            span: 0..0,
            action: if closed { Action::Block } else { Action::Warn },
            replacement: None,
            failed: true,
        });
    }

    /// Counts hits that took effect.
    pub fn count(&self, hits: &[Hit]) {
        for h in hits.iter().filter(|h| !h.failed) {
            self.patterns[h.pattern].counts[action_index(h.action)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The placeholder a redacted span becomes.
    pub fn replacement<'a>(&'a self, hit: &'a Hit) -> std::borrow::Cow<'a, str> {
        match &hit.replacement {
            Some(r) => std::borrow::Cow::Borrowed(r),
            None => {
                std::borrow::Cow::Owned(format!("[REDACTED:{}]", self.patterns[hit.pattern].id))
            }
        }
    }

    /// `text` with its redact hits replaced (overlapping hits merge into the first one).
    /// `None` when nothing is redacted.
    pub fn redact(&self, text: &str, hits: &[Hit]) -> Option<String> {
        let mut out = String::new();
        let mut done = 0;
        let mut any = false;
        for h in hits
            .iter()
            .filter(|h| h.action == Action::Redact && !h.failed)
        {
            if h.span.start < done {
                continue;
            }
            any = true;
            out.push_str(&text[done..h.span.start]);
            out.push_str(&self.replacement(h));
            done = h.span.end;
        }
        if !any {
            return None;
        }
        out.push_str(&text[done..]);
        Some(out)
    }
}

fn compile(source: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(source)
        .size_limit(16 << 20)
        .build()
}

pub(super) fn next_char(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len(), |c| at + c.len_utf8())
}

pub(crate) fn floor_char(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

pub(crate) fn ceil_char(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}
