"""App settings, kept inside the encrypted vault (never in a plaintext config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bastion.models.settings import LoadSettings, SamplingSettings


class AppSettings(BaseModel):
    """Settings that apply to the whole app."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    theme: str = "textual-dark"
    """Textual theme name."""

    auto_lock_minutes: float = Field(10.0, ge=0.0, le=24 * 60)
    """Lock the app after this many idle minutes (0 disables auto-lock)."""

    default_model: str | None = None
    """Model name or path used for new conversations (None: the best one found)."""

    retention_days: int = Field(0, ge=0, le=36500)
    """Delete unpinned conversations older than this many days at unlock (0 keeps all)."""

    clipboard_clear_seconds: int = Field(30, ge=0, le=3600)
    """Offer to clear the clipboard this many seconds after copying (0: never)."""

    keymap: dict[str, str] = Field(default_factory=dict)
    """Key remapping: binding id (as listed by F1, e.g. "chat.search") to keys ("ctrl+k")."""

    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    """Default sampling for new conversations."""

    load: LoadSettings = Field(default_factory=LoadSettings)
    """How models are loaded."""
