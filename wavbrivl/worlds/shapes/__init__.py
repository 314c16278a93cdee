"""The shapes world: coloured shapes and sounds that describe them, generated from a seed (``assets/shapes``)."""
