"""The README (the tutorial) and docs/ (the reference) are pages whose every example is run:
these tests keep them honest.

How the pages' examples are written, so that they can be parsed (keep to it when you edit a
page; docs/testing.md says the same to its readers):

* An **example** is a ```bash block that holds one `curl` command to http://localhost:5000,
  followed at once by a ```json block: the response body it prints. The bash block starts
  with comment lines: `# status: <code>` (required: the HTTP status of the answer) and
  `# varies: <key>, <key>` (optional: keys whose value changes from run to run, such as
  created_at; they are checked to be present, not compared). A key is a dotted path into
  the JSON; `*` stands for every item of a list, as in `predictions.*.created_at`.
* A **server block** is a ```bash block with a line `make run` (optionally preceded by
  assignments, as in `ADMIN_TOKEN=change-me make run`) or `python tutorial/<step>.py`. The
  examples after it are sent to that server, as a reader would: `make run` examples run here
  against a live gunicorn (tests/live_server.py), page by page, each page on a fresh SQLite
  database in its own order; tutorial examples run in tests/test_tutorial.py. A server block
  with a line `rm -f predictions.db` starts its server on a fresh database; the first example
  of each page of docs/ must follow one, so that every page runs on its own (the README's run
  on a new clone's). Another server block keeps the database, and starts a new server only
  when its assignments differ. The pages speak of the tutorial's model: `make run` serves
  examples/titanic here (unless the block sets MODEL_DIR), whatever model sits at the
  repository root.
* The response matches when it has the same status, the same keys and the same values;
  fractions may differ in the last digits (a relative 1e-9: the pages' figures were
  computed on another machine, see conftest.same_probability). The JSON shown may be
  pretty-printed.
* Each example is run with curl through bash when both exist (the command exactly as
  written, with the URL of the test server and `-w` to read the status), else it is parsed
  and sent with urllib.
* Every ```python block names, on its first line, the file it shows: `# tutorial/<file>.py`
  (the block is the whole file, byte for byte: tests/test_tutorial.py) or
  `# <file> (excerpt)`, as in `# app.py (excerpt)` (the rest of the block is a verbatim part
  of that file of the repository).
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
from urllib.parse import urlsplit

import joblib
import pytest
from conftest import ROOT, TITANIC, LiveServer, same_probability, service
from repository_files import folder_files, git_files, repository_files

from model_service import artifacts

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
LOCAL_URL = "http://localhost:5000"
FRESH_DATABASE = "rm -f predictions.db"


def name_of(page):
    return str(page.relative_to(ROOT))


# ---------------------------------------------------------------------------------------
# Reading a page
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
    page: str = "README.md"
    server_line: int = 0  # the line of the server block it is sent to
    fresh: bool = False  # that server block starts on a fresh database


@dataclass
class Page:
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


def parse_page(page=README, text=None):
    """The blocks and examples of a page (README.md or docs/<name>.md), or of `text`."""
    where_page = name_of(page)
    parsed = Page(read_blocks(page.read_text() if text is None else text))
    server = server_block = None
    for index, block in enumerate(parsed.blocks):
        if block.language != "bash":
            continue
        if server_in(block):
            server, server_block = server_in(block), block
        if "curl" not in block.text or LOCAL_URL not in block.text:
            continue
        comments = [line for line in block.text.splitlines() if line.startswith("#")]
        commands = [line for line in block.text.splitlines() if line and line[0] != "#"]
        status = [c.split(":", 1)[1] for c in comments if c.startswith("# status:")]
        varies = [c.split(":", 1)[1] for c in comments if c.startswith("# varies:")]
        where = f"{where_page} line {block.line}"
        assert len(commands) == 1, f"{where}: an example holds exactly one command"
        assert len(status) == 1, f"{where}: an example needs a '# status: <code>' line"
        assert server, f"{where}: no server block (make run ...) before this example"
        response = parsed.blocks[index + 1] if index + 1 < len(parsed.blocks) else None
        assert response and response.language == "json", f"{where}: no ```json block after it"
        parsed.examples.append(
            Example(
                server=server,
                command=commands[0],
                status=int(status[0]),
                varies=[key.strip() for key in ",".join(varies).split(",") if key.strip()],
                expected=json.loads(response.text),
                line=block.line,
                page=where_page,
                server_line=server_block.line,
                fresh=FRESH_DATABASE in server_block.text.splitlines(),
            )
        )
    return parsed


def parse_readme(text=None):
    return parse_page(README, text)


def all_examples():
    return [example for page in PAGES for example in parse_page(page).examples]


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
    """A description of how the real answer differs from the page's, or None."""
    where = f"{example.page} line {example.line}: {example.command}"
    try:
        actual = json.loads(body)
    except ValueError:
        return f"{where}\n  answered {status}, not JSON: {body[:300]}"
    expected = json.loads(json.dumps(example.expected))  # a copy
    for key in example.varies:
        pop_path(actual, key.split("."), f"{where} (answer)")
        pop_path(expected, key.split("."), f"{where} ({example.page})")
    if status != example.status or not same_json(actual, expected):
        shown = json.dumps(example.expected, indent=2)
        return f"{where}\n  shown: {example.status} {shown}\n  real:  {status} {body}"
    return None


