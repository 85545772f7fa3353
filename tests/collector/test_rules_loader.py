"""Rule files: every error class is reported as FILE:LINE with the right line, all
problems at once; directories, warnings, the default file and the metric catalogue."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from collector.errors import InvalidRequest
from collector.rules import (
    KNOWN_METRICS,
    RuleFileError,
    check_rules,
    default_rules_path,
    load_rules,
)

REPO = Path(__file__).resolve().parents[2]

GOOD_RULE = """\
      - name: good
        condition:
          metric: memory_used_ratio
          op: ">"
          threshold: 0.9
        level: 2
        annotations: {summary: "{{ host }}"}
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = write(tmp_path, text)
    return path, check_rules(path)


def rule_file(rule: str) -> str:
    """A file whose only rule is ``rule`` (indented as a list item); rule line 4."""
    return "groups:\n  - name: g\n    rules:\n" + textwrap.indent(textwrap.dedent(rule), "      ")


# Each case: a rule (starting on line 4 of the file), the line of the expected problem,
# and a fragment of its message.
CASES: list[tuple[str, str, int, str]] = [
    (
        "unknown key with a suggestion",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          lables: {a: b}
          annotations: {summary: x}
        """,
        7,
        "unknown key 'lables' in a rule (did you mean 'labels'?)",
    ),
    (
        "unknown condition key",
        """\
        - name: r
          condition:
            metric: memory_used_ratio
            op: ">"
            treshold: 1
          level: 2
          annotations: {summary: x}
        """,
        8,
        "unknown key 'treshold' in condition (did you mean 'threshold'?)",
    ),
    (
        "missing rule key",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          annotations: {summary: x}
        """,
        4,
        "a rule is missing the required key 'level'",
    ),
    (
        "missing condition key",
        """\
        - name: r
          condition:
            metric: memory_used_ratio
            threshold: 1
          level: 2
          annotations: {summary: x}
        """,
        5,  # the `condition:` line
        "condition is missing the required key 'op'",
    ),
    (
        "missing summary",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations:
            description: x
        """,
        7,
        "annotations is missing the required key 'summary'",
    ),
    (
        "threshold of the wrong type",
        """\
        - name: r
          condition:
            metric: memory_used_ratio
            op: ">"
            threshold: "90%"
          level: 2
          annotations: {summary: x}
        """,
        8,
        "threshold must be a number, got str '90%'",
    ),
    (
        "labels of the wrong type",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          labels: [a, b]
          annotations: {summary: x}
        """,
        7,
        "labels must be a mapping, got a list",
    ),
    (
        "bad op",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: "=>", threshold: 1}
          level: 2
          annotations: {summary: x}
        """,
        5,
        "op must be one of > >= < <= == !=",
    ),
    (
        "bad duration in for",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          for: 5 minutes
          level: 2
          annotations: {summary: x}
        """,
        6,
        "for: invalid duration '5 minutes'",
    ),
    (
        "bad duration in rate",
        """\
        - name: r
          condition:
            metric: oom_kills_total
            rate: -5m
            op: ">"
            threshold: 0
          level: 2
          annotations: {summary: x}
        """,
        7,
        "rate: invalid duration '-5m': must not be negative",
    ),
    (
        "bad duration in predict",
        """\
        - name: r
          condition:
            metric: filesystem_used_ratio
            op: ">"
            threshold: 1
            predict:
              window: 6h
              within: tomorrow
          level: 2
          annotations: {summary: x}
        """,
        11,
        "predict.within: invalid duration 'tomorrow'",
    ),
    (
        "zero grace",
        """\
        - name: r
          heartbeat: {grace: 0s}
          level: 1
          annotations: {summary: x}
        """,
        5,
        "grace must be longer than 0",
    ),
    (
        "level out of range",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 5
          annotations: {summary: x}
        """,
        6,
        "level must be a fault level 1, 2, 3 or 4 (1 = most severe), got int 5",
    ),
    (
        "level as a boolean",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: yes
          annotations: {summary: x}
        """,
        6,
        "got bool True",
    ),
    (
        "bad regular expression",
        """\
        - name: r
          condition:
            metric: filesystem_used_ratio
            match:
              fstype: "~(ext4"
            op: ">"
            threshold: 1
          level: 2
          annotations: {summary: x}
        """,
        8,
        "match.fstype: bad regular expression '(ext4'",
    ),
    (
        "label the metric does not have",
        """\
        - name: r
          condition:
            metric: filesystem_used_ratio
            match: {mountpont: /}
            op: ">"
            threshold: 1
          level: 2
          annotations: {summary: x}
        """,
        7,
        "has no label 'mountpont' (did you mean 'mountpoint'?)",
    ),
    (
        "unknown template placeholder",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations:
            summary: "{{ hots }} is full"
        """,
        8,
        "annotations.summary: unknown placeholder 'hots'",
    ),
    (
        "unknown placeholder inside a literal block",
        """\
        - name: r
          condition: {metric: filesystem_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations:
            summary: x
            description: |
              first line
              second {{ labels.unit }}
        """,
        11,
        "the alert has no label 'unit'",
    ),
    (
        "template label of another metric",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations: {summary: "{{ labels.mountpoint }}"}
        """,
        7,
        "(its labels: none)",
    ),
    (
        "eta outside predict",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations: {summary: "{{ eta | duration }}"}
        """,
        7,
        "unknown placeholder 'eta'",
    ),
    (
        "duplicate key",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          level: 3
          annotations: {summary: x}
        """,
        7,
        "duplicate key 'level' (first at line 6)",
    ),
    (
        "condition and heartbeat",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          heartbeat: {grace: 2m}
          level: 2
          annotations: {summary: x}
        """,
        4,
        "either `condition` or `heartbeat`, not both",
    ),
    (
        "neither condition nor heartbeat",
        """\
        - name: r
          level: 2
          annotations: {summary: x}
        """,
        4,
        "a rule needs a `condition`",
    ),
    (
        "for on a heartbeat",
        """\
        - name: r
          heartbeat: {grace: 2m}
          for: 5m
          level: 1
          annotations: {summary: x}
        """,
        6,
        "`for` does not apply to a heartbeat rule",
    ),
    (
        "rate and predict",
        """\
        - name: r
          condition:
            metric: filesystem_used_ratio
            op: ">"
            threshold: 1
            rate: 5m
            predict: {window: 1h, within: 1h}
          level: 2
          annotations: {summary: x}
        """,
        10,
        "use `rate` or `predict`, not both",
    ),
    (
        "predict with ==",
        """\
        - name: r
          condition:
            metric: filesystem_used_ratio
            op: "=="
            threshold: 1
            predict: {window: 1h, within: 1h}
          level: 2
          annotations: {summary: x}
        """,
        9,
        "predict needs op >, >=, < or <=",
    ),
    (
        "abs with predict",
        """\
        - name: r
          condition:
            metric: clock_offset_seconds
            op: ">"
            threshold: 1
            predict: {window: 1h, within: 1h}
            abs: true
          level: 2
          annotations: {summary: x}
        """,
        10,
        "abs does not combine with predict",
    ),
    (
        "abs not a boolean",
        """\
        - name: r
          condition: {metric: clock_offset_seconds, op: ">", threshold: 1, abs: 1}
          level: 2
          annotations: {summary: x}
        """,
        5,
        "abs must be true or false, got int 1",
    ),
    (
        "per a labelled metric",
        """\
        - name: r
          condition: {metric: load_average, per: cpu_usage_ratio, op: ">", threshold: 1}
          level: 2
          annotations: {summary: x}
        """,
        5,
        "per: 'cpu_usage_ratio' has labels",
    ),
    (
        "bad rule name",
        """\
        - name: Disk-Full
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations: {summary: x}
        """,
        4,
        "rule name 'Disk-Full' is not valid",
    ),
    (
        "bad playbook name",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: 1}
          level: 2
          annotations: {summary: x}
          playbook: "rm -rf /"
        """,
        8,
        "playbook 'rm -rf /' is not valid",
    ),
    (
        "unsafe YAML tag",
        """\
        - name: r
          condition: {metric: memory_used_ratio, op: ">", threshold: !!python/object:os.system x}
          level: 2
          annotations: {summary: x}
        """,
        5,
        "unsupported YAML value",
    ),
]


