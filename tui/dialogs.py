"""Modal dialogs: confirm, prompt, search, models, packs, templates, settings, help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message as TMessage
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    Label,
    ListItem,
    ListView,
    OptionList,
    RadioButton,
    RadioSet,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from bastion.app.pack_library import InstalledPack
from bastion.app.packs import Template, TemplateError
from bastion.app.session import ChatSession
from bastion.app.settings import AppSettings
from bastion.models.discovery import ModelInfo
from bastion.models.settings import LoadSettings, SamplingSettings
from bastion.storage.schema import SearchHit
from bastion.tui.widgets import highlight_snippet

CLOSE = Binding("escape", "dismiss_none", "Close", id="dialog.close", tooltip="Close")


ResultT = TypeVar("ResultT")


class Dialog(ModalScreen[ResultT]):
    """A modal dialog that dismisses with a ``ResultT``, or None when closed."""

    BINDINGS = [CLOSE]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class TemplateFilled:
    """A template's rendered message and the values the references are searched with."""

    text: str
    lookup: str


@dataclass(frozen=True)
class SettingsChosen:
    """Settings saved from the settings dialog."""

    settings: AppSettings
    sampling: SamplingSettings


@dataclass(frozen=True)
class ExportOptions:
    """How to write an export, as chosen in the export dialog."""

    path: str
    form: str
    redact: bool
    passphrase: str | None = None
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportRequest:
    """An export file to import and its passphrase, if it has one."""

    path: str
    passphrase: str | None


class HitItem(ListItem):
    """A search result in the list."""

    def __init__(self, hit: SearchHit) -> None:
        where = "title" if hit.message_id is None else hit.role
        super().__init__(
            Static(f"[b]{escape(hit.conversation_title)}[/b] [dim]{escape(str(where))}[/dim]"),
            Static(highlight_snippet(hit.snippet), classes="snippet"),
        )
        self.hit = hit


class ConfirmScreen(Dialog[bool]):
    """Ask yes or no; dismisses with True or False."""

    BINDINGS = [
        CLOSE,
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Confirm"),
        Binding("n", "answer(False)", "No", id="confirm.no", tooltip="Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PromptScreen(Dialog[str]):
    """Ask for one line of text; dismisses with it, or None."""

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.title_text), classes="dialog-title")
            yield Input(self.value, id="prompt-input")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        self.dismiss(value or None)


class SearchScreen(Dialog[SearchHit]):
    """Full-text search over the vault; dismisses with the chosen hit."""

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Search every conversation", classes="dialog-title")
            yield Input(
                placeholder="words to find (a trailing * matches a prefix)", id="search-input"
            )
            yield Label("", id="search-count")
            yield ListView(id="search-results")

    @on(Input.Submitted, "#search-input")
    def _search(self, event: Input.Submitted) -> None:
        self.run_search(event.value)

    @work(thread=True, group="search", exclusive=True, exit_on_error=False)
    def run_search(self, query: str) -> None:
        hits = self.session.search(query)
        self.post_message(self.HitsFound(hits))

    class HitsFound(TMessage):
        """The search finished."""

        def __init__(self, hits: list[SearchHit]) -> None:
            super().__init__()
            self.hits = hits

    @on(HitsFound)
    async def _found(self, event: HitsFound) -> None:
        await self._show(event.hits)

    async def _show(self, hits: list[SearchHit]) -> None:
        results = self.query_one("#search-results", ListView)
        await results.clear()
        self.query_one("#search-count", Label).update(
            f"{len(hits)} result{'s' if len(hits) != 1 else ''}"
        )
        items = [HitItem(hit) for hit in hits]
        await results.extend(items)
        if items:
            results.index = 0
            results.focus()

    @on(ListView.Selected, "#search-results")
    def _chosen(self, event: ListView.Selected) -> None:
        if isinstance(event.item, HitItem):
            self.dismiss(event.item.hit)


class ModelScreen(Dialog[ModelInfo]):
    """Pick a model among those discovered; unusable ones say why."""

    def __init__(self, models: list[ModelInfo], current: str | None) -> None:
        super().__init__()
        self.models = models
        self.current = current

    def compose(self) -> ComposeResult:
        options = []
        for i, m in enumerate(self.models):
            size = f"{m.file_size / 1e6:.0f} MB"
            desc = " · ".join(
                x for x in (m.parameters, m.quantization, f"ctx {m.context_length}", size) if x
            )
            mark = "● " if m.name == self.current else "  "
            line = f"{mark}[b]{escape(m.name)}[/b]  [dim]{m.source.value} · {escape(desc)}[/dim]"
            if not m.usable:
                line += f"\n    [$error]cannot be loaded: {escape(m.reason or '')}[/]"
            options.append(Option(line, id=str(i), disabled=not m.usable))
        with Vertical(classes="dialog wide"):
            yield Label("Choose a model", classes="dialog-title")
            yield OptionList(*options, id="model-list")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.models[int(event.option.id or 0)])


