"""The container image, checked without a Docker engine: the Dockerfile (parsed here, instruction by
instruction), the hash-pinned dependency locks it installs, and the .dockerignore that shapes its
build context. Only files of this repository are read: nothing depends on what PyPI serves today."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from gateway.cli import parser as cli_parser
from gateway.config.schema import EventsConfig, ServerConfig

ROOT = Path(__file__).resolve().parents[2]
LOCK = "requirements.lock"  # the runtime dependencies, installed into the image's venv
BUILD_LOCK = "requirements-build.lock"  # what builds the gateway's own wheel (pyproject's [build-system])
CONFIG_PATH = "/etc/gateway/config.yaml"  # documented in README.md; the Helm chart mounts its ConfigMap there
IMAGE_UID = 10001  # the Helm chart's runAsUser / runAsGroup
PYTHON_MINOR = "3.11"  # the CPython the project runs and is locked for
TARGET = {"python_version": PYTHON_MINOR, "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
TEST_ONLY = {"pytest", "mypy", "ruff", "respx", "coverage", "pytest-asyncio", "pytest-cov"}
BUILD_TOOLS = re.compile(r"^(gcc(-\d+)?|g\+\+(-\d+)?|cpp|clang|make|cmake|build-essential|.+-dev|.+-devel)$")
PIP = re.compile(r"^(pip|pip3|pip3\.\d+|.*/pip3?)$")
KEYWORDS = {"RUN", "COPY", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL",
            "STOPSIGNAL", "SHELL"}  # fmt: skip


# --- the Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined

    def options(self) -> tuple[dict[str, str], str]:
        """Leading `--name=value` options (FROM --platform, COPY --from/--chown, HEALTHCHECK --interval)
        and the rest."""
        found: dict[str, str] = {}
        rest = self.args
        while match := re.match(r"--([a-z-]+)(?:=(\S*))?\s*", rest):
            found[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return found, rest

    def exec_form(self, args: str | None = None) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for the shell form."""
        text = (self.args if args is None else args).strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(item, str) for item in value), self
        return value


@dataclass(frozen=True)
class Stage:
    index: int
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def position(self, ins: Instruction) -> int:
        return self.instructions.index(ins)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their first line number; `\\` continues a line, and comment or blank lines inside
    a continuation are skipped, as Docker does. Parser directives (`# escape=`) are not supported."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(part for part in parts if part).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return instructions


def split_stages(instructions: list[Instruction]) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            _, rest = ins.options()
            words = rest.split()
            assert len(words) in (1, 3) and (len(words) == 1 or words[1].lower() == "as"), ins
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            current = []
            stages.append(Stage(len(stages), image, words[2] if len(words) == 3 else None, ()))
        elif not stages:
            assert ins.keyword == "ARG", f"line {ins.line}: only ARG may come before the first FROM"
            name, _, default = ins.args.partition("=")
            global_args[name.strip()] = default.strip().strip("\"'")
            continue
        else:
            current.append(ins)
        stages[-1] = Stage(stages[-1].index, stages[-1].image, stages[-1].name, tuple(current))
    return stages


@cache
def stages() -> tuple[Stage, ...]:
    return tuple(split_stages(parse_dockerfile((ROOT / "Dockerfile").read_text())))


def final_stage() -> Stage:
    return stages()[-1]


