"""The user's own documents: reading them safely, keeping them in the vault, grounding
answers on them and checking the answer's citations.

- :mod:`~bastion.app.documents.formats`: text out of PDF, DOCX, ODT, text, Markdown, HTML and
  e-mail, per physical page (runs in the child process only);
- :mod:`~bastion.app.documents.sandbox`: the child process with CPU, memory, output and
  file-size limits, under the offline guard, in memory only;
- :mod:`~bastion.app.documents.chunking`: page-aware passages that keep their heading;
- :mod:`~bastion.app.documents.library`: add, find, resolve (id or path) documents;
- :mod:`~bastion.app.documents.citations`: the check of ``[n]`` citations after an answer;
- :mod:`~bastion.app.documents.summary`: map-reduce summaries of documents longer than the
  context.
"""

from bastion.app.documents.formats import NO_TEXT_LAYER, FormatError
from bastion.app.documents.library import DocumentError, add_bytes, add_file, resolve

__all__ = ["NO_TEXT_LAYER", "DocumentError", "FormatError", "add_bytes", "add_file", "resolve"]
