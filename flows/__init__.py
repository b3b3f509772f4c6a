"""Bytewax dataflows (thin glue over `operators/` and `state/`) and the dataset replay tool."""
