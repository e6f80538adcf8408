"""Compatibility with the reference tool (UK AISI's hibayes): its ``hibayes.yaml`` format."""
