"""Worlds: self-contained bundles this project builds and evaluates itself, each in its own package.

A world owns its data (procedural or fetched), its recipe (how its backbone, audio encoder and generator are
trained with the library's general trainers) and its own evaluation; it ships as a bundle folder that the
library loads like any checkpoint. The library's general modules never import a world. Each world package has
a ``cli`` module exposing ``register(subparsers)``: ``wavbrivl world NAME ...``.
"""