def commands(ins: Instruction) -> Iterator[list[str]]:
    """The simple commands of a shell-form RUN, as words (split at &&, ||, ;, | outside quotes)."""
    lexer = shlex.shlex(ins.args, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def pip_commands(stage: Stage) -> Iterator[tuple[Instruction, list[str]]]:
    """(RUN, the words after `pip`) for every pip invocation of the stage (pip, pip3, python -m pip)."""
    for ins in stage.all("RUN"):
        for words in commands(ins):
            for i, word in enumerate(words):
                if PIP.match(word):
                    yield ins, words[i + 1 :]
                    break
                if word == "-m" and i + 1 < len(words) and words[i + 1] == "pip":
                    yield ins, words[i + 2 :]
                    break


def pip_subcommand(args: list[str]) -> tuple[str, list[str]]:
    """`pip [--python X] install ...` -> ("install", [...])."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if "=" in args[i] else 2  # a global option with its value (--python PATH)
    return (args[i], args[i + 1 :]) if i < len(args) else ("", [])


def requirement_files(args: list[str]) -> list[str]:
    files = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in ("-r", "--requirement")]
    return files + [arg.split("=", 1)[1] for arg in args if arg.startswith("--requirement=")]


def build_stage() -> Stage:
    """The stage the final stage copies its venv from."""
    names = {stage.name: stage for stage in stages()[:-1] if stage.name}
    sources = [ins.options()[0].get("from") for ins in final_stage().all("COPY")]
    found = [names[source] for source in sources if source in names]
    assert found, "the final stage copies nothing from an earlier (named) stage"
    return found[0]


def exposed_port() -> int:
    ports = [word.split("/")[0] for ins in final_stage().all("EXPOSE") for word in ins.args.split()]
    assert len(ports) == 1, f"expected one EXPOSEd port, found {ports}"
    return int(ports[0])


def entry_argv() -> list[str]:
    """ENTRYPOINT + CMD of the final stage (the last of each), both in exec form."""
    argv: list[str] = []
    for keyword in ("ENTRYPOINT", "CMD"):
        found = final_stage().all(keyword)
        if found:
            form = found[-1].exec_form()
            assert form is not None, f"{keyword} must be in exec form: the gateway must be PID 1 to get SIGTERM"
            argv += form
    return argv


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        words = shlex.split(ins.args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def option_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def image_reference(image: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of `name[:tag][@digest]` (a registry's host:port is not a tag)."""
    name, _, digest = image.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest or None


def test_the_dockerfile_parses_into_stages() -> None:
    found = stages()
    assert len(found) >= 2, "a build stage and a final stage"
    keywords = {ins.keyword for stage in found for ins in stage.instructions}
    assert keywords <= KEYWORDS, keywords - KEYWORDS  # COPY only: ADD would also fetch URLs and unpack archives


def test_every_from_is_pinned_to_an_exact_version() -> None:
    earlier: set[str] = set()
    for stage in stages():
        if stage.image not in earlier:
            _, tag, digest = image_reference(stage.image)
            assert "$" not in stage.image, f"unresolved variable in FROM {stage.image}"
            assert tag is not None, f"FROM {stage.image}: no tag (that is :latest)"
            assert tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9]+([.-][a-z0-9]+)*)?", tag), (
                f"FROM {stage.image}: pin an exact version tag like 3.11.17-slim-bookworm"
            )
            assert digest is None or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), stage.image
        if stage.name:
            earlier.add(stage.name)


def test_every_stage_is_the_same_cpython_of_the_project() -> None:
    """The venv is built in one stage and run in another: same base, so same /usr/local/bin/python."""
    images = {stage.image for stage in stages()}
    assert len(images) == 1, images
    name, tag, _ = image_reference(images.pop())
    assert name.rsplit("/", 1)[-1] == "python" and tag is not None and "slim" in tag, (name, tag)
    version = tag.split("-")[0]
    assert version.startswith(PYTHON_MINOR + "."), version
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires_python).contains(version), (requires_python, version)


def test_final_stage_runs_as_a_fixed_non_root_user() -> None:
    final = final_stage()
    users = final.all("USER")
    assert users, "the final stage has no USER: it would run as root"
    user, _, group = users[-1].args.partition(":")
    assert user not in ("root", "0") and group not in ("root", "0")
    # numeric, so that Kubernetes' runAsNonRoot can verify it, and the Helm chart's runAsUser
    assert user == str(IMAGE_UID) and group in ("", str(IMAGE_UID)), users[-1]
    for keyword in ("ENTRYPOINT", "CMD"):
        for ins in final.all(keyword):
            assert final.position(users[-1]) < final.position(ins), f"USER must come before {keyword}"
    created = [ins for ins in final.all("RUN") if "useradd" in ins.args or "adduser" in ins.args]
    assert any(re.search(rf"(--uid|-u)[= ]{IMAGE_UID}\b", ins.args) for ins in created), (
        "create the user with its uid, so the process has a name in /etc/passwd"
    )


