"""Durable state behind one small interface; embedded backend by default."""
