"""Thin Ray Serve shims over the pure logic in ``ltrr``. Classes stay undecorated;
:func:`deployments.app.build_app` turns them into the Serve application."""