def test_final_stage_has_no_build_tools_and_only_copies_the_venv() -> None:
    final = final_stage()
    for ins in final.all("RUN"):
        for words in commands(ins):
            installs = (words[:1] in (["apt-get"], ["apt"]) and "install" in words) or words[:2] == ["apk", "add"]
            if installs:
                packages = [word for word in words[2:] if not word.startswith("-") and word != "install"]
                assert not [p for p in packages if BUILD_TOOLS.match(p)], f"line {ins.line}: {words}"
    assert list(pip_commands(final)) == [], "the final stage must not run pip: its packages come in the venv"
    copies = final.all("COPY")
    assert copies and all(ins.options()[0].get("from") for ins in copies), (
        "the final stage copies only from the build stage (the venv), nothing from the build context"
    )
    venv = "/opt/venv"
    assert any(ins.options()[1].split() == [venv, venv] for ins in copies), f"COPY --from=... {venv} {venv}"
    assert env_of(final).get("PATH", "").startswith(f"{venv}/bin:"), "PATH must start with the venv"
    creates_venv = any("venv" in words and venv in words for ins in build_stage().all("RUN") for words in commands(ins))
    assert creates_venv, f"the build stage creates {venv} with python -m venv"


def test_no_test_extra_anywhere() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "[test]" not in text and "[dev]" not in text
    assert not re.search(r"\b(pytest|mypy|ruff)\b", " ".join(ins.args for ins in final_stage().instructions))


def test_build_stage_installs_the_locks_with_hashes_and_no_resolution() -> None:
    stage = build_stage()
    installs: list[tuple[Instruction, list[str]]] = []
    for ins, pip_args in pip_commands(stage):
        verb, args = pip_subcommand(pip_args)
        if verb in ("install", "wheel"):
            installs.append((ins, args))
    assert installs, "the build stage runs no pip install"
    for ins, args in installs:
        assert "--no-deps" in args, f"line {ins.line}: every pip install/wheel uses --no-deps (the lock is the set)"
    locked = {name: (ins, args) for ins, args in installs for name in requirement_files(args)}
    assert set(locked) == {LOCK, BUILD_LOCK}, locked.keys()
    copied = {word for ins in stage.all("COPY") for word in ins.options()[1].split()[:-1]}
    for name, (ins, args) in locked.items():
        assert "--require-hashes" in args, f"line {ins.line}: {name} is installed without --require-hashes"
        assert "--only-binary=:all:" in args, f"line {ins.line}: wheels only, so no compiler is needed"
        assert name in copied, f"{name} is not COPY'd into the build stage"
        copy = next(c for c in stage.all("COPY") if name in c.args.split())
        assert stage.position(copy) < stage.position(ins), f"{name} is COPY'd after it is installed"


def test_entrypoint_serves_the_documented_config() -> None:
    argv = entry_argv()
    assert argv[:2] == ["gateway", "serve"], argv
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "gateway" in scripts, "the entry point is the project's console script"
    assert option_value(argv, "--config") == CONFIG_PATH
    args = cli_parser().parse_args(argv[1:])  # the flags exist (exits on an unknown one)
    assert args.config == CONFIG_PATH
    assert args.host in (None, "0.0.0.0"), "in a container the gateway must listen on every interface"
    assert args.port in (None, exposed_port()), "--port differs from EXPOSE"
    assert CONFIG_PATH in (ROOT / "README.md").read_text(), "README.md documents where the config is mounted"


def test_expose_is_the_default_port() -> None:
    assert exposed_port() == ServerConfig.model_fields["port"].default


