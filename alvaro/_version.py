"""The version of alvaro, kept in one place."""

# 2.0: the successor of the original Alvaro 1.x, with its API and a new wire protocol. The
# package index's "alvaro" is that original (1.3.0); a lower number here would lose to it.
__version__ = "2.0.0.dev0"
