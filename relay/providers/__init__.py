"""Upstream vendor clients and the vendor request models they share with ingress."""