def test_final_stage_environment_and_writable_workdir() -> None:
    final = final_stage()
    env = env_of(final)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1" and env.get("PYTHONUNBUFFERED") == "1", env
    workdirs = final.all("WORKDIR")
    assert workdirs, "the final stage needs a WORKDIR for the events' spool and SQLite file"
    workdir = workdirs[-1].args
    assert workdir.startswith("/") and workdir not in ("/", "/root", "/tmp"), workdir
    # the relative defaults of events.sqlite_path and events.spool_dir land in the working directory
    events = EventsConfig()
    assert not Path(events.sqlite_path).is_absolute() and not Path(events.spool_dir).is_absolute()
    chowned = [
        ins
        for ins in final.all("RUN")
        for words in commands(ins)
        if words[:1] == ["chown"] and any(w.split(":")[0] == str(IMAGE_UID) for w in words) and workdir in words
    ]
    assert chowned, f"{workdir} must be chown'd to {IMAGE_UID} in the final stage"
    user = final.all("USER")[-1]
    assert all(final.position(ins) < final.position(user) for ins in chowned)


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_healthcheck_probes_healthz_on_the_exposed_port() -> None:
    checks = final_stage().all("HEALTHCHECK")
    assert len(checks) == 1, "one HEALTHCHECK"
    _, rest = checks[0].options()
    kind, _, command = rest.partition(" ")
    assert kind.upper() == "CMD", rest
    argv = checks[0].exec_form(command) or ["/bin/sh", "-c", command]
    assert not {"curl", "wget"} & {Path(word).name for word in argv}, "slim images have neither curl nor wget"
    urls = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\"\s]*)", " ".join(argv))
    assert urls and all(path == "/healthz" for _, path in urls), urls
    assert {int(port) for port, _ in urls} == {exposed_port()}
    assert argv[0] == "python" and argv[1] == "-c", argv

    # run the probe itself against a stand-in /healthz: 0 when healthy, non-zero otherwise
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = argv[2].replace(f":{exposed_port()}/", f":{server.server_address[1]}/")
        for status, healthy in ((200, True), (503, False)):
            Health.status = status
            result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
            assert (result.returncode == 0) == healthy, (status, result.stderr[-500:])
    finally:
        server.shutdown()
        server.server_close()


# --- the build context ---------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regex over slash-separated paths."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body[0] in "^!" else body) + "]")
            i = end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@cache
def dockerignore() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if negated else line).lstrip("/")
        rules.append((negated, glob_regex(pattern)))
    return tuple(rules)


def ignored(path: str) -> bool:
    """Whether the build context leaves `path` out: the last rule matching it or a parent directory wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for negated, regex in dockerignore():
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


def test_dockerignore_matcher() -> None:
    assert glob_regex("**/*.pyc").match("a/b/c.pyc") and glob_regex("**/*.pyc").match("c.pyc")
    assert glob_regex("*.log").match("x.log") and not glob_regex("*.log").match("a/x.log")
    assert glob_regex("*.py[cod]").match("a.pyo") and not glob_regex("*.py[cod]").match("a.py")


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "tests/deploy/test_dockerfile.py",
        "bench/README.md",
        "spool/journal-1-2-3.jsonl",
        "gateway-usage.sqlite",
        "gateway-usage.sqlite-wal",
        "gateway/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        "llm_gateway.egg-info/PKG-INFO",
        "config.yaml",
        ".env",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path), f"{path} would be sent to the Docker daemon"


def context_sources() -> list[tuple[Instruction, str]]:
    """Every (COPY, source) taken from the build context (not --from another stage)."""
    found: list[tuple[Instruction, str]] = []
    for stage in stages():
        for ins in stage.all("COPY"):
            options, rest = ins.options()
            if "from" in options:
                continue
            words = ins.exec_form(rest) or rest.split()
            found += [(ins, posixpath.normpath(source).lstrip("/")) for source in words[:-1]]
    return found


def test_every_copied_file_exists_and_is_in_the_context() -> None:
    sources = context_sources()
    assert sources
    for ins, source in sources:
        assert not set("*?[") & set(source), f"line {ins.line}: name {source} exactly"
        path = ROOT / source
        assert path.exists(), f"line {ins.line}: COPY {source}: no such file in the repository"
        assert not ignored(source), f"line {ins.line}: COPY {source}: excluded by .dockerignore"
        if path.is_dir():
            for file in path.rglob("*.py"):
                relative = file.relative_to(ROOT).as_posix()
                assert "__pycache__" in relative or not ignored(relative), f"{relative} excluded by .dockerignore"


def test_every_package_of_the_project_is_copied() -> None:
    """A new top-level package in pyproject's packages.find must reach the image too."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {source.split("/")[0] for _, source in context_sources()}
    assert "pyproject.toml" in copied
    for pattern in includes:
        assert pattern.rstrip("*").rstrip(".") in copied, f"package {pattern} is not COPY'd into the build stage"


