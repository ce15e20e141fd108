"""Settings: the one place that reads the configuration file and the environment.

The YAML file (SPEC §4) is parsed once at start into a frozen ``Settings`` and passed down.
``${VAR}`` and ``${VAR:-default}`` are interpolated from the environment (an unset variable
without a default becomes null, which switches an adapter off). Unknown keys and wrong types
raise ``ConfigError`` naming the file, line and key. Secrets are ``Secret`` values whose
``repr``/``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bot.errors import ConfigError

DEFAULT_CONFIG = "signoff.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Secret:
    """A string that is never shown in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Duration(timedelta):
    """A ``timedelta`` written in config as ``30s``, ``15m``, ``1h``, ``2d`` or ``250ms``."""


class Network:
    """An IP network (``10.0.0.0/8``, ``::1``; a bare address is one host), for
    ``server.trusted_proxies``. Raises ``ValueError`` for anything else."""

    def __init__(self, text: str) -> None:
        self.network = ipaddress.ip_network(text.strip(), strict=False)

    def __contains__(self, address: object) -> bool:
        try:
            return ipaddress.ip_address(str(address)) in self.network
        except ValueError:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and other.network == self.network

    def __hash__(self) -> int:
        return hash(self.network)

    def __repr__(self) -> str:
        return f"Network({str(self.network)!r})"