def check_examples(examples, base_url):
    failures = [mismatch(e, *run_example(e, base_url)) for e in examples]
    return [failure for failure in failures if failure]


# ---------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------


def test_the_pages_have_examples_for_every_part():
    examples = all_examples()
    paths = {urlsplit(parse_curl(e.command)[1]).path for e in examples if e.server[0] == "app"}
    routes = {"/predict", "/predict-batch", "/update", "/health", "/list-db-contents", "/stats"}
    assert routes | {"/metrics"} <= paths
    statuses = {e.status for e in examples}
    assert {200, 400, 404, 405, 409, 413, 422} <= statuses
    steps = {e.server[1] for e in parse_readme().examples if e.server[0] == "tutorial"}
    assert steps == {str(p.relative_to(ROOT)) for p in (ROOT / "tutorial").glob("step*.py")}
    assert not [e for e in examples if e.server[0] == "tutorial" and e.page != "README.md"]


def test_every_page_of_docs_starts_its_examples_on_a_fresh_database():
    """So that a reader (and a test) can run any page on its own, in any order."""
    for page in PAGES[1:]:
        examples = [e for e in parse_page(page).examples if e.server[0] == "app"]
        if examples:
            first = examples[0]
            assert first.fresh, (
                f"{first.page} line {first.server_line}: the server block of the page's first "
                f"example needs a line `{FRESH_DATABASE}`"
            )


def test_every_example_can_be_sent_without_curl_too():
    """The urllib fallback understands every command (it is what runs without curl)."""
    for example in all_examples():
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


def test_the_parser_tells_which_server_block_starts_on_a_fresh_database():
    example = "```bash\n# status: 200\ncurl -s " + LOCAL_URL + "/health\n```\n\n```json\n{}\n```\n"
    text = (
        f"```bash\n{FRESH_DATABASE}\nmake run\n```\n\n{example}\n"
        f"```bash\nTHRESHOLD=0.8 make run\n```\n\n{example}"
    )
    first, second = parse_readme(text).examples
    assert (first.fresh, first.server) == (True, ("app", {}))
    assert (second.fresh, second.server) == (False, ("app", {"THRESHOLD": "0.8"}))
    assert first.server_line != second.server_line


def test_answers_may_differ_from_the_page_in_the_last_digits_only():
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


def run_examples_on_live_servers(examples, folder):
    """A page's examples, in order, as a reader runs them: a new server where a server block
    sets other settings or starts a fresh database (a new SQLite file), else the running one."""
    failures, server, block, environment, databases = [], None, None, None, 0
    try:
        for example in examples:
            new_block = example.server_line != block
            if new_block and (example.fresh or example.server[1] != environment):
                if server is not None:
                    server.stop()
                if server is None or example.fresh:
                    databases += 1
                    database_url = f"sqlite:///{folder / f'predictions-{databases}.db'}"
                environment = example.server[1]
                env = {key: value for key, value in environment.items() if key != "PORT"}
                env = {"MODEL_DIR": str(TITANIC), **env}  # the pages' model, not the root's
                server = LiveServer(database_url, workers=2, env=env).wait_until_ready()
            block = example.server_line
            failures += check_examples([example], server.url)
    finally:
        if server is not None:
            server.stop()
    return failures


PAGES_WITH_EXAMPLES = [
    name_of(page) for page in PAGES if any(e.server[0] == "app" for e in parse_page(page).examples)
]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_every_curl_example_answers_what_the_page_shows(page, tmp_path):
    """A page's `make run` examples, in its order, on its own fresh SQLite database."""
    examples = [e for e in parse_page(ROOT / page).examples if e.server[0] == "app"]
    failures = run_examples_on_live_servers(examples, tmp_path)
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------------------
# Configuration, routes, make targets, file tree, troubleshooting
# ---------------------------------------------------------------------------------------


def section(page, title_start):
    """The text of the page's section whose '## ' title (after its number, if it has one)
    starts with title_start."""
    text = page.read_text()
    start = re.search(rf"^## (\d+\. )?{re.escape(title_start)}", text, re.M).start()
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


