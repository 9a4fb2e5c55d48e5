"""README.md is a tutorial whose every example is run: these tests keep it honest.

How the README's examples are written, so that they can be parsed (keep to it when you
edit the README):

* An **example** is a ```bash block that holds one `curl` command to http://localhost:5000,
  followed at once by a ```json block: the response body it prints. The bash block starts
  with comment lines: `# status: <code>` (required: the HTTP status of the answer) and
  `# varies: <key>, <key>` (optional: keys whose value changes from run to run, such as
  created_at; they are checked to be present, not compared). A key is a dotted path into
  the JSON; `*` stands for every item of a list, as in `predictions.*.created_at`.
* A **server block** is a ```bash block with a line `make run` (optionally preceded by
  assignments, as in `ADMIN_TOKEN=change-me make run`) or `python tutorial/<step>.py`. The
  examples after it are sent to that server, as a reader would: `make run` examples run here
  against a live gunicorn (tests/live_server.py) on one fresh SQLite database, in README
  order; tutorial examples run in tests/test_tutorial.py. The README speaks of the
  tutorial's model: `make run` serves examples/titanic here (unless the block sets
  MODEL_DIR), whatever model sits at the repository root.
* The response matches when it has the same status, the same keys and the same values;
  fractions may differ in the last digits (a relative 1e-9: the README's figures were
  computed on another machine, see conftest.same_probability). The JSON shown may be
  pretty-printed.
* Each example is run with curl through bash when both exist (the command exactly as
  written, with the URL of the test server and `-w` to read the status), else it is parsed
  and sent with urllib.
* Every ```python block names, on its first line, the file it shows: `# tutorial/<file>.py`
  (the block is the whole file, byte for byte: tests/test_tutorial.py) or
  `# app.py (excerpt)` or `# serving.py (excerpt)` (the rest of the block is a verbatim
  part of that file).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import pytest
from conftest import ROOT, TITANIC, LiveServer, same_probability, service
from repository_files import folder_files, git_files, repository_files

from model_service import artifacts

README = ROOT / "README.md"
LOCAL_URL = "http://localhost:5000"


# ---------------------------------------------------------------------------------------
# Reading the README
# ---------------------------------------------------------------------------------------


@dataclass
class Block:
    language: str
    text: str  # the lines between the fences, indentation of the fence removed
    line: int  # line number of the opening fence


@dataclass
class Example:
    server: tuple  # ("app", {env}) or ("tutorial", "tutorial/stepN.py")
    command: str
    status: int
    varies: list
    expected: object
    line: int


@dataclass
class Readme:
    blocks: list
    examples: list = field(default_factory=list)


FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


def read_blocks(text):
    blocks, lines, number = [], text.split("\n"), 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if not opening:
            number += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        body, number = [], number + 1
        while not re.match(rf"^{re.escape(indent)}```\s*$", lines[number]):
            body.append(lines[number].removeprefix(indent))
            number += 1
        blocks.append(Block(language, "\n".join(body) + "\n", number - len(body)))
        number += 1
    return blocks


SERVER_LINE = re.compile(r"^((?:\w+=\S+\s+)*)make run\b|^python (tutorial/\S+\.py)$")


def server_in(block):
    """The server a bash block starts, if it starts one."""
    for line in block.text.splitlines():
        match = SERVER_LINE.match(line.strip())
        if match and match.group(2):
            return ("tutorial", match.group(2))
        if match:
            return ("app", dict(item.split("=", 1) for item in match.group(1).split()))
    return None


def parse_readme(text=None):
    readme = Readme(read_blocks(README.read_text() if text is None else text))
    server = None
    for index, block in enumerate(readme.blocks):
        if block.language != "bash":
            continue
        server = server_in(block) or server
        if "curl" not in block.text or LOCAL_URL not in block.text:
            continue
        comments = [line for line in block.text.splitlines() if line.startswith("#")]
        commands = [line for line in block.text.splitlines() if line and line[0] != "#"]
        status = [c.split(":", 1)[1] for c in comments if c.startswith("# status:")]
        varies = [c.split(":", 1)[1] for c in comments if c.startswith("# varies:")]
        where = f"README.md line {block.line}"
        assert len(commands) == 1, f"{where}: an example holds exactly one command"
        assert len(status) == 1, f"{where}: an example needs a '# status: <code>' line"
        assert server, f"{where}: no server block (make run ...) before this example"
        response = readme.blocks[index + 1] if index + 1 < len(readme.blocks) else None
        assert response and response.language == "json", f"{where}: no ```json block after it"
        readme.examples.append(
            Example(
                server=server,
                command=commands[0],
                status=int(status[0]),
                varies=[key.strip() for key in ",".join(varies).split(",") if key.strip()],
                expected=json.loads(response.text),
                line=block.line,
            )
        )
    return readme


# ---------------------------------------------------------------------------------------
# Running an example
# ---------------------------------------------------------------------------------------


def parse_curl(command):
    """A curl command line -> (method, url, headers, body, producer of the body or None)."""
    producer = None
    if " | curl " in command:
        producer, command = command.split(" | ", 1)
    words = shlex.split(command)
    assert words[0] == "curl", command
    method, url, headers, body, rest = None, None, {}, None, iter(words[1:])
    for word in rest:
        if word == "-s":
            continue
        elif word == "-X":
            method = next(rest)
        elif word == "-H":
            name, value = next(rest).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data-binary"):
            body = next(rest)
        elif word.startswith("http"):
            url = word
        else:
            raise AssertionError(f"curl option {word!r} is not understood: {command}")
    method = method or ("POST" if body is not None else "GET")
    return method, url, headers, body, producer


def run_with_urllib(command, base_url):
    method, url, headers, body, producer = parse_curl(command)
    data = None if body is None else body.encode()
    if producer is not None:
        assert body == "@-", command
        words = shlex.split(producer)
        words[0] = sys.executable if words[0] in ("python", "python3") else words[0]
        data = subprocess.run(words, capture_output=True, check=True, timeout=30).stdout
    request = urllib.request.Request(
        url.replace(LOCAL_URL, base_url), data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def run_with_curl(command, base_url):
    """The command as a reader runs it, in bash, with the status appended by -w."""
    environment = dict(os.environ)
    # `python3` in an example means the Python that runs the tests.
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    script = command.replace(LOCAL_URL, base_url) + " -w '\\n%{http_code}'"
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=environment
    )
    body, _, status = result.stdout.rpartition("\n")
    assert status.isdigit(), f"{command}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return int(status), body


def run_example(example, base_url):
    if shutil.which("curl") and shutil.which("bash"):
        return run_with_curl(example.command, base_url)
    return run_with_urllib(example.command, base_url)


def same_json(actual, expected):
    """Equal JSON values, recursively; fractions equal up to the last digits, since the
    README's were computed on another machine (conftest.same_probability)."""
    if isinstance(actual, float) or isinstance(expected, float):
        numbers = [value for value in (actual, expected) if isinstance(value, int | float)]
        return len(numbers) == 2 and bool not in map(type, numbers) and same_probability(*numbers)
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same_json(actual[key], expected[key]) for key in actual
        )
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same_json, actual, expected))
    return actual == expected


