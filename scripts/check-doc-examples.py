#!/usr/bin/env python3
"""Doc test: runs the examples of README.md and docs/*.md and fails when one does not work.

Usage: scripts/check-doc-examples.py [-v] [--keep] [--timeout SECONDS] [--bin-dir DIR] [FILE.md ...]
  Needs the debug binaries (`cargo build -p bitrouter -p bitrouter-mock`, or the test build
  .ci/run makes). Files default to README.md and docs/*.md. Exit 0 when every example that
  runs worked, 1 otherwise (each failure printed as FILE:LINE, the command and its output).
  Standard library only. tests/docs/selftest.sh checks that it fails when it should.

What runs. Every fenced block tagged sh, bash, shell, console or python, in file order:
  - a script (sh/bash/shell) runs in `bash` with `set -euo pipefail`: any failing command
    fails the block;
  - a transcript (console, or any shell block whose first line starts with `$ `): each
    `$ command` (lines ending in `\\` continue it) runs in `bash -o pipefail` and what it
    prints, stdout and stderr together, must equal the lines below it up to the next `$ `.
    Relaxed matching for what varies (keys, timestamps): an expected line that is just
    `...` matches any number of lines, and `...` inside a line matches any text. Trailing
    spaces and trailing blank lines are ignored; the exit status is not checked (the output
    says what happened; `guard scan` exits 2 when it would block);
  - python runs with `python3` from the repository's .venv when it exists (.ci/run creates it
    with tests/sdk/requirements.txt and tests/docs/requirements.txt).
  Other blocks (yaml, json, rust, plain) are not run. A block that fails stops the blocks
  after it in the same section; the other sections and files still run.

Where it runs. Everything is in one scratch directory, removed at the end (--keep keeps it):
  - HOME is a fresh directory per markdown file, so `bitrouter keygen`, `plugin pull` and
    the plugin compile cache write there; the environment is emptied except PATH, HOME,
    TMPDIR, LANG (C.UTF-8), TERM (dumb) and NO_COLOR.
  - PATH: shims, then the debug `bitrouter` and `mock-upstream`, then .venv/bin, then the
    caller's PATH. The shims: `cargo build …` prints that it is skipped and succeeds, because
    the binaries are prebuilt (CI builds them itself; the README's quick start builds the
    release binaries, which this check does not rebuild); any other `cargo` command fails,
    so a block that runs tests or builds must be marked skip. `curl` is the real curl with
    `--fail-with-body --show-error`, so an HTTP error answer fails the block.
  - Each section of a file (text under one heading) runs in its own empty directory, laid
    out like a clone's root for what the README's quick start uses: `examples/quickstart.yaml`
    (a copy) and `target/release/{bitrouter,mock-upstream}` (links to the debug binaries).
    Blocks of one section share their directory, in order.
  - Each block runs in its own process group with a time limit (--timeout, default 120 s);
    whatever it leaves running is killed when it ends. Background blocks, the registry and
    everything else started are killed at the end, on failure and on SIGINT/SIGTERM/SIGHUP.

Markers. HTML comments on the lines right before a fence (several may be stacked):
  <!-- doc-test: skip — REASON -->   not run; the reason is required and printed. Only for
        what cannot run offline or is CI's own job (a remote host, a real API key, an
        account placeholder, `cargo test`, toolchain installs).
  <!-- doc-test: background URL... -->   runs the block in the background for the rest of
        the file (a server in the foreground, like the quick start's gateway); the next block
        starts once every URL answers HTTP (any status). Each URL's port must be free first.
        The README's quick start uses it: the mock and the gateway from
        examples/quickstart.yaml on 127.0.0.1:9999 and 127.0.0.1:8787, which the blocks
        after it talk to.
  <!-- doc-test: registry HOST -->   starts Debian's `docker-registry` (once per run, on a
        free loopback port, its data in the scratch directory) and runs the block with HOST
        replaced by that 127.0.0.1:PORT, so push and pull examples that name an internal
        registry run against a local one (plain HTTP, as bitrouter uses for loopback).
  <!-- doc-test: setup: COMMANDS -->   hidden preparation run first in the same directory
        (e.g. copying a plugin the example treats as the reader's own); $DOC_TEST_REPO is the
        repository root.
  <!-- doc-test: file PATH -->   writes the block's text to PATH in the section's directory
        (a config or policy file a later block uses) instead of running it.
"""