@pytest.mark.parametrize(
    ("rule", "line", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_error_is_reported_with_its_line(
    tmp_path: Path, rule: str, line: int, message: str
) -> None:
    path, problems = problems_of(tmp_path, rule_file(rule))
    assert any(p.startswith(f"{path}:{line}: ") and message in p for p in problems), problems
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    assert list(caught.value.problems) == problems


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, "groups:\n  - name: g\n    rules: [\n  - x: 1\n")
    assert len(problems) == 1
    assert re.fullmatch(rf"{re.escape(str(path))}:4: YAML syntax error: .+", problems[0])


def test_document_structure_errors(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, "grups: []\n")
    assert problems == [
        f"{path}:1: unknown key 'grups' in a rule file (did you mean 'groups'?)",
        f"{path}:1: a rule file is missing the required key 'groups'",
    ]
    path, problems = problems_of(tmp_path, "groups:\n  - name: g\n    rules: {a: 1}\n")
    assert problems == [f"{path}:3: rules must be a list, got a mapping"]
    path, problems = problems_of(tmp_path, "groups:\n  - rules: []\n")
    assert problems == [f"{path}:2: a group is missing the required key 'name'"]
    path, problems = problems_of(tmp_path, "")
    assert problems == [f"{path}:1: empty rule file: expected `groups:`"]


def test_all_problems_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = rule_file(
        """\
        - name: a
          condition: {metric: memory_used_ratio, op: ">", threshold: x}
          level: 9
          annotations: {summary: "{{ nope }}"}
        - name: b
          condition: {metric: memory_used_ratio, op: "~", threshold: 1}
          level: 2
          annotations: {summary: x}
        """
    )
    path, problems = problems_of(tmp_path, text)
    assert [int(p.split(":")[1]) for p in problems] == [5, 6, 7, 9]
    assert all(p.startswith(f"{path}:") for p in problems)


def test_duplicate_rule_names_in_one_file(tmp_path: Path) -> None:
    text = "groups:\n  - name: g\n    rules:\n" + GOOD_RULE + GOOD_RULE
    path, problems = problems_of(tmp_path, text)
    assert problems == [f"{path}:11: duplicate rule name 'good' (first defined at {path}:4)"]


def test_a_directory_of_files(tmp_path: Path) -> None:
    first = write(tmp_path, "groups:\n  - name: g\n    rules:\n" + GOOD_RULE, "a.yaml")
    other = GOOD_RULE.replace("name: good", "name: other")
    write(tmp_path, "groups:\n  - name: h\n    rules:\n" + other, "b.yml")
    (tmp_path / "notes.txt").write_text("not a rule file")
    rules = load_rules(tmp_path)
    assert rules.names == ("good", "other")
    assert rules.files == (first, tmp_path / "b.yml")
    assert rules.get("other") is not None and rules.get("other").group == "h"  # type: ignore[union-attr]
    write(tmp_path, "groups:\n  - name: g\n    rules:\n" + GOOD_RULE, "c.yaml")
    assert check_rules(tmp_path) == [
        f"{tmp_path / 'c.yaml'}:4: duplicate rule name 'good' (first defined at {first}:4)"
    ]


def test_missing_paths(tmp_path: Path) -> None:
    assert check_rules(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: no such file or directory"
    ]
    assert check_rules(tmp_path) == [f"{tmp_path}: no rule files (*.yaml) in this directory"]


def test_unknown_metric_names_are_warnings(tmp_path: Path) -> None:
    text = rule_file(
        """\
        - name: r
          condition:
            metric: memroy_used_ratio
            op: ">"
            threshold: 1
          level: 2
          annotations: {summary: "{{ labels.anything }}"}
        """
    )
    path = write(tmp_path, text)
    assert check_rules(path) == []
    assert load_rules(path).warnings == (
        f"{path}:6: warning: metric 'memroy_used_ratio' is not one the agent sends "
        "(docs/metrics.md) (did you mean 'memory_used_ratio'?); the rule will never match "
        "unless something else sends it",
    )


def test_rate_of_a_gauge_is_a_warning(tmp_path: Path) -> None:
    text = rule_file(
        """\
        - name: r
          condition: {metric: memory_used_ratio, rate: 5m, op: ">", threshold: 1}
          level: 2
          annotations: {summary: x}
        """
    )
    path = write(tmp_path, text)
    assert load_rules(path).warnings == (
        f"{path}:5: warning: rate of 'memory_used_ratio', which is not a counter",
    )


def test_a_full_rule_loads(tmp_path: Path) -> None:
    text = rule_file(
        """\
        - name: fs_full
          condition:
            metric: filesystem_used_ratio
            match: {fstype: "!tmpfs", mountpoint: "~/.*", device: "!~loop.*"}
            op: ">="
            threshold: 1
            predict: {window: 6h, within: 1d}
          for: 30m
          level: 3
          labels: {team: storage, cpu: 0}
          annotations:
            summary: "{{ labels.mountpoint }} {{ labels.team }} in {{ eta | duration }}"
            description: "on {{ host }}"
          playbook: disk-usage
        """
    )
    [rule] = load_rules(write(tmp_path, text))
    assert rule.condition is not None and rule.condition.predict is not None
    assert rule.condition.predict.window_seconds == 6 * 3600
    assert rule.condition.predict.within_seconds == 86400
    assert [(m.label, m.kind, m.value) for m in rule.condition.matchers] == [
        ("fstype", "!=", "tmpfs"),
        ("mountpoint", "=~", "/.*"),
        ("device", "!~", "loop.*"),
    ]
    assert rule.for_seconds == 1800
    assert dict(rule.labels) == {"team": "storage", "cpu": "0"}  # label values are text
    assert rule.playbook == "disk-usage"
    assert rule.source == f"{tmp_path / 'rules.yaml'}:4"


def test_merge_keys_share_annotations(tmp_path: Path) -> None:
    text = """\
    groups:
      - name: g
        rules:
          - &base
            name: a
            condition: {metric: memory_used_ratio, op: ">", threshold: 0.9}
            level: 2
            annotations: {summary: "{{ host }} memory"}
          - <<: *base
            name: b
            level: 3
    """
    rules = load_rules(write(tmp_path, text))
    assert rules.names == ("a", "b")
    assert [r.level for r in rules] == [2, 3]
    assert rules.rules[1].summary.source == "{{ host }} memory"


def test_rule_file_error_is_an_invalid_request(tmp_path: Path) -> None:
    path = write(tmp_path, "groups: 3\n")
    with pytest.raises(InvalidRequest) as caught:
        load_rules(path)
    assert (
        str(caught.value)
        == f"invalid rules (1 problem):\n  {path}:1: groups must be a list, got int 3"
    )


def test_the_default_rules_are_valid() -> None:
    path = default_rules_path()
    assert path.name == "default.yaml" and path.is_file()
    assert check_rules(path) == []
    assert load_rules(path).warnings == ()


def _documented_metrics() -> dict[str, frozenset[str]]:
    """Metric name -> label names, read from the tables of docs/metrics.md."""
    documented: dict[str, frozenset[str]] = {}
    section_labels: frozenset[str] = frozenset()
    label_column: int | None = None
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        if line.startswith("## "):
            section_labels, label_column = frozenset(), None
        elif line.startswith(("Labels on every", "Labels: ")):
            section_labels = frozenset(re.findall(r"`(\w+)`", line.split(".")[0]))
        elif line.startswith("| Metric"):
            headers = [h.strip() for h in line.strip("|").split("|")]
            label_column = headers.index("Labels") if "Labels" in headers else None
        elif m := re.match(r"\| `(\w+)` \|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            labels = section_labels
            if label_column is not None:
                without_examples = re.sub(r"\([^)]*\)", "", cells[label_column])
                labels = frozenset(re.findall(r"`(\w+)`", without_examples))
            documented[m.group(1)] = labels
    return documented


def test_known_metrics_match_the_documentation() -> None:
    assert dict(KNOWN_METRICS) == _documented_metrics()


def test_merge_cycles_are_errors(tmp_path: Path) -> None:
    text = "groups:\n  - name: g\n    rules:\n      - &r\n        <<: *r\n        name: a\n"
    path, problems = problems_of(tmp_path, text)
    assert f"{path}:4: a merge key (<<) includes the mapping that contains it" in problems


def test_nested_aliases_do_not_blow_up(tmp_path: Path) -> None:
    """A "billion laughs" of merge keys: each mapping is read once, not 10**25 times."""
    lines = ["x0: &a0 {team: storage}"]
    for i in range(1, 25):
        lines.append(f"x{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 10)}]}}")
    lines += [
        "groups:",
        "  - name: g",
        "    rules:",
        "      - name: r",
        "        condition: {metric: memory_used_ratio, op: '>', threshold: 1}",
        "        level: 2",
        "        labels: *a24",
        "        annotations: {summary: x}",
    ]
    path, problems = problems_of(tmp_path, "\n".join(lines) + "\n")
    assert len(problems) == 25  # the 25 unknown top-level keys
    assert problems[0] == f"{path}:1: unknown key 'x0' in a rule file"
