"""``RunConfig``: one resolved run, its sections composed, readable by the flat names users write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..settings import check_fields
from ..sparse import SparseConfig
from ..sparse.density import sparsity_of
from ..train.config import TrainConfig
from .fields import FLAT, flat_view
from .protocol import protocol_label
from .sections import SECTIONS, DataSettings, ModelSettings, RunSettings


@dataclass(frozen=True)
class RunConfig:
    """A resolved run: data, backbone, sparse algorithm, training, execution.

    Read fields through their section (``cfg.sparse.growth``) or, for convenience, by their flat name
    (``cfg.growth``, ``cfg.sparsity``, ``cfg.width``): the names the command line and config files use.
    """

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunSettings = field(default_factory=RunSettings)

    @property
    def density(self) -> float:
        return self.sparse.density

    @property
    def sparsity(self) -> float:
        return sparsity_of(self.sparse.density)

    @property
    def protocol(self) -> str:
        """``dstcl``, ``reference`` or which switches differ (:func:`dstcl.config.protocol.protocol_label`)."""
        return protocol_label(self.flat())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("data", "model", "sparse", "train", "run"):
            raise AttributeError(name)
        if name in FLAT:
            section, _ = FLAT[name]
            return getattr(getattr(self, section), name)
        for options in (self.model.options, self.data.options):
            if name in options:
                return options[name]
        raise AttributeError(f"RunConfig has no setting {name!r}")

    def flat(self) -> dict[str, Any]:
        """The user-facing view: every field by its flat name, ``sparsity``, and the backbone's and data
        set's options (what ``config.json`` holds and ``--config`` reads back)."""
        return flat_view(self)

    as_dict = flat

    def validate_sections(self) -> None:
        for name in SECTIONS:
            section = getattr(self, name)
            if hasattr(section, "validate") and name != "sparse":
                section.validate()
            elif name != "sparse":
                check_fields(section)
        self.sparse.validate(self.data.tasks)
