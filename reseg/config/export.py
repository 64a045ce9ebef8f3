"""The `export` section."""

from pydantic import Field

from reseg.config.base import Section


class ExportConfig(Section):
    model_name: str = Field("reseg", pattern=r"^[A-Za-z0-9_.-]+$")
