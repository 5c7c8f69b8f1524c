"""The README's examples, run as written against a live Footprint filled with ``seed_demo``.

Every ``curl`` command of the README's ``sh`` blocks is run with the real ``curl`` binary, in
README order, after what ``make run`` sets up (``setup_local``: the *Demo* workspace, its
*Demo website* source and the admin user), ``seed_demo`` and the README's
``manage.py drf_create_token admin``. Only the documented placeholders are filled in; a
command with a placeholder this test does not know fails it, so the README and the test move
together. The Python SDK snippet runs too. Then the outcomes that make the examples worth
copying are checked: the segments they create have members, and the experience's goal counts
the demo's orders as conversions.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from profiles.management.commands.seed_demo import SOURCES as SEED_DEMO_SOURCES
from profiles.models import Identity, Segment, SegmentMembership
from profiles.segment_sql import Compiler
from tracking.models import Event, Source, Workspace

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parent.parent / "README.md"
README_HOST = "http://127.0.0.1:8000"
TOKEN_COMMAND = ".venv/bin/python manage.py drf_create_token admin"
DEMO_GUESTS = "60"

# What a reader fills in: the README's words for them, and where the value comes from.
PLACEHOLDERS = {
    "WRITE_KEY": "write_key",
    "TOKEN": "token",
    "CLIENT_KEY": "client_key",
    "<browser ref>": "browser_ref",
}
PLACEHOLDER = re.compile(
    "|".join(
        rf"\b{re.escape(word)}\b" if word[0].isalnum() else re.escape(word) for word in PLACEHOLDERS
    )
)
# What an unknown placeholder looks like: <something>, an elided value, or an upper-case name
# of a key or secret.
UNKNOWN_PLACEHOLDER = re.compile(
    r"<[^<>\n]+>|…|\.\.\.|\b[A-Z][A-Z0-9]*_(?:KEY|TOKEN|SECRET|PASSWORD|REF|ID)\b"
)


@dataclass
class Example:
    argv: list[str]
    line: int
    expected: str | None = None
    answer: dict | list | str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return next((arg for arg in self.argv if arg.startswith(("http://", "https://"))), "")

    @property
    def data(self) -> dict | None:
        """The JSON body given with ``-d``, if any."""
        for flag, value in zip(self.argv, self.argv[1:], strict=False):
            if flag in ("-d", "--data", "--data-raw"):
                return json.loads(value)
        return None


def sh_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each ```sh block."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if current is None and line.strip() == "```sh":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def shell_commands(text: str) -> list[tuple[int, list[str], str | None]]:
    """Every command of the README's sh blocks as (line, argv, the ``# …`` answer after it).

    Backslash-continued lines are joined; a quote left open (a JSON body over several lines)
    continues on the next line, as in a shell.
    """
    commands = []
    for start, lines in sh_blocks(text):
        index = 0
        while index < len(lines):
            line_number, buffer = start + index, ""
            while True:
                line = lines[index]
                index += 1
                if line.endswith("\\"):
                    buffer += line[:-1] + " "
                    continue
                buffer += line
                try:
                    argv = shlex.split(buffer, comments=True)
                except ValueError:  # an open quote: the command goes on
                    buffer += "\n"
                    continue
                break
            if not argv:
                # A comment line holding JSON right after a command is its answer.
                comment = buffer.strip().removeprefix("#").strip()
                is_answer = buffer.strip().startswith("#") and comment.startswith(("{", "["))
                if is_answer and commands and commands[-1][2] is None:
                    commands[-1] = (*commands[-1][:2], comment)
                continue
            commands.append((line_number, argv, None))
    return commands


def readme_examples() -> list[Example]:
    text = README.read_text()
    return [
        Example(argv, line, expected)
        for line, argv, expected in shell_commands(text)
        if argv[0] == "curl"
    ]


def readme_json_blocks() -> list:
    return [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)```", README.read_text(), flags=re.DOTALL)
    ]


def readme_python_snippet() -> str:
    text = README.read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    (snippet,) = [s for s in snippets if "segment.analytics" in s]
    return snippet


def fill(arg: str, values: dict[str, str], *, base_url: str, line: int) -> str:
    def value_of(match: re.Match) -> str:
        name = PLACEHOLDERS[match.group(0)]
        if name not in values:
            raise AssertionError(f"README line {line}: {match.group(0)} is used before it is known")
        return values[name]

    unknown = UNKNOWN_PLACEHOLDER.search(PLACEHOLDER.sub("", arg))
    assert unknown is None, (
        f"README line {line}: {unknown.group(0)!r} in {arg!r} is not a placeholder "
        "tests/test_readme.py knows; teach it what to put there"
    )
    return PLACEHOLDER.sub(value_of, arg).replace(README_HOST, base_url)


def answer_matches(answer, expected: str) -> list[str]:
    """What of the README's ``# {…}`` answer the real answer lacks.

    ``…`` in place of keys stands for more keys; a value of ``…``, ``"…"`` or ``"<a ref>"``
    for any value. Every other value must be equal.
    """
    pattern = re.sub(r":\s*…\s*(?=[,}])", ': "…"', expected)
    pattern = re.sub(r",\s*…\s*(?=[,}])", "", pattern)
    pattern = re.sub(r"{\s*…\s*,", "{", pattern)
    try:
        wanted = json.loads(pattern)
    except ValueError:
        raise AssertionError(f"the README's answer {expected} is not JSON with …") from None
    missing = []
    for key, value in wanted.items():
        if key not in answer:
            missing.append(f"no {key!r}")
        elif not (value == "…" or re.fullmatch(r"<[^<>]+>", str(value))) and answer[key] != value:
            missing.append(f"{key!r} is {answer[key]!r}, not {value!r}")
    return missing


def curl(argv: list[str], *, where: str) -> tuple[int, dict | list | str]:
    """Run a curl command as given (no shell) and return (HTTP status, parsed answer)."""
    binary = shutil.which("curl")
    assert binary, "the README's examples need curl on PATH"
    done = subprocess.run(
        [binary, *argv[1:], "-sS", "--max-time", "30", "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (
        f"{where}: curl exited {done.returncode}: {done.stderr.strip()}\n{argv}"
    )
    body, _, status = done.stdout.rpartition("\n")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = body
    return int(status), answer


@pytest.fixture
def demo(settings, tmp_path) -> dict[str, str]:
    """What ``make run``, ``seed_demo`` and ``drf_create_token admin`` leave a reader with."""
    settings.BASE_DIR = tmp_path  # setup_local keeps the admin's password under BASE_DIR
    call_command("setup_local", stdout=StringIO())
    call_command("seed_demo", "--guests", DEMO_GUESTS, "--quiet", stdout=StringIO())
    assert TOKEN_COMMAND in README.read_text()
    out = StringIO()
    call_command("drf_create_token", "admin", stdout=out)
    (token,) = re.findall(r"\b[0-9a-f]{40}\b", out.getvalue())
    workspace = Workspace.objects.get(name="Demo")
    source = Source.objects.get(workspace=workspace, name="Demo website")
    return {"write_key": source.write_key, "token": token, "client_key": workspace.client_key}


def test_every_readme_example_works_as_written(live_server, demo):
    base_url = f"http://127.0.0.1:{live_server.thread.port}"
    examples = readme_examples()
    values = dict(demo)
    # Every example is tried, so one run names every one that is broken.
    broken = []
    for example in examples:
        try:
            run_example(example, values, base_url=base_url)
        except AssertionError as error:
            broken.append(str(error).splitlines()[0])
    by_path: dict[str, list[Example]] = {}
    for example in examples:
        by_path.setdefault(example.url.removeprefix(README_HOST).split("?")[0], []).append(example)
    for outcome in (first_event_reads_back, segments_have_members, experience_goal_converts):
        try:
            outcome(by_path, values, base_url=base_url)
        except AssertionError as error:
            broken.append(f"{outcome.__name__}: {str(error).splitlines()[0]}")
    assert not broken, "README examples that do not work as written:\n" + "\n".join(broken)


def first_event_reads_back(by_path: dict, values: dict, *, base_url: str) -> None:
    """The first event shows up through the read API, as the README says it does."""
    (track,) = [e for e in by_path["/v1/track"] if e.data and e.data.get("event")]
    (events,) = by_path["/api/events/"]
    assert isinstance(events.answer, dict), events.answer
    assert any(
        e.get("event") == track.data["event"] and e.get("userId") == track.data["userId"]
        for e in events.answer["results"]
    ), f"{track.data['event']!r} is not among the events read back"


def segments_have_members(by_path: dict, values: dict, *, base_url: str) -> None:
    """Every segment the README creates has members among the demo's guests, and the rule
    the Segments section shows as JSON is one of them."""
    created = [e.data for e in by_path.get("/api/segments/", []) if e.data]
    assert created, "the README shows no segment being created"
    for rule in readme_json_blocks():
        assert rule in [segment["rule"] for segment in created], (
            f"the rule {rule} is not one the README's examples create"
        )
    for segment in created:
        found = Segment.objects.filter(slug=segment["slug"]).first()
        assert found is not None, f"segment {segment['slug']!r} was not created"
        members = SegmentMembership.objects.filter(segment=found, exited_at__isnull=True)
        assert members.exists(), f"segment {segment['slug']!r} has no members on the demo data"


def experience_goal_converts(by_path: dict, values: dict, *, base_url: str) -> None:
    """The experience's goal counts the demo's orders: its condition matches some of them,
    and demo customers who see the experience and order again convert."""
    (experience,) = [e.data for e in by_path["/api/experiences/"] if e.data]
    matching = demo_orders_matching(experience)
    assert matching > 0, f"the primary metric {experience['metrics'][0]} matches no demo order"
    (call_flows,) = by_path["/v2/callFlows"]
    converted = conversions_after_exposure(experience, call_flows.data, values, base_url=base_url)
    assert converted > 0, "no demo customer converted after exposure and a repeat order"


def run_example(example: Example, values: dict, *, base_url: str) -> None:
    line = example.line
    argv = [fill(arg, values, base_url=base_url, line=line) for arg in example.argv]
    assert any(arg.startswith(base_url) for arg in argv), (
        f"README line {line}: a curl example should call {README_HOST}"
    )
    status, example.answer = curl(argv, where=f"README line {line}")
    assert 200 <= status < 300, f"README line {line}: answered {status} {example.answer}"
    if example.expected is not None:
        assert isinstance(example.answer, dict), f"README line {line}: {example.answer!r}"
        missing = answer_matches(example.answer, example.expected)
        assert not missing, f"README line {line}: {missing} in {example.answer}"
    if "/v1.2/browser/create.json" in example.url:
        values["browser_ref"] = example.answer["ref"]


def demo_orders_matching(experience: dict) -> int:
    """How many of the demo's goal events match the primary metric's condition, compiled as
    results are."""
    condition = experience["metrics"][0]["condition"]
    seeded = demo_goal_events(experience)
    assert seeded.exists(), "seed_demo sends no goal events"
    compiled = Compiler(workspace_id=seeded[0].workspace_id, now=None).value_condition(
        "e.properties", condition["property"], condition["op"], condition["value"]
    )
    table = connection.ops.quote_name(Event._meta.db_table)
    sources = sorted(set(seeded.values_list("source_id", flat=True)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {table} e WHERE e.name = %s"  # noqa: S608
            f" AND e.source_id IN ({', '.join(['%s'] * len(sources))}) AND {compiled.sql}",
            [experience["metrics"][0]["event"], *sources, *compiled.params],
        )
        return cursor.fetchone()[0]


def demo_goal_events(experience: dict):
    """The goal events ``seed_demo`` sent (not the README's own)."""
    return Event.objects.filter(
        name=experience["metrics"][0]["event"],
        source__name__in=[name for name, _ in SEED_DEMO_SOURCES],
    )


def conversions_after_exposure(
    experience: dict, call_flows: dict, values: dict, *, base_url: str
) -> int:
    """Expose demo customers who ordered through the README's callFlows body (their email in
    place of the README's), have each exposed one repeat their last demo order, and read the
    conversions from the results API."""
    friendly_id = experience["friendlyId"]
    orders = demo_goal_events(experience).filter(user_id__gt="").order_by("-timestamp")
    exposed = 0
    seen = set()
    for order in orders:
        email = Identity.objects.filter(guest=order.guest, kind="email").first()
        if email is None or order.user_id in seen:
            continue
        seen.add(order.user_id)
        body = {**call_flows, "clientKey": values["client_key"], "email": email.value}
        status, answer = curl(
            ["curl", f"{base_url}/v2/callFlows", "-H", "Content-Type: application/json"]
            + ["-d", json.dumps(body)],
            where="callFlows for a demo customer",
        )
        assert status == 200, answer
        if answer["decision"] != "EXPOSED":
            continue
        repeat = {
            "userId": order.user_id,
            "event": order.name,
            "properties": order.properties,
            "messageId": str(uuid.uuid4()),
        }
        status, answer = curl(
            ["curl", "-u", f"{values['write_key']}:", f"{base_url}/v1/track"]
            + ["-H", "Content-Type: application/json", "-d", json.dumps(repeat)],
            where="a demo customer's repeat order",
        )
        assert status == 200, answer
        exposed += 1
        if exposed == 5:
            break
    assert exposed, "no demo customer was exposed"
    status, results = curl(
        [
            "curl",
            "-H",
            f"Authorization: Token {values['token']}",
            f"{base_url}/api/experiences/{friendly_id}/results/",
        ],
        where="the experience's results",
    )
    assert status == 200, results
    (primary,) = [m for m in results["metrics"] if m["role"] == "primary"]
    return sum(variant["total"] for variant in primary["variants"])


def test_the_readme_python_sdk_snippet_sends_its_event(live_server, demo):
    base_url = f"http://127.0.0.1:{live_server.thread.port}"
    snippet = readme_python_snippet()
    assert '"WRITE_KEY"' in snippet and f'"{README_HOST}"' in snippet
    code = snippet.replace('"WRITE_KEY"', repr(demo["write_key"])).replace(
        f'"{README_HOST}"', repr(base_url)
    )
    # Its own interpreter, so the SDK's module-level client does not outlive the snippet.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    calls = re.search(r'analytics\.track\("([^"]+)", "([^"]+)", (\{.*\})\)', snippet)
    user_id, event, properties = calls.group(1), calls.group(2), json.loads(calls.group(3))
    stored = Event.objects.get(user_id=user_id, name=event)
    assert str(stored.revenue.normalize()) == str(properties["revenue"])
