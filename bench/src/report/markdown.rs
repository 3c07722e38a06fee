//! The report as markdown: goals first, then a one-line summary per scenario, then each
//! scenario's tables, the peer (LiteLLM) beside the gateway when it ran, then the gateway
//! process figures and the notes.

use std::fmt::Write;

use super::{PeerReport, PercentileSpread, Report, ScenarioReport, Spread};

/// Renders `report` as a markdown document.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    // Writing to a String cannot fail; the Results are dropped on purpose.
    let _ = write_report(&mut md, report);
    md
}

fn write_report(md: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(md, "# BitRouter benchmark report\n")?;
    if r.mode == "smoke" {
        writeln!(
            md,
            "**Smoke run**: a few hundred milliseconds per scenario to check the harness works. \
             The numbers are not meaningful and no goal is judged.\n"
        )?;
    }
    let dirty = if r.git_dirty {
        " (work tree had uncommitted changes)"
    } else {
        ""
    };
    writeln!(
        md,
        "{} · commit `{}`{dirty} · {}\n",
        r.date_utc, r.git_commit, r.rustc
    )?;
    writeln!(md, "Command: `{}`\n", r.setup.command)?;

    writeln!(md, "## Machine and method\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(
        md,
        "| machine | {} CPUs ({}), Linux {}, {} MiB RAM |",
        r.machine.nproc, r.machine.cpu_model, r.machine.kernel, r.machine.memory_mib
    )?;
    writeln!(
        md,
        "| machine load | load average {} at the start, {} at the end |",
        r.machine.load_average_start, r.machine.load_average_end
    )?;
    if let Some(bg) = &r.setup.background_cores {
        writeln!(
            md,
            "| other processes | used {} CPUs during the measured phases (median; max {}): noise in every figure when well above 0 |",
            num(bg.median),
            num(bg.max)
        )?;
    }
    writeln!(md, "| pinning | {} |", r.setup.pinning)?;
    writeln!(md, "| load generator | {} |", r.setup.load_generator)?;
    writeln!(md, "| mock upstream | {} |", r.setup.mock)?;
    writeln!(
        md,
        "| gateway | `{}`, log level `{}` |",
        r.setup.gateway_binary, r.setup.gateway_log_level
    )?;
    writeln!(
        md,
        "| rounds | warm-up {} s, then {} interleaved round(s): direct, via, direct, via… \
         ({} s open loop, {} s closed loop at {} connections per phase) |",
        r.setup.warmup_s,
        r.setup.rounds,
        r.setup.open_loop_s,
        r.setup.closed_loop_s,
        r.setup.closed_loop_concurrency
    )?;
    if let Some(lag) = &r.setup.send_lag_us {
        writeln!(
            md,
            "| harness floor | open-loop send lag behind schedule: p50 {} µs, p99 {} µs, p99.9 {} µs (counted in every latency, direct and via alike) |",
            us(lag.p50),
            us(lag.p99),
            us(lag.p999)
        )?;
    }
    writeln!(
        md,
        "\nFigures are medians over rounds, with the range over rounds in brackets. *Added* is \
         computed per round (via percentile − direct percentile at the same rate) and then \
         summarised. Open-loop latency is counted from each request's scheduled send time.\n"
    )?;

    writeln!(md, "## Goals (DESIGN.md)\n")?;
    writeln!(
        md,
        "| what | goal | measured | from | verdict |\n|---|---|---|---|---|"
    )?;
    for g in &r.goals {
        let measured = g
            .measured
            .map_or("—".to_owned(), |m| format!("{} {}", num(m), g.unit));
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            g.what, g.goal, measured, g.source, g.verdict
        )?;
    }

    writeln!(md, "\n## Summary\n")?;
    writeln!(
        md,
        "| scenario | open-loop rate | added p50 | added p90 | added p99 | added p99.9 | added TTFB p50 | throughput via / direct | gateway CPU s per 1k req | mock CPU s per 1k req |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for s in &r.scenarios {
        summary_row(md, s)?;
    }

    writeln!(md, "\n## Scenarios")?;
    for s in r.scenarios.iter().filter(|s| s.measured()) {
        scenario_section(md, s)?;
    }

    if let Some(floor) = &r.floor {
        let intro = "The same scenarios through the floor proxy (`bench/src/floor.rs`: read the \
             body, forward it on a pooled keep-alive hyper client, return the answer; pinned to \
             the gateway's CPU, same mock, same load generator), measured the same way: its own \
             interleaved rounds against the direct baseline. It is the least one more Rust HTTP \
             hop costs on this machine; the ratios say how far the gateway is from it.";
        side_by_side(
            md,
            r,
            "Floor: a bare hyper reverse proxy",
            intro,
            floor,
            Ratios::Latency,
        )?;
    }
    if let Some(peer) = &r.peer {
        let heading = format!("Peer: {} {}", peer.name, peer.version);
        let intro = format!(
            "The same scenarios through {} (one worker, pinned to the gateway's CPU, same mock), \
             measured the same way: its own interleaved rounds against the direct baseline.",
            peer.name
        );
        side_by_side(md, r, &heading, &intro, peer, Ratios::Throughput)?;
    }

    writeln!(md, "\n## Gateway process\n")?;
    writeln!(md, "| figure | value |\n|---|---|")?;
    let g = &r.gateway;
    writeln!(
        md,
        "| cold start: spawn → first successful model request | {} ms ({} samples) |",
        spread(&g.cold_start_ms),
        g.cold_start_ms.samples.len()
    )?;
    writeln!(
        md,
        "| RSS idle (after start-up and one request) | {} MB |",
        num(g.rss_idle_mb)
    )?;
    if let Some(v) = g.rss_idle_after_load_mb {
        writeln!(md, "| RSS idle after every scenario | {} MB |", num(v))?;
    }
    if let Some(v) = g.rss_peak_mb {
        writeln!(
            md,
            "| RSS high-water mark over the run (VmHWM) | {} MB |",
            num(v)
        )?;
    }

    let unmeasured: Vec<&ScenarioReport> = r.scenarios.iter().filter(|s| !s.measured()).collect();
    if !unmeasured.is_empty() {
        writeln!(md, "\n## Not yet measurable\n")?;
        for s in unmeasured {
            writeln!(
                md,
                "- Scenario {} ({}): {}",
                s.id,
                s.name,
                s.reason.as_deref().unwrap_or("not measured")
            )?;
        }
    }
    if !r.notes.is_empty() {
        writeln!(md, "\n## Notes\n")?;
        for n in &r.notes {
            writeln!(md, "- {n}")?;
        }
    }
    Ok(())
}

