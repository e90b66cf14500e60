"""The service's one YAML file, checked by typed models; a wrong key or value is one line naming it.

Camera options have global defaults (``defaults:``) that each camera may override, as in Frigate.
"""

from __future__ import annotations

import difflib
import ipaddress
import socket
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from maskwatch.labels import LABELS, canonical_label


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraDefaults(_Strict):
    detector_size: int = Field(320, ge=0, le=4096)
    detect_every: int = Field(1, ge=1, le=100)
    max_fps: float = Field(10.0, gt=0, le=120)
    min_face_px: float = Field(16.0, ge=0)
    offline_after_s: float = Field(10.0, gt=0)


class CameraConfig(_Strict):
    """One camera; unset options come from ``defaults``."""

    source: str
    detector_size: int | None = Field(None, ge=0, le=4096)
    detect_every: int | None = Field(None, ge=1, le=100)
    max_fps: float | None = Field(None, gt=0, le=120)
    min_face_px: float | None = Field(None, ge=0)
    offline_after_s: float | None = Field(None, gt=0)


class ResolvedCamera(_Strict):
    """A camera with every option filled in (what the readers and the worker use)."""

    name: str
    source: str
    detector_size: int
    detect_every: int
    max_fps: float
    min_face_px: float
    offline_after_s: float


