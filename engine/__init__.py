"""framering's engine: worker processes compositing into a shared-memory frame ring.

The pool, ring and frame-slot API arrive with the engine-core issue; until then this package
holds the ``framering`` command.
"""

__all__: list[str] = []