/// Which ratios follow a side-by-side table.
#[derive(Clone, Copy, PartialEq)]
enum Ratios {
    /// The gateway's added latency and CPU over the other's (the floor proxy).
    Latency,
    /// The gateway's closed-loop throughput over the other's (a peer gateway).
    Throughput,
}

/// BitRouter and another proxy (the floor, or a peer gateway) side by side on the scenarios
/// both ran, with the ratios.
fn side_by_side(
    md: &mut String,
    r: &Report,
    heading: &str,
    intro: &str,
    peer: &PeerReport,
    ratios_of: Ratios,
) -> std::fmt::Result {
    writeln!(md, "\n## {heading}\n")?;
    writeln!(md, "{intro}\n")?;
    writeln!(
        md,
        "| scenario | through | added p50 | added p99 | added TTFB p50 | throughput via / direct | CPU s per 1k req (open loop) | failed |\n|---|---|---|---|---|---|---|---|"
    )?;
    let dash = || "—".to_owned();
    let row = |md: &mut String, who: &str, s: &ScenarioReport| -> std::fmt::Result {
        let o = s.open_loop.as_ref();
        writeln!(
            md,
            "| {}. {} | {who} | {} | {} | {} | {} | {} | {} |",
            s.id,
            s.name,
            o.map_or_else(dash, |o| added(&o.added_us.p50)),
            o.map_or_else(dash, |o| added(&o.added_us.p99)),
            o.filter(|_| s.stream)
                .map_or_else(dash, |o| added(&o.ttfb_added_us.p50)),
            s.closed_loop
                .as_ref()
                .map_or_else(dash, |c| format!("{:.0} %", c.ratio.median * 100.0)),
            s.gateway_cpu_s_per_1k
                .as_ref()
                .map_or_else(dash, |c| format!("{:.3}", c.median)),
            o.map_or(0, |o| o.failed_via) + s.closed_loop.as_ref().map_or(0, |c| c.failed_via),
        )
    };
    let mut ratios = Vec::new();
    for p in &peer.scenarios {
        if let Some(b) = r.scenarios.iter().find(|s| s.id == p.id && s.measured()) {
            row(md, "BitRouter", b)?;
            if ratios_of == Ratios::Latency
                && let Some(line) = floor_ratios(b, p)
            {
                ratios.push(line);
            }
            if ratios_of == Ratios::Throughput
                && let (Some(bc), Some(pc)) = (&b.closed_loop, &p.closed_loop)
                && pc.via_rps.median > 0.0
            {
                ratios.push(format!(
                    "scenario {}: BitRouter's closed-loop throughput is {:.1}× {}'s",
                    p.id,
                    bc.via_rps.median / pc.via_rps.median,
                    peer.name
                ));
            }
        }
        row(md, &peer.name, p)?;
    }
    if !ratios.is_empty() {
        writeln!(md, "\n{}.", ratios.join("; "))?;
    }
    Ok(())
}