import argparse
import difflib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_LANGS = {"sh", "bash", "shell", "console"}
RUN_LANGS = SCRIPT_LANGS | {"python", "py"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)")
HEADING = re.compile(r"^#{1,6}\s")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
MARKER_START = re.compile(r"^\s*<!--\s*doc-test\b")
OUTPUT_LIMIT = 200  # lines of a failing command's output printed


class Interrupted(Exception):
    pass


class Block:
    def __init__(self, path, line, lang, text, markers, section):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.markers, self.section = markers, section

    @property
    def where(self):
        return f"{shown(self.path)}:{self.line}"


def shown(path):
    """A path as messages print it: relative to the repository when inside it."""
    rel = os.path.relpath(path, REPO)
    return path if rel.startswith("..") else rel


def parse(path):
    """The fenced blocks of a markdown file with their markers and section numbers."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, errors = [], []
    pending = []  # (line number, marker text) right above the current line
    section = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            pending.append((i + 1, m.group(1)))
            i += 1
            continue
        if MARKER_START.match(line):
            errors.append(f"{shown(path)}:{i + 1}: malformed doc-test marker (want <!-- doc-test: ... --> on one line)")
        fence = FENCE.match(line)
        if fence:
            indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            body = []
            j = i + 1
            while j < len(lines):
                if lines[j].strip().startswith(ticks[0] * len(ticks)) and lines[j].strip().strip(ticks[0]) == "":
                    break
                raw = lines[j]
                body.append(raw[len(indent):] if raw.startswith(indent) else raw.lstrip())
                j += 1
            blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", [m for _, m in pending], section))
            pending = []
            i = j + 1
            continue
        for n, _ in pending:
            errors.append(f"{shown(path)}:{n}: doc-test marker not right before a fenced block")
        pending = []
        if HEADING.match(line):
            section += 1
        i += 1
    for n, _ in pending:
        errors.append(f"{shown(path)}:{n}: doc-test marker not right before a fenced block")
    return blocks, errors


def directives(block):
    """The block's markers as (kind, argument) pairs; raises ValueError for a bad one."""
    out = []
    for m in block.markers:
        kind, _, arg = m.partition(" ")
        kind = kind.rstrip(":")
        arg = arg.strip()
        if kind == "skip":
            reason = re.sub(r"^[\s:—–-]+", "", arg)
            if not reason:
                raise ValueError("doc-test: skip needs a reason (<!-- doc-test: skip — why -->)")
            out.append(("skip", reason))
        elif kind == "background":
            urls = arg.split()
            if not urls or not all(u.startswith("http://") for u in urls):
                raise ValueError("doc-test: background needs the http:// URLs that answer once it is up")
            out.append(("background", urls))
        elif kind == "registry":
            if not arg or " " in arg:
                raise ValueError("doc-test: registry needs one host name")
            out.append(("registry", arg))
        elif kind == "setup":
            if not arg:
                raise ValueError("doc-test: setup needs commands")
            out.append(("setup", arg))
        elif kind == "file":
            if not arg or arg.startswith("/") or ".." in arg.split("/"):
                raise ValueError("doc-test: file needs a relative path")
            out.append(("file", arg))
        else:
            raise ValueError(f"unknown doc-test marker {m!r} (skip, background, registry, setup, file)")
    return out


