"""The `tracking` section (MLflow)."""

from pydantic import Field

from reseg.config.base import Section


class TrackingConfig(Section):
    """Where runs are recorded. Only `reseg.tracking` talks to MLflow."""

    enabled: bool = Field(True, description="Record runs in MLflow.")
    uri: str | None = Field(
        None,
        description=(
            "Tracking URI (sqlite:///..., http://host:port, ...); default sqlite:///<root>/mlflow.db. "
            "`--tracking-uri` on the command line overrides it."
        ),
    )
    experiment: str | None = Field(None, description="Experiment name; default the config's name.")
    log_model: bool = Field(
        True, description="Upload the trained model directory as run artifacts."
    )
