"""Attention capture, attribution and rendering for ACT policies."""
