"""The `bastion` console script: the offline guard goes in before anything else is imported.

It lives in tui/ because it starts the app: the core (app/, models/, storage/) never imports
the UI; the CLI receives the app launcher from here.
"""

from __future__ import annotations

import faulthandler
import resource
import sys

from bastion.app import offline


def main() -> int:
    offline.install()
    # No core dumps: a dump of this process would hold decrypted conversations and keys.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Fatal errors print C and Python stacks (no locals, no content) to stderr, never a file.
    faulthandler.enable(file=sys.stderr)
    from bastion.app import logs

    logs.install()  # log records reach stderr only, with ids and numbers, never content
    from bastion.app.cli import main as cli_main

    return cli_main(run_app=run_app)


def run_app() -> int:
    """Start the terminal app (the default command)."""
    from bastion.tui.app import BastionApp

    BastionApp().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
