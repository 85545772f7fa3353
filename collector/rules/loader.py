"""Rule files: load, validate and report every problem as ``FILE:LINE: message``.

``load_rules(path)`` reads one YAML file or every ``*.yaml``/``*.yml`` file of a
directory (not recursive, in name order) and returns a ``RuleSet``, or raises
``RuleFileError`` listing *all* problems found. ``check_rules(path)`` returns that list
instead (empty: valid) for ``aftercare-collector rules check``.

The files are composed (not constructed) with PyYAML's safe loader so that every key
and value keeps its line; the schema is then checked by hand: unknown keys (with a
suggestion), missing keys, duplicate keys, types, durations, ranges, regular
expressions, templates, and rule names unique across all files. Metric names the agent
does not send (``catalog.KNOWN_METRICS``) are warnings, in ``RuleSet.warnings``.
The schema is documented in docs/rules.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar, cast

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from collector.rules.catalog import KNOWN_METRICS, is_counter
from collector.rules.errors import RuleFileError
from collector.rules.model import (
    OPS,
    Condition,
    Heartbeat,
    Matcher,
    Op,
    Predict,
    Rule,
    RuleSet,
)
from collector.rules.template import (
    NUMBER_FIELDS,
    TEXT_FIELDS,
    Template,
    TemplateError,
    parse_template,
)
from playbooks.yamlnodes import Entries, Invalid, NodeReader, attempt, by_line, suggest

__all__ = ["check_rules", "default_rules_path", "load_rules"]

_TOP_KEYS = ("groups",)
_GROUP_KEYS = ("name", "rules")
_RULE_KEYS = (
    "name",
    "condition",
    "heartbeat",
    "for",
    "level",
    "labels",
    "annotations",
    "playbook",
)
_CONDITION_KEYS = ("metric", "match", "op", "threshold", "rate", "predict", "per", "abs")
_PREDICT_KEYS = ("window", "within")
_HEARTBEAT_KEYS = ("grace",)
_ANNOTATION_KEYS = ("summary", "description")

_RULE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAYBOOK_NAME = re.compile(r"[a-z][a-z0-9-]*")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SUFFIXES = (".yaml", ".yml")

_T = TypeVar("_T")


def default_rules_path() -> Path:
    """The rule file shipped with the collector (``collector/rules/default.yaml``)."""
    return Path(__file__).with_name("default.yaml")


def load_rules(path: Path) -> RuleSet:
    """The rules of ``path`` (a file, or a directory of rule files).

    Raises RuleFileError listing every problem (each ``FILE:LINE: message``)."""
    problems: list[str] = []
    warnings: list[str] = []
    files = _rule_files(Path(path), problems)
    rules: list[Rule] = []
    names: list[tuple[str, str]] = []
    for file in files:
        checker = _File(file)
        rules.extend(checker.load())
        problems.extend(by_line(checker.problems + list(_duplicate_names(names, checker))))
        warnings.extend(by_line(checker.warnings))
    if problems:
        raise RuleFileError(problems, warnings)
    return RuleSet(tuple(rules), tuple(files), tuple(warnings))


def check_rules(path: Path) -> list[str]:
    """Every problem in the rule file(s) at ``path``, ``FILE:LINE: message``; empty if
    they are valid. Warnings are not problems: see ``load_rules(path).warnings``."""
    try:
        load_rules(path)
    except RuleFileError as exc:
        return list(exc.problems)
    return []


def _rule_files(path: Path, problems: list[str]) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if not files:
            problems.append(f"{path}: no rule files (*.yaml) in this directory")
        return files
    if not path.exists():
        problems.append(f"{path}: no such file or directory")
        return []
    return [path]


def _duplicate_names(seen: list[tuple[str, str]], file: _File) -> Iterator[str]:
    """Problems for the names of ``file`` already in ``seen`` (then adds them)."""
    first = dict(reversed(seen))
    for name, source in file.names:
        if name in first:
            yield f"{source}: duplicate rule name {name!r} (first defined at {first[name]})"
        else:
            first[name] = source
        seen.append((name, source))


class _File(NodeReader):
    """Checks one file, collecting problems and warnings instead of stopping."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path
        self.warnings: list[str] = []
        self.names: list[tuple[str, str]] = []  # (rule name, FILE:LINE)
        self.read_mappings: dict[int, Entries] = {}  # id(node) -> entries
        self.reading: set[int] = set()  # mappings being read (merge cycles)

    def warn(self, node: Node, message: str) -> None:
        self.warnings.append(f"{self.where(node)}: warning: {message}")

    # -- the document ----------------------------------------------------------------

    def load(self) -> list[Rule]:
        root = self._compose()
        if root is None:
            return []
        try:
            top = self.mapping(root, "a rule file", _TOP_KEYS, required=("groups",))
            groups = self.sequence(top["groups"][1], "groups")
        except Invalid:
            return []
        return [rule for group in groups for rule in self.group(group)]

    def _compose(self) -> Node | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(None, f"cannot read: {exc}")
            return None
        return self.compose_text(text, empty="empty rule file: expected `groups:`")

    def group(self, node: Node) -> list[Rule]:
        try:
            entries = self.mapping(node, "a group", _GROUP_KEYS, required=("name", "rules"))
            name = self.string(entries["name"][1], "group name")
            rules = self.sequence(entries["rules"][1], "rules")
        except Invalid:
            return []
        loaded = (self.rule(rule_node, name) for rule_node in rules)
        return [rule for rule in loaded if rule is not None]

    def rule(self, node: Node, group: str) -> Rule | None:
        before = len(self.problems)
        try:
            entries = self.mapping(
                node, "a rule", _RULE_KEYS, ("name", "level", "annotations"), stop=False
            )
        except Invalid:
            return None
        parsed = _RuleParts(self, node, entries)
        if parsed.name is not None:
            self.names.append((parsed.name, self.where(node)))
        if len(self.problems) > before:
            return None
        return parsed.build(group, self.where(node))

    # -- mappings and levels (NodeReader has the other readers) ----------------------

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: Collection[str],
        required: Collection[str] = (),
        *,
        stop: bool = True,
    ) -> Entries:
        """The mapping's entries; unknown and missing keys are reported (missing ones
        then raise Invalid, unless ``stop`` is false)."""
        entries = self.entries(node, what)
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                self.error(key_node, f"unknown key {key!r} in {what}{suggest(key, allowed)}")
        missing = [key for key in required if key not in entries]
        for key in missing:  # reported on the line that names the mapping, if any
            at = self.key_of.get(id(node), node)
            self.error(at, f"{what} is missing the required key {key!r}")
        if missing and stop:
            raise Invalid(what)
        return entries

    def entries(self, node: Node, what: str) -> Entries:
        """Key -> (key node, value node), merge keys (``<<``) applied, no duplicates.
        Read once per node (aliases share the result: no exponential blow-up)."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping, got {self.describe(node)}")
        if id(node) in self.read_mappings:
            return self.read_mappings[id(node)]
        if id(node) in self.reading:
            raise self.error(node, "a merge key (<<) includes the mapping that contains it")
        self.reading.add(id(node))
        try:
            entries = self._read_entries(node, what)
        finally:
            self.reading.discard(id(node))
        self.read_mappings[id(node)] = entries
        return entries

    def _read_entries(self, node: MappingNode, what: str) -> Entries:
        entries: Entries = {}
        merged: list[Entries] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self.entries(m, what) for m in self.merge_sources(value_node))
                continue
            key = self.key(key_node)
            if key in entries:
                first = entries[key][0].start_mark.line + 1
                self.error(key_node, f"duplicate key {key!r} (first at line {first})")
                continue
            entries[key] = (cast(ScalarNode, key_node), value_node)
            self.key_of[id(value_node)] = key_node
        for extra in merged:
            for key, pair in extra.items():
                entries.setdefault(key, pair)
        return entries

    def merge_sources(self, node: Node) -> list[Node]:
        if isinstance(node, SequenceNode):
            return list(node.value)
        return [node]

    def level(self, node: Node) -> int:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
            raise self.error(
                node,
                f"level must be a fault level 1, 2, 3 or 4 (1 = most severe), "
                f"got {self.describe(node)}",
            )
        return value


class _RuleParts:
    """The fields of one rule, each read (and reported) independently."""

    def __init__(self, file: _File, node: Node, entries: Entries) -> None:
        self.file = file
        self.node = node
        self.entries = entries
        self.name = self.field("name", self.read_name)
        self.level = self.field("level", file.level)
        self.labels = self.field("labels", lambda n: self.string_map(n, "labels")) or {}
        self.playbook = self.field("playbook", self.read_playbook)
        self.condition: Condition | None = None
        self.heartbeat: Heartbeat | None = None
        self.for_seconds = 0.0
        self.kind()
        self.summary, self.description = self.annotations()

    def field(self, key: str, read: Callable[[Node], _T]) -> _T | None:
        """``read`` applied to the value of ``key``; None if absent or reported."""
        pair = self.entries.get(key)
        if pair is None:
            return None
        try:
            return read(pair[1])
        except Invalid:
            return None

    def read_name(self, node: Node) -> str:
        hint = "use lower case letters, digits and _, starting with a letter"
        return self.file.pattern(node, "rule name", _RULE_NAME, hint)

    def read_playbook(self, node: Node) -> str:
        hint = "use lower case letters, digits and -, starting with a letter"
        return self.file.pattern(node, "playbook", _PLAYBOOK_NAME, hint)

    def kind(self) -> None:
        has = [key for key in ("condition", "heartbeat") if key in self.entries]
        if len(has) != 1:
            message = (
                "a rule has either `condition` or `heartbeat`, not both"
                if has
                else "a rule needs a `condition` (or a `heartbeat`)"
            )
            self.file.error(self.node, message)
            return
        if has == ["heartbeat"]:
            self.heartbeat = self.field("heartbeat", self.read_heartbeat)
            if "for" in self.entries:
                self.file.error(
                    self.entries["for"][0],
                    "`for` does not apply to a heartbeat rule: its `grace` is the wait",
                )
            return
        self.condition = self.field("condition", self.read_condition)
        self.for_seconds = self.field("for", lambda n: self.file.duration(n, "for")) or 0.0

    def read_heartbeat(self, node: Node) -> Heartbeat:
        entries = self.file.mapping(node, "heartbeat", _HEARTBEAT_KEYS, required=("grace",))
        grace = self.file.duration(entries["grace"][1], "grace", positive=True)
        return Heartbeat(grace)

    def read_condition(self, node: Node) -> Condition:
        file = self.file
        entries = file.mapping(node, "condition", _CONDITION_KEYS, ("metric", "op", "threshold"))
        reader = _ConditionReader(file, node, entries)
        return reader.read()

    def string_map(self, node: Node, what: str) -> dict[str, str]:
        entries = self.file.entries(node, what)
        result: dict[str, str] = {}
        for key, (key_node, value_node) in entries.items():
            if not _LABEL_NAME.fullmatch(key):
                self.file.error(key_node, f"{what}: {key!r} is not a valid label name")
                continue
            result[key] = self.file.text(value_node, f"{what}.{key}")
        return result

    def annotations(self) -> tuple[Template | None, Template | None]:
        pair = self.entries.get("annotations")
        if pair is None:  # reported as a missing key already
            return None, None
        try:
            entries = self.file.mapping(pair[1], "annotations", _ANNOTATION_KEYS, ("summary",))
        except Invalid:
            return None, None
        return self.template(entries, "summary"), self.template(entries, "description")

    def template(self, entries: Entries, key: str) -> Template | None:
        pair = entries.get(key)
        if pair is None:
            return Template("", ())
        node = pair[1]
        try:
            source = self.file.text(node, f"annotations.{key}")
        except Invalid:
            return None
        fields, labels = self.template_names()
        try:
            return parse_template(source, fields=fields, labels=labels)
        except TemplateError as exc:
            self.file.error(node, f"annotations.{key}: {exc}", _line_offset(node, exc.offset))
            return None

    def template_names(self) -> tuple[set[str], set[str] | None]:
        """The placeholders and label names this rule's templates may use."""
        fields = {*TEXT_FIELDS, *(NUMBER_FIELDS - {"eta"}), "labels"}
        if self.condition is not None and self.condition.predict is not None:
            fields.add("eta")
        own = set(self.labels)
        if self.heartbeat is not None:
            return fields, own
        if self.condition is None:
            return fields, None
        metric_labels = KNOWN_METRICS.get(self.condition.metric)
        return fields, None if metric_labels is None else own | metric_labels

    def build(self, group: str, source: str) -> Rule:
        assert self.name is not None and self.level is not None and self.summary is not None
        return Rule(
            name=self.name,
            level=self.level,
            summary=self.summary,
            condition=self.condition,
            heartbeat=self.heartbeat,
            for_seconds=self.for_seconds,
            labels=self.labels,
            description=self.description or Template("", ()),
            playbook=self.playbook,
            group=group,
            source=source,
        )