def transcript(text):
    """[(command, expected output lines)] of a `$ `-prompted block."""
    steps = []
    lines = text.rstrip("\n").split("\n")
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\") and k + 1 < len(lines):
                k += 1
                cmd = cmd + "\n" + re.sub(r"^> ", "", lines[k])
            steps.append((cmd, []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise ValueError("a transcript must start with a `$ ` command line")
        k += 1
    return steps


def normalize(lines):
    out = [l.rstrip() for l in lines]
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected, actual):
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*".join(re.escape(p) for p in line.split("...")) + r"\n"
    return re.fullmatch(pattern, "".join(l + "\n" for l in actual)) is not None


def tail(text, limit=OUTPUT_LIMIT):
    lines = text.rstrip("\n").split("\n")
    if len(lines) > limit:
        lines = [f"[... {len(lines) - limit} earlier lines]"] + lines[-limit:]
    return "\n".join("    | " + l for l in lines)


def port_of(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or 80


# No proxy from the caller's environment: the URLs are loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url):
    try:
        with OPENER.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def in_use(host, port):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def group_members(pgid):
    """The processes of a process group (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


def become_subreaper():
    """Orphans of the blocks (a server a block started with `&`) become this process's
    children instead of init's, so they can be reaped at once when their group is killed."""
    try:
        import ctypes

        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    def __init__(self, args):
        self.args = args
        self.scratch = tempfile.mkdtemp(prefix="doc-examples-")
        self.groups = []  # process groups still to kill at the end: (pgid, Popen, what)
        self.backgrounds = []  # (Popen, log path, block) of the current file
        self.registry = None  # (Popen, host:port)
        self.failures = []
        self.skipped = []
        self.ran = 0
        self.bins = os.path.join(self.scratch, "bin")
        self.shims = os.path.join(self.scratch, "shims")
        self.venv_bin = os.path.join(REPO, ".venv", "bin")

    # -- setup ---------------------------------------------------------------------------

    def prepare(self):
        debug = os.path.abspath(self.args.bin_dir)
        os.makedirs(self.bins)
        os.makedirs(self.shims)
        for name in ("bitrouter", "mock-upstream"):
            exe = os.path.join(debug, name)
            if not os.access(exe, os.X_OK):
                raise SystemExit(f"check-doc-examples: {exe} is missing: cargo build -p bitrouter -p bitrouter-mock")
            os.symlink(exe, os.path.join(self.bins, name))
        curl = shutil.which("curl")
        if not curl:
            sys.exit("check-doc-examples: curl is not installed")
        self.shim("cargo", r'''#!/bin/sh
# doc-test shim (scripts/check-doc-examples.py): the binaries are prebuilt.
if [ "$1" = build ]; then
  echo "doc-test: skipped \`cargo $*\`: target/release/ holds links to the prebuilt debug binaries" >&2
  exit 0
fi
echo "doc-test: \`cargo $*\` is not run by the doc test (CI builds and tests itself); mark the block <!-- doc-test: skip — why -->" >&2
exit 97
''')
        self.shim("curl", f'''#!/bin/sh
# doc-test shim (scripts/check-doc-examples.py): an HTTP error answer fails the block.
exec {shlex.quote(curl)} --fail-with-body --show-error "$@"
''')

    def shim(self, name, text):
        path = os.path.join(self.shims, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    def env(self, home):
        path = [self.shims, self.bins]
        if os.path.isdir(self.venv_bin):
            path.append(self.venv_bin)
        path.append(os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        tmp = os.path.join(home, "tmp")
        os.makedirs(tmp, exist_ok=True)
        return {
            "PATH": ":".join(path),
            "HOME": home,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "NO_COLOR": "1",
            "DOC_TEST_REPO": REPO,
        }

    def section_dir(self, file_dir, section):
        d = os.path.join(file_dir, f"section-{section}")
        if not os.path.isdir(d):
            os.makedirs(os.path.join(d, "examples"))
            shutil.copy(os.path.join(REPO, "examples", "quickstart.yaml"), os.path.join(d, "examples"))
            release = os.path.join(d, "target", "release")
            os.makedirs(release)
            for name in ("bitrouter", "mock-upstream"):
                os.symlink(os.path.join(self.bins, name), os.path.join(release, name))
        return d

    # -- processes -----------------------------------------------------------------------

    def spawn(self, argv, cwd, env, what, stdin=None, stdout=None):
        p = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.groups.append((p.pid, p, what))
        return p

    def kill(self, pgid, proc, grace=0.0):
        for sig in ((signal.SIGTERM, signal.SIGKILL) if grace else (signal.SIGKILL,)):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                break
            if sig == signal.SIGTERM:
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # Members whose parent died were handed to this process (a subreaper): reap them, and
        # wait until the group is gone.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for pid in group_members(pgid):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.02)
        self.groups = [g for g in self.groups if g[0] != pgid]

    def run_capture(self, argv, cwd, env, what, stdin_text=None):
        """(exit status or None on timeout, output) of a foreground command. It ends when its
        own process does; what it left running (its process group) is killed then."""
        with tempfile.TemporaryFile(dir=self.scratch) as out, tempfile.TemporaryFile(dir=self.scratch) as stdin:
            if stdin_text is not None:
                stdin.write(stdin_text.encode())
                stdin.seek(0)
            p = self.spawn(argv, cwd, env, what, stdin=stdin, stdout=out)
            try:
                status = p.wait(timeout=self.args.timeout)
            except subprocess.TimeoutExpired:
                status = None
            self.kill(p.pid, p)
            out.seek(0)
            return status, out.read().decode("utf-8", "replace")

    def start_registry(self):
        if self.registry:
            return self.registry[1]
        exe = shutil.which("docker-registry")
        if not exe:
            raise RuntimeError("docker-registry is not installed: apt-get install -y docker-registry (.ci/run does)")
        d = os.path.join(self.scratch, "registry")
        os.makedirs(d)
        addr = f"127.0.0.1:{free_port()}"
        config = os.path.join(d, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: {addr}\n")
        log = open(os.path.join(d, "log"), "wb")
        p = self.spawn([exe, "serve", config], d, {"PATH": os.environ.get("PATH", "")}, "docker-registry", stdout=log)
        self.registry = (p, addr)
        deadline = time.monotonic() + 20
        while not answers(f"http://{addr}/v2/"):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start on {addr}:\n" + tail(open(os.path.join(d, "log"), errors="replace").read()))
            time.sleep(0.05)
        return addr

    # -- blocks --------------------------------------------------------------------------

    def fail(self, block, what, command, output, extra=""):
        msg = [f"FAIL {block.where}: {what}", "  command:", "\n".join("    " + l for l in command.rstrip("\n").split("\n"))]
        if output is not None:
            msg += ["  output:", tail(output) if output.strip() else "    (none)"]
        if extra:
            msg.append(extra)
        for p, log, bg in self.backgrounds:
            state = "running" if p.poll() is None else f"exited with {p.returncode}"
            with open(log, errors="replace") as f:
                msg += [f"  background block {bg.where} ({state}), last lines of its output:", tail(f.read(), 12)]
        text = "\n".join(msg)
        print(text, flush=True)
        self.failures.append(text)

    def run_file(self, path):
        blocks, errors = parse(path)
        for e in errors:
            print("FAIL " + e, flush=True)
            self.failures.append(e)
        rel = shown(path).lstrip("/")
        file_dir = os.path.join(self.scratch, re.sub(r"[^A-Za-z0-9_.-]", "_", rel))
        home = os.path.join(file_dir, "home")
        os.makedirs(home)
        env = self.env(home)
        broken = set()  # sections where a block failed
        stopped = None  # a background block that failed: the blocks after it need it
        try:
            for block in blocks:
                try:
                    ds = directives(block)
                except ValueError as e:
                    print(f"FAIL {block.where}: {e}", flush=True)
                    self.failures.append(f"{block.where}: {e}")
                    continue
                kinds = dict(ds)
                if sum(1 for k, _ in ds if k == "setup") > 1:
                    kinds["setup"] = "\n".join(a for k, a in ds if k == "setup")
                if "skip" in kinds:
                    if block.lang in RUN_LANGS or "file" in kinds:
                        self.skipped.append((block, kinds["skip"]))
                        print(f"skip {block.where}: {kinds['skip']}", flush=True)
                    continue
                if block.lang not in RUN_LANGS and "file" not in kinds:
                    continue
                cwd = self.section_dir(file_dir, block.section)
                if stopped:
                    print(f"not run {block.where}: the background block {stopped} failed", flush=True)
                    continue
                if block.section in broken:
                    print(f"not run {block.where}: an earlier block of this section failed", flush=True)
                    continue
                if not self.run_block(block, kinds, cwd, env):
                    broken.add(block.section)
                    if "background" in kinds:
                        stopped = block.where
        finally:
            for p, _, _ in self.backgrounds:
                self.kill(p.pid, p, grace=5)
            self.backgrounds = []

    def run_block(self, block, kinds, cwd, env):
        text = block.text
        if "file" in kinds:
            target = os.path.join(cwd, kinds["file"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(text)
            print(f"file {block.where}: wrote {kinds['file']}", flush=True)
            return True
        if "registry" in kinds:
            try:
                addr = self.start_registry()
            except RuntimeError as e:
                self.fail(block, str(e), text, None)
                return False
            text = text.replace(kinds["registry"], addr)
        setup = kinds.get("setup", "")
        self.ran += 1
        started = time.monotonic()
        if block.lang in ("python", "py"):
            if "background" in kinds:
                self.fail(block, "background is for shell blocks", text, None)
                return False
            if setup:
                status, out = self.run_capture(["bash", "-euo", "pipefail", "-c", setup], cwd, env, "setup")
                if status != 0:
                    self.fail(block, "its setup failed", setup, out)
                    return False
            status, out = self.run_capture(["python3", "-"], cwd, env, block.where, stdin_text=text)
            self.show(out)
            ok = self.check_status(block, status, text, out)
            if not ok and "ModuleNotFoundError" in out:
                print("  (the examples' Python packages: python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt -r tests/docs/requirements.txt)", flush=True)
            return self.done(block, ok, started)
        first = next((l for l in text.split("\n") if l.strip()), "")
        if block.lang == "console" or first.startswith("$ "):
            return self.done(block, self.run_transcript(block, text, setup, cwd, env), started)
        script = ("set -euo pipefail\n" + (setup + "\n" if setup else "") + text)
        if "background" in kinds:
            return self.done(block, self.run_background(block, kinds["background"], script, text, cwd, env), started)
        status, out = self.run_capture(["bash", "-c", script, block.where], cwd, env, block.where)
        self.show(out)
        return self.done(block, self.check_status(block, status, text, out), started)

    def show(self, out):
        if self.args.verbose and out.strip():
            print(tail(out), flush=True)

    def done(self, block, ok, started):
        if ok:
            print(f"ok   {block.where} ({time.monotonic() - started:.1f} s)", flush=True)
        return ok

    def check_status(self, block, status, text, out):
        if status is None:
            self.fail(block, f"timed out after {self.args.timeout} s", text, out)
            return False
        if status != 0:
            self.fail(block, f"exit status {status}", text, out)
            return False
        return True

    def run_transcript(self, block, text, setup, cwd, env):
        try:
            steps = transcript(text)
        except ValueError as e:
            self.fail(block, str(e), text, None)
            return False
        if setup:
            status, out = self.run_capture(["bash", "-euo", "pipefail", "-c", setup], cwd, env, "setup")
            if status != 0:
                self.fail(block, "its setup failed", setup, out)
                return False
        for cmd, expected in steps:
            status, out = self.run_capture(["bash", "-o", "pipefail", "-c", cmd], cwd, env, block.where)
            self.show(out)
            if status is None:
                self.fail(block, f"timed out after {self.args.timeout} s", cmd, out)
                return False
            actual = normalize(out.split("\n"))
            want = normalize(expected)
            if not matches(want, actual):
                diff = "\n".join("    " + l for l in difflib.unified_diff(want, actual, "documented", "actual", lineterm=""))
                self.fail(block, f"output differs from the documented output (exit status {status})", cmd, out, "  diff:\n" + diff)
                return False
        return True

    def run_background(self, block, urls, script, text, cwd, env):
        for url in urls:
            host, port = port_of(url)
            if in_use(host, port):
                self.fail(block, f"{host}:{port} is already in use (another gateway or mock?); the example needs it free", text, None)
                return False
        log = os.path.join(cwd, f".background-{block.line}.log")
        with open(log, "wb") as f:
            p = self.spawn(["bash", "-c", script, block.where], cwd, env, block.where, stdout=f)
        self.backgrounds.append((p, log, block))
        deadline = time.monotonic() + self.args.timeout
        waiting = list(urls)
        while waiting:
            if p.poll() is not None:
                with open(log, errors="replace") as f:
                    out = f.read()
                self.backgrounds.remove((p, log, block))
                self.kill(p.pid, p)
                self.fail(block, f"a background block exited (status {p.returncode}) before {' '.join(waiting)} answered", text, out)
                return False
            if time.monotonic() > deadline:
                with open(log, errors="replace") as f:
                    out = f.read()
                self.fail(block, f"{' '.join(waiting)} did not answer within {self.args.timeout} s", text, out)
                return False
            if answers(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(0.05)
        return True

    def cleanup(self):
        for pgid, p, _ in list(self.groups):
            self.kill(pgid, p, grace=2)
        if self.args.keep:
            print(f"check-doc-examples: kept {self.scratch}", flush=True)
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description="Run the examples of README.md and docs/*.md.")
    ap.add_argument("files", nargs="*", help="markdown files (default: README.md docs/*.md)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every block's output")
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target", "debug"),
                    help="where bitrouter and mock-upstream are (default target/debug)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per block (default 120)")
    args = ap.parse_args()
    files = [os.path.abspath(f) for f in args.files] or [os.path.join(REPO, "README.md")] + sorted(
        os.path.join(REPO, "docs", f) for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md")
    )

    def interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    started = time.monotonic()
    become_subreaper()
    runner = Runner(args)
    try:
        runner.prepare()
        for f in files:
            runner.run_file(f)
    except Interrupted as e:
        print(f"check-doc-examples: interrupted ({e})", flush=True)
        return 130
    finally:
        # Stop the signal handlers first so cleanup itself cannot be interrupted half-way.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        runner.cleanup()
    print(
        f"check-doc-examples: {runner.ran} blocks run, {len(runner.skipped)} skipped by marker, "
        f"{len(runner.failures)} failed, {time.monotonic() - started:.1f} s",
        flush=True,
    )
    if runner.failures:
        print("check-doc-examples: FAILED:\n" + "\n".join("  " + f.split("\n")[0].removeprefix("FAIL ") for f in runner.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
