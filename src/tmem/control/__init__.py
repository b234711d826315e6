"""The control plane: operate a running host from beside it.

Everything here calls only the host's public administrative API
(:class:`tmem.Host`, or :func:`tmem.admin` for a daemon): listing, policies,
save and restore, live migration, metrics and the live ``top`` view.
"""
