"""Distributed side of vidtok-pipeline: Ray Data tokenization, Ray Train training, and the pure helpers they use.

Pure helpers (decode/resample, schema, listing, config) do not import Ray so they unit-test without a cluster.
"""
