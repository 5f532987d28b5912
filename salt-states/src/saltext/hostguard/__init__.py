"""saltext.hostguard: the hostguard execution module (``modules/``) and states (``states/``)."""

__version__ = "0.1.0"
