"""The Textual user interface: screens, widgets and styles only."""