/// "scenario N: added p50 X× the floor's, p99 Y×, CPU per request Z×", from the medians.
fn floor_ratios(b: &ScenarioReport, f: &ScenarioReport) -> Option<String> {
    let (bo, fo) = (b.open_loop.as_ref()?, f.open_loop.as_ref()?);
    let ratio = |x: f64, y: f64| {
        if y > 0.0 {
            format!("{:.2}×", x / y)
        } else {
            "—".to_owned()
        }
    };
    let (gateway_p50, floor_p50) = if b.stream {
        (&bo.ttfb_added_us.p50, &fo.ttfb_added_us.p50)
    } else {
        (&bo.added_us.p50, &fo.added_us.p50)
    };
    let mut line = format!(
        "scenario {}: BitRouter's added {} is {} the floor's, added p99 {}",
        b.id,
        if b.stream { "TTFB p50" } else { "p50" },
        ratio(gateway_p50.median, floor_p50.median),
        ratio(bo.added_us.p99.median, fo.added_us.p99.median)
    );
    if let (Some(bc), Some(fc)) = (&b.gateway_cpu_s_per_1k, &f.gateway_cpu_s_per_1k) {
        line.push_str(&format!(
            ", CPU per request {}",
            ratio(bc.median, fc.median)
        ));
    }
    Some(line)
}

fn summary_row(md: &mut String, s: &ScenarioReport) -> std::fmt::Result {
    let label = format!("{}. {}", s.id, s.name);
    if !s.measured() {
        return writeln!(
            md,
            "| {label} | {} | | | | | | | | |",
            s.reason.as_deref().unwrap_or("not measured")
        );
    }
    let dash = || "—".to_owned();
    let (rate, p50, p90, p99, p999, ttfb) = match (&s.open_loop, &s.held_streams) {
        (Some(o), _) => (
            format!("{:.0}/s", o.rate),
            added(&o.added_us.p50),
            added(&o.added_us.p90),
            added(&o.added_us.p99),
            added(&o.added_us.p999),
            if s.stream {
                added(&o.ttfb_added_us.p50)
            } else {
                dash()
            },
        ),
        (None, Some(h)) => (
            format!("{} streams held", h.streams),
            dash(),
            dash(),
            dash(),
            dash(),
            added(&h.ttfb_added_us.p50),
        ),
        _ => (dash(), dash(), dash(), dash(), dash(), dash()),
    };
    let ratio = s
        .closed_loop
        .as_ref()
        .map_or_else(dash, |c| format!("{:.0} %", c.ratio.median * 100.0));
    let cpu = |v: &Option<Spread>| v.as_ref().map_or_else(dash, |s| format!("{:.3}", s.median));
    writeln!(
        md,
        "| {label} | {rate} | {p50} | {p90} | {p99} | {p999} | {ttfb} | {ratio} | {} | {} |",
        cpu(&s.gateway_cpu_s_per_1k),
        cpu(&s.mock_cpu_s_per_1k)
    )
}