class _ConditionReader:
    """Reads a ``condition`` mapping; the first broken field stops it (raises Invalid)."""

    def __init__(self, file: _File, node: Node, entries: Entries) -> None:
        self.file = file
        self.node = node
        self.entries = entries

    def value(self, key: str) -> Node | None:
        pair = self.entries.get(key)
        return pair[1] if pair is not None else None

    def read(self) -> Condition:
        """The condition; every broken field is reported before raising Invalid."""
        before = len(self.file.problems)
        metric = attempt(lambda: self.metric(self.entries["metric"][1]))
        op = attempt(lambda: self.op(self.entries["op"][1]))
        threshold = attempt(lambda: self.file.number(self.entries["threshold"][1], "threshold"))
        mode = attempt(lambda: self.mode(metric, op))
        matchers = attempt(lambda: self.matchers(metric))
        per = attempt(self.per)
        absolute = attempt(lambda: self.absolute(mode[1] if mode else None))
        if len(self.file.problems) > before:
            raise Invalid("condition")
        assert metric is not None and op is not None and threshold is not None
        assert mode is not None and matchers is not None and absolute is not None
        return Condition(
            metric=metric,
            op=op,
            threshold=threshold,
            matchers=matchers,
            rate_seconds=mode[0],
            predict=mode[1],
            per=per,
            absolute=absolute,
        )

    def metric(self, node: Node) -> str:
        metric = self.file.pattern(node, "metric", _METRIC_NAME, "use a snake_case metric name")
        if metric not in KNOWN_METRICS:
            self.file.warn(
                node,
                f"metric {metric!r} is not one the agent sends (docs/metrics.md)"
                f"{suggest(metric, KNOWN_METRICS)}; the rule will never match unless "
                f"something else sends it",
            )
        return metric

    def op(self, node: Node) -> Op:
        value = self.file.scalar(node)
        if value not in OPS:
            raise self.file.error(
                node, f"op must be one of {' '.join(OPS)}, got {self.file.describe(node)}"
            )
        return cast(Op, value)

    def mode(self, metric: str | None, op: Op | None) -> tuple[float | None, Predict | None]:
        rate_node, predict_node = self.value("rate"), self.value("predict")
        if rate_node is not None and predict_node is not None:
            raise self.file.error(predict_node, "use `rate` or `predict`, not both")
        if rate_node is not None:
            if metric is not None and not is_counter(metric):
                self.file.warn(rate_node, f"rate of {metric!r}, which is not a counter")
            return self.file.duration(rate_node, "rate", positive=True), None
        if predict_node is not None:
            if op in ("==", "!="):
                raise self.file.error(predict_node, "predict needs op >, >=, < or <=")
            return None, self.predict(predict_node)
        return None, None

    def predict(self, node: Node) -> Predict:
        entries = self.file.mapping(node, "predict", _PREDICT_KEYS, required=_PREDICT_KEYS)
        window = self.file.duration(entries["window"][1], "predict.window", positive=True)
        within = self.file.duration(entries["within"][1], "predict.within", positive=True)
        return Predict(window, within)

    def matchers(self, metric: str | None) -> tuple[Matcher, ...]:
        node = self.value("match")
        if node is None:
            return ()
        known = KNOWN_METRICS.get(metric) if metric is not None else None
        matchers: list[Matcher] = []
        for label, (key_node, value_node) in self.file.entries(node, "match").items():
            if known is not None and label not in known:
                has = f"its labels: {', '.join(sorted(known))}" if known else "it has no labels"
                self.file.error(
                    key_node,
                    f"match: {metric!r} has no label {label!r}{suggest(label, known)} ({has})",
                )
                continue
            matcher = attempt(functools.partial(self.matcher, label, value_node))
            if matcher is not None:
                matchers.append(matcher)
        return tuple(matchers)

    def matcher(self, label: str, node: Node) -> Matcher:
        if not _LABEL_NAME.fullmatch(label):
            raise self.file.error(node, f"match: {label!r} is not a valid label name")
        text = self.file.text(node, f"match.{label}")
        try:
            return Matcher.parse(label, text)
        except ValueError as exc:
            raise self.file.error(node, f"match.{label}: {exc}") from exc

    def per(self) -> str | None:
        node = self.value("per")
        if node is None:
            return None
        divisor = self.file.pattern(node, "per", _METRIC_NAME, "use a metric name")
        labels = KNOWN_METRICS.get(divisor)
        if labels is None:
            self.file.warn(node, f"per: metric {divisor!r} is not one the agent sends")
        elif labels:
            raise self.file.error(node, f"per: {divisor!r} has labels; use a metric without")
        return divisor

    def absolute(self, predict: Predict | None) -> bool:
        node = self.value("abs")
        if node is None:
            return False
        value = self.file.boolean(node, "abs")
        if value and predict is not None:
            raise self.file.error(node, "abs does not combine with predict")
        return value


def _line_offset(node: Node, offset: int) -> int:
    """Lines between a scalar's first line and ``offset`` in its value (literal block
    scalars keep their lines; other styles fold them, so the first line is reported)."""
    if not isinstance(node, ScalarNode) or node.style != "|":
        return 0
    return 1 + str(node.value).count("\n", 0, offset)