def pop_path(value, parts, where):
    """Remove the key at a dotted path (with * for every list item); fail if it is missing."""
    head, rest = parts[0], parts[1:]
    if head == "*":
        assert isinstance(value, list), f"{where}: expected a list"
        for item in value:
            pop_path(item, rest, where)
        return
    assert isinstance(value, dict) and head in value, f"{where}: key {head!r} is missing"
    if rest:
        pop_path(value[head], rest, where)
    else:
        del value[head]


def mismatch(example, status, body):
    """A description of how the real answer differs from the README's, or None."""
    where = f"README.md line {example.line}: {example.command}"
    try:
        actual = json.loads(body)
    except ValueError:
        return f"{where}\n  answered {status}, not JSON: {body[:300]}"
    expected = json.loads(json.dumps(example.expected))  # a copy
    for key in example.varies:
        pop_path(actual, key.split("."), f"{where} (answer)")
        pop_path(expected, key.split("."), f"{where} (README)")
    if status != example.status or not same_json(actual, expected):
        shown = json.dumps(example.expected, indent=2)
        return f"{where}\n  README: {example.status} {shown}\n  real:   {status} {body}"
    return None


def check_examples(examples, base_url):
    failures = [mismatch(e, *run_example(e, base_url)) for e in examples]
    return [failure for failure in failures if failure]


# ---------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------


def test_the_readme_has_examples_for_every_part():
    readme = parse_readme()
    commands = " ".join(e.command for e in readme.examples if e.server[0] == "app")
    for path in ["/predict", "/update", "/health", "/list-db-contents"]:
        assert f"{LOCAL_URL}{path}" in commands
    statuses = {e.status for e in readme.examples}
    assert {200, 400, 404, 405, 409, 413, 422} <= statuses
    steps = {e.server[1] for e in readme.examples if e.server[0] == "tutorial"}
    assert steps == {str(p.relative_to(ROOT)) for p in (ROOT / "tutorial").glob("step*.py")}


