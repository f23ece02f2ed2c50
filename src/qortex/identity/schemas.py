"""Request and response bodies of the identity API: API keys, users, sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StrictBool,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from qortex.core.clock import UtcDatetime, utcnow
from qortex.core.text import NO_CONTROL_CHARACTERS, require_visible, strip_spaces
from qortex.security.passwords import MAX_LENGTH, MIN_LENGTH, policy_problem
from qortex.security.rbac import Role


def _documented_text(*, min_length: int, max_length: int, pattern: str) -> WithJsonSchema:
    """The schema of a text field whose constraints follow a validator that cleans it (strip, lowercase): pydantic
    leaves their pattern out of the OpenAPI document there, so clients would not learn what is refused."""
    return WithJsonSchema({"type": "string", "minLength": min_length, "maxLength": max_length, "pattern": pattern})


def _in_the_future(value: datetime) -> datetime:
    # A key that is dead on arrival is a mistake in the request, not something to hand out.
    if value <= utcnow():
        raise ValueError("must be in the future")
    return value


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        StrictStr,
        BeforeValidator(strip_spaces),
        StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS),
        AfterValidator(require_visible),
        _documented_text(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS),
    ]
    role: Role = Field(description="Role the key acts with; at most the creator's own permissions")
    expires_at: Annotated[UtcDatetime, AfterValidator(_in_the_future)] | None = Field(
        default=None, description="Timezone-aware expiry, in the future; never if unset"
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str | None = Field(
        description="The full key, shown this once; null when an Idempotency-Key replay answers (only its hash is kept)"
    )


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None


# --- people and sessions ---------------------------------------------------------------------------------

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"


def _lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _password_policy(value: SecretStr) -> SecretStr:
    problem = policy_problem(value.get_secret_value())
    if problem is not None:
        raise ValueError(problem)
    return value


Username = Annotated[
    str,
    BeforeValidator(_lowercase),
    StringConstraints(pattern=USERNAME_PATTERN),
    # In any case, as clients may send it: it is stored lowercase.
    _documented_text(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$"),
]
Email = Annotated[EmailStr, AfterValidator(_lowercase), Field(max_length=254)]
_EMAIL = TypeAdapter(Email)


def stored_login_name(name: str) -> str:
    """A login name as people's usernames and emails are stored: lowercase, and an email in the normal form
    `Email` gives it (NFC, its domain in Unicode), so the address a person was created with finds them."""
    name = name.strip()
    if "@" in name:
        try:
            return str(_EMAIL.validate_python(name))  # normalised, then lowercased, exactly as when stored
        except ValidationError:
            pass  # no valid address, so no stored email either: looked up as typed, refused the same way
    return name.lower()


# No control characters: PostgreSQL text cannot hold NUL, and names end up in terminals and logs.
DisplayName = Annotated[
    str,
    BeforeValidator(strip_spaces),
    StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS),
    AfterValidator(require_visible),
    _documented_text(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS),
]
# The policy answers with its own messages; the document states its lengths.
NewPassword = Annotated[
    SecretStr,
    AfterValidator(_password_policy),
    WithJsonSchema(
        {"type": "string", "format": "password", "writeOnly": True, "minLength": MIN_LENGTH, "maxLength": MAX_LENGTH}
    ),
]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(
        description="3 to 64 of a-z 0-9 . _ -, the first a letter or digit; unique across all tenants; stored lowercase"
    )
    email: Email = Field(description="Unique across all tenants; stored lowercase")
    display_name: DisplayName
    password: NewPassword = Field(description=f"{MIN_LENGTH} to {MAX_LENGTH} characters; stored as argon2id")
    role: Role = Field(description="At most the creator's own permissions")


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    display_name: DisplayName | None = None
    role: Role | None = Field(default=None, description="Changing it ends the user's sessions")
    password: NewPassword | None = Field(default=None, description="An administrator's reset; ends the sessions")
    active: StrictBool | None = Field(
        default=None, description="false deactivates (ends the sessions), true reactivates"
    )


class UserOut(BaseModel):
    """What owners and admins see of the users of their tenant (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    display_name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StrictStr = Field(
        min_length=1, max_length=254, pattern=NO_CONTROL_CHARACTERS, description="Username or email"
    )
    password: SecretStr = Field(max_length=MAX_LENGTH)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: SecretStr = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type name, not a secret
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(
        description="Single use: each refresh answers a new one; reusing a used one ends the session"
    )
    refresh_token_expires_at: datetime


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: SecretStr = Field(max_length=MAX_LENGTH)
    new_password: NewPassword


class MeUser(BaseModel):
    """A person's view of themselves."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    display_name: str
    password_changed_at: datetime


class MeTenant(BaseModel):
    id: uuid.UUID
    name: str


class Me(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent: required in answers

    kind: Literal["user", "api_key"] = Field(description='"user" for a person\'s session, "api_key" for a key')
    tenant: MeTenant
    role: Role
    permissions: list[str]
    session_id: uuid.UUID | None = None
    user: MeUser | None = None
    api_key: ApiKeyOut | None = None
