"""The `tracking` section (MLflow)."""

from pydantic import Field

from reseg.config.base import Section


class TrackingConfig(Section):
    enabled: bool = True
    uri: str | None = Field(None, description="Tracking URI; default sqlite:///<root>/mlflow.db.")
    experiment: str | None = Field(None, description="Experiment name; default the config's name.")