def test_every_example_can_be_sent_without_curl_too():
    """The urllib fallback understands every command (it is what runs without curl)."""
    for example in parse_readme().examples:
        method, url, _, body, _ = parse_curl(example.command)
        assert url.startswith(LOCAL_URL) and method in ("GET", "POST"), example.command
        if body not in (None, "@-") and example.status != 400:
            json.loads(body)  # every body shown is JSON, but the one that shows a 400


def test_the_parser_rejects_an_example_without_its_response():
    text = (
        "```bash\nmake run\n```\n\n```bash\n# status: 200\ncurl -s " + LOCAL_URL + "/health\n```\n"
    )
    with pytest.raises(AssertionError, match="no ```json block"):
        parse_readme(text)
    with pytest.raises(AssertionError, match="status"):
        parse_readme(text.replace("# status: 200\n", "") + "\n```json\n{}\n```\n")


def test_answers_may_differ_from_the_readme_in_the_last_digits_only():
    shown = {"proba": 0.7674474288814152, "ids": [1, 2], "ok": True}
    elsewhere = 0.7674474288814152 * (1 + 1e-11)  # another processor's rounding
    assert same_json({"proba": elsewhere, "ids": [1, 2], "ok": True}, shown)
    assert same_json({"proba": 0.7674474288814152, "ids": [1.0, 2], "ok": True}, shown)
    for wrong in [
        {"proba": 0.76744743, "ids": [1, 2], "ok": True},  # rounded: another answer
        {"proba": elsewhere, "ids": [1, 2]},
        {"proba": elsewhere, "ids": [1, 2, 3], "ok": True},
        {"proba": elsewhere, "ids": [1, 2], "ok": 1.0},
        {"proba": str(elsewhere), "ids": [1, 2], "ok": True},
    ]:
        assert not same_json(wrong, shown), wrong


@pytest.mark.slow
def test_every_curl_example_answers_what_the_readme_shows(tmp_path):
    """All `make run` examples, in README order, on one fresh SQLite database."""
    database_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    examples = [e for e in parse_readme().examples if e.server[0] == "app"]
    failures, server, environment = [], None, None
    try:
        for example in examples:
            if server is None or example.server[1] != environment:
                if server is not None:
                    server.stop()
                environment = example.server[1]
                env = {key: value for key, value in environment.items() if key != "PORT"}
                env = {"MODEL_DIR": str(TITANIC), **env}  # the README's model, not the root's
                server = LiveServer(database_url, workers=2, env=env).wait_until_ready()
            failures += check_examples([example], server.url)
    finally:
        if server is not None:
            server.stop()
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------------------
# Configuration, routes, make targets, file tree, troubleshooting
# ---------------------------------------------------------------------------------------


