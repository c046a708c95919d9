"""Embedding generations: a model change without downtime.

Each generation (model + patch settings) has its own collection and checkpoint folder
(:mod:`.records`); a pointer - Qdrant collection aliases on a server, a file beside the embedded
shards (:mod:`.pointer`) - names the one the service answers from; :mod:`.switch` moves it once
the next generation covers the active one, and back. ``python -m resources.generations`` is the
command line (plan, status, cut-over, rollback).
"""

from resources.generations.pointer import AliasPointer, FilePointer, GenerationPointer, PointerState
from resources.generations.records import BASE, Generation, fingerprint, generation_for, index_generation_from_env
from resources.generations.switch import Coverage, SwitchRefused, coverage, cut_over, list_generations, load_record, rollback, save_record

__all__ = [
    "BASE",
    "AliasPointer",
    "Coverage",
    "FilePointer",
    "Generation",
    "GenerationPointer",
    "PointerState",
    "SwitchRefused",
    "coverage",
    "cut_over",
    "fingerprint",
    "generation_for",
    "index_generation_from_env",
    "list_generations",
    "load_record",
    "rollback",
    "save_record",
]
