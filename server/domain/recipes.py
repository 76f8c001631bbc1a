"""Recipes: Xora's named outputs (thumbnail, compress, web_ready, …) as parameterised specs.

A recipe expands into the inline fields of an OutputSpec that every other part already
understands (validation, pricing, input fit, worker reports, the worker's builders); the
recipe stays on the expanded spec so that the worker can see the two recipes that need more
than an encode: web_ready and extract_audio copy streams when the probed input allows
(worker/media/stream_copy.py decides, from the probe the task carries).

Inline fields set beside a recipe override what it makes (field by field for audio, clip,
thumbnail and the one video variant); a recipe refuses overrides of the fields it decides
itself unless they equal what it would make, so an expanded spec expands to itself.

Parameters are a map of text (`params {"crf": "28"}`) rather than typed messages: every
mistake — an unknown recipe, a misspelt parameter, a bad value — then reaches this one
checker on every protocol and is answered with a path naming it, where a typed field would be
silently dropped as an unknown field by binary clients and be a bare JSON parse error on
Connect JSON. Values parsed here (by each parameter's parser in recipe_catalog.py) are
checked for their form and range; checks that depend on the output (a codec in a container, a
CRF range per codec, a resolution) are validation's, on the expanded spec, and reported at the
parameter's path through `sources`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kiln.v1 import job_pb2

from .recipe_catalog import RECIPES, Params, RecipeDefinition

T = job_pb2.OutputType

# Fields a recipe never takes beside it: recipes make single files, and a preset or a custom
# command says everything itself.
NOT_WITH_RECIPE = ("preset", "segments", "hls", "custom")


@dataclass
class Expansion:
    # The expanded spec (the recipe kept on it), or None when there were problems.
    spec: job_pb2.OutputSpec | None
    # (path relative to the output, message) for each problem.
    problems: list[tuple[str, str]]
    # Expanded field path -> the parameter's path that set it, for validation's messages.
    sources: dict[str, str] = field(default_factory=dict)


def _snake(name: str) -> str:
    """Xora writes seekSeconds; kiln's parameters are seek_seconds. Both are accepted."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m[1].lower(), name)


def type_name(kind: int) -> str:
    return T.Name(kind).removeprefix("OUTPUT_TYPE_") if kind in T.values() else str(kind)


def expand(spec: job_pb2.OutputSpec) -> Expansion:
    """The spec a recipe output means, or the problems that stop it. Pure and idempotent."""
    recipe = spec.recipe
    definition = RECIPES.get(recipe.name)
    if definition is None:
        wanted = "is required" if not recipe.name else f"unknown recipe {recipe.name[:64]!r}"
        return Expansion(None, [("recipe.name", f"{wanted}; one of {', '.join(RECIPES)}")])
    problems: list[tuple[str, str]] = []
    values: Params = {}
    where: dict[str, str] = {}
    for raw_name in sorted(recipe.params):
        path = f"recipe.params[{raw_name[:64]!r}]"
        name = _snake(raw_name)
        param = definition.params.get(name)
        if param is None:
            known = ", ".join(definition.params) or "none"
            problems.append(
                (path, f"{recipe.name} has no parameter {raw_name[:64]!r}; known: {known}")
            )
        elif name in where:
            problems.append((path, f"{name} is given twice"))
        else:
            where[name] = path
            try:
                values[name] = param.parse(recipe.params[raw_name])
            except ValueError as error:
                problems.append((path, str(error)))
    for name, param in definition.params.items():
        if param.required and name not in where:
            problems.append((f"recipe.params[{name!r}]", f"is required by {recipe.name}"))
    for name, message in definition.relations(values):
        problems.append((where.get(name, f"recipe.params[{name!r}]"), message))
    if spec.type and spec.type not in definition.types:
        makes = ", ".join(type_name(kind) for kind in definition.types)
        problems.append(("type", f"{recipe.name} makes {makes}, not {type_name(spec.type)}"))
    for name in NOT_WITH_RECIPE:
        if spec.HasField(name) if name != "preset" else spec.preset:
            problems.append((name, "cannot be combined with a recipe"))
    if problems:
        return Expansion(None, problems)

    kind = spec.type or definition.types[0]
    filled = {name: param.default for name, param in definition.params.items()} | values
    expanded = definition.build(kind, {k: v for k, v in filled.items() if v is not None})
    problems += _apply_overrides(recipe.name, definition, spec, expanded)
    if problems:
        return Expansion(None, problems)
    expanded.recipe.CopyFrom(recipe)
    sources = {definition.params[name].sets: path for name, path in where.items()}
    return Expansion(expanded, [], sources)


def _apply_overrides(
    name: str, definition: RecipeDefinition, spec: job_pb2.OutputSpec, expanded: job_pb2.OutputSpec
) -> list[tuple[str, str]]:
    problems = []
    for fixed in definition.fixed:
        differs = (
            list(spec.video) not in ([], list(expanded.video))
            if fixed == "video"
            else spec.HasField(fixed) and getattr(spec, fixed) != getattr(expanded, fixed)
        )
        if differs:
            problems.append((fixed, f"{name} decides {fixed} itself; it cannot be overridden"))
    if len(spec.video) > 1:
        problems.append(("video", f"{name} makes one video variant: override at most one"))
    elif spec.video and "video" not in definition.fixed:
        if not expanded.video:
            problems.append(("video", f"{name} makes no video as {type_name(expanded.type)}"))
        else:
            expanded.video[0].MergeFrom(spec.video[0])
    for message in ("audio", "clip", "thumbnail"):
        if spec.HasField(message) and message not in definition.fixed:
            getattr(expanded, message).MergeFrom(getattr(spec, message))
    # No recipe makes text tracks: the request's are added to what it makes.
    expanded.text_tracks.extend(spec.text_tracks)
    expanded.audio_tracks.extend(spec.audio_tracks)
    return problems


def system_spec(name: str) -> job_pb2.OutputSpec:
    """A recipe with its defaults, expanded: what its system preset shows."""
    expansion = expand(job_pb2.OutputSpec(recipe=job_pb2.Recipe(name=name)))
    if expansion.spec is None:
        raise ValueError(f"recipe {name} needs parameters: {expansion.problems}")
    return expansion.spec
