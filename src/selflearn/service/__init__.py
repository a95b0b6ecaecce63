"""The rewrite service (`selflearn online serve`): HTTP over the online rewriter."""

from .app import RewriteRequest, RewriteResponse, create_app

__all__ = ["create_app", "RewriteRequest", "RewriteResponse"]
