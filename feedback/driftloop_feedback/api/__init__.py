"""The feedback HTTP service: ``create_app(settings, event_log)``."""

from driftloop_feedback.api.app import create_app
from driftloop_feedback.api.settings import FeedbackSettings

__all__ = ["FeedbackSettings", "create_app"]
