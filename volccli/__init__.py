"""volccli: the Volcengine visual (CV) image API from the command line."""

__version__ = "0.1.0"