class PackScreen(Dialog[str]):
    """Pick a domain pack for a new conversation; dismisses with its id, "" for none."""

    def __init__(self, packs: list[InstalledPack]) -> None:
        super().__init__()
        self.packs = packs

    def compose(self) -> ComposeResult:
        options = [Option("[b]No pack[/b]  [dim]a general assistant[/dim]", id="")]
        for p in self.packs:
            line = (
                f"[b]{escape(p.pack.name)}[/b]  [dim]{escape(p.pack.id)} "
                f"{escape(p.pack.version)} · {escape(p.trust_text)}[/dim]\n"
                f"    {escape(p.pack.description)}"
            )
            options.append(Option(line, id=p.pack.id))
        with Vertical(classes="dialog wide"):
            yield Label("New conversation: choose a pack", classes="dialog-title")
            yield OptionList(*options, id="pack-list")

    def on_mount(self) -> None:
        pack_list = self.query_one("#pack-list", OptionList)
        pack_list.highlighted = 0
        pack_list.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id or "")


class TemplateScreen(Dialog[TemplateFilled]):
    """Fill in a pack template's variables; dismisses with the rendered message and the
    values (the references are searched with those)."""

    def __init__(self, template: Template) -> None:
        super().__init__()
        self.template = template

    def compose(self) -> ComposeResult:
        t = self.template
        with Vertical(classes="dialog wide"):
            yield Label(f"/{t.id}: {escape(t.title)}", classes="dialog-title")
            if t.description:
                yield Label(escape(t.description), classes="dim")
            for var in t.variables:
                label = var.label + ("" if var.required else " (optional)")
                yield Label(escape(label), classes="field-name")
                if var.type == "choice":
                    yield Select([(c, c) for c in var.choices], id=f"v-{var.name}")
                else:
                    yield Input(
                        placeholder=var.help or ("a number" if var.type == "number" else ""),
                        id=f"v-{var.name}",
                        type="number" if var.type == "number" else "text",
                    )
            yield Label("", id="template-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Send", id="tpl-send", variant="primary")
                yield Button("Cancel", id="tpl-cancel")

    @on(Button.Pressed, "#tpl-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#tpl-send")
    @on(Input.Submitted)
    def _send(self) -> None:
        values: dict[str, str] = {}
        for var in self.template.variables:
            widget = self.query_one(f"#v-{var.name}")
            if isinstance(widget, Select):
                value = widget.value
                values[var.name] = "" if value is Select.BLANK else str(value)
            else:
                assert isinstance(widget, Input)
                values[var.name] = widget.value
        try:
            text = self.template.render(values)
        except TemplateError as exc:
            self.query_one("#template-error", Label).update(escape(str(exc)))
            return
        self.dismiss(TemplateFilled(text, " ".join(v for v in values.values() if v)))


