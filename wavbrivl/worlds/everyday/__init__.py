"""The everyday world: real recordings and drawings of everyday sounds, fetched from Debian packages.

Data side: :mod:`.catalogue` (what is where), :mod:`.fetch` (download and extract only the needed files),
:mod:`.dataset` (turn them into the world folder: decoded audio, framed pictures, manifests, data card).
"""
