"""All settings, from the environment, in one place.

With nothing set the service runs on this machine: a local Temporal dev
server, a SQLite file under .dunning/, and providers that capture messages
locally instead of sending them.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from db.audit_checkpoint import outside_file
from db.private_files import create_private_once
from dunning.contract import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE
from dunning.metro2 import Furnisher

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / ".dunning"


def _env(name: str, **kwargs):
    return Field(validation_alias=AliasChoices(name), **kwargs)


def secret_value(secret: SecretStr | str | None) -> str:
    """The text of a secret setting ('' when unset)."""
    if secret is None:
        return ""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def hide_url_password(url: str) -> str:
    """A database URL fit for a log line or a repr: its password as ***."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: show nothing of it
        return "***"
    return parsed.render_as_string(hide_password=True) if parsed.password else url


class SecretSettings(BaseSettings):
    """Settings whose secrets are `SecretStr`: their repr, str() and a
    traceback's locals show `**********`, and the database URL's password
    `***`; the code that needs a secret asks for `.get_secret_value()`."""

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            yield name, (hide_url_password(value) if name == "database_url" and isinstance(value, str) else value)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False):
        # model_copy does not validate: a plain str given for a secret (tests,
        # the simulator) is wrapped, so `.get_secret_value()` works everywhere.
        if update:
            update = {name: (SecretStr(value) if isinstance(value, str) and _is_secret(type(self), name) else value)
                      for name, value in update.items()}
        return super().model_copy(update=update, deep=deep)


def _is_secret(model: type[BaseSettings], name: str) -> bool:
    field = model.model_fields.get(name)
    return field is not None and SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))


