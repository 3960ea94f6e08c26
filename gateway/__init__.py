"""notebook-gateway: turns a repository of Jupyter notebooks into running, routed notebooks."""

__version__ = "0.1.0"
