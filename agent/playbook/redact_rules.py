"""The agent's built-in secret rules: what ``agent.playbook.redact`` finds by default.

Every rule is line-local (no match crosses a newline) and linear in the length of its
input: quantifiers are bounded or unambiguous, and every regex starts with a literal
or is only run on lines that contain one of its trigger words, so ordinary output is
skipped at C speed. A rule is an object with

* ``apply(text) -> (redacted, count)``: every secret in ``text`` replaced by
  ``MARKER``, and the number of replacements (text that already is ``MARKER`` is not
  counted again);
* ``spans(text)``: the (start, end) of every match, so that a long line is never cut
  through one (see ``StreamRedactor``).

The shapes covered (``docs/playbooks.md`` lists them for people):

* ``TokenRule``: self-identifying token formats, replaced whole: AWS access key ids,
  GitHub, GitLab, Slack (tokens and webhooks), Stripe, Google API keys and OAuth
  access tokens, JWTs, npm, PyPI, Docker Hub, HashiCorp Vault, DigitalOcean, Shopify,
  SendGrid, OpenAI, Anthropic, Hugging Face, Databricks, Grafana, New Relic, Sentry,
  Linear, Postman, Doppler, Pulumi, Atlassian, age secret keys, Telegram bot tokens,
  Terraform Cloud, Azure AD client secrets, crypt(3) password hashes.
* ``KeyValueRule``: the value after a secret-sounding key in ``key=value``,
  ``key: value``, ``"key": "value"``, ``KEY=value`` and ``export KEY=value``,
  ``--flag=value`` and ``--flag value`` (also ``-flag value``, as Java tools write).
  Whether a key is secret is decided on its words (``db_pass``, ``dbPass``,
  ``MYSQL_PWD``, ``client-secret``, ``X-Auth-Token``, ``apiKey``...), see
  ``secret_key``; values that are paths, variable references or words like
  ``true``/``none`` are left alone (``value_is_secret``).
* ``PatternRule`` instances for URL credentials (``scheme://user:pass@``), HTTP
  ``Authorization`` (any scheme) and ``Bearer`` tokens, ``Cookie``/``Set-Cookie``
  headers, XML elements with secret names, SQL ``IDENTIFIED BY '…'`` and ``PASSWORD
  '…'``, ``.netrc`` lines, redis ``requirepass``/``masterauth``, and the password
  options of well-known programs that take them as short flags: decided by the
  program, so ``-p 8080`` of ``docker run`` or ``ssh`` is left alone:

  ========================================  ============================
  program (a word of the command line)      option redacted
  ========================================  ============================
  mysql*, mariadb*, mariabackup,            ``-pVALUE`` (attached only:
  xtrabackup, innobackupex, mydumper,       ``-p VALUE`` makes mysql ask,
  myloader, pt-* (Percona toolkit)          VALUE is then a database)
  sshpass, mongo, mongosh, mongodump, …     ``-p VALUE``, ``-pVALUE``
  redis-cli                                 ``-a VALUE``
  docker/podman/buildah/skopeo/nerdctl/     ``-p VALUE`` after ``login``
  helm/oras/crane … login
  ldapsearch, ldapadd, … (ldap*)            ``-w VALUE``
  ipmitool, sqlcmd, bcp, osql               ``-P VALUE``
  curl                                      ``-u user:VALUE``, ``--user``
  smbclient, rpcclient, smbcacls, net, …    ``-U user%VALUE``
  xfreerdp, wfreerdp                        ``/p:VALUE``
  ========================================  ============================

Private key PEM blocks span lines and are handled by the stream itself
(``agent.playbook.redact``), not here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = [
    "MARKER",
    "KeyValueRule",
    "PatternRule",
    "Rule",
    "TokenRule",
    "default_rules",
    "secret_key",
    "value_is_secret",
]

MARKER = b"[REDACTED]"

Span = tuple[int, int]


class PatternRule:
    """One regex. With capturing groups only their text is replaced, else the whole match.

    ``gate``: lower-case byte strings; the rule runs only on a text whose lower-case
    form contains one of them (a cheap filter for regexes without a literal start).
    ``key_group``: a group holding a key name; a match whose key is not secret
    (``secret_key``) is left as it is. ``word_start``: a match must start a word of a
    command line (at the start of the text, or after a blank or ``/``), else it is left
    as it is (checked here rather than by a look-behind, which would keep the regex
    engine from skipping ahead to the match's literal start).
    """

    def __init__(
        self,
        pattern: re.Pattern[bytes],
        *,
        gate: tuple[bytes, ...] = (),
        key_group: int = 0,
        word_start: bool = False,
    ) -> None:
        self.pattern = pattern
        self._gate = gate
        self._key_group = key_group
        self._word_start = word_start

    def _keeps(self, match: re.Match[bytes]) -> bool:
        """Is ``match`` not a secret after all?"""
        if self._word_start:
            start = match.start()
            if start > 0 and match.string[start - 1 : start] not in _WORD_STARTS:
                return True
        return bool(self._key_group) and not secret_key(match.group(self._key_group))

    def _applies(self, lowered: bytes) -> bool:
        return not self._gate or any(word in lowered for word in self._gate)

    def apply(self, text: bytes, lowered: bytes | None = None) -> tuple[bytes, int]:
        """``lowered``: ``text`` (or a text it was made from by redaction) in lower case."""
        if not text or not self._applies(lowered if lowered is not None else text.lower()):
            return text, 0
        count = 0

        def replace(match: re.Match[bytes]) -> bytes:
            nonlocal count
            if self._keeps(match):
                return match.group()
            redacted, n = replace_groups(match, skip=self._key_group)
            count += n
            return redacted

        return self.pattern.sub(replace, text), count

    def spans(self, text: bytes) -> Iterator[Span]:
        if self._applies(text.lower()):
            for match in self.pattern.finditer(text):
                if not self._keeps(match):
                    yield match.span()


_WORD_STARTS = frozenset((b" ", b"\t", b"/", b"\n", b"\r"))


class TokenRule:
    """Self-identifying tokens, replaced whole (see ``_TOKEN_FORMATS``).

    One regex per format, each starting with a literal that the regex engine finds
    fast (one regex alternating over every format is several times slower: the engine
    cannot skip through it); the few without one run only on a text that contains one
    of their needles.
    """

    def __init__(self) -> None:
        self._formats = tuple(
            (needles, PatternRule(re.compile(pattern))) for needles, pattern in _TOKEN_FORMATS
        )

    def apply(self, text: bytes, lowered: bytes | None = None) -> tuple[bytes, int]:
        count = 0
        for needles, rule in self._formats:
            if not needles or any(needle in text for needle in needles):
                text, n = rule.apply(text)
                count += n
        return text, count

    def spans(self, text: bytes) -> Iterator[Span]:
        for needles, rule in self._formats:
            if not needles or any(needle in text for needle in needles):
                yield from rule.spans(text)


def replace_groups(match: re.Match[bytes], skip: int = 0) -> tuple[bytes, int]:
    """``match``'s text with its groups (or itself, if it has none) made ``MARKER``."""
    whole = match.group()
    if match.re.groups == 0:
        return (whole, 0) if whole == MARKER else (MARKER, 1)
    base, last, count = match.start(), 0, 0
    parts: list[bytes] = []
    for group in range(1, match.re.groups + 1):
        start, end = match.span(group)
        if group == skip or start < 0 or start == end or start - base < last:
            continue
        if match.group(group) == MARKER:
            continue
        parts += [whole[last : start - base], MARKER]
        last, count = end - base, count + 1
    parts.append(whole[last:])
    return b"".join(parts), count


# --- self-identifying tokens ----------------------------------------------------------
# (needles, regex): each regex starts with a literal, which the regex engine finds
# fast; the few that do not run only on a text that contains one of their needles.
_TOKEN_FORMATS: tuple[tuple[tuple[bytes, ...], bytes], ...] = (
    # AWS access key ids (and the other AWS unique-id prefixes that name keys)
    (
        (),
        rb"A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|3T[A-Z0-9])[A-Z0-9]{16}"
        rb"(?![A-Za-z0-9])",
    ),
    # GitHub: classic, OAuth, user-to-server, server-to-server, refresh; fine-grained
    ((), rb"gh[pousr]_[A-Za-z0-9]{36,255}"),
    ((), rb"github_pat_[A-Za-z0-9_]{22,255}"),
    # GitLab personal, deploy, runner, pipeline trigger, feed, OAuth, SCIM, CI job...
    ((), rb"gl(?:pat|dt|rt|ptt|ft|imt|oas|cbt|soat|ffct|agent|wt|rtr)-[0-9A-Za-z_-]{20,255}"),
    ((), rb"GR1348941[0-9A-Za-z_-]{20,255}"),
    # Slack bot/user/app/config tokens and webhooks
    ((), rb"xox(?:[abposre]|e\.xox[bp])-[0-9A-Za-z-]{10,255}"),
    ((), rb"xapp-[0-9]-[0-9A-Za-z-]{10,255}"),
    ((), rb"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,255}"),
    # Stripe secret (sk_) and restricted (rk_) keys (the s or r stays), webhook secrets
    ((), rb"k_(?:live|test|prod)_[0-9A-Za-z]{10,255}"),
    ((), rb"whsec_[A-Za-z0-9+/=]{24,255}"),
    # Google API keys, OAuth access and refresh tokens
    ((), rb"AIza[0-9A-Za-z_-]{35}"),
    ((), rb"ya29\.[0-9A-Za-z_-]{20,2048}"),
    ((), rb"1//0[0-9A-Za-z_-]{30,512}"),
    # JSON web tokens (JWS: 3 parts, JWE: 5 parts)
    ((), rb"eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{4,8192}(?:\.[A-Za-z0-9_-]{0,8192}){1,3}"),
    # npm, PyPI, Docker Hub, HashiCorp Vault
    ((), rb"npm_[A-Za-z0-9]{36}"),
    ((), rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1024}"),
    ((), rb"dckr_pat_[A-Za-z0-9_-]{20,255}"),
    ((), rb"hv[sbr]\.[A-Za-z0-9_-]{24,512}"),
    # DigitalOcean, Shopify, SendGrid, Mailgun
    ((), rb"do[opr]_v1_[a-f0-9]{64}"),
    ((), rb"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ((), rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ((), rb"key-[0-9a-f]{32}(?![0-9a-f])"),
    # OpenAI, Anthropic, Hugging Face
    (
        (),
        rb"sk-(?:(?:proj|svcacct|admin|ant-api\d\d|ant-admin\d\d|ant-sid\d\d)-[A-Za-z0-9_-]{20,512}"
        rb"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
    ),
    ((), rb"hf_[A-Za-z]{34}"),
    ((), rb"api_org_[A-Za-z]{34}"),
    # Databricks, Grafana (cloud, service account), New Relic, Sentry
    ((), rb"dapi[a-f0-9]{32}(?:-[0-9])?"),
    ((), rb"gl(?:c_[A-Za-z0-9+/]{32,400}={0,2}|sa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})"),
    ((), rb"NR(?:AK|II|AA|JS)-[A-Za-z0-9]{27,32}"),
    ((), rb"sntr[ysu]s?_[A-Za-z0-9+/=_-]{30,512}"),
    # Linear, Postman, Doppler, Pulumi, Atlassian API tokens
    ((), rb"lin_api_[A-Za-z0-9]{40}"),
    ((), rb"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    ((), rb"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,64}"),
    ((), rb"pul-[a-f0-9]{40}"),
    ((), rb"ATATT3[A-Za-z0-9_=-]{100,400}"),
    # age secret keys
    ((), rb"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    # crypt(3) password hashes: MD5, bcrypt, SHA-256/512, yescrypt, scrypt, Apache MD5
    ((), rb"\$(?:1|2[abxy]|5|6|7|y|gy|apr1)\$[A-Za-z0-9./=,$-]{20,512}"),
    # Telegram bot tokens (123456789:AA...), Terraform Cloud, Azure AD (Entra) client
    # secrets (3 characters, a digit, Q~, 31-34 characters): no literal start
    ((b":AA",), rb"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])"),
    ((b".atlasv1.",), rb"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,255}"),
    ((b"Q~",), rb"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])"),
)

# --- keys that name a secret ------------------------------------------------------------
_SECRET_SEGMENTS = frozenset(
    b"passin passout passcode passwd password passwords passphrase passwort keypass "
    b"storepass srcstorepass deststorepass srckeypass destkeypass requirepass masterauth "
    b"secret secrets token tokens credential credentials jwt apikey privkey contrasena".split()
)
# Words that name a secret only as the last word of a key: DB_PASS, MYSQL_PWD, X-Sig,
# but not bridge-nf-pass-vlan-input-dev or sctp_timeout_cookie_wait.
_SECRET_LAST = frozenset(b"pass pwd pw cred creds sig signature cookie".split())
_SECRET_WORDS = (
    b"password", b"passwd", b"passphrase", b"secret", b"token", b"credential",
    b"apikey", b"privatekey", b"privkey", b"accesskey", b"authkey", b"secretkey",
    b"clientkey", b"sessionkey", b"signingkey", b"encryptionkey", b"masterkey",
    b"accountkey", b"servicekey", b"appkey", b"applicationkey", b"dbkey",
    b"databasekey", b"sharedkey", b"storagekey", b"licensekey", b"webhookkey", b"contrase",
)  # fmt: skip
# A key ending in one of these names something about the secret, not the secret.
_NOT_SECRET_LAST = frozenset(
    b"file files path paths dir directory fd env type mode length len size count min max "
    b"interval timeout ttl expiry expires expiration expired age lifetime enabled enable "
    b"disabled required prompt policy policies algorithm alg method name names header "
    b"format version url uri endpoint command cmd helper program hint strength changed "
    b"reset validity rotation provider backend source store manager mount location ref "
    b"kind class cache limit errors error retries attempts regex pattern mask field "
    b"column id ids".split()
)
_NOT_SECRET_FIRST = frozenset(b"no max min num total count".split())
_WORDS = re.compile(rb"[A-Z]+(?![a-z])|[A-Z]?[a-z\x80-\xff]+|[0-9]+")  # UTF-8 in words


def secret_key(key: bytes) -> bool:
    """Does ``key`` (``db_pass``, ``--db-password``, ``X-Auth-Token``...) name a secret?

    The key is split into words (``_ . -`` and camelCase); it names a secret when a word
    is a secret word (``token``, ``secret``, ``passwd``...; ``pass``, ``pwd``, ``sig``,
    ``cookie`` only as the last word) or the words run
    together contain one (``apikey``, ``accesskey``, ``password``...), unless its last
    word says it is about the secret (``_file``, ``_length``, ``_ttl``...) or its first
    is ``no``/``max``/``min``.
    """
    words = [w.lower() for w in _WORDS.findall(key)]
    if not words or words[-1] in _NOT_SECRET_LAST or words[0] in _NOT_SECRET_FIRST:
        return False
    if words[-1] in _SECRET_LAST or any(w in _SECRET_SEGMENTS for w in words):
        return True
    joined = b"".join(words)
    return any(word in joined for word in _SECRET_WORDS)


_NOT_SECRET_VALUES = frozenset(
    b"true false yes no on off none null nil undefined undef empty files compat systemd "
    b"sss required optional prompt ask".split()
)
_NOT_SECRET_VALUE_START = re.compile(rb"/|~/|\$\{|\$[A-Za-z_]|%\(|\{\{|file:|env:|fd:|<")


def value_is_secret(value: bytes) -> bool:
    """False for values that cannot be the secret itself (and are worth keeping).

    Paths (``/…``, ``~/…``, ``file:…``), references (``$VAR``, ``${VAR}``, ``env:VAR``,
    ``fd:3``, ``{{ template }}``, ``%(name)s``, ``<placeholder>``), words such as
    ``true``/``none``/``required`` (also followed by a closing bracket or a full stop:
    ``(using password: YES)``), and text that already is ``MARKER``.
    """
    if value == MARKER or value.rstrip(b")]}>.").lower() in _NOT_SECRET_VALUES:
        return False
    return _NOT_SECRET_VALUE_START.match(value) is None


# --- key = value ---------------------------------------------------------------------
# A line is examined only if its lower-case form contains one of these (a key can name
# a secret only if it does).
_KV_GATE = (b"pass", b"pw", b"secret", b"token", b"key", b"cred", b"auth", b"sig", b"cookie",
            b"jwt", b"contrase")  # fmt: skip
_KV_KEY = re.compile(
    rb"(?<![\w.$@\x80-\xff-])(-{0,2}[A-Za-z_\x80-\xff][\w.\x80-\xff-]{0,79})([\"']?)"
    rb"(?:[ \t]*(=>?|:=?(?!//))([ \t]*)|([ \t]+))"
)
_UNQUOTED = rb"[^\s\"'`;&,]{1,4096}(?:,[^\s\"'`;&,]{1,4096}){0,64}"
_VALUE = re.compile(
    rb"\"((?:[^\"\\\n]|\\.){1,4096})\"?|'([^'\n]{1,4096})'?|`([^`\n]{1,4096})`?|("
    + _UNQUOTED
    + rb")"
)
_FLAG_VALUE = re.compile(
    rb"\"((?:[^\"\\\n]|\\.){1,4096})\"?|'([^'\n]{1,4096})'?|([^\s-]\S{0,4095})"
)


class KeyValueRule:
    """Values of secret keys: ``key=value``, ``key: value``, ``--flag value`` (module doc).

    Only lines whose lower-case form contains a trigger word are examined; on those,
    each ``key`` followed by ``=``, ``=>``, ``:``, ``:=`` (``:`` followed by a blank, or
    with a quoted key or value, as YAML and JSON write it) or by blanks (a ``-flag``
    only) is classified with ``secret_key``; the value of a secret key is redacted
    unless ``value_is_secret`` says it cannot be one.
    """

    def apply(self, text: bytes, lowered: bytes | None = None) -> tuple[bytes, int]:
        """``lowered`` is not used: this rule needs the offsets of ``text`` itself."""
        out: list[bytes] = []
        count, position = 0, 0
        for start, end in self._lines(text):
            spans = list(self._values(text, start, end))
            for value_start, value_end in spans:
                out += [text[position:value_start], MARKER]
                position = value_end
            count += len(spans)
        out.append(text[position:])
        return b"".join(out), count

    def spans(self, text: bytes) -> Iterator[Span]:
        for start, end in self._lines(text):
            yield from self._values(text, start, end)

    @staticmethod
    def _lines(text: bytes) -> Iterator[Span]:
        """The (start, end) of each line of ``text`` that holds a trigger word, in order."""
        lowered = text.lower()
        hits: set[int] = set()
        for word in _KV_GATE:
            position = lowered.find(word)
            while position >= 0:
                start = text.rfind(b"\n", 0, position) + 1
                hits.add(start)
                end = text.find(b"\n", position)
                position = -1 if end < 0 else lowered.find(word, end)
        for start in sorted(hits):
            end = text.find(b"\n", start)
            yield start, len(text) if end < 0 else end

    @staticmethod
    def _values(text: bytes, start: int, end: int) -> Iterator[Span]:
        """Spans of the secret values in ``text[start:end]``, one line, left to right."""
        taken = start
        for key in _KV_KEY.finditer(text, start, end):
            if key.start() < taken:
                continue
            name, quote, separator, blank, flag_blank = key.groups()
            if flag_blank is not None:
                if not name.startswith(b"-"):
                    continue
                value = _FLAG_VALUE.match(text, key.end(), end)
            else:
                value = _VALUE.match(text, key.end(), end)
                if value is None:
                    continue
                quoted = (value.lastindex or 0) < 4
                if separator.startswith(b":") and not (blank or quote or quoted):
                    continue  # passwd:chauthtok, host:port - not YAML, not JSON
            if value is None or not secret_key(name):
                continue
            group = value.lastindex or 0
            value_start, value_end = value.span(group)
            if value_is_secret(text[value_start:value_end]):
                yield value_start, value_end
                taken = value.end()


# --- URLs, headers, and program options -----------------------------------------------
# Every regex starts with a literal (a look-behind at the start would keep the engine
# from skipping ahead); "not inside a word" is a look-behind placed after the word.
_ARGS = rb"(?=[ \t])(?:[ \t]+\S+){0,40}?[ \t]+"  # up to 40 arguments, then the option
_OPTION_VALUE = rb"(?:[ \t]+(?=[^\s-]))?(\S+)"  # -p VALUE or -pVALUE


def _word(word: bytes) -> bytes:
    """``word`` (case-insensitive), not preceded by a letter, digit or ``_``."""
    return word + rb"(?<![A-Za-z0-9_]" + word + rb")"


def _option(programs: bytes, option: bytes, value: bytes = _OPTION_VALUE) -> bytes:
    """``PROGRAM [up to 40 arguments] OPTION VALUE``: the option's value is the group."""
    return rb"(?:" + programs + rb")" + _ARGS + option + value


_Context = tuple[bytes, tuple[bytes, ...], bool]  # regex, gate words, starts a command word
_CONTEXT_RULES: tuple[_Context, ...] = (
    # scheme://user:password@host (the user may be empty: redis://:password@host)
    (rb"://[^\s:/@]{0,256}:([^\s/]{1,1024})@", (), False),
    # HTTP authorization, whatever the scheme (Basic, Bearer, Token, Digest...)
    (
        rb"(?i)" + _word(rb"authorization") + rb"[\"']?[ \t]*[:=][ \t]*[\"']?"
        rb"(?:[a-z][\w-]{0,30}[ \t]+)?([^\s\"']{1,8192})",  # the scheme (Basic...) stays
        (b"authorization",),
        False,
    ),
    (rb"(?i)" + _word(rb"bearer") + rb"[ \t]+([A-Za-z0-9._~+/-]{4,8192}=*)", (b"bearer",), False),
    (rb"(?i)" + _word(rb"cookie") + rb"[ \t]*:[ \t]*([^\r\n]{1,8192})", (b"cookie",), False),
    # <password>...</password>, <secretKey>...</secretKey> (the element name is checked)
    (rb"<([A-Za-z_][\w.:-]{0,79})>([^<\n]{1,4096})</\1>", (b"</",), False),
    # SQL: IDENTIFIED BY 'pw', [WITH] [ENCRYPTED] PASSWORD 'pw'
    (
        rb"(?i)" + _word(rb"identified") + rb"[ \t]+(?:with[ \t]+\S+[ \t]+)?by[ \t]+"
        rb"(?:password[ \t]+)?'([^'\n]{1,1024})'",
        (b"identified",),
        False,
    ),
    (rb"(?i)" + _word(rb"password") + rb"[ \t]+'([^'\n]{1,1024})'", (b"password '",), False),
    # .netrc: machine HOST login USER password PASSWORD
    (
        rb"(?i)" + _word(rb"login") + rb"[ \t]+\S+[ \t]+password[ \t]+(\S+)",
        (b"password",),
        False,
    ),
    # redis.conf
    (
        rb"(?m)^[ \t]*(?:requirepass|masterauth)[ \t]+(\S+)",
        (b"requirepass", b"masterauth"),
        False,
    ),
    # program options: decided by the program (see the module docstring)
    (
        _option(
            rb"mysql\w*|mariadb[\w-]*|mariabackup|xtrabackup|innobackupex|mydumper|myloader"
            rb"|pt-[\w-]+",
            rb"-p",
            rb"(\S+)",
        ),
        (b"mysql", b"maria", b"backup", b"mydumper", b"myloader", b"pt-"),
        True,
    ),
    (
        _option(
            rb"sshpass|mongo|mongosh|mongodump|mongorestore|mongoexport|mongoimport"
            rb"|mongostat|mongotop|mongofiles",
            rb"-p",
        ),
        (b"sshpass", b"mongo"),
        True,
    ),
    (_option(rb"redis-cli|valkey-cli|keydb-cli", rb"-a"), (b"-cli",), True),
    (
        rb"(?:docker|podman|buildah|skopeo|nerdctl|helm|oras|crane|regctl)"
        rb"(?:[ \t]+\S+){0,3}?[ \t]+login" + _ARGS + rb"-p" + _OPTION_VALUE,
        (b"login",),
        True,
    ),
    (_option(rb"ldap\w+", rb"-w"), (b"ldap",), True),
    (
        _option(rb"ipmitool|sqlcmd|bcp|osql", rb"-P"),
        (b"ipmitool", b"sqlcmd", b"bcp", b"osql"),
        True,
    ),
    (
        _option(rb"curl", rb"(?:-u|-U|--user|--proxy-user)", rb"(?:[ \t]+|=)?[^\s:]*:(\S+)"),
        (b"curl",),
        True,
    ),
    (
        _option(
            rb"smbclient|rpcclient|smbcacls|smbget|smbmap|smbtree|net|wbinfo|mount\.cifs",
            rb"(?:-U|--user(?:name)?)",
            rb"(?:[ \t]+|=)?[^\s%]*%(\S+)",
        ),
        (b"%",),
        True,
    ),
    (_option(rb"[xw]freerdp3?", rb"/p:", rb"(\S+)"), (b"freerdp",), True),
)


Rule = PatternRule | TokenRule | KeyValueRule


def default_rules() -> tuple[Rule, ...]:
    """The built-in rules, in the order they are applied."""
    rules: list[Rule] = [TokenRule()]
    for pattern, gate, word_start in _CONTEXT_RULES:
        compiled = re.compile(pattern)
        key_group = 1 if pattern.startswith(rb"<(") else 0
        rules.append(PatternRule(compiled, gate=gate, key_group=key_group, word_start=word_start))
    rules.append(KeyValueRule())
    return tuple(rules)


def all_spans(rules: Iterable[Rule], text: bytes) -> list[Span]:
    """Every match of every rule in ``text``."""
    return [span for rule in rules for span in rule.spans(text)]