class Settings(SecretSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    temporal_address: str = _env("TEMPORAL_ADDRESS", default=DEFAULT_ADDRESS)
    temporal_namespace: str = _env("TEMPORAL_NAMESPACE", default=DEFAULT_NAMESPACE)
    task_queue: str = _env("DUNNING_TASK_QUEUE", default=DEFAULT_TASK_QUEUE)
    database_url: str = _env("DUNNING_DATABASE_URL", default=f"sqlite:///{STATE_DIR / 'dunning.db'}")
    config_dir: Path = _env("DUNNING_CONFIG_DIR", default=PROJECT_ROOT / "config")
    # The one-click repayment page; the signed token is appended to it.
    pay_link_base_url: str = _env("DUNNING_PAY_LINK_BASE_URL", default="http://localhost:8000/pay")
    # Signs repayment-link tokens. Unset, a random one is kept in .dunning/.
    pay_link_secret: SecretStr = _env("DUNNING_PAY_LINK_SECRET", default=SecretStr(""))
    pay_link_max_age_days: int = _env("DUNNING_PAY_LINK_MAX_AGE_DAYS", default=30)
    lender_name: str = _env("DUNNING_LENDER_NAME", default="Example Lender")
    log_level: str = _env("DUNNING_LOG_LEVEL", default="INFO")
    # The field team's app authenticates to POST /visits/{id}/report with
    # `Authorization: Bearer <token>`; unset, that endpoint answers 503.
    field_api_token: SecretStr = _env("DUNNING_FIELD_API_TOKEN", default=SecretStr(""))
    # Prometheus metrics (the SDK's and the service's own) on this port of the
    # worker, at /metrics; unset, none are served. They listen on this machine
    # only unless DUNNING_METRICS_HOST says otherwise (e.g. 0.0.0.0 in a
    # container whose port a scraper reaches).
    metrics_port: int | None = _env("DUNNING_METRICS_PORT", default=None)
    metrics_host: str = _env("DUNNING_METRICS_HOST", default="127.0.0.1")

    # Providers, per channel (runtime/channels.py). `local` captures messages
    # on this machine and needs no credentials; a real provider needs its own.
    sms_provider: Literal["local", "twilio"] = _env("DUNNING_SMS_PROVIDER", default="local")
    voice_provider: Literal["local", "twilio"] = _env("DUNNING_VOICE_PROVIDER", default="local")
    email_provider: Literal["local", "sendgrid"] = _env("DUNNING_EMAIL_PROVIDER", default="local")
    push_provider: Literal["local", "push"] = _env("DUNNING_PUSH_PROVIDER", default="local")
    letter_provider: Literal["local", "lob"] = _env("DUNNING_LETTER_PROVIDER", default="local")
    # The gateway's public URL: providers' status, gather and event callbacks.
    public_base_url: str = _env("DUNNING_PUBLIC_BASE_URL", default="http://localhost:8000")
    twilio_account_sid: str = _env("TWILIO_ACCOUNT_SID", default="")
    twilio_auth_token: SecretStr = _env("TWILIO_AUTH_TOKEN", default=SecretStr(""))
    twilio_from_number: str = _env("TWILIO_FROM_NUMBER", default="")
    twilio_messaging_service_sid: str = _env("TWILIO_MESSAGING_SERVICE_SID", default="")
    twilio_api_base_url: str = _env("TWILIO_API_BASE_URL", default="https://api.twilio.com")
    sendgrid_api_key: SecretStr = _env("SENDGRID_API_KEY", default=SecretStr(""))
    sendgrid_from_email: str = _env("SENDGRID_FROM_EMAIL", default="")
    sendgrid_api_host: str = _env("SENDGRID_API_HOST", default="https://api.sendgrid.com")
    # A SendGrid unsubscribe group (Suppressions -> Unsubscribe Groups) every
    # e-mail is sent in (`asm.group_id`); unset, none (the one-click
    # List-Unsubscribe header is sent either way).
    sendgrid_unsubscribe_group_id: int | None = _env("SENDGRID_UNSUBSCRIBE_GROUP_ID", default=None)
    push_url: str = _env("DUNNING_PUSH_URL", default="")
    push_token: SecretStr = _env("DUNNING_PUSH_TOKEN", default=SecretStr(""))
    # Mailed letters through Lob (channels/lob_letter.py): the secret API key,
    # the lender's return address saved in Lob (an `adr_...` id), and Lob's
    # API host (another one for a regional proxy or a test server; `/v1` is added).
    lob_api_key: SecretStr = _env("LOB_API_KEY", default=SecretStr(""))
    lob_from_address_id: str = _env("LOB_FROM_ADDRESS_ID", default="")
    lob_api_base_url: str = _env("LOB_API_BASE_URL", default="https://api.lob.com")
    # Lob's webhook secret: the gateway checks Lob-Signature with it
    # (gateway/routes/lob.py); unset, every Lob webhook is refused.
    lob_webhook_secret: SecretStr = _env("LOB_WEBHOOK_SECRET", default=SecretStr(""))
    # How far (seconds, either way) a Lob webhook's Lob-Signature-Timestamp may be from now.
    lob_webhook_max_age_seconds: int = _env("DUNNING_LOB_WEBHOOK_MAX_AGE_SECONDS", default=300, ge=1)
    # Seconds a provider call may take before it counts as a transient failure.
    provider_timeout_seconds: float = _env("DUNNING_PROVIDER_TIMEOUT_SECONDS", default=30.0)

    # The worker's size (issue 19, item 3; docs/benchmarks.md, "Tuning", has
    # the figures they were chosen from). Workflow tasks, activities and local
    # activities the worker takes on at once; a task it cannot start within
    # the server's 10 s workflow task timeout is timed out and run again, its
    # local activities with it, so taking fewer than the SDK's 100 at a time
    # leaves a burst waiting on the server instead of inside the worker.
    # 16 each, the activity threads' number: under a 1,000-signal burst the
    # tasks over 5 s in the worker went from 169 to 2 (SDK defaults, 100 each).
    max_concurrent_workflow_tasks: int = _env("DUNNING_MAX_CONCURRENT_WORKFLOW_TASKS", default=16, ge=2)
    max_concurrent_activities: int = _env("DUNNING_MAX_CONCURRENT_ACTIVITIES", default=16, ge=1)
    max_concurrent_local_activities: int = _env("DUNNING_MAX_CONCURRENT_LOCAL_ACTIVITIES", default=16, ge=1)
    # The thread pool the (synchronous) activities and local activities run in.
    activity_threads: int = _env("DUNNING_ACTIVITY_THREADS", default=16, ge=1)
    # Workflows the worker keeps in memory (the sticky cache): each loan
    # beyond it is replayed from its history when it wakes.
    max_cached_workflows: int = _env("DUNNING_MAX_CACHED_WORKFLOWS", default=1000, ge=0)
    # Whether the workflows run in the SDK's sandbox. The sandbox imports the
    # workflow module afresh for every workflow instance (every new loan, and
    # every loan woken after the cache evicted it) and wraps every activation;
    # that was half the worker's CPU for a loan it replays (docs/benchmarks.md,
    # "The workflow sandbox"). Off, determinism rests on what checks it
    # without the sandbox: the import-linter contracts (no I/O module is
    # reachable from workflows/ or dunning/), the determinism lint over both
    # (tests/test_determinism_lint.py: no clock, randomness, environment or
    # file access), and the golden histories and workflow tests replayed
    # inside the sandbox. On: every check the sandbox makes, at its cost.
    workflow_sandbox: bool = _env("DUNNING_WORKFLOW_SANDBOX", default=False)
    # How long a workflow task waits on this worker's own (sticky) queue
    # before the server hands it to any worker: a burst longer than this
    # times tasks out (an event each, and a replay where another worker takes it).
    sticky_schedule_to_start_seconds: float = _env("DUNNING_STICKY_SCHEDULE_TO_START_SECONDS", default=10.0, gt=0)

    # The signed audit checkpoints (db/audit_checkpoint.py): the Schedule
    # `dunning-audit-checkpoint` writes one this often, and each is also
    # appended to a file outside the database, one per database in this
    # directory (DUNNING_AUDIT_CHECKPOINT_FILE names the file itself instead).
    audit_checkpoint_minutes: int = _env("DUNNING_AUDIT_CHECKPOINT_MINUTES", default=5, ge=1)
    audit_checkpoint_dir: Path = _env("DUNNING_AUDIT_CHECKPOINT_DIR", default=STATE_DIR / "audit_checkpoints")
    audit_checkpoint_file_setting: Path | None = _env("DUNNING_AUDIT_CHECKPOINT_FILE", default=None)

    # Files for others to pick up: the credit-bureau export per cycle and the
    # legal case documents. Unset: beside the SQLite database, else .dunning/exports.
    export_dir_setting: Path | None = _env("DUNNING_EXPORT_DIR", default=None)
    # The Metro 2 bureau file's furnisher (activities/exports.py, dunning/metro2.py).
    metro2_identification_number: str = _env("DUNNING_METRO2_IDENTIFICATION_NUMBER", default="")
    metro2_reporter_name: str = _env("DUNNING_METRO2_REPORTER_NAME", default="")
    metro2_reporter_address: str = _env("DUNNING_METRO2_REPORTER_ADDRESS", default="")
    metro2_reporter_telephone: str = _env("DUNNING_METRO2_REPORTER_TELEPHONE", default="")
    metro2_innovis_program_id: str = _env("DUNNING_METRO2_INNOVIS_PROGRAM_ID", default="")
    metro2_equifax_program_id: str = _env("DUNNING_METRO2_EQUIFAX_PROGRAM_ID", default="")
    metro2_experian_program_id: str = _env("DUNNING_METRO2_EXPERIAN_PROGRAM_ID", default="")
    metro2_transunion_program_id: str = _env("DUNNING_METRO2_TRANSUNION_PROGRAM_ID", default="")
    metro2_portfolio_type: str = _env("DUNNING_METRO2_PORTFOLIO_TYPE", default="")
    metro2_account_type: str = _env("DUNNING_METRO2_ACCOUNT_TYPE", default="")
    metro2_creditor_classification: int = _env("DUNNING_METRO2_CREDITOR_CLASSIFICATION", default=12, ge=1, le=99)

    def metro2_furnisher(self) -> Furnisher:
        """The Metro 2 file's furnisher; its Reporter Name is the lender's unless set."""
        return Furnisher(
            identification_number=self.metro2_identification_number.strip(),
            reporter_name=self.metro2_reporter_name.strip() or self.lender_name,
            reporter_address=self.metro2_reporter_address.strip(),
            reporter_telephone=self.metro2_reporter_telephone.strip(),
            innovis_program_id=self.metro2_innovis_program_id.strip(),
            equifax_program_id=self.metro2_equifax_program_id.strip(),
            experian_program_id=self.metro2_experian_program_id.strip(),
            transunion_program_id=self.metro2_transunion_program_id.strip(),
            portfolio_type=self.metro2_portfolio_type.strip().upper(),
            account_type=self.metro2_account_type.strip(),
            creditor_classification=self.metro2_creditor_classification,
        )

    @property
    def export_dir(self) -> Path:
        if self.export_dir_setting is not None:
            return self.export_dir_setting
        if self.database_url.startswith("sqlite:///") and not self.database_url.endswith(":memory:"):
            return Path(self.database_url.removeprefix("sqlite:///")).parent / "exports"
        return STATE_DIR / "exports"

    @property
    def audit_checkpoint_file(self) -> Path:
        """The file outside the database this database's audit checkpoints go to."""
        return outside_file(self.database_url, self.audit_checkpoint_dir, self.audit_checkpoint_file_setting)

    @property
    def policies_dir(self) -> Path:
        return self.config_dir / "policies"

    @property
    def profiles_dir(self) -> Path:
        return self.config_dir / "profiles"

    @property
    def templates_dir(self) -> Path:
        return self.config_dir / "templates"

    def signing_secret(self) -> str:
        if secret_value(self.pay_link_secret):
            return secret_value(self.pay_link_secret)
        # Created 0600 in one step (never a moment at 0644), and only once:
        # a worker and a gateway starting together read the same secret.
        path = STATE_DIR / "pay_link_secret"
        if not path.exists():
            create_private_once(path, secrets.token_urlsafe(32))
        return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