fn scenario_section(md: &mut String, s: &ScenarioReport) -> std::fmt::Result {
    writeln!(md, "\n### {}. {}\n\n{}\n", s.id, s.name, s.description)?;
    if let Some(o) = &s.open_loop {
        writeln!(
            md,
            "Open loop at {:.0} req/s, {} requests per phase (µs):\n",
            o.rate, o.requests_per_round
        )?;
        writeln!(md, "| | p50 | p90 | p99 | p99.9 |\n|---|---|---|---|---|")?;
        pct_row(md, "latency direct", &o.direct_us)?;
        pct_row(md, "latency via gateway", &o.via_us)?;
        pct_row(md, "**added latency**", &o.added_us)?;
        if s.stream {
            pct_row(md, "TTFB direct", &o.ttfb_direct_us)?;
            pct_row(md, "TTFB via gateway", &o.ttfb_via_us)?;
            pct_row(md, "**added TTFB**", &o.ttfb_added_us)?;
        }
        failures(md, o.failed_direct, o.failed_via)?;
    }
    if let Some(c) = &s.closed_loop {
        writeln!(
            md,
            "\nClosed loop, {} connections: direct {} req/s, via {} req/s, **via / direct {}**.",
            c.concurrency,
            spread0(&c.direct_rps),
            spread0(&c.via_rps),
            percent(&c.ratio)
        )?;
        failures(md, c.failed_direct, c.failed_via)?;
    }
    if let Some(h) = &s.held_streams {
        writeln!(
            md,
            "{} streams of ~{:.1} s each, opened at a constant rate over ~1 s. Most open at once \
             through the gateway: {}. **Gateway RSS with them open: {} MB.**\n",
            h.streams,
            h.stream_s,
            spread0(&h.max_open_via),
            spread(&h.rss_open_mb)
        )?;
        writeln!(md, "| | p50 | p90 | p99 | p99.9 |\n|---|---|---|---|---|")?;
        pct_row(md, "TTFB direct", &h.ttfb_direct_us)?;
        pct_row(md, "TTFB via gateway", &h.ttfb_via_us)?;
        pct_row(md, "**added TTFB**", &h.ttfb_added_us)?;
        failures(md, h.failed_direct, h.failed_via)?;
    }
    let mut extra = Vec::new();
    if let Some(v) = &s.gateway_cpu_s_per_1k {
        extra.push(format!(
            "gateway CPU {} s per 1,000 requests (open loop)",
            spread3(v)
        ));
    }
    if let Some(v) = &s.gateway_cpu_s_per_1k_saturated {
        extra.push(format!("{} s saturated", spread3(v)));
    }
    if let Some(v) = &s.mock_cpu_s_per_1k {
        extra.push(format!("mock {} s direct", spread3(v)));
    }
    if let Some(v) = s.gateway_rss_peak_mb {
        extra.push(format!("gateway RSS peak {} MB", num(v)));
    }
    if let Some(n) = s.plugin_calls_failed {
        extra.push(format!("plugin calls failed (gateway log): {n}"));
    }
    if !extra.is_empty() {
        writeln!(md, "\n{}.", extra.join("; "))?;
    }
    if !s.gateway_cpu_s_per_1k_by_thread.is_empty() {
        let threads: Vec<String> = s
            .gateway_cpu_s_per_1k_by_thread
            .iter()
            .filter(|(_, v)| v.median >= 0.0005)
            .map(|(name, v)| {
                let saturated = s
                    .gateway_cpu_s_per_1k_saturated_by_thread
                    .get(name)
                    .map_or_else(|| "—".to_owned(), |v| format!("{:.3}", v.median));
                format!("`{name}` {:.3} / {saturated}", v.median)
            })
            .collect();
        writeln!(
            md,
            "\nGateway CPU s per 1,000 requests by thread (open loop / saturated): {}.",
            threads.join(", ")
        )?;
    }
    Ok(())
}

fn pct_row(md: &mut String, label: &str, p: &PercentileSpread) -> std::fmt::Result {
    writeln!(
        md,
        "| {label} | {} | {} | {} | {} |",
        spread(&p.p50),
        spread(&p.p90),
        spread(&p.p99),
        spread(&p.p999)
    )
}

fn failures(md: &mut String, direct: u64, via: u64) -> std::fmt::Result {
    if direct + via > 0 {
        writeln!(
            md,
            "\n**Failures:** {direct} direct, {via} via the gateway (see report.json)."
        )?;
    }
    Ok(())
}

/// `median [min–max]`, or the median alone when there was one round.
fn spread(s: &Spread) -> String {
    spread_with(s, num)
}

fn spread0(s: &Spread) -> String {
    spread_with(s, |v| format!("{v:.0}"))
}

fn spread3(s: &Spread) -> String {
    spread_with(s, |v| format!("{v:.3}"))
}

fn spread_with(s: &Spread, f: impl Fn(f64) -> String) -> String {
    if s.samples.len() > 1 {
        format!("{} [{}–{}]", f(s.median), f(s.min), f(s.max))
    } else {
        f(s.median)
    }
}

fn percent(s: &Spread) -> String {
    spread_with(s, |v| format!("{:.0} %", v * 100.0))
}

fn added(s: &Spread) -> String {
    format!("{} µs", signed(s.median))
}

fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", num(v))
    } else {
        num(v)
    }
}

fn us(v: f64) -> String {
    num(v)
}

/// Three significant digits or so, without trailing noise.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
