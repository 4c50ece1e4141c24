"""Per-run context: the config, the stage cache, and lazily materialised inputs.

Nothing heavy is loaded until a stage that is not cached needs it: a rerun with every
stage cached never imports TensorFlow, never loads the Keras model and, when the image files are
unchanged (calibration/batch_index.py), never decodes an image.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from edgepipe.calibration import checks
from edgepipe.calibration.dataset import Batch, load_subset, subsample
from edgepipe.calibration.preprocess import PreprocessSpec
from edgepipe.core.cache import StageCache, StageResult
from edgepipe.core.errors import InputError
from edgepipe.core.hashing import sha256_file, sha256_tree
from edgepipe.core.labels import read_labels
from edgepipe.core.progress import bar, stderr
from edgepipe.core.versions import tool_versions


class RunContext:
    def __init__(self, cfg, model_path: Path, console=stderr, cache_root: Path | None = None):
        """`cache_root`: the stage cache (default `<output>/stages`); workers of one run or sweep share it."""
        self.cfg = cfg
        self.console = console
        self.model_path = Path(model_path)
        self.spec = PreprocessSpec.from_input(cfg.input)
        self.labels = read_labels(cfg.data.labels)
        self.cache = StageCache(Path(cache_root) if cache_root is not None else Path(cfg.output) / "stages")
        self.is_savedmodel = check_model_input(self.model_path, cfg.model.trust)
        self.model_sha = sha256_tree(self.model_path) if self.is_savedmodel else sha256_file(self.model_path)
        # the model in the stage keys: a .keras file by its content (formats/keras.py), so the same model saved
        # again (by `edgepipe.run(model=...)`, or a rebuilt example) finds its stages cached
        self.model_key = self.model_sha
        if not self.is_savedmodel and self.model_path.suffix == ".keras":
            from edgepipe.formats.keras import content_sha256

            self.model_key = content_sha256(self.model_path)
        self._keras = None
        self._subsets: dict[int, Batch] = {}  # calibration subsets by size (calibration_for)
        self._worker_batches: dict[str, dict] = {}  # batches materialised by executor workers

    def source_model(self) -> dict:
        """The source-model fields of an artifact record (core/artifacts.py): the file's sha256 and the model's
        key (a .keras file's content hash)."""
        return {"source_model_sha256": self.model_sha, "source_model_key": self.model_key}

    # ---- what was loaded --------------------------------------------------------------
    def batch_infos(self) -> dict[str, dict]:
        """Source, split, count and hash of the calibration / validation batches this run loaded
        (here, or in an executor's workers); batches never materialised are absent."""
        out = dict(self._worker_batches)
        for which in ("calibration", "validation"):
            batch = vars(self).get(which)  # a cached_property's value, only if it was materialised
            if batch is not None:
                out[which] = {"source": batch.source, "split": batch.split, "count": len(batch),
                              "sha256": batch.sha256}
        return out

    def note_worker_batches(self, infos: dict[str, dict]) -> None:
        for which, info in infos.items():
            self._worker_batches.setdefault(which, info)

    # ---- data -------------------------------------------------------------------------
    @cached_property
    def calibration(self) -> Batch:
        with self.cache.span("calibration images"), \
                bar("loading calibration images", None, self.console) as advance:
            b = load_subset(self.cfg.data.calibration, self.cfg.data.splits, self.labels, self.spec,
                            "calibration data", advance, index=self.cache.root, workers=self.cfg.threads)
        checks.check_count(len(b), self.cfg.data.min_calibration, "calibration data")
        checks.check_classes(b.labels, len(self.labels), "calibration data")
        return b

    @cached_property
    def validation(self) -> Batch:
        with self.cache.span("validation images"), \
                bar("loading validation images", None, self.console) as advance:
            b = load_subset(self.cfg.data.validation, self.cfg.data.splits, self.labels, self.spec,
                            "validation data", advance, index=self.cache.root, workers=self.cfg.threads)
        if not (b.labels >= 0).any():
            raise InputError("validation data: expected labeled images. Received: none labeled")
        return b

    @cached_property
    def accuracy_control(self) -> Batch | None:
        """`data.accuracy_control` when configured (labeled images only), else None."""
        subset = self.cfg.data.accuracy_control
        if subset is None:
            return None
        with self.cache.span("accuracy-control images"), \
                bar("loading accuracy-control images", None, self.console) as advance:
            b = load_subset(subset, self.cfg.data.splits, self.labels, self.spec, "accuracy-control data", advance,
                            index=self.cache.root, workers=self.cfg.threads)
        if not (b.labels >= 0).any():
            raise InputError("accuracy-control data: expected labeled images. Received: none labeled")
        return b

    def calibration_for(self, recipe) -> Batch:
        """The calibration images a recipe uses: all of them, or a deterministic subset of
        `recipe.calibration_size` (its own content hash; classes it misses are warned about)."""
        batch = self.calibration
        n = recipe.calibration_size
        if n is None or n >= len(batch):
            return batch
        if n not in self._subsets:  # once per size: every target's recipe asks for it
            sub = subsample(batch, n, self.cfg.data.splits.seed, index=self.cache.root)
            checks.check_classes(sub.labels, len(self.labels), f"calibration data (recipe subset of {n} images)")
            self._subsets[n] = sub
        return self._subsets[n]

    def recipe(self, target: str):
        """The resolved quantization recipe of a target (edgepipe.quantize.recipes.Recipe): its configured
        `options.recipe`, or the default recipe for a target built without a config entry."""
        from edgepipe.config.schema import TargetEntry

        entry = next((e for e in self.cfg.targets if e.name == target), None) or TargetEntry(name=target)
        return self.cfg.recipe_for(entry)

    # ---- model ------------------------------------------------------------------------
    def keras_model(self):
        if self._keras is None:
            from edgepipe.stages.keras_model import load_keras, verify_io

            with self.cache.span("keras model"):
                _set_tf_threads(self.cfg.threads)
                model = load_keras(self.model_path, trust=self.cfg.model.trust)
                verify_io(model, self.spec.shape, len(self.labels), f"model {str(self.model_path)!r}")
            self._keras = model
        return self._keras

    def reference_runner(self):
        """The FP32 reference: the Keras model, or a user SavedModel's serving signature."""
        from edgepipe.formats.runners import KerasRunner, SavedModelRunner

        if self.is_savedmodel:
            from edgepipe.stages.savedmodel import load_serving

            with self.cache.span("savedmodel signature"):
                _set_tf_threads(self.cfg.threads)
                return SavedModelRunner(load_serving(self.model_path, self.spec.shape, len(self.labels)))
        return KerasRunner(self.keras_model())

    def savedmodel(self) -> StageResult:
        from edgepipe.stages.savedmodel import copy_savedmodel, export_savedmodel

        params = {"model": self.model_key, "shape": list(self.spec.shape), **tool_versions("tensorflow", "keras")}
        if self.is_savedmodel:
            def adopt(out: Path) -> dict:
                self.reference_runner()  # verify its signature (loads TF) only when the stage runs
                return {"dir": copy_savedmodel(self.model_path, out).name}

            return self.stage("savedmodel", params, adopt)
        return self.stage("savedmodel", params,
                          lambda out: {"dir": export_savedmodel(self.keras_model(), out, self.spec.shape).name})

    # ---- stages -----------------------------------------------------------------------
    def is_cached(self, name: str, inputs: dict) -> bool:
        """Whether the stage `name` with `inputs` is in the cache already (nothing is run or recorded)."""
        return self.cache.lookup(name, inputs) is not None

    def stage(self, name: str, inputs: dict, fn, required: tuple[str, ...] = ()) -> StageResult:
        """The cached result of stage `name`, or `fn` run and cached (`StageCache.run`; `required`: the keys its meta
        must hold to count as a hit)."""
        hit = self.cache.lookup(name, inputs, required)
        if hit is not None and any((e.name, e.key) == (hit.name, hit.key) for e in self.cache.events):
            return hit  # shared stage already accounted for in this run (e.g. the SavedModel)
        if hit is not None:
            self.cache.events.append(hit)
            self.console.print(f"  [dim]cached[/]  {name}")
            return hit
        with self.console.status(f"running {name} ..."):
            res = self.cache.run(name, inputs, fn, required)
        if res.cached:  # another worker sharing the cache computed it while this one waited
            self.console.print(f"  [dim]cached[/]  {name}  (computed by another worker)")
        else:
            cpu = f", cpu {res.cost.cpu:.1f} s" if res.cost is not None else ""
            self.console.print(f"  [green]ran[/]     {name}  ({res.seconds:.1f} s{cpu})")
        return res


def check_model_input(path: Path, trust: bool) -> bool:
    """True for a SavedModel directory, False for a model file; anything else is an InputError. Reads,
    never runs: an untrusted SavedModel's graphs are checked for side-effect ops (formats.savedmodel_ops)."""
    from edgepipe.core import safeio
    from edgepipe.stages.savedmodel import is_savedmodel_dir

    problem = safeio.stat_problem(path)
    if problem in ("no such file or directory",) or (problem and "link" in problem):
        raise InputError(f"model: expected a .keras file or a SavedModel directory. Received: {str(path)!r} "
                         f"({problem})")
    if problem == "a directory":
        if not is_savedmodel_dir(path):
            raise InputError(f"model {str(path)!r}: expected a SavedModel directory (with saved_model.pb). "
                             f"Received: a directory without saved_model.pb")
        safeio.check_tree(path, "SavedModel directory")
        if not trust:
            from edgepipe.formats.savedmodel_ops import check_savedmodel

            check_savedmodel(path)
        return True
    from edgepipe.stages.keras_model import check_model_path

    check_model_path(path, trust)
    return False


def _set_tf_threads(n: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, n)))
    except RuntimeError:
        pass  # already initialised in this process (e.g. several runs in one test session)