# --- the locks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    hashes: tuple[str, ...]
    text: str


def parse_lock(name: str) -> tuple[list[str], list[Pin]]:
    """The header comment lines and the pins of a requirements file made with --generate-hashes."""
    header: list[str] = []
    entries: list[str] = []
    parts: list[str] = []
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            if not entries and line.startswith("#"):
                header.append(line)
            continue
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        entries.append(" ".join([*parts, line]))
        parts = []
    assert not parts, f"{name} ends inside a line continuation"
    pins: list[Pin] = []
    for entry in entries:
        requirement_text, *options = re.split(r"\s+(?=--)", entry)
        assert options, f"{name}: {entry!r} has no --hash"
        hashes = []
        for option in options:
            match = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})", option)
            assert match, f"{name}: {requirement_text}: {option!r} is not --hash=sha256:<64 hex>"
            hashes.append(match.group(1))
        requirement = Requirement(requirement_text)
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
            f"{name}: {requirement_text!r} does not pin name==version"
        )
        assert not requirement.url and not requirement.extras, requirement_text
        pins.append(Pin(canonicalize_name(requirement.name), Version(specs[0].version), tuple(hashes), entry))
    return header, pins


@cache
def lock(name: str) -> tuple[tuple[str, ...], dict[str, Pin]]:
    header, pins = parse_lock(name)
    by_name = {pin.name: pin for pin in pins}
    assert len(by_name) == len(pins), f"{name} pins a package twice"
    return tuple(header), by_name


@pytest.mark.parametrize("name", [LOCK, BUILD_LOCK])
def test_lock_pins_every_package_with_hashes(name: str) -> None:
    _, pins = lock(name)
    assert pins
    for pin in pins.values():
        assert pin.hashes and len(set(pin.hashes)) == len(pin.hashes), pin.text


@pytest.mark.parametrize(
    ("name", "source"),
    [(LOCK, "pyproject.toml"), (BUILD_LOCK, "printf 'setuptools>=68\\n' | uv pip compile")],
)
def test_lock_header_says_how_to_regenerate_it(name: str, source: str) -> None:
    header = " ".join(lock(name)[0])
    assert "uv pip compile" in header and source in header, header
    for option in (
        "--generate-hashes",
        f"--python-version {PYTHON_MINOR}",
        "--python-platform",
        f"--output-file {name}",
    ):
        assert option in header, f"{name}: the regeneration command lacks {option}"


def runtime_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    return [req for req in requirements if req.marker is None or req.marker.evaluate(TARGET)]


def test_lock_satisfies_every_runtime_requirement() -> None:
    _, pins = lock(LOCK)
    requirements = runtime_requirements()
    assert requirements
    for requirement in requirements:
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} (pyproject.toml) is not in {LOCK}: regenerate it"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{LOCK} pins {pin.name}=={pin.version}, outside pyproject.toml's {requirement}: regenerate it"
        )


def test_lock_holds_no_test_or_build_only_packages() -> None:
    _, pins = lock(LOCK)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {canonicalize_name(req.name) for req in runtime_requirements()}
    test_extra = {
        canonicalize_name(Requirement(text).name) for text in pyproject["project"]["optional-dependencies"]["test"]
    }
    forbidden = (
        (test_extra - runtime)
        | TEST_ONLY
        | {"pip", "setuptools", "wheel", canonicalize_name(pyproject["project"]["name"])}
    )
    assert not forbidden & set(pins), sorted(forbidden & set(pins))


def test_build_lock_satisfies_the_build_system() -> None:
    _, pins = lock(BUILD_LOCK)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for text in requires:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None and requirement.specifier.contains(pin.version), (text, pin)
