"""The training strategies of the cosub paper's Table 4 and Figure 2, behind one config key, `method` (--method):

    baseline      (a) supervised DeiT III: the label only
    kd            (b) knowledge distillation from a frozen pre-trained teacher (--teacher)
    mean_teacher  (c) the exponential moving average of the weights (full depth) is the teacher
    cotrain       (d) two separate models, each with its own initialisation, each the other's teacher
    cosub         (e) two submodels of one model drawn by stochastic depth, each the other's teacher (default)
    kd_cosub      (b)+(e) cosub with the pre-trained teacher as one more teacher of each submodel

A method is one class: it tells the loop (engine/loop.py) how many copies of each image the model sees, what the
loss is, and what it adds to a run (an outside model, the teacher or the EMA, with its forward pass and update; a
second model; their state in checkpoints and what is evaluated), and it declares what the rest of the code reads
from it: its Figure 2 cost, its cost computed from the models it builds (--dry-run), the extra weights it saves
(checkpoints, `cosub-export-backbone --weights`) and whether it needs a teacher. The loop, --dry-run, the
checkpoints and the exporter have no branch per method. Adding one is a class registered with @register plus
its config group in configs/_base_/deit3_in1k.py (the values' ranges in pretrain/config.py SETTINGS). The losses
are in cosub.py.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

import backbones

from .cosub import cosub_loss, kd_cosub_loss, kd_loss
from .engine.errors import SettingsError

logger = logging.getLogger('cosub')

METHODS: Dict[str, type] = {}

# Figure 2's convention for compute: "backward pass assumed 2x the complexity of forward", so a training step is
# three forward passes and a teacher's forward pass a third of one (KD's x1.33).
TRAIN_PASSES = 3


class MethodError(SettingsError):
    """A method that cannot run as configured (no teacher, another teacher than the checkpoint's, ...): exit 2."""


def register(cls):
    METHODS[cls.name] = cls
    return cls


def build_method(cfg) -> 'Method':
    check_method_config(cfg)
    return METHODS[cfg.method](cfg)


def check_method_config(cfg) -> None:
    """Refuse, in one line, a method that is not one, or one without a setting it needs that a value range cannot
    state (a teacher). The ranges of the method groups' values are in the config schema (pretrain/config.py)."""
    cls = METHODS[cfg.method]  # a known name: the config's check (pretrain/config.py SETTINGS)
    if cls.needs_teacher and not cfg.kd.teacher and not cfg.get('eval_only'):  # --eval needs no teacher
        raise MethodError(f'--method {cls.name} needs a teacher: pass --teacher CHECKPOINT (a file, '
                          'hf-hub:<owner>/<repo> or local-dir:<folder>), with --teacher-model NAME where the file '
                          'names no architecture')


def saved_weights(method) -> Dict[str, Dict[str, str]]:
    """How a training checkpoint of `method` (a Method class or instance) describes the weights it saves beside
    'model', under its key 'saved_weights': name -> {'method', 'title' (in a model card), 'suffix' (of their metrics
    in log.jsonl)}. Plain data (loads with weights_only=True) read by backbones.checkpoint.trained_weights and the
    exporter, which sit below this package and do not import it."""
    return {name: dict(method=method.name, title=title, suffix=suffix) for name, (title, suffix) in method.saves.items()}


@dataclass(frozen=True)
class ModelSize:
    params: int
    flops: float     # forward FLOPs for one image, the full model (eval mode)


@dataclass(frozen=True)
class Cost:
    """What a method holds and computes per image; --dry-run divides it by the baseline's."""
    weights: float     # parameters held (the model, a teacher, an EMA, a second model)
    optimizer: float   # parameters with optimizer state
    compute: float     # FLOPs per image of one training step


class Method:
    """The supervised baseline; the other methods change what they need of it."""
    name = 'baseline'
    row = '(a) supervised baseline'
    copies = 1                  # rows per image in the model's forward pass
    # Figure 2's (weights, optimizer state, compute) relative to the baseline; None where the paper gives none
    figure_2: Optional[Tuple[float, float, float]] = (1, 1, 1)
    measured_step = 'baseline'  # the measured step (benchmarks/pretrain_step.py) --dry-run scales: or 'cosub'
    saves: Dict[str, Tuple[str, str]] = {}  # weights beside 'model': name -> (model-card title, metric suffix)
    needs_teacher = False       # kd.teacher must be given

    def __init__(self, cfg):
        self.cfg = cfg
        self.loss_type = cfg.loss.type

    @property
    def lam(self) -> float:
        return 1.0

    def describe(self) -> str:
        return f'{self.name}: {self.row}'

    # -- cost (--dry-run), per image, from the models' sizes; `keep`: the share of blocks a training forward
    # runs (ESD's effective keep rate at the step's per-device batch; 1 with masking or without stochastic depth)
    def student_step(self, student: ModelSize, keep: float) -> float:
        """FLOPs of the student's own training step: what `measured_step` measured."""
        return TRAIN_PASSES * student.flops * keep * self.copies

    def cost(self, student: ModelSize, teacher: Optional[ModelSize], keep: float) -> Cost:
        return Cost(student.params, student.params, self.student_step(student, keep))

    def build_model(self, make: Callable[[], nn.Module]) -> nn.Module:
        """The trained module, from `make()` (builders.build_model with the run's config)."""
        return make()

    def setup(self, trainer) -> None:
        """Called once the model is on its device, before resuming: outside models are built here."""

    def teacher_logits(self, images: Tensor, autocast) -> Optional[Tensor]:
        """An outside teacher's logits on the augmented images (one copy each), or None."""
        return None

    def loss(self, logits: Tensor, targets: Tensor, teacher: Optional[Tensor]) -> Tensor:
        return cosub_loss(logits, targets, num_submodels=1, lam=1.0, loss=self.loss_type)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimizer step."""

    def parameter_sets(self, model: nn.Module) -> List[List[nn.Parameter]]:
        """The parameters whose gradients are clipped together (each model of a run on its own)."""
        return [list(model.parameters())]

    def eval_models(self, model: nn.Module) -> Dict[str, nn.Module]:
        """What is evaluated: {suffix of the metric names: module}; '' is the model the run is about."""
        return {'': model}

    # -- checkpoints: the run's model state under 'model' (what every loader reads), the rest beside it --------
    def split_model_state(self, state: dict) -> dict:
        return dict(model=state)

    def join_model_state(self, ckpt: dict, path) -> dict:
        return ckpt['model']

    def state_dict(self) -> dict:
        """What the method adds to a checkpoint, beside the model and optimizer."""
        return {}

    def load_state_dict(self, ckpt: dict, path) -> None:
        """Restore the method's state from a training checkpoint of the same method."""


register(Method)


@register
class Cosub(Method):
    name = 'cosub'
    row = '(e) cosub'
    figure_2 = (1, 1, 2)        # two forward + backward passes (Figure 2, without ESD)
    measured_step = 'cosub'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.copies = int(cfg.cosub.num_submodels)
        self.soft = bool(cfg.cosub.soft)

    @property
    def lam(self) -> float:
        return float(self.cfg.cosub.lam)

    def describe(self) -> str:
        return (f'{self.name}: {self.row}, {self.copies} submodels, lambda {self.lam:g}, '
                f'{"soft" if self.soft else "hard"} targets')

    def loss(self, logits, targets, teacher):
        return cosub_loss(logits, targets, num_submodels=self.copies, lam=self.lam, loss=self.loss_type,
                          soft=self.soft)


# -- (b) knowledge distillation from a pre-trained teacher -------------------------------------------------------
def weights_sha256(state: Dict[str, Tensor]) -> str:
    """A hash of a model's weights (names, dtypes, shapes and bytes): the teacher's identity in checkpoints."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f'{key}:{t.dtype}:{tuple(t.shape)};'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_teacher(cfg, num_classes: int, device: torch.device) -> tuple:
    """The frozen teacher of kd / kd_cosub: (model in eval mode without gradients, identity dict)."""
    source = cfg.kd.teacher
    ckpt = backbones.load_file(source, allow_pickle=cfg.allow_pickle)
    state = backbones.checkpoint.extract_state_dict(ckpt, str(source))
    try:  # the name stored in our checkpoints, --teacher-model, or a ViT's read from the shapes (official files)
        name, args = backbones.checkpoint.architecture_of(ckpt, state, f'--teacher {source}', cfg.kd.teacher_model)
    except backbones.CheckpointError as e:
        raise MethodError(f'{e} (--teacher-model NAME: e.g. vit_h, or a timm name such as regnety_160)') from None
    classes = args.pop('num_classes', 0)
    if classes and classes != num_classes:
        raise MethodError(f'--teacher {source} predicts {classes} classes, the student {num_classes}; '
                          'a teacher must be trained on the classes of the student')
    args = {k: v for k, v in args.items() if k not in ('img_size', 'drop_path_rate', 'drop_path_mode',
                                                       'drop_path_schedule')}
    try:
        teacher = backbones.create_model(name, num_classes=num_classes, img_size=cfg.input_size,
                                         drop_path_mode='none', **args)
    except ValueError as e:
        raise MethodError(f'--teacher-model {name}: {e}') from None
    report = backbones.checkpoint.load_into(teacher, ckpt, str(source), strict=False)
    if report.missing or report.mismatched:
        raise MethodError(f'--teacher {source} does not fit --teacher-model {name} '
                          f'({backbones.checkpoint.fit_summary(report)}); pass the architecture it was trained as')
    if not all(torch.isfinite(t).all() for t in teacher.state_dict().values() if t.is_floating_point()):
        # checked where the teacher enters: with hard targets a NaN teacher would train silently (argmax of NaN: 0)
        raise MethodError(f'--teacher {source}: its weights hold NaN or inf values; pass a trained teacher')
    teacher.requires_grad_(False)
    teacher.eval().to(device)
    identity = dict(source=str(source), model=name, sha256=weights_sha256(teacher.state_dict()))
    logger.info('teacher %s (%s): %.2fM parameters, frozen, sha256 %s', source, name,
                sum(p.numel() for p in teacher.parameters()) / 1e6, identity['sha256'][:12])
    return teacher, identity


class _OutsideTeacher:
    """Mix-in: a frozen outside model whose predictions on the same augmented batch are the soft targets."""
    teacher: nn.Module

    def teacher_logits(self, images, autocast):
        self.teacher.eval()  # never trained: the loop's model.train() does not reach it
        with torch.no_grad(), autocast():
            return self.teacher(images)


@register
class KnowledgeDistillation(_OutsideTeacher, Method):
    name = 'kd'
    row = '(b) KD'
    figure_2 = (2, 1, 1.33)     # a teacher of the student's size: its weights and its forward pass
    needs_teacher = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.kd = cfg.kd
        self.identity = None

    @property
    def lam(self) -> float:
        return float(self.kd.lam)

    def describe(self) -> str:
        return (f'{self.name}: {self.row}, lambda {self.lam:g}, {self.kd.target} targets at temperature '
                f'{self.kd.temperature:g}, teacher {self.kd.teacher} ({self.kd.teacher_model or "named by the file"})')

    def setup(self, trainer):
        if not trainer.eval_only:  # evaluation needs no teacher
            self.teacher, self.identity = load_teacher(self.cfg, trainer.num_classes, trainer.d.device)

    def loss(self, logits, targets, teacher):
        return kd_loss(logits, targets, teacher, lam=self.lam, loss=self.loss_type, kd_target=self.kd.target,
                       temperature=self.kd.temperature)

    def cost(self, student, teacher, keep):  # the frozen teacher: its weights, and one forward pass per image
        return Cost(student.params + teacher.params, student.params,
                    self.student_step(student, keep) + teacher.flops)

    def state_dict(self):
        return dict(teacher=self.identity)

    def load_state_dict(self, ckpt, path):
        if self.identity is None:  # --eval
            return
        before = ckpt.get('teacher') or {}
        if before.get('sha256') != self.identity['sha256']:
            raise MethodError(f'{path} was trained with the teacher {before.get("source")} ({before.get("model")}, '
                              f'sha256 {str(before.get("sha256"))[:12]}); --teacher {self.identity["source"]} has '
                              f'other weights (sha256 {self.identity["sha256"][:12]}): resume with the same teacher')


@register
class KDCosub(KnowledgeDistillation):
    name = 'kd_cosub'
    row = '(b)+(e) KD + cosub'
    figure_2 = None             # not in Figure 2
    measured_step = 'cosub'

    def __init__(self, cfg):
        super().__init__(cfg)
        self.copies = int(cfg.cosub.num_submodels)

    @property
    def lam(self) -> float:  # one balance of label and distillation for both (kd_cosub_loss)
        return float(self.cfg.cosub.lam)

    def describe(self) -> str:
        mix = ('one more peer of each submodel' if self.kd.mix == 'peer' else
               f"mixed into eq. 2's label term (kd.lam {float(self.kd.lam):g})")
        return (f'{self.name}: {self.row}, {self.copies} submodels and the teacher {self.kd.teacher} '
                f'({self.kd.teacher_model or "named by the file"}) as {mix}, lambda {self.lam:g} (cosub.lam), '
                f'teacher targets {self.kd.target}')

    def loss(self, logits, targets, teacher):
        return kd_cosub_loss(logits, targets, teacher, num_submodels=self.copies, lam=self.lam, loss=self.loss_type,
                             soft=bool(self.cfg.cosub.soft), kd_target=self.kd.target,
                             temperature=self.kd.temperature, mix=self.kd.mix, kd_lam=float(self.kd.lam))


# -- (c) mean teacher -------------------------------------------------------------------------------------------
@register
class MeanTeacher(_OutsideTeacher, Method):
    name = 'mean_teacher'
    row = '(c) mean teacher'
    figure_2 = (2, 1, 1.33)     # the EMA copy and its forward pass
    saves = {'model_ema': ("the mean teacher's EMA of the weights", '_ema')}

    @property
    def lam(self) -> float:
        return float(self.cfg.mean_teacher.lam)

    def describe(self) -> str:
        mt = self.cfg.mean_teacher
        warmup = (f' after a warm-up 1 - (1 + step / {mt.warmup_gamma:g})^-{mt.warmup_power:g}' if mt.warmup
                  else ' from the first step')
        return f'{self.name}: {self.row}, lambda {self.lam:g}, EMA decay {mt.decay:g}{warmup}; rows report the student'

    def cost(self, student, teacher, keep):  # the EMA copy: its weights, and one forward pass per image
        return Cost(2 * student.params, student.params, self.student_step(student, keep) + student.flops)

    def setup(self, trainer):
        if trainer.fsdp:
            raise MethodError('method=mean_teacher keeps a full EMA copy of the weights on every rank; it does not '
                              'run with train.fsdp=True: use DDP (train.fsdp=False)')
        from timm.utils import ModelEmaV3
        # timm's EMA: a deep copy of the model (eval mode, no gradients), updated with foreach lerp after each step;
        # with the warm-up its decay at step s is min(decay, 1 - (1 + s / gamma)^-power) (a function of the step
        # alone: a resumed run continues it exactly)
        mt = self.cfg.mean_teacher
        self.ema = ModelEmaV3(trainer.model, decay=float(mt.decay), use_warmup=bool(mt.warmup),
                              warmup_gamma=float(mt.warmup_gamma), warmup_power=float(mt.warmup_power))
        self.ema.requires_grad_(False)
        self.teacher = self.ema.module

    def loss(self, logits, targets, teacher):  # the EMA's probabilities, as cosub's submodels give theirs
        return kd_loss(logits, targets, teacher, kd_target='soft', lam=self.lam, loss=self.loss_type)

    def after_step(self, model, step):  # without the warm-up, no step: timm then keeps the decay from the start
        self.ema.update(model, step=step if self.cfg.mean_teacher.warmup else None)

    def eval_models(self, model):
        return {'': model, self.saves['model_ema'][1]: self.ema.module}

    def state_dict(self):
        return dict(model_ema=self.ema.module.state_dict())

    def load_state_dict(self, ckpt, path):
        if 'model_ema' not in ckpt:
            raise MethodError(f'{path} holds no model_ema: it was not written by method=mean_teacher')
        backbones.checkpoint.load_into(self.ema.module, dict(model=ckpt['model_ema']), f'{path} (model_ema)',
                                       strict=True)


# -- (d) co-training of two models ------------------------------------------------------------------------------
class CoTrainingPair(nn.Module):
    """Two models trained side by side on the same batch: their logits are stacked (first model's rows first), so
    that cosub's loss over two "submodels" is co-training's. Each model keeps its own parameters and optimizer
    state (one optimizer over both models' groups: LAMB and AdamW act per parameter, and each model's gradients
    are clipped on their own, so this is exactly two optimizers)."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.models = nn.ModuleList([first, second])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([m(x) for m in self.models])

    def no_weight_decay(self) -> set:
        return {f'models.{i}.{n}' for i, m in enumerate(self.models) for n in backbones.optim.no_weight_decay_names(m)}

    def layer_id(self, name: str) -> int:
        i, rest = name.removeprefix('models.').split('.', 1)
        return backbones.optim.param_layer_ids(self.models[int(i)])[rest]

    def reset_classifier(self, num_classes: int) -> None:
        for m in self.models:
            m.reset_classifier(num_classes)


@register
class CoTraining(Method):
    name = 'cotrain'
    row = '(d) co-training'
    # both models see each image once; their predictions are the two rows of cosub's loss
    copies = 1
    figure_2 = (2, 2, 2)        # two models, two optimizer states, two training steps
    saves = {'peer_model': ("co-training's second model", '_peer')}

    @property
    def lam(self) -> float:
        return float(self.cfg.cotrain.lam)

    def describe(self) -> str:
        return f'{self.name}: {self.row}, 2 models, lambda {self.lam:g}'

    def cost(self, student, teacher, keep):  # the second model: its weights, optimizer state and training step
        return Cost(2 * student.params, 2 * student.params, 2 * self.student_step(student, keep))

    def build_model(self, make):
        first = make()
        second = make()  # the random state has moved on: its own initialisation
        return CoTrainingPair(first, second)

    def loss(self, logits, targets, teacher):
        return cosub_loss(logits, targets, num_submodels=2, lam=self.lam, loss=self.loss_type)

    def parameter_sets(self, model):
        return [list(m.parameters()) for m in model.models]

    def eval_models(self, model):
        return {'': model.models[0], self.saves['peer_model'][1]: model.models[1]}

    def split_model_state(self, state):
        parts = [{}, {}]
        for key, value in state.items():
            i, rest = key.removeprefix('models.').split('.', 1)
            parts[int(i)][rest] = value
        return dict(model=parts[0], peer_model=parts[1])

    def join_model_state(self, ckpt, path):
        if 'peer_model' not in ckpt:
            raise MethodError(f'{path} holds no peer_model: it was not written by method=cotrain')
        return {f'models.{i}.{k}': v for i, key in enumerate(('model', 'peer_model')) for k, v in ckpt[key].items()}


def method_of(config: dict) -> str:
    """The method a checkpoint's config was trained with (before `method` existed: cosub.enabled said it)."""
    config = config or {}
    if config.get('method'):
        return config['method']
    return 'baseline' if (config.get('cosub') or {}).get('enabled') is False else 'cosub'
