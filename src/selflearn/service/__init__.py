"""The rewrite service (`selflearn serve`): HTTP over the online rewriter."""

from .app import RewriteRequest, RewriteResponse, create_app

__all__ = ["create_app", "RewriteRequest", "RewriteResponse"]