ENVIRONMENT_READS = [
    r"os\.environ\.get\(\s*['\"](\w+)['\"]",
    r"os\.environ\[\s*['\"](\w+)['\"]",
    r"os\.getenv\(\s*['\"](\w+)['\"]",
    # model_service/settings.py's number_from_environment("NAME", ...)
    r"_from_environment\(\s*['\"](\w+)['\"]",
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
    """{variable: default} from the table of docs/configuration.md."""
    text = (DOCS / "configuration.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", text, re.MULTILINE)
    return dict(rows)


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    read = environment_variables_read_by_the_code()
    assert {"DATABASE_URL", "PORT", "MAX_REQUEST_BYTES"} <= read  # the scan itself works
    missing = read - set(configuration_table())
    assert not missing, f"add these to the table of docs/configuration.md: {sorted(missing)}"


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
    reference = section(DOCS / "api.md", "The routes")
    for rule in service.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.rstrip("/") or "/"  # the twin with a final slash is the same route
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"`{method} {path}`" in reference, f"{method} {path}"


def test_every_make_command_of_the_pages_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    for page in PAGES:
        used = set(re.findall(r"\bmake ([a-z][a-z-]*)", page.read_text()))
        assert used <= targets, f"{name_of(page)}: not in the Makefile: {sorted(used - targets)}"


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
        b.text
        for b in read_blocks(section(README, "Troubleshooting"))
        if b.text.startswith("Cannot")
    ]
    assert len(shown) == 2
    assert message_pattern(shown[0]).match(version), f"README: {shown[0]}real:   {version}"
    assert message_pattern(shown[1]).match(module), f"README: {shown[1]}real:   {module}"


def test_the_pinned_versions_the_pages_name_are_the_pinned_ones():
    pinned = dict(
        line.split("==")
        for line in (ROOT / "requirements_prod.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for page in PAGES:
        for name, version in re.findall(r"`([\w-]+)==([\w.]+)`", page.read_text()):
            assert pinned.get(name) == version, f"{name_of(page)} says {name}=={version}"


def test_the_briefs_shown_in_part_are_parts_of_the_example_brief():
    """The README's short brief and the rules of docs/monitoring.md quote its api.toml."""
    brief = (ROOT / "examples" / "stop_and_search" / "api.toml").read_text()
    for page in (README, DOCS / "monitoring.md"):
        shown = [b.text for b in read_blocks(page.read_text()) if b.language == "toml"]
        assert shown and all(text in brief for text in shown), name_of(page)


# ---------------------------------------------------------------------------------------
# Links between the pages, and to the repository's files
# ---------------------------------------------------------------------------------------

LINK = re.compile(r"\]\((?!https?://)([^)\s]+)\)")


def without_code(text):
    """The page without its fenced blocks, whose lines are not Markdown."""
    return re.sub(r"^(\s*)```\w*\s*\n.*?^\1```\s*$", "", text, flags=re.M | re.S)


def anchors_of(page):
    """GitHub's anchors of the page's headings: lower case, punctuation dropped, spaces as
    hyphens, and -1, -2... after a repeated one."""
    anchors, seen = set(), {}
    for title in re.findall(r"^#{1,6} (.+?)\s*$", without_code(page.read_text()), re.M):
        anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        anchors.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
        seen[anchor] = seen.get(anchor, 0) + 1
    return anchors


def test_github_anchors_are_made_as_github_makes_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Your brief: the HTTP contract in api.toml\n\n## `make test` keeps it honest\n"
        '## Always answer: `invalid = "as_missing"`\n## GET /stats\n## GET /stats\n'
        "```bash\n# status: 200\n```\n"
    )
    assert anchors_of(page) == {
        "your-brief-the-http-contract-in-apitoml",
        "make-test-keeps-it-honest",
        "always-answer-invalid--as_missing",
        "get-stats",
        "get-stats-1",
    }


def test_every_link_of_the_pages_leads_to_a_file_and_a_heading_that_exist():
    links, broken = 0, []
    for page in PAGES:
        for link in LINK.findall(without_code(page.read_text())):
            links += 1
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if ROOT not in (target, *target.parents) or not target.exists():
                broken.append(f"{name_of(page)}: ({link}): no such file in the repository")
            elif anchor and target.suffix == ".md" and anchor not in anchors_of(target):
                broken.append(f"{name_of(page)}: ({link}): {target.name} has no such heading")
    assert links > 50 and not broken, "\n".join(broken)


def test_the_readme_links_to_every_page_of_docs():
    linked = {(ROOT / path).resolve() for path in LINK.findall(README.read_text())}
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"the README does not link to {name_of(page)}"