def section(title_start):
    """The text of the README section whose '## ' title starts with title_start."""
    text = README.read_text()
    start = text.index(f"\n## {title_start}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


ENVIRONMENT_READS = [
    r"os\.environ\.get\(\s*['\"](\w+)['\"]",
    r"os\.environ\[\s*['\"](\w+)['\"]",
    r"os\.getenv\(\s*['\"](\w+)['\"]",
    r"_from_environment\(\s*['\"](\w+)['\"]",  # app.py's number_from_environment("NAME", ...)
]


def environment_variables_read_by_the_code():
    names = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ("tests", ".venv") or parts[0].startswith("."):
            continue  # the tests' own variables (TEST_DATABASE_URL) are not configuration
        for pattern in ENVIRONMENT_READS:
            names.update(re.findall(pattern, path.read_text()))
    return names


def configuration_table():
    """{variable: default} from the table of the Configuration section."""
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", section("8. Configuration"), re.MULTILINE)
    return dict(rows)


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    read = environment_variables_read_by_the_code()
    assert {"DATABASE_URL", "PORT", "MAX_REQUEST_BYTES"} <= read  # the scan itself works
    missing = read - set(configuration_table())
    assert not missing, f"add these to the README's configuration table: {sorted(missing)}"


def test_the_configuration_table_agrees_with_env_example():
    table = configuration_table()
    # NAME=value lines, commented out or not (a commented one documents its default).
    example = dict(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    )
    assert set(example) == set(table)
    for name, default in example.items():
        if default:
            assert f"`{default}`" in table[name], f"{name}: .env.example says {default}"


def test_the_api_reference_names_every_route():
    reference = section("7. API reference")
    for rule in service.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.rstrip("/") or "/"  # the twin with a final slash is the same route
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"`{method} {path}`" in reference, f"{method} {path}"


def test_every_make_command_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    used = set(re.findall(r"\bmake ([a-z][a-z-]*)", README.read_text()))
    assert used and used <= targets, f"not in the Makefile: {sorted(used - targets)}"


TREE_LINE = re.compile(r"^((?:│   |    |├── |└── )*)(\S+)(.*)$")


def file_tree():
    """{path: description} from the README's file tree (directories end with '/')."""
    block = next(b for b in read_blocks(README.read_text()) if b.text.startswith(".\n"))
    entries, parents = {}, []
    for line in block.text.splitlines()[1:]:
        prefix, name, description = TREE_LINE.match(line).groups()
        depth = len(prefix) // 4 - 1
        parents = parents[:depth] + [name]
        entries["".join(parents)] = description.strip()
    return entries


# The model at the root is the student's: its optional files (a profile, targets.json, an
# api.toml) may be there or not, whatever the tree shows of the tutorial's.
MODEL_FILES = {
    "pipeline.pickle",
    "columns.json",
    "dtypes.pickle",
    "training_profile.json",
    "targets.json",
    "api.toml",
}


def test_the_file_tree_lists_every_file_and_only_files_that_exist():
    tree = file_tree()
    for path, description in tree.items():
        assert (ROOT / path).exists() or path in MODEL_FILES, (
            f"the README's file tree lists {path}, which is gone"
        )
        assert description, f"the README's file tree says nothing about {path}"
    directories = {path for path in tree if path.endswith("/")}
    for path in repository_files(ROOT) - MODEL_FILES:
        # A directory listed without its files (none listed under it) stands for all of them.
        folded = any(
            path.startswith(d) and not any(p != d and p.startswith(d) for p in tree)
            for d in directories
        )
        assert path in tree or folded, f"add {path} to the README's file tree (section 2)"


def test_without_git_the_folder_is_read_as_git_lists_it():
    """folder_files, what a copy without .git reads, against git's own answer."""
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.skip("git is the reference: this copy has no .git, or no git command")
    walked, listed = folder_files(ROOT), git_files(ROOT)
    assert sorted(listed - walked) == []
    # Files git ignores through another exclude file (.git/info/exclude, a global one).
    extra = subprocess.run(
        ["git", "check-ignore", "--verbose", "--stdin"],
        input="\n".join(sorted(walked - listed)),
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert [line for line in extra if line.startswith(".gitignore:")] == []
    assert len(extra) == len(walked - listed), "folder_files lists files git does not ignore"


def message_pattern(text):
    """A README message with <placeholders> -> a regular expression."""
    parts = re.split(r"<[a-z ]+>", text.strip())
    return re.compile(".+?".join(re.escape(part) for part in parts) + r"\Z")


def startup_message(load):
    try:
        load()
    except service.StartupError as error:
        return f"Cannot start: {error}"
    raise AssertionError("the artifact loaded")


def test_the_troubleshooting_messages_are_the_ones_the_service_prints(tmp_path, monkeypatch):
    import sklearn.base
    from sklearn.dummy import DummyClassifier

    # A pickle written by "another" scikit-learn version.
    monkeypatch.setattr(sklearn.base, "__version__", "0.24.2")
    joblib.dump(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "pipeline.pickle")
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = startup_message(lambda: artifacts.load_pipeline(tmp_path / "pipeline.pickle"))

    # A pickle of a class whose module is gone.
    (tmp_path / "gone_transformers.py").write_text("class Gone:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_transformers

    (tmp_path / "gone").mkdir()
    joblib.dump(gone_transformers.Gone(), tmp_path / "gone" / "pipeline.pickle")
    del sys.modules["gone_transformers"]
    (tmp_path / "gone_transformers.py").unlink()
    module = startup_message(lambda: artifacts.load_pipeline(tmp_path / "gone" / "pipeline.pickle"))

    shown = [
        b.text for b in read_blocks(section("10. Troubleshooting")) if b.text.startswith("Cannot")
    ]
    assert len(shown) == 2
    assert message_pattern(shown[0]).match(version), f"README: {shown[0]}real:   {version}"
    assert message_pattern(shown[1]).match(module), f"README: {shown[1]}real:   {module}"


def test_the_pinned_versions_the_readme_names_are_the_pinned_ones():
    pinned = dict(
        line.split("==")
        for line in (ROOT / "requirements_prod.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name, version in re.findall(r"`([\w-]+)==([\w.]+)`", README.read_text()):
        assert pinned.get(name) == version, f"README says {name}=={version}"


def test_every_link_inside_the_readme_has_its_heading():
    text = README.read_text()
    # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
    anchors = {
        re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        for title in re.findall(r"^#+ (.+)$", text, re.M)
    }
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, sorted(links - anchors)


def test_every_file_the_readme_links_to_exists():
    links = re.findall(r"\]\((?!#|https?://)([^)]+)\)", README.read_text())
    assert links and all((ROOT / link).exists() for link in links), links