class EventsConfig(_Strict):
    labels: tuple[str, ...] = ("without_mask", "mask_incorrect")
    min_frames: int = Field(3, ge=1)
    min_score: float = Field(0.6, ge=0, le=1)
    cooldown_s: float = Field(5.0, ge=0)

    @field_validator("labels", mode="before")
    @classmethod
    def _canonical(cls, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        return tuple(canonical_label(str(v)) for v in value)


class SnapshotsConfig(_Strict):
    dir: Path = Path("snapshots")
    blur: Literal["others", "all", "none"] = "others"
    quality: int = Field(90, ge=10, le=100)


class TlsConfig(_Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "maskwatch"
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    queue_size: int = Field(1000, ge=1)
    stats_interval_s: float = Field(30.0, gt=0)


class WebhookConfig(_Strict):
    url: str
    labels: tuple[str, ...] | None = None  # None: every event
    timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=20)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class RetentionConfig(_Strict):
    days: float = Field(30.0, gt=0)
    max_mb: float = Field(1000.0, gt=0)
    interval_s: float = Field(3600.0, gt=0)


class HttpConfig(_Strict):
    """The HTTP API and dashboard. Without ``token`` it listens on loopback only (see :func:`exposure_problem`)."""

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)  # 0: no HTTP server
    token: SecretStr | None = None  # Bearer token / login secret; also `serve --token` or MASKWATCH_TOKEN
    trust_proxy: bool = False  # honour X-Forwarded-Proto (a TLS reverse proxy in front)
    session_hours: float = Field(12.0, gt=0, le=24 * 90)  # login cookie lifetime
    max_upload_bytes: int = Field(10_000_000, ge=1024, le=1_000_000_000)  # POST /api/detect request body
    max_concurrent_detect: int = Field(2, ge=1, le=64)  # more at once: 429
    upload_timeout_s: float = Field(30.0, gt=0, le=3600)  # an upload body slower than this: 408
    max_streams: int = Field(32, ge=1, le=10_000)  # open MJPEG + SSE streams at once; more: 503
    stream_fps: float = Field(5.0, gt=0, le=30)  # MJPEG frames per second per client, at most
    jpeg_quality: int = Field(80, ge=10, le=100)  # live view (latest.jpg, MJPEG)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 8:
            raise ValueError(
                "must be at least 8 characters (make one: python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(http: HttpConfig, *, insecure: bool) -> str | None:
    """One line when the API would be reachable from other machines without a token (refused unless ``--insecure``)."""
    if http.port == 0 or http.token is not None or insecure or is_loopback(http.host):
        return None
    return (
        f"http.host {http.host!r} without a token would let anyone on the network in: set http.token "
        "(or --token / MASKWATCH_TOKEN), bind 127.0.0.1, or pass --insecure"
    )


class ServeConfig(_Strict):
    node: str = Field(default_factory=socket.gethostname)
    model: str | None = None  # ONNX classifier; None: the shipped one
    detector: str = "centerface"
    detector_int8: bool | None = None  # CenterFace's int8 copy; None: below 640 px (runtime.detectors.INT8_BELOW_SIZE)
    defaults: CameraDefaults = CameraDefaults()
    cameras: dict[str, CameraConfig]
    events: EventsConfig = EventsConfig()
    store: str = "sqlite:///maskwatch.db"
    snapshots: SnapshotsConfig = SnapshotsConfig()
    mqtt: MqttConfig | None = None
    webhooks: list[WebhookConfig] = []
    retention: RetentionConfig = RetentionConfig()
    http: HttpConfig = HttpConfig()

    @field_validator("cameras")
    @classmethod
    def _names(cls, value: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        if not value:
            raise ValueError("needs at least one camera")
        for name in value:
            if not name or any(ch in name for ch in "/#+ ") or name != name.strip():
                raise ValueError(f"camera name {name!r} may not contain '/', '#', '+' or spaces (it is an MQTT topic level)")
        return value

    def resolved_cameras(self) -> list[ResolvedCamera]:
        """Each camera's options, falling back to ``defaults``."""
        out = []
        for name, camera in self.cameras.items():
            values = self.defaults.model_dump()
            values.update({k: v for k, v in camera.model_dump().items() if v is not None})
            out.append(ResolvedCamera(name=name, **values))
        return out


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at ``loc`` (for the close-match hint on an unknown key)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None:
            return []
        if isinstance(part, int):  # a list index (webhooks.0.url)
            continue
        field = current.model_fields.get(str(part))
        if field is None:  # a dict key such as a camera name
            current = CameraConfig if current is ServeConfig else None
            continue
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if str(part) == "cameras":
            current = ServeConfig  # the next part is a camera name
            continue
        current = candidates[0] if candidates else None
    return list(current.model_fields) if current is not None else []


#: Keys whose values an error message must not repeat.
SECRET_KEYS = frozenset({"token", "password"})


def format_error(path: str, error: ValidationError) -> str:
    """The first problem as one line: file, dotted key, what is wrong."""
    problems = error.errors()
    first = next((p for p in problems if p["type"] == "extra_forbidden"), problems[0])  # a typo also shows as "required"
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("function-", "list["))))
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(ServeConfig, loc), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{path}: {key}: unknown key{hint}"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    secret = str(loc[-1]) in SECRET_KEYS if loc else False  # never echo a token or password
    shown = "" if secret or isinstance(got, dict | list) or got is None else f" (got {got!r})"
    more = len(problems) - 1
    return f"{path}: {key}: {message}{shown}" + (f"; and {more} more problem(s)" if more else "")


def parse_config(data: object, path: str = "<config>") -> ServeConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_error(path, error)) from None
    except ValueError as error:  # an unknown label alias raised inside a validator
        raise ConfigError(f"{path}: {error}") from None


def load_config(path: str | Path) -> ServeConfig:
    """Read and check a YAML config (raises :class:`ConfigError` with one line)."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', None) or error})") from None
    return parse_config(data, str(path))


def with_token(config: ServeConfig, token: str | None) -> ServeConfig:
    """``config`` with ``http.token`` replaced by ``--token`` / ``MASKWATCH_TOKEN`` when given (checked the same way)."""
    if token is None:
        return config
    try:
        http = HttpConfig.model_validate({**config.http.model_dump(), "token": token})
    except ValidationError as error:
        raise ConfigError(f"--token: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return config.model_copy(update={"http": http})


__all__ = ["LABELS", "ConfigError", "ResolvedCamera", "ServeConfig", "load_config", "parse_config"]
