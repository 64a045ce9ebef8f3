"""The `rounds` section: the confidence rounds of the method."""

from pydantic import Field

from reseg.config.base import Section


class RoundsConfig(Section):
    count: int = Field(1, ge=0, description="Rounds after round 0.")
