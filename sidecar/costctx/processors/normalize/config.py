"""The `normalize` processor's config section: alias tables, schema files, coercion.

Not shape-only: the alias and schema files are read and compiled while validating, so a bad
file is a config error that names it (`costctx validate` catches it, not the first span)."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator

from costctx.config.types import StrictModel
from costctx.envelope import ENVELOPE
from costctx.normalize.alias_file import AliasFileError, builtin_aliases, load_alias_file
from costctx.normalize.schema_file import SchemaFileError, load_schema_file
from costctx.normalize.table import TableBuilder


class SchemaFileConfig(StrictModel):
    path: str
    # Attributes (old or new name) whose renames apply; every other rename in the file is ignored.
    allow: list[str] = Field(min_length=1)


class NormalizeConfig(StrictModel):
    # The alias table shipped in the package (sidecar/costctx/normalize/aliases.yaml).
    builtin_aliases: bool = True
    # The user's alias files, same shape as aliases.yaml; they take precedence, in order.
    alias_files: list[str] = Field(default_factory=list)
    # OpenTelemetry schema files (file_format 1.1.0) applied by each resource's or scope's schema_url.
    schema_files: list[SchemaFileConfig] = Field(default_factory=list)
    # Convert values to the canonical type where the meaning is clear ("120" -> 120).
    coerce: bool = True
    # Write `costctx.renamed` on spans (the survival notes are kept either way).
    stamp_renamed: bool = True

    _builder: TableBuilder | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_tables(self) -> NormalizeConfig:
        # Read and compile every file now, so a bad file is a config error naming it.
        try:
            builder = TableBuilder(
                user_sets=[load_alias_file(path) for path in self.alias_files],
                builtin=builtin_aliases() if self.builtin_aliases else None,
                schema_files=[load_schema_file(s.path, s.allow) for s in self.schema_files],
                envelope_types=dict(ENVELOPE.field_types),
                coerce=self.coerce,
            )
            builder.base()
        except (AliasFileError, SchemaFileError) as exc:
            raise ValueError(str(exc)) from None
        self._builder = builder
        return self

    @property
    def builder(self) -> TableBuilder:
        assert self._builder is not None
        return self._builder
