"""Thin Typer front end. Modules here never import torch at import time: ``aescore --help`` stays fast."""