class SettingsScreen(Dialog[SettingsChosen]):
    """Sampling (this conversation), loading, theme and privacy settings, validated."""

    SAMPLING = ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed"]
    LOAD = ["n_ctx", "n_threads", "n_batch"]
    APP = ["auto_lock_minutes", "retention_days", "clipboard_clear_seconds"]

    def __init__(self, settings: AppSettings, sampling: SamplingSettings, themes: list[str]):
        super().__init__()
        self.settings = settings
        self.sampling = sampling
        self.themes = themes

    def _field(self, name: str, value: Any, doc: str | None) -> ComposeResult:
        with Grid(classes="field"):
            yield Label(name.replace("_", " "), classes="field-name")
            yield Input("" if value is None else str(value), id=f"f-{name}", tooltip=doc or None)
            yield Label("", id=f"err-{name}", classes="field-error")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label("Settings", classes="dialog-title")
            with VerticalScroll():
                yield Label("Sampling (this conversation)", classes="section")
                for name in self.SAMPLING:
                    doc = SamplingSettings.model_fields[name].description
                    yield from self._field(name, getattr(self.sampling, name), doc)
                yield Label(
                    "Model loading (applies when a model is next loaded)", classes="section"
                )
                for name in self.LOAD:
                    yield from self._field(name, getattr(self.settings.load, name), None)
                yield Label("App", classes="section")
                yield Select(
                    [(t, t) for t in self.themes],
                    value=self.settings.theme,
                    id="f-theme",
                    allow_blank=False,
                )
                for name in self.APP:
                    yield from self._field(name, getattr(self.settings, name), None)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def _values(self, names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            raw = self.query_one(f"#f-{name}", Input).value.strip()
            out[name] = None if raw == "" else raw
        return {k: v for k, v in out.items() if v is not None or k == "seed"}

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        for label in self.query(".field-error").results(Label):
            label.update("")
        errors: dict[str, str] = {}
        results: dict[str, Any] = {}
        for key, model, names in (
            ("sampling", SamplingSettings, self.SAMPLING),
            ("load", LoadSettings, self.LOAD),
        ):
            try:
                results[key] = model.model_validate(self._values(names))
            except ValidationError as exc:
                for err in exc.errors():
                    errors[str(err["loc"][0])] = err["msg"]
        try:
            app_values = self._values(self.APP)
            theme = self.query_one("#f-theme", Select).value
            settings = self.settings.model_copy()
            updated = AppSettings.model_validate(
                {**settings.model_dump(), **app_values, "theme": theme}
            )
        except ValidationError as exc:
            for err in exc.errors():
                errors[str(err["loc"][0])] = err["msg"]
        if errors:
            for name, msg in errors.items():
                if self.query(f"#err-{name}"):
                    self.query_one(f"#err-{name}", Label).update(escape(msg))
            self.notify(f"{len(errors)} setting(s) need fixing", severity="error")
            return
        updated = updated.model_copy(update={"load": results["load"]})
        self.dismiss(SettingsChosen(updated, results["sampling"]))


class ExportScreen(Dialog[ExportOptions]):
    """Choose how to encrypt an export; preview redactions. Dismisses with the options."""

    def __init__(self, default_path: str, preview: str) -> None:
        super().__init__()
        self.default_path = default_path
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Export this conversation (encrypted)", classes="dialog-title")
            with RadioSet(id="exp-how"):
                yield RadioButton("to this vault's own key", value=True, id="how-vault")
                yield RadioButton("with a passphrase", id="how-pass")
                yield RadioButton("to public keys (age1... or ssh-ed25519)", id="how-keys")
            yield Input(placeholder="passphrase", password=True, id="exp-pass1")
            yield Input(placeholder="repeat the passphrase", password=True, id="exp-pass2")
            yield Input(
                placeholder="age1... or ssh-ed25519 ..., separated by commas", id="exp-keys"
            )
            yield Select(
                [("Markdown + JSON", "md"), ("JSON", "json")],
                value="md",
                id="exp-format",
                allow_blank=False,
            )
            yield Checkbox(
                "Redact e-mails, phones, IDs, record numbers, birth dates", id="exp-redact"
            )
            yield Label(f"Redaction would replace: {escape(self.preview)}", id="exp-preview")
            yield Input(self.default_path, id="exp-path")
            yield Label("", id="exp-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", id="exp-go", variant="primary")
                yield Button("Cancel", id="exp-cancel")

    def on_mount(self) -> None:
        self._how_changed()

    @on(RadioSet.Changed)
    def _how_changed(self) -> None:
        how = self.query_one("#exp-how", RadioSet).pressed_button
        mode = how.id if how is not None else "how-vault"
        self.query_one("#exp-pass1").display = mode == "how-pass"
        self.query_one("#exp-pass2").display = mode == "how-pass"
        self.query_one("#exp-keys").display = mode == "how-keys"

    @on(Button.Pressed, "#exp-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#exp-go")
    def _go(self) -> None:
        how = self.query_one("#exp-how", RadioSet).pressed_button
        mode = how.id if how is not None else "how-vault"
        error = self.query_one("#exp-error", Label)
        path = self.query_one("#exp-path", Input).value.strip()
        form = str(self.query_one("#exp-format", Select).value)
        redact = self.query_one("#exp-redact", Checkbox).value
        if not path:
            error.update("Give a file name.")
            return
        passphrase: str | None = None
        recipients: tuple[str, ...] = ()
        if mode == "how-pass":
            passphrase = self.query_one("#exp-pass1", Input).value
            if not passphrase or passphrase != self.query_one("#exp-pass2", Input).value:
                error.update("Enter the same passphrase twice.")
                return
        elif mode == "how-keys":
            keys = [k.strip() for k in self.query_one("#exp-keys", Input).value.split(",")]
            recipients = tuple(k for k in keys if k)
            if not recipients:
                error.update("Give at least one public key.")
                return
        self.dismiss(ExportOptions(path, form, redact, passphrase, recipients))


class ImportScreen(Dialog[ImportRequest]):
    """Import an export file: its path, and its passphrase if it has one."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Import conversations from an export", classes="dialog-title")
            yield Input(placeholder="path of the .age file", id="imp-path")
            yield Input(
                placeholder="passphrase (only for passphrase exports)", password=True, id="imp-pass"
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Import", id="imp-go", variant="primary")
                yield Button("Cancel", id="imp-cancel")

    @on(Button.Pressed, "#imp-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#imp-go")
    @on(Input.Submitted)
    def _go(self) -> None:
        path = self.query_one("#imp-path", Input).value.strip()
        if path:
            self.dismiss(ImportRequest(path, self.query_one("#imp-pass", Input).value or None))


class HelpScreen(Dialog[None]):
    """Every key binding, with what it does."""

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide tall"):
            yield Label("Keys (remap them in settings.keymap by id)", classes="dialog-title")
            with VerticalScroll(), Grid(id="help-keys"):
                # Text objects, not markup: a key like "[" must show as itself.
                for key, desc, tip, bid in self.rows:
                    yield Label(Text(key, style="bold"), classes="help-key")
                    yield Label(Text(desc), classes="help-action")
                    yield Label(Text.assemble(tip, (f"  ({bid})", "dim")), classes="help-tip")
