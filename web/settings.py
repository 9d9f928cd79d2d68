"""The app's settings (core/settings.py) for the web layer: create_app keeps them
in app.extensions["settings"]; views read them through current_settings()."""

from flask import Flask, current_app

from core.settings import Settings


def settings_of(app: Flask) -> Settings:
    return app.extensions["settings"]


def current_settings() -> Settings:
    """The settings of the app handling this request (or whose context is pushed)."""
    return current_app.extensions["settings"]