def parse_duration(text: str) -> timedelta:
    """Parse ``15m``-style durations. Raises ``ValueError``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h or 2d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 256 * 1024
    max_wait_seconds: int = 60
    #: server processes on one port (``serve --workers``); each is a full signoff server
    workers: int = 1
    trust_proxy_https: bool = False
    #: reverse proxies whose X-Forwarded-For is believed (the console's login throttle
    #: then counts the client's address, not the proxy's)
    trusted_proxies: tuple[Network, ...] = ()
    #: SPEC §6 per-agent caps (429 with Retry-After beyond them)
    max_pending_per_agent: int = 1000
    max_long_polls_per_agent: int = 100


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///./signoff.db"
    #: PostgreSQL connections per process for reads: the event loop's async pool for the
    #: hot reads, and as many reader threads for the rest (``bot.store.database``)
    pool_size: int = 4


@dataclass(frozen=True)
class KeySettings:
    dir: str = "./keys"


@dataclass(frozen=True)
class PolicySettings:
    paths: tuple[str, ...] = ("./policies",)
    #: files of Ed25519 public keys (JWKS as /v1/keys serves, or PEM): only bundles signed
    #: by one of them load (``signoff policy sign``)
    trusted_keys: tuple[str, ...] = ()
    #: the bundle's DSSE envelope (default: policy.sig.json in the first policy folder)
    signature: str = ""
    watch: bool = True


@dataclass(frozen=True)
class GrantSettings:
    ttl: Duration = field(default_factory=lambda: Duration(minutes=10))
    issuer: str = ""


@dataclass(frozen=True)
class WitnessSettings:
    #: the witness's key name; ``key`` its note verifier key (``name+hash+base64``, 0x04)
    name: str = ""
    url: str = ""
    key: str = ""


@dataclass(frozen=True)
class LogSettings:
    origin: str = "signoff.local/log"
    checkpoint_interval: Duration = field(default_factory=lambda: Duration(seconds=1))
    publish_file: str | None = None
    witnesses: tuple[WitnessSettings, ...] = ()
    #: cosignatures a checkpoint needs to count as witnessed (default 1 with witnesses)
    witness_quorum: int = 1
    #: how long one witness may take to answer before it is skipped for this checkpoint
    witness_timeout: Duration = field(default_factory=lambda: Duration(seconds=5))


@dataclass(frozen=True)
class SlackSettings:
    bot_token: Secret | None = None
    signing_secret: Secret | None = None
    app_token: Secret | None = None
    api_base_url: str = "https://slack.com/api/"
    escalation_channel: str | None = None
    usergroup_ttl: Duration = field(default_factory=lambda: Duration(seconds=60))


@dataclass(frozen=True)
class TeamsSettings:
    app_id: str | None = None
    app_password: Secret | None = None
    tenant_id: str | None = None
    insecure_dev_disable_auth: bool = False
    #: where signing keys of inbound tokens come from (JWKS URL); default: Microsoft's,
    #: chosen by the token's issuer. Overridden by tests and private clouds only.
    jwks_url: str | None = None
    #: OAuth 2.0 token endpoint for outbound calls; default:
    #: https://login.microsoftonline.com/<tenant_id or botframework.com>/oauth2/v2.0/token
    token_url: str | None = None
    #: where escalation pages go (both set), like slack.escalation_channel
    escalation_service_url: str | None = None
    escalation_conversation_id: str | None = None


@dataclass(frozen=True)
class PagerDutySettings:
    routing_key: Secret | None = None
    events_url: str = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    session_ttl: Duration = field(default_factory=lambda: Duration(hours=8))
    fast_decision_floor: Duration = field(default_factory=lambda: Duration(seconds=5))


@dataclass(frozen=True)
class EmailSettings:
    """The email channel (SPEC §4): on when ``smtp_url`` is set
    (``smtp://[user:password@]host[:port]``, ``smtps://`` for implicit TLS,
    ``smtp+starttls://`` for STARTTLS). ``from`` is the sender address."""

    smtp_url: Secret | None = None
    from_: str = "signoff@localhost"
    timeout: Duration = field(default_factory=lambda: Duration(seconds=10))


@dataclass(frozen=True)
class CallbackSettings:
    #: let ``callback_url`` name http URLs and loopback/private/link-local addresses
    #: (local development and tests only: it lets agents make the server call internal hosts)
    allow_private_networks: bool = False


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    grants: GrantSettings = field(default_factory=GrantSettings)
    log: LogSettings = field(default_factory=LogSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    teams: TeamsSettings = field(default_factory=TeamsSettings)
    pagerduty: PagerDutySettings = field(default_factory=PagerDutySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    #: the folder relative paths are resolved against (the config file's folder)
    base_dir: str = "."
    #: (setting, variable) for each ``${VAR}`` that was unset, leaving the setting empty
    unset_variables: tuple[tuple[str, str], ...] = ()

    def path(self, value: str) -> Path:
        """Resolve a configured path against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def database_url(self) -> str:
        """``database.url`` with a relative SQLite path resolved against ``base_dir``."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack.bot_token)

    @property
    def teams_enabled(self) -> bool:
        return bool(self.teams.app_id)

    @property
    def email_enabled(self) -> bool:
        return bool(self.email.smtp_url)


T = TypeVar("T")


def config_path(explicit: str | None, environ: typing.Mapping[str, str] | None = None) -> Path:
    """``--config`` if given, else ``$SIGNOFF_CONFIG``, else ``./signoff.yaml``."""
    env = os.environ if environ is None else environ
    return Path(explicit or env.get("SIGNOFF_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: Path | str, environ: typing.Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration file. Raises ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file ({exc.strerror})") from exc
    return parse_settings(text, source=str(p), base_dir=str(p.parent), environ=environ)


def parse_settings(
    text: str,
    *,
    source: str = "<config>",
    base_dir: str = ".",
    environ: typing.Mapping[str, str] | None = None,
) -> Settings:
    """Parse configuration text. Raises ``ConfigError`` naming ``source:line`` and the key."""
    env = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: invalid YAML: {problem}") from exc
    reader = _Reader(source, env)
    if node is None:
        return Settings(base_dir=base_dir)
    try:
        settings = reader.build(Settings, node, "")
    except _Invalid:
        settings = Settings()  # not returned: ``reader.problems`` says what is wrong
    if reader.problems:
        raise ConfigError(
            "; ".join(reader.problems)
            if len(reader.problems) == 1
            else f"{source} has {len(reader.problems)} problems: " + "; ".join(reader.problems),
            details=reader.problems,
        )
    return dataclasses.replace(
        settings, base_dir=base_dir, unset_variables=tuple(dict.fromkeys(reader.unset))
    )


class _Invalid(Exception):
    """One setting is wrong (recorded in ``_Reader.problems``); reading goes on with the next."""


class _Reader:
    """Builds ``Settings`` from the YAML nodes, recording every problem (not just the first)
    and every ``${VAR}`` left unset."""

    def __init__(self, source: str, env: typing.Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.problems: list[str] = []
        self.unset: list[tuple[str, str]] = []

    def fail(self, node: yaml.Node, key: str, message: str) -> typing.NoReturn:
        where = f"{self.source}:{node.start_mark.line + 1}"
        self.problems.append(f"{where}: {key or 'configuration'}: {message}")
        raise _Invalid

    def build(self, cls: type[T], node: yaml.Node, prefix: str) -> T:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, prefix, "expected a mapping")
        hints = typing.get_type_hints(cls)
        fields = {
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name not in ("base_dir", "unset_variables")
        }
        values: dict[str, Any] = {}
        seen: set[str] = set()
        broken = False
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}.{key}" if prefix else key
            if key not in fields and f"{key}_" in fields:
                key = f"{key}_"  # a Python keyword as a key (``email.from``)
            try:
                if key not in fields:
                    known = ", ".join(sorted(fields))
                    self.fail(key_node, dotted, f"unknown key (expected one of: {known})")
                if key in seen:
                    self.fail(key_node, dotted, "duplicate key")
                seen.add(key)
                values[key] = self.convert(hints[key], value_node, dotted)
            except _Invalid:
                broken = True
        if broken:
            raise _Invalid
        return cls(**values)

    def scalar(self, node: yaml.Node, key: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, key, "expected a single value")
        if node.tag == "tag:yaml.org,2002:null":
            return None
        raw = str(node.value)
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            value = self.env.get(m.group(1))
            if value is None:
                if m.group(2) is not None:
                    return m.group(2)
                missing.append(m.group(1))
                return ""
            return value

        out = _ENV.sub(sub, raw)
        if missing and out.strip() == "":
            self.unset.extend((key, name) for name in missing)
            return None  # an unset ${VAR} alone means "not configured"
        return out

    def convert(self, hint: Any, node: yaml.Node, key: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and self.scalar(node, key) is None:
                return None
            return self.convert(inner[0], node, key)
        if dataclasses.is_dataclass(hint):
            return self.build(typing.cast(type[Any], hint), node, key)
        if origin is tuple:
            if isinstance(node, yaml.ScalarNode):
                value = self.scalar(node, key)
                return () if value is None else (value,)
            if not isinstance(node, yaml.SequenceNode):
                self.fail(node, key, "expected a list")
            return tuple(self.convert(args[0], item, key) for item in node.value)
        value = self.scalar(node, key)
        if value is None:
            self.fail(node, key, "a value is required here")
        if hint is str:
            return value
        if hint is Secret:
            return Secret(value)
        if hint is bool:
            lowered = value.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            self.fail(node, key, f"expected true or false, got {value!r}")
        if hint is int:
            try:
                return int(value)
            except ValueError:
                self.fail(node, key, f"expected a whole number, got {value!r}")
        if hint is Network:
            try:
                return Network(value)
            except ValueError:
                self.fail(node, key, f"expected an IP network such as 10.0.0.0/8, got {value!r}")
        if hint is Duration:
            try:
                return Duration(seconds=parse_duration(value).total_seconds())
            except ValueError as exc:
                self.fail(node, key, str(exc))
        self.fail(node, key, f"unsupported setting type {hint!r}")  # pragma: no cover
